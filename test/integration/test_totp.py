"""TOTP second factor on Core tokens (PROTOCOL sections 3 and 4), checked against
oathtool as the independent RFC 6238 implementation."""
import time
import urllib.parse

import pytest

import helpers as h
from helpers import async_test, connect, connect_auth, expect_error, expect_ok


async def setup_token(core, admin, name="tt", scopes=None):
    payload = {"name": name}
    if scopes is not None:
        payload["scopes"] = scopes
    g = expect_ok(await admin.request("auth.generateToken", payload))
    p = expect_ok(await admin.request("totp.setup", {"tokenName": name}))
    return g["token"], p


async def enabled_token(core, admin, name="tt"):
    """A token with TOTP enabled (with the previous step's code). -> (token, secret, [prev, cur, next])."""
    tok, p = await setup_token(core, admin, name)
    codes = h.totp_steps(p["secret"])
    expect_ok(await admin.request("totp.enable", {"tokenName": name, "code": codes[0]}))
    return tok, p["secret"], codes


@async_test
async def test_setup_returns_secret_and_uri(core):
    admin = await connect_auth(core)
    tok, p = await setup_token(core, admin)
    secret = p["secret"]
    assert h.BASE32_RE.match(secret) and len(secret.rstrip("=")) >= 16, secret
    uri = p["otpauthUri"]
    assert uri.startswith("otpauth://totp/"), uri
    q = urllib.parse.parse_qs(urllib.parse.urlparse(uri).query)
    assert q["secret"] == [secret], uri
    st = expect_ok(await admin.request("totp.status", {"tokenName": "tt"}))
    assert st["configured"] is True and st["enabled"] is False
    # not active until enabled
    c = await connect(core)
    expect_ok(await c.auth(tok))
    await c.close()
    assert (await admin.request("auth.tokens"))["payload"]["tokens"]
    await admin.close()


@async_test
async def test_enable_wrong_code_rejected(core):
    admin = await connect_auth(core)
    tok, p = await setup_token(core, admin)
    bad = h.wrong_code(p["secret"])
    expect_error(await admin.request("totp.enable", {"tokenName": "tt", "code": bad}), "INVALID_TOTP")
    for junk in ("", "12345", "1234567", "abcdef"):
        m = await admin.request("totp.enable", {"tokenName": "tt", "code": junk})
        assert m["success"] is False and h.err_code(m) in ("INVALID_TOTP", "INVALID_ARGUMENT"), m
    st = expect_ok(await admin.request("totp.status", {"tokenName": "tt"}))
    assert st["enabled"] is False
    assert await admin.is_open(), "a wrong code from an admin must not close the admin's connection"
    c = await connect(core)
    expect_ok(await c.auth(tok))
    await c.close()
    await admin.close()


@async_test
async def test_enable_with_current_oathtool_code(core):
    admin = await connect_auth(core)
    tok, p = await setup_token(core, admin)
    h.totp_steps(p["secret"])  # wait out a step boundary if one is near
    code = h.totp_code(p["secret"])  # plain `oathtool --totp -b SECRET` equivalent
    r = expect_ok(await admin.request("totp.enable", {"tokenName": "tt", "code": code}))
    assert r["enabled"] is True
    st = expect_ok(await admin.request("totp.status", {"tokenName": "tt"}))
    assert st == {"configured": True, "enabled": True} or (st["configured"] is True and st["enabled"] is True)
    toks = {t["name"]: t for t in expect_ok(await admin.request("auth.tokens"))["tokens"]}
    assert toks["tt"]["totpEnabled"] is True
    await admin.close()


@async_test
async def test_totp_required_then_code(core):
    admin = await connect_auth(core)
    tok, secret, codes = await enabled_token(core, admin)
    c = await connect(core)
    m = await c.auth(tok)
    expect_error(m, "TOTP_REQUIRED")
    assert m["payload"].get("totpRequired") is True, m
    # the connection stays open for one more auth
    p = expect_ok(await c.auth(tok, totp=codes[1]))
    assert p["tokenName"] == "tt"
    assert await c.is_open()
    await c.close()
    await admin.close()


