"""condrix-maestro client sign-in and accounts (PROTOCOL section 5 and the Maestro notes):
login, session auth, logout, password change, TOTP (codes from oathtool), sessions,
users.*, grants, pairing-code admin, rate limits per address and per username, and
the latency of a signed-in client during a login burst."""
import asyncio
import json
import statistics
import subprocess
import time

import helpers as h
from helpers import async_test, expect_error, expect_ok
import maestro_helpers as mh
from maestro_helpers import mx, mx_factory, mx_connect, mx_login, make_user  # noqa: F401 (fixtures)


# --------------------------------------------------------------------------- login

@async_test
async def test_pipelined_requests_behind_a_login_keep_their_order(mx):
    # Sent back to back without waiting: a wrong login, a right one, a request that needs
    # the session, another login. Each is answered, in order, as if sent one by one.
    c = await mx_connect(mx)
    envs = [h.envelope("login", {"username": "default-admin", "password": "wrong-pass-0"}, "maestro"),
            h.envelope("login", {"username": "default-admin", "password": mx.password}, "maestro"),
            h.envelope("cores.list", {}, "maestro"),
            h.envelope("login", {"username": "default-admin", "password": mx.password}, "maestro")]
    for e in envs:
        await c.send_env(e)
    got = [await c.recv_json(h.t(10)) for _ in envs]
    assert [m["correlationId"] for m in got] == [e["id"] for e in envs], got
    expect_error(got[0], "INVALID_CREDENTIALS")
    assert got[1]["success"] is True and got[3]["success"] is True, got
    assert expect_ok(got[2])["cores"] == []
    await c.close()


@async_test
async def test_failed_login_connection_outlives_auth_timeout(mx_factory):
    # Only the first message is timed (10 s by default, 400 ms here): a browser that got
    # the password wrong retries on the same connection long after that, and signs in.
    srv = mx_factory(env={"CONDRIX_LIMIT_AUTH_MS": "400"})
    c = await mx_connect(srv)
    expect_error(await c.login("default-admin", "not-the-password-1"), "INVALID_CREDENTIALS")
    await asyncio.sleep(1.2)
    m = await c.login("default-admin", srv.password)
    assert m["success"] is True, m
    await c.close()


@async_test
async def test_login_success_payload(mx):
    c = await mx_connect(mx, headers={"User-Agent": "pytest-agent/1"})
    m = await c.login("Default-Admin", mx.password)  # usernames are case-insensitive
    p = expect_ok(m)
    assert set(p) >= {"authenticated", "sessionToken", "expiresAt", "user"}, p
    assert p["authenticated"] is True and mh.HEX64.match(p["sessionToken"]), p
    assert h.TS_RE.match(p["expiresAt"]), p
    days = (h.parse_ts(p["expiresAt"]) - h.parse_ts(h.now_ts())).total_seconds() / 86400
    assert 6.9 < days < 7.1, "session lifetime %.2f days, want 7" % days
    assert set(p["user"]) == {"id", "username", "role"}, p["user"]
    assert p["user"]["username"] == "default-admin" and p["user"]["role"] == "admin"
    assert h.is_uuid(p["user"]["id"]) or p["user"]["id"], p
    assert mx.password not in mx.all_stderr() and p["sessionToken"] not in mx.all_stderr()
    await c.close()


@async_test
async def test_wrong_and_unknown_user_same_answer(mx):
    c = await mx_connect(mx)
    answers = []
    for user, pw in (("default-admin", "wrong-password-1"), ("no-such-user", "wrong-password-1"),
                     ("no-such-user", mx.password)):
        m = await c.login(user, pw)
        expect_error(m, "INVALID_CREDENTIALS")
        assert m["payload"] == {"authenticated": False}, m
        answers.append((m["error"]["code"], m["error"]["message"], m["payload"]))
    assert answers[0] == answers[1] == answers[2], answers
    # the connection stays open: the right password works on it
    expect_ok(await c.login("default-admin", mx.password))
    # audit tells them apart (actor only for existing users)
    rows = [r for r in mh.audit_rows(mx) if r["action"] == "login"]
    results = [r["result"] for r in rows]
    assert "fail:password" in results and "fail:unknown-user" in results and "ok" in results, rows
    for r in rows:
        if r["result"] == "fail:unknown-user":
            assert r["actor"] is None, r
    await c.close()


