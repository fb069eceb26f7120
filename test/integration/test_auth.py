"""Core client authentication (PROTOCOL section 3)."""
import asyncio
import json
import time

import pytest

import helpers as h
from helpers import async_test, connect, connect_auth, expect_error, expect_ok


@async_test
async def test_auth_with_env_token(core):
    c = await connect(core)
    m = await c.auth(core.admin_token, clientId="itest", clientType="cli")
    p = expect_ok(m)
    assert p["authenticated"] is True
    assert set(p["scopes"]) == h.ALL_SCOPES and len(p["scopes"]) == len(h.ALL_SCOPES)
    assert h.is_uuid(p["sessionId"]), p
    assert p["tokenName"] == "env-token"
    # the connection is usable afterwards
    assert await c.is_open()
    await c.close()


@async_test
async def test_auth_with_printed_default_admin_token(core_factory):
    srv = core_factory(env_token=None, expect_token=True)
    c = await connect(srv)
    p = expect_ok(await c.auth(srv.printed_token))
    assert p["tokenName"] == "default-admin"
    assert set(p["scopes"]) == h.ALL_SCOPES
    await c.close()


@async_test
async def test_session_ids_are_distinct(core):
    a = await connect_auth(core)
    b = await connect_auth(core)
    assert a.session["sessionId"] != b.session["sessionId"]
    await a.close()
    await b.close()


@pytest.mark.parametrize("payload", [{}, {"token": None}, {"clientType": "web"}], ids=["empty", "null", "no-token"])
@async_test
async def test_token_required(core, payload):
    c = await connect(core)
    m = await c.request("auth", payload)
    expect_error(m, "TOKEN_REQUIRED")
    assert m["payload"]["authenticated"] is False and m["payload"]["scopes"] == []
    code, _ = await c.expect_close()
    assert code == 1008


@pytest.mark.parametrize("kind", ["random", "short", "upper", "prefix", "extra-char", "non-hex", "spaces"])
@async_test
async def test_invalid_token(core, kind):
    tok = core.admin_token
    bad = {
        "random": h.rand_token(),
        "short": "abc",
        "upper": tok.upper(),
        "prefix": tok[:63],
        "extra-char": tok + "0",
        "non-hex": "z" * 64,
        "spaces": " " + tok,
    }[kind]
    c = await connect(core)
    m = await c.auth(bad)
    expect_error(m, "INVALID_TOKEN")
    assert m["payload"] == {"authenticated": False, "scopes": []} or \
        (m["payload"]["authenticated"] is False and m["payload"]["scopes"] == [])
    code, _ = await c.expect_close()
    assert code == 1008
    # a failure does not hurt the next, valid, attempt (auth rate limit disabled here)
    ok = await connect_auth(core)
    await ok.close()


@async_test
async def test_error_message_does_not_echo_token(core):
    bad = h.rand_token()
    c = await connect(core)
    await c.send_env(h.envelope("auth", {"token": bad}, rid="leak-check"))
    raw = await asyncio.wait_for(c.ws.recv(), h.t(5))
    assert bad not in raw and bad[:16] not in raw
    await c.close()


@async_test
async def test_auth_required_before_auth_then_auth_works(core):
    c = await connect(core)
    for _ in range(2):
        m = await c.request("info")
        expect_error(m, "AUTH_REQUIRED")
    # still open: authenticate now
    p = expect_ok(await c.auth(core.admin_token))
    assert p["tokenName"] == "env-token"
    assert await c.is_open()
    await c.close()


@async_test
async def test_auth_required_three_strikes(core):
    c = await connect(core)
    for action in ("info", "health", "auth.tokens"):
        m = await c.request(action)
        expect_error(m, "AUTH_REQUIRED")
    code, _ = await c.expect_close()
    assert code == 1008


@async_test
async def test_auth_required_for_unknown_action_before_auth(core):
    c = await connect(core)
    m = await c.request("no.such.action", namespace="bogus")
    assert m["success"] is False and h.err_code(m) in ("AUTH_REQUIRED", "UNKNOWN_ACTION"), m
    m = await c.request("auth.tokens")
    expect_error(m, "AUTH_REQUIRED")
    await c.close()


