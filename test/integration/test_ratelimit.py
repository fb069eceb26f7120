"""Rate limits and the client address behind trusted proxies (ARCHITECTURE: rate
limits, who is the client)."""
import asyncio
import time

import pytest
import websockets.exceptions

import helpers as h
from helpers import async_test, connect, connect_auth, expect_error, expect_ok


async def try_auth(srv, token=None, headers=None):
    """Connect and authenticate. -> dict(resp=<response or None>, code=<close code or None>,
    reason=..., latency=seconds from send to answer)."""
    c = await connect(srv, headers=headers)
    env = h.envelope("auth", {"token": token or srv.admin_token})
    out = {"resp": None, "code": None, "reason": None, "latency": None, "client": c}
    t0 = time.monotonic()
    try:
        await c.send_env(env)
        while True:
            m = await c.recv_json(h.t(8))
            if m.get("type") == "response" and m.get("correlationId") == env["id"]:
                h.check_response(m, env["id"])
                out["resp"] = m
                out["latency"] = time.monotonic() - t0
                break
    except websockets.exceptions.ConnectionClosed:
        pass
    if out["resp"] is None or not out["resp"]["success"]:
        out["code"], out["reason"] = await c.expect_close()
    return out


async def close_ok(r):
    assert r["resp"] is not None and r["resp"]["success"], \
        "expected a successful auth, got %r / close %s %r" % (r["resp"], r["code"], r["reason"])
    await r["client"].close()


def cf(ip):
    return {"CF-Connecting-IP": ip}


def xff(v):
    return {"X-Forwarded-For": v}


async def own_ip(srv, headers):
    c = await connect_auth(srv, headers=headers)
    p = expect_ok(await c.request("connections.list"))
    me = [x for x in p["connections"] if x["sessionId"] == c.session["sessionId"]]
    assert len(me) == 1, p
    await c.close()
    return me[0]["ip"]


# --------------------------------------------------------------------------- client address

@pytest.mark.parametrize("headers,ip", [
    ({}, "127.0.0.1"),
    (xff("203.0.113.9"), "203.0.113.9"),
    (xff("203.0.113.9, 198.51.100.7"), "198.51.100.7"),
    (xff("203.0.113.9,198.51.100.8"), "198.51.100.8"),
    ({"CF-Connecting-IP": "198.51.100.20", "X-Forwarded-For": "203.0.113.9"}, "198.51.100.20"),
    (cf("2001:db8::1"), "2001:db8::1"),
], ids=["direct", "xff-one", "xff-last", "xff-nospace", "cf-wins", "cf-ipv6"])
@async_test
async def test_client_address_trusted_loopback(core, headers, ip):
    assert await own_ip(core, headers) == ip


@pytest.mark.parametrize("proxies", ["", "10.0.0.0/8"], ids=["empty", "other-net"])
@async_test
async def test_client_address_untrusted_peer(core_factory, proxies):
    srv = core_factory(env={"CONDRIX_TRUSTED_PROXIES": proxies})
    assert await own_ip(srv, cf("198.51.100.20")) == "127.0.0.1"
    assert await own_ip(srv, xff("203.0.113.9")) == "127.0.0.1"


@async_test
async def test_client_address_explicit_trust(core_factory):
    srv = core_factory(env={"CONDRIX_TRUSTED_PROXIES": "10.0.0.0/8,127.0.0.1/32"})
    assert await own_ip(srv, cf("198.51.100.21")) == "198.51.100.21"


# --------------------------------------------------------------------------- connection rate

def conn_env(mx=3):
    return {"CONDRIX_RATE_CONN_MAX": str(mx), "CONDRIX_RATE_CONN_WINDOW_SECONDS": "60"}