@async_test
async def test_login_missing_fields_invalid_argument(mx):
    c = await mx_connect(mx)
    for payload in ({}, {"username": "default-admin"}, {"password": "x" * 10}, {"username": "", "password": "x"},
                    {"username": 5, "password": "x" * 10}):
        m = await c.mx("login", payload)
        expect_error(m, "INVALID_ARGUMENT")
        assert m["payload"]["authenticated"] is False, m
    expect_ok(await c.login("default-admin", mx.password))
    await c.close()


@async_test
async def test_session_auth_and_invalid_session(mx):
    a = await mx_login(mx)
    tok = a.session["sessionToken"]
    b = await mx_connect(mx)
    m = await b.mx("auth", {"sessionToken": tok})
    p = expect_ok(m)
    assert p["authenticated"] is True and p["user"]["username"] == "default-admin", p
    assert h.TS_RE.match(p["expiresAt"]), p
    expect_ok(await b.mx("cores.list"))
    c = await mx_connect(mx)
    for payload in ({"sessionToken": "0" * 64}, {"sessionToken": ""}, {}, {"sessionToken": tok[:-1]}):
        m = await c.mx("auth", payload)
        expect_error(m, "INVALID_SESSION")
        assert m["payload"]["authenticated"] is False, m
    assert not (await c.mx("cores.list"))["success"]
    # still open after failures (no close on sign-in failures), and can sign in
    expect_ok(await c.mx("auth", {"sessionToken": tok}))
    for cl in (a, b, c):
        await cl.close()


@async_test
async def test_session_expired(mx):
    a = await mx_login(mx)
    tok = a.session["sessionToken"]
    other = await mx_connect(mx)
    expect_ok(await other.mx("auth", {"sessionToken": tok}))
    # expire it in the store (the server re-checks the session on every request)
    with mx.db() as db:
        n = db.execute("UPDATE sessions SET expires_at = 1000").rowcount
    assert n == 1
    m = await a.mx("cores.list")
    expect_error(m, "SESSION_EXPIRED")
    code, _ = await a.expect_close()
    assert code == 4002, code
    c = await mx_connect(mx)
    m = await c.mx("auth", {"sessionToken": tok})
    expect_error(m, "SESSION_EXPIRED")
    assert m["payload"]["authenticated"] is False
    assert await c.is_open_mx()
    await c.close()
    await other.close()


@async_test
async def test_requests_held_behind_a_login_are_bounded(mx_factory):
    # 64 messages may wait behind a password check; the 65th closes the connection.
    srv = mx_factory(env={"CONDRIX_RATE_MSG_MAX": "0"})
    c = await mx_connect(srv)
    await c.send_env(h.envelope("login", {"username": "default-admin", "password": srv.password}, "maestro"))
    for _ in range(80):
        await c.send_env(h.envelope("cores.list", {}, "maestro"))
    code, reason = await c.expect_close(timeout=h.t(10))
    assert (code, reason) == (1008, "too many requests in flight"), (code, reason)
    ok = await mx_login(srv)  # the server serves everyone else
    expect_ok(await ok.mx("cores.list"))
    await ok.close()


@async_test
async def test_relogin_switches_user(mx):
    a = await mx_login(mx)
    _, pw = await make_user(a, "switcher", "switch-pass-1")
    expect_ok(await a.login("switcher", pw))
    expect_error(await a.mx("users.list"), "FORBIDDEN")
    expect_ok(await a.login("default-admin", mx.password))
    expect_ok(await a.mx("users.list"))
    await a.close()


# --------------------------------------------------------------------------- logout, password

@async_test
async def test_logout_kills_token_everywhere(mx):
    a = await mx_login(mx)
    tok = a.session["sessionToken"]
    b = await mx_connect(mx)
    expect_ok(await b.mx("auth", {"sessionToken": tok}))
    other_session = await mx_login(mx)  # another session of the same user survives
    p = expect_ok(await a.mx("logout"))
    assert p == {"loggedOut": True}, p
    code, _ = await b.expect_close()
    assert code == 4002, code
    # this connection stays open but signed out
    expect_error(await a.mx("cores.list"), "AUTH_REQUIRED")
    expect_error(await a.mx("auth", {"sessionToken": tok}), "INVALID_SESSION")
    expect_ok(await a.login("default-admin", mx.password))
    expect_ok(await other_session.mx("cores.list"))
    c = await mx_connect(mx)
    expect_error(await c.mx("auth", {"sessionToken": tok}), "INVALID_SESSION")
    for cl in (a, c, other_session):
        await cl.close()