@async_test
async def test_totp_required_twice_closes(core):
    admin = await connect_auth(core)
    tok, secret, codes = await enabled_token(core, admin)
    c = await connect(core)
    expect_error(await c.auth(tok), "TOTP_REQUIRED")
    expect_error(await c.auth(tok), "TOTP_REQUIRED")
    code, _ = await c.expect_close()
    assert code == 1008
    await admin.close()


@async_test
async def test_token_and_code_in_one_auth_and_replay(core):
    admin = await connect_auth(core)
    tok, secret, codes = await enabled_token(core, admin)
    c = await connect(core)
    p = expect_ok(await c.auth(tok, totp=codes[1]))
    assert p["tokenName"] == "tt"
    # the same code again on a new connection: replay
    r = await connect(core)
    m = await r.auth(tok, totp=codes[1])
    expect_error(m, "INVALID_TOTP")
    assert (await r.expect_close())[0] == 1008
    # the code enable consumed cannot be used either
    r2 = await connect(core)
    expect_error(await r2.auth(tok, totp=codes[0]), "INVALID_TOTP")
    assert (await r2.expect_close())[0] == 1008
    # the next step (within drift) is fresh
    n = await connect(core)
    expect_ok(await n.auth(tok, totp=codes[2]))
    await n.close()
    await c.close()
    await admin.close()


@async_test
async def test_enable_with_code_as_a_number(core):
    # A client that sends the code as a JSON number (leading zeros lost) still enables;
    # a code of another type is a wrong code.
    admin = await connect_auth(core)
    tok, p = await setup_token(core, admin)
    expect_error(await admin.request("totp.enable", {"tokenName": "tt", "code": [1, 2]}), "INVALID_TOTP")
    code = h.totp_steps(p["secret"])[1]
    expect_ok(await admin.request("totp.enable", {"tokenName": "tt", "code": int(code)}))
    assert expect_ok(await admin.request("totp.status", {"tokenName": "tt"}))["enabled"] is True
    await admin.close()


@async_test
async def test_code_that_enabled_is_spent(core):
    # ARCHITECTURE: a step once accepted is never accepted again, the enable included;
    # the next step's code (within the drift) signs in.
    admin = await connect_auth(core)
    tok, p = await setup_token(core, admin)
    codes = h.totp_steps(p["secret"])
    expect_ok(await admin.request("totp.enable", {"tokenName": "tt", "code": codes[1]}))
    r = await connect(core)
    expect_error(await r.auth(tok, totp=codes[1]), "INVALID_TOTP")
    assert (await r.expect_close())[0] == 1008
    c = await connect(core)
    expect_error(await c.auth(tok), "TOTP_REQUIRED")
    expect_ok(await c.auth(tok, totp=codes[2]))
    await c.close()
    await admin.close()


@async_test
async def test_replay_after_totp_required(core):
    admin = await connect_auth(core)
    tok, secret, codes = await enabled_token(core, admin)
    a = await connect(core)
    expect_error(await a.auth(tok), "TOTP_REQUIRED")
    expect_ok(await a.auth(tok, totp=codes[1]))
    b = await connect(core)
    expect_error(await b.auth(tok), "TOTP_REQUIRED")
    expect_error(await b.auth(tok, totp=codes[1]), "INVALID_TOTP")
    assert (await b.expect_close())[0] == 1008
    await a.close()
    await admin.close()


@async_test
async def test_wrong_code(core):
    admin = await connect_auth(core)
    tok, secret, codes = await enabled_token(core, admin)
    c = await connect(core)
    expect_error(await c.auth(tok, totp=h.wrong_code(secret)), "INVALID_TOTP")
    assert (await c.expect_close())[0] == 1008
    # valid token + code still fine afterwards (auth rate limit disabled in this test)
    d = await connect(core)
    expect_ok(await d.auth(tok, totp=codes[1]))
    await d.close()
    await admin.close()