@async_test
async def test_connection_rate_limit(core_factory):
    srv = core_factory(env=conn_env(3))
    for _ in range(3):
        await close_ok(await try_auth(srv))
    r = await try_auth(srv)
    assert r["code"] == 1008, r
    assert "rate" in (r["reason"] or "").lower(), r["reason"]
    assert r["resp"] is None or h.err_code(r["resp"]) == "RATE_LIMITED"
    srv.assert_alive()


@async_test
async def test_connection_rate_limit_is_per_forwarded_address(core_factory):
    srv = core_factory(env=conn_env(2))
    for _ in range(2):
        await close_ok(await try_auth(srv, headers=cf("198.51.100.1")))
    r = await try_auth(srv, headers=cf("198.51.100.1"))
    assert r["code"] == 1008, r
    assert r["resp"] is None or h.err_code(r["resp"]) == "RATE_LIMITED", r["resp"]
    # another forwarded address and the direct loopback peer have their own budget
    await close_ok(await try_auth(srv, headers=cf("198.51.100.2")))
    await close_ok(await try_auth(srv, headers=xff("203.0.113.5")))
    await close_ok(await try_auth(srv))


@async_test
async def test_connection_rate_limit_untrusted_headers_share_budget(core_factory):
    srv = core_factory(env=dict(conn_env(2), CONDRIX_TRUSTED_PROXIES=""))
    await close_ok(await try_auth(srv, headers=cf("198.51.100.1")))
    await close_ok(await try_auth(srv, headers=cf("198.51.100.2")))
    r = await try_auth(srv, headers=cf("198.51.100.3"))
    assert r["code"] == 1008, r


# --------------------------------------------------------------------------- failed auth

def auth_env(mx=3, window=60, block=30):
    return {"CONDRIX_RATE_AUTH_MAX": str(mx), "CONDRIX_RATE_AUTH_WINDOW_SECONDS": str(window),
            "CONDRIX_RATE_BLOCK_SECONDS": str(block)}


async def fail_auth(srv, n, headers=None):
    lat = []
    for i in range(n):
        r = await try_auth(srv, h.rand_token(), headers=headers)
        assert r["resp"] is not None, r
        code = h.err_code(r["resp"])
        if i < n - 1:
            assert code == "INVALID_TOKEN", r["resp"]
        else:
            assert code in ("INVALID_TOKEN", "RATE_LIMITED"), r["resp"]
        assert r["code"] == 1008
        lat.append(r["latency"])
    return lat


def check_rate_limited(r, block):
    assert r["resp"] is not None, "no RATE_LIMITED response (close %s %r)" % (r["code"], r["reason"])
    expect_error(r["resp"], "RATE_LIMITED")
    ra = (r["resp"]["error"].get("details") or {}).get("retryAfter")
    assert isinstance(ra, int) and not isinstance(ra, bool), r["resp"]["error"]
    assert 0 < ra <= block, ra
    assert r["code"] == 1008


@async_test
async def test_failed_auth_blocks_address_even_with_valid_token(core_factory):
    srv = core_factory(env=auth_env(3, 60, 30))
    await fail_auth(srv, 3)
    r = await try_auth(srv)  # the valid token
    check_rate_limited(r, 30)
    srv.assert_alive()


@async_test
async def test_failed_auth_backoff_grows(core_factory):
    srv = core_factory(env=auth_env(10, 60, 30))
    lat = await fail_auth(srv, 3)
    assert lat[2] >= 0.4, "third failure answered after %.2fs; expected a growing delay (0, 0.25, 0.5 s)" % lat[2]
    assert lat[2] > lat[0]


@async_test
async def test_successful_auth_does_not_count(core_factory):
    srv = core_factory(env=auth_env(2, 60, 30))
    for _ in range(6):
        await close_ok(await try_auth(srv))
    await fail_auth(srv, 1)
    await close_ok(await try_auth(srv))


@async_test
async def test_failed_auth_limit_is_per_forwarded_address(core_factory):
    srv = core_factory(env=auth_env(2, 60, 30))
    bad = cf("198.51.100.66")
    await fail_auth(srv, 2, headers=bad)
    check_rate_limited(await try_auth(srv, headers=bad), 30)
    await close_ok(await try_auth(srv, headers=cf("198.51.100.67")))
    await close_ok(await try_auth(srv))