@async_test
async def test_change_password_revokes_other_sessions(mx):
    admin = await mx_login(mx)
    _, pw = await make_user(admin, "alice", "alice-pass-1")
    a1 = await mx_login(mx, "alice", pw)
    a1b = await mx_connect(mx)  # same session as a1
    expect_ok(await a1b.mx("auth", {"sessionToken": a1.session["sessionToken"]}))
    a2 = await mx_login(mx, "alice", pw)
    old_tok2 = a2.session["sessionToken"]
    # wrong old password, new password too short, missing fields
    expect_error(await a1.mx("auth.changePassword", {"oldPassword": "not-it-123", "newPassword": "new-pass-123"}),
                 "INVALID_CREDENTIALS")
    expect_error(await a1.mx("auth.changePassword", {"oldPassword": pw, "newPassword": "short"}), "INVALID_ARGUMENT")
    expect_error(await a1.mx("auth.changePassword", {"oldPassword": pw, "newPassword": "x" * 1025}),
                 "INVALID_ARGUMENT")
    expect_error(await a1.mx("auth.changePassword", {"newPassword": "new-pass-123"}), "INVALID_ARGUMENT")
    assert await a2.is_open_mx(), "a failed change must not sign anyone out"
    p = expect_ok(await a1.mx("auth.changePassword", {"oldPassword": pw, "newPassword": "new-pass-123"}))
    assert p == {"changed": True}, p
    code, _ = await a2.expect_close()
    assert code == 4002, code
    # the current session (both its connections) stays
    expect_ok(await a1.mx("cores.list"))
    expect_ok(await a1b.mx("cores.list"))
    c = await mx_connect(mx)
    expect_error(await c.mx("auth", {"sessionToken": old_tok2}), "INVALID_SESSION")
    expect_error(await c.login("alice", pw), "INVALID_CREDENTIALS")
    expect_ok(await c.login("alice", "new-pass-123"))
    for cl in (admin, a1, a1b, c):
        await cl.close()


# --------------------------------------------------------------------------- TOTP

@async_test
async def test_totp_code_that_enabled_is_spent(mx):
    admin = await mx_login(mx)
    _, pw = await make_user(admin, "totp2", "totp-pass-12")
    u = await mx_login(mx, "totp2", pw)
    secret = expect_ok(await u.mx("auth.totp.setup"))["secret"]
    codes = h.totp_steps(secret)
    expect_ok(await u.mx("auth.totp.enable", {"code": codes[1]}))
    c = await mx_connect(mx)
    expect_error(await c.login("totp2", pw), "TOTP_REQUIRED")
    expect_error(await c.login("totp2", pw, totp=codes[1]), "INVALID_TOTP")  # the enable's step
    d = await mx_connect(mx)
    expect_ok(await d.login("totp2", pw, totp=codes[2]))
    for cl in (admin, u, c, d):
        await cl.close()