@async_test
async def test_auth_timeout(core_factory):
    srv = core_factory(env={"CONDRIX_LIMIT_AUTH_MS": "500"})
    c = await connect(srv)
    t0 = time.monotonic()
    code, reason = await c.expect_close(timeout=h.t(5))
    elapsed = time.monotonic() - t0
    assert code == 1008
    assert reason == "auth timeout"
    assert elapsed >= 0.35, "closed too early (%.2fs)" % elapsed


@async_test
async def test_auth_timeout_does_not_hit_authenticated(core_factory):
    srv = core_factory(env={"CONDRIX_LIMIT_AUTH_MS": "400"})
    c = await connect_auth(srv)
    await asyncio.sleep(1.0)
    assert await c.is_open()
    await c.close()


@async_test
async def test_auth_timeout_times_only_the_first_message(core_factory):
    # PROTOCOL section 1: 10 s "from upgrade to the first message". After a first message
    # the connection may still sign in (here after TOTP-style waiting), within the longer
    # sign-in window, which then closes it 1008 "auth timeout" if it never does.
    srv = core_factory(env={"CONDRIX_LIMIT_AUTH_MS": "400", "CONDRIX_LIMIT_SIGNIN_MS": "2500"})
    c = await connect(srv)
    expect_error(await c.request("info"), "AUTH_REQUIRED")
    await asyncio.sleep(1.0)  # well past AUTH_MS: still open, still answering
    expect_error(await c.request("info"), "AUTH_REQUIRED")
    m = await c.request("auth", {"token": srv.admin_token})
    assert m["success"] is True, m
    await asyncio.sleep(3.0)  # past the sign-in window too: signed in, so it stays
    assert await c.is_open()
    await c.close()

    c = await connect(srv)
    t0 = time.monotonic()
    expect_error(await c.request("info"), "AUTH_REQUIRED")
    code, reason = await c.expect_close(timeout=h.t(8))
    elapsed = time.monotonic() - t0
    assert (code, reason) == (1008, "auth timeout")
    assert elapsed >= 2.0, "closed at %.2fs, before the sign-in window" % elapsed


@async_test
async def test_pipelined_auth_and_request(core):
    # auth and a request sent back to back: both answered, in order, the second succeeds
    c = await connect(core)
    a = h.envelope("auth", {"token": core.admin_token})
    b = h.envelope("info")
    await c.ws.send(json.dumps(a))
    await c.ws.send(json.dumps(b))
    ma = await c.wait_response(a["id"])
    mb = await c.wait_response(b["id"])
    expect_ok(ma)
    expect_ok(mb)
    await c.close()


@async_test
async def test_any_path_accepted(core):
    for path in ("/", "/ws", "/some/other/path"):
        c = await connect(core, path=path)
        expect_ok(await c.auth(core.admin_token))
        await c.close()


@async_test
async def test_auth_is_logged_without_secrets(core):
    c = await connect_auth(core)
    bad = await connect(core)
    await bad.auth(h.rand_token())
    await c.close()
    await bad.close()
    await asyncio.sleep(0.1)
    err = core.stderr()
    assert core.admin_token not in err, "token value written to the log"


@pytest.mark.parametrize("payload", [{"token": 12345}, {"token": ["x"]}, {"token": {"v": 1}}, {"token": True},
                                     {"token": ""}],
                         ids=["number", "array", "object", "bool", "empty-string"])
@async_test
async def test_token_of_wrong_type(core, payload):
    c = await connect(core)
    m = await c.request("auth", payload)
    assert m["success"] is False
    # No token is TOKEN_REQUIRED; a token that is there but malformed is INVALID_TOKEN.
    want = "TOKEN_REQUIRED" if payload["token"] == "" else "INVALID_TOKEN"
    assert h.err_code(m) == want, m
    assert m["payload"] == {"authenticated": False, "scopes": []}
    code, _ = await c.expect_close()
    assert code == 1008


@pytest.mark.parametrize("payload", ["a string", 5, None, [1, 2]], ids=["string", "number", "null", "array"])
@async_test
async def test_auth_payload_not_an_object(core, payload):
    c = await connect(core)
    env = h.envelope("auth")
    env["payload"] = payload
    await c.send_env(env)
    m = await c.wait_response(env["id"])
    assert m["success"] is False
    # The envelope is fine (payload may be any JSON); there is simply no token in it.
    assert h.err_code(m) == "TOKEN_REQUIRED", m
    assert (await c.expect_close())[0] == 1008