@async_test
async def test_block_expires(core_factory):
    srv = core_factory(env=auth_env(2, 1, 1))
    await fail_auth(srv, 2)
    check_rate_limited(await try_auth(srv), 1)
    await asyncio.sleep(1.6)
    await close_ok(await try_auth(srv))


# --------------------------------------------------------------------------- message rate

@async_test
async def test_message_rate_limit(core_factory):
    srv = core_factory(env={"CONDRIX_RATE_MSG_MAX": "5", "CONDRIX_RATE_MSG_WINDOW_SECONDS": "1"})
    c = await connect_auth(srv)
    ids = []
    for _ in range(12):
        env = h.envelope("health")
        ids.append(env["id"])
        await c.send_env(env)
    res = {}
    for rid in ids:
        res[rid] = await c.wait_response(rid)
    ok = [r for r in res.values() if r["success"]]
    limited = [r for r in res.values() if not r["success"]]
    assert all(h.err_code(r) == "RATE_LIMITED" for r in limited), [r["error"] for r in limited]
    assert 4 <= len(ok) <= 5, "%d of 12 answered without limit (max 5/window, auth may count)" % len(ok)
    # the first ones pass, the rest are limited
    assert all(res[i]["success"] for i in ids[:4])
    assert all(not res[i]["success"] for i in ids[5:])
    # the connection stays open and recovers after the window
    await asyncio.sleep(1.2)
    expect_ok(await c.request("health"))
    await c.close()


@async_test
async def test_message_rate_limit_is_per_connection(core_factory):
    srv = core_factory(env={"CONDRIX_RATE_MSG_MAX": "3", "CONDRIX_RATE_MSG_WINDOW_SECONDS": "5"})
    a = await connect_auth(srv)
    b = await connect_auth(srv)
    for _ in range(6):
        await a.request("health")
    expect_error(await a.request("health"), "RATE_LIMITED")
    expect_ok(await b.request("health"))
    await a.close()
    await b.close()


@async_test
async def test_rate_limited_requests_are_not_executed(core_factory):
    srv = core_factory(env={"CONDRIX_RATE_MSG_MAX": "3", "CONDRIX_RATE_MSG_WINDOW_SECONDS": "5"})
    a = await connect_auth(srv)
    names = []
    for i in range(8):
        n = "rl-%d" % i
        names.append(n)
        await a.request("auth.generateToken", {"name": n})
    b = await connect_auth(srv)
    p = expect_ok(await b.request("auth.tokens"))
    made = {t["name"] for t in p["tokens"]} & set(names)
    assert len(made) <= 3, "rate-limited generateToken requests were executed: %s" % sorted(made)
    await a.close()
    await b.close()


# --------------------------------------------------------------------------- delayed answers vs. teardown

@async_test
async def test_disconnect_while_failure_answer_is_delayed(core_factory):
    srv = core_factory(env=auth_env(20, 60, 30))
    await fail_auth(srv, 2)  # the next failures are answered after a delay
    for _ in range(5):
        c = await connect(srv)
        await c.send_env(h.envelope("auth", {"token": h.rand_token()}))
        c.ws.transport.abort()  # gone before the delayed answer
    await asyncio.sleep(1.5)
    srv.assert_alive()
    await close_ok(await try_auth(srv))


@async_test
async def test_shutdown_while_failure_answer_is_delayed(core_factory):
    srv = core_factory(env=auth_env(20, 60, 30))
    await fail_auth(srv, 3)
    c = await connect(srv)
    await c.send_env(h.envelope("auth", {"token": h.rand_token()}))
    await asyncio.sleep(0.05)
    rc = await asyncio.get_running_loop().run_in_executor(None, srv.stop)
    assert rc == 0