@async_test
async def test_totp_flow(mx):
    admin = await mx_login(mx)
    _, pw = await make_user(admin, "totpuser", "totp-pass-12")
    u = await mx_login(mx, "totpuser", pw)
    st = expect_ok(await u.mx("auth.totp.status"))
    assert st["enabled"] is False, st
    expect_error(await u.mx("auth.totp.enable", {"code": "123456"}), "INVALID_ARGUMENT")  # no setup yet
    s = expect_ok(await u.mx("auth.totp.setup"))
    secret = s["secret"]
    assert h.BASE32_RE.match(secret), s
    assert s["otpauthUri"].startswith("otpauth://totp/") and "secret=" + secret in s["otpauthUri"], s
    assert "Condrix" in s["otpauthUri"], s
    assert s["qrSvg"].lstrip().startswith("<") and "svg" in s["qrSvg"][:200].lower(), s["qrSvg"][:200]
    st = expect_ok(await u.mx("auth.totp.status"))
    assert st["enabled"] is False and st.get("pending") is True, st
    # still no TOTP at login until enabled
    c = await mx_connect(mx)
    expect_ok(await c.login("totpuser", pw))
    await c.close()
    expect_error(await u.mx("auth.totp.enable", {"code": h.wrong_code(secret)}), "INVALID_TOTP")
    codes = h.totp_steps(secret)
    expect_ok(await u.mx("auth.totp.enable", {"code": codes[0]}))
    assert expect_ok(await u.mx("auth.totp.status"))["enabled"] is True
    expect_error(await u.mx("auth.totp.setup"), "INVALID_ARGUMENT")
    expect_error(await u.mx("auth.totp.enable", {"code": codes[1]}), "INVALID_ARGUMENT")
    lst = {x["username"]: x for x in expect_ok(await admin.mx("users.list"))["users"]}
    assert lst["totpuser"]["totpEnabled"] is True

    c = await mx_connect(mx)
    m = await c.login("totpuser", pw)
    expect_error(m, "TOTP_REQUIRED")
    assert m["payload"].get("requiresTotp") is True and m["payload"]["authenticated"] is False, m
    m = await c.login("totpuser", pw, totp=h.wrong_code(secret))
    expect_error(m, "INVALID_TOTP")
    assert m["payload"].get("requiresTotp") is True, m
    for junk in ("12345", "1234567", " " + codes[1][:5], codes[1] + " ", "abcdef"):
        expect_error(await c.login("totpuser", pw, totp=junk), "INVALID_TOTP")
    # TOTP correct, password wrong: still INVALID_CREDENTIALS
    expect_error(await c.login("totpuser", "wrong-pass-99", totp=codes[1]), "INVALID_CREDENTIALS")
    expect_ok(await c.login("totpuser", pw, totp=codes[1]))
    d = await mx_connect(mx)
    m = await d.login("totpuser", pw, totp=codes[1])  # replay of an accepted code
    expect_error(m, "INVALID_TOTP")
    expect_ok(await d.login("totpuser", pw, totp=codes[2]))
    # disable needs the password
    expect_error(await u.mx("auth.totp.disable", {"password": "wrong-pass-99"}), "INVALID_CREDENTIALS")
    p = expect_ok(await u.mx("auth.totp.disable", {"password": pw}))
    assert p == {"enabled": False}, p
    assert expect_ok(await u.mx("auth.totp.status"))["enabled"] is False
    e = await mx_connect(mx)
    expect_ok(await e.login("totpuser", pw))
    for cl in (admin, u, c, d, e):
        await cl.close()
    rows = [r for r in mh.audit_rows(mx) if r["action"] == "login" and r["actor"] == "totpuser"]
    results = {r["result"] for r in rows}
    assert {"totp-required", "ok"} <= results and any(r.startswith("fail:totp") for r in results), results
    assert secret not in mx.all_stderr()


@async_test
async def test_cli_totp_reset(mx):
    admin = await mx_login(mx)
    _, pw = await make_user(admin, "lostphone", "lost-phone-1")
    u = await mx_login(mx, "lostphone", pw)
    secret = expect_ok(await u.mx("auth.totp.setup"))["secret"]
    expect_ok(await u.mx("auth.totp.enable", {"code": h.totp_steps(secret)[0]}))
    c = await mx_connect(mx)
    expect_error(await c.login("lostphone", pw), "TOTP_REQUIRED")
    out = mx.cli("user", "totp-reset", "lostphone")
    assert out == {"username": "lostphone", "totpEnabled": False}, out
    expect_ok(await c.login("lostphone", pw))
    for cl in (admin, u, c):
        await cl.close()


# --------------------------------------------------------------------------- sessions

