"""Dev mode (PROTOCOL section 3): loopback connections without forwarding headers are
authenticated at upgrade; anything tunneled must still authenticate."""
import asyncio
import time

import pytest

import helpers as h
from helpers import async_test, connect, expect_error, expect_ok

FORWARDING = [
    ("X-Forwarded-For", "198.51.100.9"),
    ("Forwarded", "for=198.51.100.9;proto=https"),
    ("CF-Connecting-IP", "198.51.100.9"),
    ("CF-Ray", "8a1b2c3d4e5f6a7b-LHR"),
    ("X-Real-IP", "198.51.100.9"),
    ("x-forwarded-for", "198.51.100.9"),
    ("CF-CONNECTING-IP", "198.51.100.9"),
    ("X-Forwarded-For", "127.0.0.1"),
]


@pytest.fixture(scope="module")
def dev(module_factory):
    return module_factory(dev=True, env={"CONDRIX_RATE_MSG_MAX": "0"})


def no_token_printed(srv):
    assert not h.TOKEN_LINE_RE.search(srv.stdout()), "dev mode printed a token:\n" + srv.stdout()


def test_dev_flag_prints_no_token(core_factory):
    srv = core_factory(dev=True, env_token=None)
    time.sleep(0.2)
    no_token_printed(srv)


@async_test
async def test_dev_env_var(core_factory):
    srv = core_factory(env={"CONDRIX_DEV": "1"}, env_token=None)
    await asyncio.sleep(0.2)
    no_token_printed(srv)
    c = await connect(srv)
    p = expect_ok(await c.request("info"))
    assert p["devMode"] is True
    await c.close()


@async_test
async def test_loopback_is_authenticated_at_upgrade(dev):
    c = await connect(dev)
    p = expect_ok(await c.request("info"))
    assert p["devMode"] is True
    expect_ok(await c.request("health"))
    # every scope: admin actions work without auth
    toks = expect_ok(await c.request("auth.tokens"))
    assert isinstance(toks["tokens"], list)
    await c.close()


@async_test
async def test_later_auth_answered_authenticated(dev):
    c = await connect(dev)
    for payload in ({}, {"token": h.rand_token()}, {"token": dev.admin_token}):
        m = await c.request("auth", payload)
        p = expect_ok(m)
        assert p["authenticated"] is True
        assert set(p["scopes"]) == h.ALL_SCOPES
        assert h.is_uuid(p["sessionId"])
        assert p["tokenName"] == "dev"
    assert await c.is_open()
    await c.close()


@async_test
async def test_browser_page_of_another_site_must_authenticate(dev):
    # Any site open in the developer's browser can reach loopback: its WebSocket carries
    # that site's Origin and gets no dev-mode pass; a local page (a dev server) does.
    c = await connect(dev, headers={"Origin": "https://evil.example"})
    expect_error(await c.request("info"), "AUTH_REQUIRED")
    expect_ok(await c.auth(dev.admin_token))  # with a token it is an ordinary client
    await c.close()
    for origin in ("http://localhost:5173", "http://127.0.0.1:8080", "http://[::1]:3000"):
        c = await connect(dev, headers={"Origin": origin})
        assert expect_ok(await c.request("info"))["devMode"] is True, origin
        await c.close()


@async_test
async def test_dev_connections_list_token_name(dev):
    c = await connect(dev)
    sid = expect_ok(await c.request("auth", {}))["sessionId"]
    p = expect_ok(await c.request("connections.list"))
    mine = [x for x in p["connections"] if x["sessionId"] == sid]
    assert len(mine) == 1 and mine[0]["tokenName"] == "dev" and mine[0]["ip"] == "127.0.0.1", p
    await c.close()


@async_test
async def test_dev_no_auth_timeout(core_factory):
    srv = core_factory(dev=True, env={"CONDRIX_LIMIT_AUTH_MS": "300"})
    c = await connect(srv)
    await asyncio.sleep(0.8)
    assert await c.is_open(), "a dev-mode connection, authenticated at upgrade, hit the auth timeout"
    await c.close()


@pytest.mark.parametrize("name,value", FORWARDING, ids=["%s=%s" % f for f in FORWARDING])
@async_test
async def test_forwarded_connection_must_authenticate(dev, name, value):
    c = await connect(dev, headers={name: value})
    expect_error(await c.request("info"), "AUTH_REQUIRED")
    expect_error(await c.request("auth.tokens"), "AUTH_REQUIRED")
    p = expect_ok(await c.auth(dev.admin_token))
    assert p["tokenName"] == "env-token"
    expect_ok(await c.request("info"))
    await c.close()


@pytest.mark.parametrize("name,value", FORWARDING[:5], ids=[f[0] for f in FORWARDING[:5]])
@async_test
async def test_forwarded_connection_bad_token_rejected(dev, name, value):
    c = await connect(dev, headers={name: value})
    m = await c.auth(h.rand_token())
    expect_error(m, "INVALID_TOKEN")
    assert (await c.expect_close())[0] == 1008


@async_test
async def test_forwarded_connection_three_strikes(dev):
    c = await connect(dev, headers={"CF-Ray": "abc-LHR"})
    for _ in range(3):
        expect_error(await c.request("health"), "AUTH_REQUIRED")
    assert (await c.expect_close())[0] == 1008


@async_test
async def test_forwarded_connection_auth_timeout(core_factory):
    srv = core_factory(dev=True, env={"CONDRIX_LIMIT_AUTH_MS": "400"})
    c = await connect(srv, headers={"X-Real-IP": "198.51.100.3"})
    code, reason = await c.expect_close(h.t(5))
    assert code == 1008 and reason == "auth timeout"


@async_test
async def test_forwarded_with_untrusted_proxy_still_must_authenticate(core_factory):
    # even when the headers are not trusted for the address, they mark the connection as tunneled
    srv = core_factory(dev=True, env={"CONDRIX_TRUSTED_PROXIES": ""})
    c = await connect(srv, headers={"X-Forwarded-For": "198.51.100.9"})
    expect_error(await c.request("info"), "AUTH_REQUIRED")
    await c.close()


@async_test
async def test_production_mode_requires_auth_on_loopback(core):
    c = await connect(core)
    expect_error(await c.request("info"), "AUTH_REQUIRED")
    await c.close()