@pytest.mark.parametrize("mangle", ["trailing-space", "leading-space", "newline", "five", "seven",
                                    "inner-space", "plus", "fullwidth", "number"])
@async_test
async def test_code_must_be_exactly_six_digits(core, mangle):
    admin = await connect_auth(core)
    tok, secret, codes = await enabled_token(core, admin)
    good = codes[1]
    bad = {
        "trailing-space": good + " ",
        "leading-space": " " + good,
        "newline": good + "\n",
        "five": good[:5],
        "seven": good + "0",
        "inner-space": good[:3] + " " + good[3:],
        "plus": "+" + good[1:],
        "fullwidth": "".join(chr(0xFF10 + int(d)) for d in good),
        "number": int(good),
    }[mangle]
    c = await connect(core)
    m = await c.request("auth", {"token": tok, "totpCode": bad})
    assert m["success"] is False, "accepted TOTP code %r" % (bad,)
    allowed = ("INVALID_TOTP", "INVALID_MESSAGE", "INVALID_ARGUMENT")
    if mangle == "number":
        allowed += ("TOTP_REQUIRED",)  # a non-string code may count as no code
    assert h.err_code(m) in allowed, m
    # the well-formed code was not consumed by the malformed attempt
    d = await connect(core)
    expect_ok(await d.auth(tok, totp=good))
    await d.close()
    await c.close()
    await admin.close()


@async_test
async def test_disable(core):
    admin = await connect_auth(core)
    tok, secret, codes = await enabled_token(core, admin)
    r = expect_ok(await admin.request("totp.disable", {"tokenName": "tt"}))
    assert r["disabled"] is True
    st = expect_ok(await admin.request("totp.status", {"tokenName": "tt"}))
    assert st["enabled"] is False
    c = await connect(core)
    expect_ok(await c.auth(tok))
    await c.close()
    await admin.close()


@async_test
async def test_rotate_keeps_totp(core):
    admin = await connect_auth(core)
    tok, secret, codes = await enabled_token(core, admin)
    p = expect_ok(await admin.request("auth.rotateToken", {"name": "tt"}))
    c = await connect(core)
    expect_error(await c.auth(p["token"]), "TOTP_REQUIRED")
    expect_ok(await c.auth(p["token"], totp=codes[1]))
    st = expect_ok(await admin.request("totp.status", {"tokenName": "tt"}))
    assert st["enabled"] is True
    await c.close()
    await admin.close()


@async_test
async def test_totp_on_env_token_name_field(core):
    admin = await connect_auth(core)
    p = expect_ok(await admin.request("totp.setup", {"name": "env-token"}))
    assert h.BASE32_RE.match(p["secret"])
    st = expect_ok(await admin.request("totp.status", {"name": "env-token"}))
    assert st["configured"] is True and st["enabled"] is False
    await admin.close()


@async_test
async def test_secret_not_logged(core):
    admin = await connect_auth(core)
    tok, secret, codes = await enabled_token(core, admin)
    c = await connect(core)
    expect_ok(await c.auth(tok, totp=codes[1]))
    await c.close()
    await admin.close()
    err = core.stderr()
    assert secret not in err, "TOTP secret in the log"
    assert tok not in err, "token in the log"


@async_test
async def test_only_one_step_of_drift(core):
    admin = await connect_auth(core)
    tok, secret, codes = await enabled_token(core, admin)
    step = int(time.time() // 30)
    valid = set(h.totp_steps_nowait(secret)[1:4])
    for d in (-2, 2, 3):
        far = h.totp_code(secret, (step + d) * 30 + 1)
        if far in valid:
            continue  # a collision with a valid code: not a useful probe
        c = await connect(core)
        expect_error(await c.auth(tok, totp=far), "INVALID_TOTP")
        assert (await c.expect_close())[0] == 1008
    c = await connect(core)
    expect_ok(await c.auth(tok, totp=codes[1]))
    await c.close()
    await admin.close()