@async_test
async def test_sessions_list_and_revoke(mx):
    a = await mx_login(mx, headers={"User-Agent": "agent-A"})
    b = await mx_login(mx, headers={"User-Agent": "agent-B"})
    b2 = await mx_connect(mx)
    expect_ok(await b2.mx("auth", {"sessionToken": b.session["sessionToken"]}))
    p = expect_ok(await a.mx("sessions.list"))
    ss = p["sessions"]
    assert len(ss) == 2, ss
    for s in ss:
        assert set(s) >= {"id", "createdAt", "expiresAt", "lastSeenAt", "ip", "userAgent", "current"}, s
        assert "token" not in s and "tokenHash" not in s and "token_hash" not in s, s
        assert b.session["sessionToken"] not in str(s)
        assert s["ip"] == "127.0.0.1", s
    cur = [s for s in ss if s["current"]]
    assert len(cur) == 1 and cur[0]["userAgent"] == "agent-A", ss
    other = [s for s in ss if not s["current"]][0]
    assert other["userAgent"] == "agent-B", other
    # another user cannot see or revoke them
    _, pw = await make_user(a, "sessuser", "sess-pass-12")
    u = await mx_login(mx, "sessuser", pw)
    us = expect_ok(await u.mx("sessions.list"))["sessions"]
    assert len(us) == 1 and us[0]["current"] is True, us
    expect_error(await u.mx("sessions.revoke", {"id": other["id"]}), "NOT_FOUND")
    expect_error(await a.mx("sessions.revoke", {"id": "no-such-session"}), "NOT_FOUND")
    p = expect_ok(await a.mx("sessions.revoke", {"id": other["id"]}))
    assert p == {"id": other["id"], "revoked": True}, p
    for cl in (b, b2):
        code, _ = await cl.expect_close()
        assert code == 4002, code
    ss = expect_ok(await a.mx("sessions.list"))["sessions"]
    assert [s["id"] for s in ss] == [cur[0]["id"]], ss
    # revoking the current session: answered, then this connection closes 4002
    rid = h.new_id("self")
    env = h.envelope("sessions.revoke", {"id": cur[0]["id"]}, "maestro", rid)
    await a.send_env(env)
    expect_ok(await a.wait_response(rid))
    code, _ = await a.expect_close()
    assert code == 4002, code
    await u.close()


# --------------------------------------------------------------------------- users (admin)

@async_test
async def test_users_admin_actions(mx):
    admin = await mx_login(mx)
    p = expect_ok(await admin.mx("users.list"))
    assert [u["username"] for u in p["users"]] == ["default-admin"], p
    me = p["users"][0]
    assert set(me) == {"id", "username", "role", "createdAt", "totpEnabled", "cores"}, me
    # create: generated password (20 chars) or given one
    p = expect_ok(await admin.mx("users.create", {"username": "bob"}))
    assert p["user"]["role"] == "user" and len(p["password"]) == 20, p
    bob, bob_pw = p["user"], p["password"]
    p = expect_ok(await admin.mx("users.create", {"username": "carol", "password": "carol-pass-1", "role": "admin"}))
    assert "password" not in p and p["user"]["role"] == "admin", p
    carol = p["user"]
    expect_error(await admin.mx("users.create", {"username": "BOB"}), "NAME_TAKEN")
    for bad in ({"username": ""}, {"username": "bad name"}, {"username": "-dash"}, {"username": "x" * 65},
                {"username": "dave", "role": "root"}, {"username": "dave", "password": "short"}):
        expect_error(await admin.mx("users.create", bad), "INVALID_ARGUMENT")
    lst = expect_ok(await admin.mx("users.list"))["users"]
    assert sorted(u["username"] for u in lst) == ["bob", "carol", "default-admin"], lst
    for u in lst:
        assert not any("hash" in k.lower() or "password" in k.lower() for k in u), u
        assert "$argon2" not in str(u)

    # a user may not use admin actions
    b = await mx_login(mx, "bob", bob_pw)
    for action, payload in (("users.list", {}), ("users.create", {"username": "eve"}),
                            ("users.delete", {"id": carol["id"]}), ("users.setRole", {"id": bob["id"], "role": "admin"}),
                            ("users.resetPassword", {"id": carol["id"]}),
                            ("users.grantCore", {"userId": bob["id"], "coreId": "x"}),
                            ("users.revokeCore", {"userId": bob["id"], "coreId": "x"}),
                            ("pairing.create", {}), ("pairing.list", {}), ("pairing.revoke", {"id": "x"}),
                            ("cores.rename", {"id": "x", "displayName": "y"}), ("cores.remove", {"id": "x"}),
                            ("cores.rotateToken", {"id": "x"})):
        m = await b.mx(action, payload)
        expect_error(m, "FORBIDDEN")
    expect_ok(await b.mx("cores.list"))
    expect_ok(await b.mx("sessions.list"))

    # setRole: the role is re-read on every request
    expect_ok(await admin.mx("users.setRole", {"id": bob["id"], "role": "admin"}))
    expect_ok(await b.mx("users.list"))
    p = expect_ok(await admin.mx("users.setRole", {"id": bob["id"], "role": "user"}))
    assert p == {"id": bob["id"], "role": "user"}, p
    expect_error(await b.mx("users.list"), "FORBIDDEN")
    expect_error(await admin.mx("users.setRole", {"id": bob["id"], "role": "boss"}), "INVALID_ARGUMENT")
    expect_error(await admin.mx("users.setRole", {"id": "no-such-id", "role": "user"}), "NOT_FOUND")

    # resetPassword: generated, the user's connections closed 4002, old password dead
    p = expect_ok(await admin.mx("users.resetPassword", {"id": bob["id"]}))
    assert p["id"] == bob["id"] and p["reset"] is True and len(p["password"]) == 20, p
    code, _ = await b.expect_close()
    assert code == 4002, code
    c = await mx_connect(mx)
    expect_error(await c.login("bob", bob_pw), "INVALID_CREDENTIALS")
    expect_ok(await c.login("bob", p["password"]))
    p2 = expect_ok(await admin.mx("users.resetPassword", {"id": bob["id"], "password": "bob-given-pw"}))
    assert "password" not in p2, p2
    code, _ = await c.expect_close()
    assert code == 4002, code
    expect_error(await admin.mx("users.resetPassword", {"id": bob["id"], "password": "short"}), "INVALID_ARGUMENT")
    # the other spellings: userId for id, newPassword for password
    p2 = expect_ok(await admin.mx("users.resetPassword", {"userId": bob["id"], "newPassword": "bob-other-pw"}))
    assert p2["id"] == bob["id"] and "password" not in p2, p2
    c = await mx_connect(mx)
    expect_ok(await c.login("bob", "bob-other-pw"))
    await c.close()
    p2 = expect_ok(await admin.mx("users.resetPassword", {"userId": bob["id"], "password": "bob-given-pw"}))
    # an admin resetting their own password keeps the current session
    p3 = expect_ok(await admin.mx("users.resetPassword", {"id": me["id"], "password": "admin-new-pass"}))
    assert p3["reset"] is True
    expect_ok(await admin.mx("users.list"))

    # delete: the user's connections closed 4002; unknown ids NOT_FOUND
    b = await mx_login(mx, "bob", "bob-given-pw")
    p = expect_ok(await admin.mx("users.delete", {"id": bob["id"]}))
    assert p == {"id": bob["id"], "deleted": True}, p
    code, _ = await b.expect_close()
    assert code == 4002, code
    expect_error(await admin.mx("users.delete", {"id": bob["id"]}), "NOT_FOUND")
    expect_error(await admin.mx("users.delete", {}), "INVALID_ARGUMENT")
    c = await mx_connect(mx)
    expect_error(await c.login("bob", "bob-given-pw"), "INVALID_CREDENTIALS")
    await c.close()

    # last-admin protection: carol and default-admin are admins; demote carol, then
    # default-admin is the last one
    expect_ok(await admin.mx("users.setRole", {"id": carol["id"], "role": "user"}))
    expect_error(await admin.mx("users.setRole", {"id": me["id"], "role": "user"}), "FORBIDDEN")
    expect_error(await admin.mx("users.delete", {"id": me["id"]}), "FORBIDDEN")
    lst = {u["username"]: u for u in expect_ok(await admin.mx("users.list"))["users"]}
    assert lst["default-admin"]["role"] == "admin"
    # with a second admin, the first may go (and their connection closes 4002)
    expect_ok(await admin.mx("users.setRole", {"id": carol["id"], "role": "admin"}))
    k = await mx_login(mx, "carol", "carol-pass-1")
    expect_ok(await k.mx("users.delete", {"id": me["id"]}))
    code, _ = await admin.expect_close()
    assert code == 4002, code
    expect_error(await k.mx("users.delete", {"id": carol["id"]}), "FORBIDDEN")
    await k.close()
    acts = {r["action"] for r in mh.audit_rows(mx)}
    assert {"user.create", "user.delete", "user.setRole", "user.resetPassword"} <= acts, acts


@async_test
async def test_pairing_admin_actions(mx):
    admin = await mx_login(mx)
    p = await mh.new_code(admin)
    assert p["maxUses"] == 1 and set(p) == {"id", "code", "expiresAt", "maxUses"}, p
    ttl = (h.parse_ts(p["expiresAt"]) - h.parse_ts(h.now_ts())).total_seconds()
    assert 880 < ttl <= 901, ttl
    p2 = await mh.new_code(admin, max_uses=5, ttl=60)
    ttl = (h.parse_ts(p2["expiresAt"]) - h.parse_ts(h.now_ts())).total_seconds()
    assert 55 < ttl <= 61 and p2["maxUses"] == 5, p2
    for bad in ({"maxUses": 0}, {"maxUses": 1001}, {"maxUses": "2"}, {"ttlSeconds": 0},
                {"ttlSeconds": 2592001}, {"ttlSeconds": 1.5}):
        expect_error(await admin.mx("pairing.create", bad), "INVALID_ARGUMENT")
    lst = expect_ok(await admin.mx("pairing.list"))["codes"]
    assert {c["id"] for c in lst} == {p["id"], p2["id"]}, lst
    for c in lst:
        assert set(c) == {"id", "createdBy", "createdAt", "expiresAt", "uses", "maxUses"}, c
        assert c["createdBy"] == "default-admin" and c["uses"] == 0
        assert "code" not in c and p["code"] not in str(c) and p2["code"] not in str(c)
    r = expect_ok(await admin.mx("pairing.revoke", {"id": p["id"]}))
    assert r == {"id": p["id"], "revoked": True}, r
    expect_error(await admin.mx("pairing.revoke", {"id": p["id"]}), "NOT_FOUND")
    expect_error(await admin.mx("pairing.revoke", {}), "INVALID_ARGUMENT")
    lst = expect_ok(await admin.mx("pairing.list"))["codes"]
    assert [c["id"] for c in lst] == [p2["id"]], lst
    # no code in the database or the log
    with open(mx.home + "/maestro.db", "rb") as f:
        data = f.read()
    assert p["code"].encode() not in data and p2["code"].encode() not in data
    assert p["code"] not in mx.all_stderr() and p2["code"] not in mx.all_stderr()
    await admin.close()


# --------------------------------------------------------------------------- rate limits

RL_ENV = {"CONDRIX_RATE_AUTH_MAX": "3", "CONDRIX_RATE_BLOCK_SECONDS": "120"}


@async_test
async def test_login_rate_limit_per_address(mx_factory):
    srv = mx_factory(env=RL_ENV)
    xff = {"X-Forwarded-For": "10.1.0.1"}
    c = await mx_connect(srv, headers=xff)
    t0 = time.monotonic()
    for i in range(3):  # three different usernames: only the address limit counts them all
        expect_error(await c.login("nobody-%d" % i, "wrong-password"), "INVALID_CREDENTIALS")
    took = time.monotonic() - t0
    assert took >= 0.7, "failed logins not delayed (%.2fs for 3; want 0+250+500 ms)" % took
    m = await c.login("default-admin", srv.password)
    expect_error(m, "RATE_LIMITED")
    ra = m["error"]["details"]["retryAfter"]
    assert isinstance(ra, int) and 0 < ra <= 120, m
    assert m["payload"]["authenticated"] is False
    assert await c.is_open_mx(), "RATE_LIMITED must keep the client connection open"
    # the same address on a new connection: still blocked; session auth too
    d = await mx_connect(srv, headers=xff)
    expect_error(await d.login("default-admin", srv.password), "RATE_LIMITED")
    expect_error(await d.mx("auth", {"sessionToken": "0" * 64}), "RATE_LIMITED")
    # a Core from that address: RATE_LIMITED and close 1008
    rc, m = await mh.raw_core(srv, "blocked-core", "abcdef", headers=xff, expect_ok_=False)
    expect_error(m, "RATE_LIMITED")
    assert m["error"]["details"]["retryAfter"] > 0
    code, _ = await rc.expect_close()
    assert code == 1008, code
    # another address is fine
    e = await mx_connect(srv, headers={"X-Forwarded-For": "10.1.0.2"})
    expect_ok(await e.login("default-admin", srv.password))
    for cl in (c, d, e):
        await cl.close()


@async_test
async def test_login_rate_limit_per_username(mx_factory):
    srv = mx_factory(env=RL_ENV)
    admin = await mx_login(srv, headers={"X-Forwarded-For": "10.2.0.100"})
    await make_user(admin, "victim", "victim-pass-1")
    await make_user(admin, "bystander", "bystander-pass-1")
    for i in range(3):  # three addresses, one failure each: only the username limit trips
        c = await mx_connect(srv, headers={"X-Forwarded-For": "10.2.0.%d" % (i + 1)})
        expect_error(await c.login("Victim", "wrong-password"), "INVALID_CREDENTIALS")
        await c.close()
    c = await mx_connect(srv, headers={"X-Forwarded-For": "10.2.0.9"})
    m = await c.login("victim", "victim-pass-1")
    expect_error(m, "RATE_LIMITED")
    assert m["error"]["details"]["retryAfter"] > 0, m
    # the address is not blocked: another user signs in from it
    expect_ok(await c.login("bystander", "bystander-pass-1"))
    await c.close()
    await admin.close()


@async_test
async def test_core_auth_failures_close_1008(mx_factory):
    srv = mx_factory(env={"CONDRIX_RATE_AUTH_MAX": "2", "CONDRIX_RATE_BLOCK_SECONDS": "120"})
    hdr = {"X-Forwarded-For": "10.3.0.1"}
    for tok in ("0" * 64, "abcdef"):
        rc, m = await mh.raw_core(srv, "bad-core", tok, headers=hdr, expect_ok_=False)
        expect_error(m, "INVALID_CREDENTIALS")
        assert m["payload"] == {"authenticated": False}, m
        code, _ = await rc.expect_close(timeout=h.t(5))
        assert code == 1008, code
    rc, m = await mh.raw_core(srv, "bad-core", "0" * 64, headers=hdr, expect_ok_=False)
    expect_error(m, "RATE_LIMITED")
    code, _ = await rc.expect_close()
    assert code == 1008


# --------------------------------------------------------------------------- latency under a login burst

@async_test
async def test_login_burst_keeps_signed_in_client_fast(mx):
    """40 connections sign in at once, three times each (Argon2id in the thread pool),
    while another signed-in client (in its own process) sends cores.list every 20 ms:
    its round trips must stay short."""
    admin = await mx_login(mx)
    token = admin.session["sessionToken"]
    steady = subprocess.Popen(mh.steady_client_cmd(mx, token), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        first = await asyncio.get_running_loop().run_in_executor(None, steady.stdout.readline)
        assert json.loads(first) == {"ready": True}, first
        await asyncio.sleep(0.2)  # a few samples before the burst

        async def burst(i):
            c = await mx_connect(mx)
            res = []
            for k in range(3):
                ok = (i + k) % 2 == 0
                m = await c.login("default-admin", mx.password if ok else "wrong-password-%d" % i,
                                  timeout=h.t(30))
                res.append("ok" if m["success"] else h.err_code(m))
            await c.close()
            return res

        t0 = time.monotonic()
        results = await asyncio.gather(*(burst(i) for i in range(40)))
        burst_s = time.monotonic() - t0
    finally:
        out, _ = await asyncio.get_running_loop().run_in_executor(None, steady.communicate, "", h.t(20))
    rep = json.loads(out.strip().splitlines()[-1])
    assert not rep["errors"], rep["errors"]
    flat = [r for rs in results for r in rs]
    assert flat.count("ok") == 60 and flat.count("INVALID_CREDENTIALS") == 60, flat
    lat = sorted(rep["latencies"])
    assert len(lat) >= 20, "too few samples (%d; burst %.2fs)" % (len(lat), burst_s)
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    print("burst %.2fs, %d samples, median %.1f ms, p99 %.1f ms, max %.1f ms"
          % (burst_s, len(lat), statistics.median(lat) * 1000, p99 * 1000, lat[-1] * 1000))
    assert p99 < mh.latency_bound(100), "p99 %.1f ms during a login burst (bound %.0f ms)" % (
        p99 * 1000, mh.latency_bound(100) * 1000)
    await admin.close()
