"""Core actions after authentication (PROTOCOL section 4)."""
import asyncio
import datetime as dt
import json
import time

import pytest

import helpers as h
from helpers import async_test, connect, connect_auth, expect_error, expect_ok

ADMIN_ACTIONS = [
    ("auth.tokens", {}),
    ("auth.generateToken", {"name": "x-new"}),
    ("auth.revokeToken", {"name": "env-token"}),
    ("totp.setup", {"tokenName": "env-token"}),
    ("totp.enable", {"tokenName": "env-token", "code": "123456"}),
    ("totp.disable", {"tokenName": "env-token"}),
    ("totp.status", {"tokenName": "env-token"}),
    ("connections.list", {}),
    ("connections.close", {"sessionId": "00000000-0000-4000-8000-000000000000"}),
]


async def gen(admin, name, **kw):
    payload = {"name": name}
    payload.update(kw)
    p = expect_ok(await admin.request("auth.generateToken", payload))
    assert p["name"] == name
    assert h.TOKEN_RE.match(p["token"]), p
    return p


async def tokens(admin):
    p = expect_ok(await admin.request("auth.tokens"))
    return {t["name"]: t for t in p["tokens"]}


# --------------------------------------------------------------------------- info / health

@async_test
async def test_info(core):
    c = await connect_auth(core)
    p = expect_ok(await c.request("info"))
    assert isinstance(p["coreId"], str) and p["coreId"]
    assert isinstance(p["displayName"], str) and p["displayName"]
    assert isinstance(p["version"], str) and p["version"]
    assert p["devMode"] is False
    mae = p["maestro"]
    assert isinstance(mae, dict)
    assert set(("url", "connected", "paired")) <= set(mae)
    assert mae["url"] is None or isinstance(mae["url"], str)
    assert mae["connected"] is False  # no Maestro configured
    assert isinstance(mae["paired"], bool)
    await c.close()


@async_test
async def test_core_id_is_stable_across_restart(core):
    c = await connect_auth(core)
    cid = expect_ok(await c.request("info"))["coreId"]
    await c.close()
    core.restart()
    c = await connect_auth(core)
    assert expect_ok(await c.request("info"))["coreId"] == cid
    await c.close()


@async_test
async def test_health(core):
    c = await connect_auth(core)
    d = await connect_auth(core)
    p = expect_ok(await c.request("health"))
    assert p["status"] == "ok"
    assert isinstance(p["uptimeSeconds"], (int, float)) and not isinstance(p["uptimeSeconds"], bool)
    assert 0 <= p["uptimeSeconds"] < 3600
    assert isinstance(p["connections"], int) and not isinstance(p["connections"], bool)
    assert p["connections"] >= 2
    await c.close()
    await d.close()


@async_test
async def test_response_envelope_echoes_namespace_and_action(core):
    c = await connect_auth(core)
    m = await c.request("health")
    assert m["namespace"] == "core" and m["action"] == "health", m
    assert h.TS_RE.match(m["timestamp"])
    await c.close()


@async_test
async def test_unknown_action_and_namespace(core):
    c = await connect_auth(core)
    expect_error(await c.request("no.such.thing"), "UNKNOWN_ACTION")
    expect_error(await c.request("info", namespace="bogus"), "UNKNOWN_ACTION")
    assert await c.is_open()
    await c.close()


@async_test
async def test_exactly_one_response_per_request(core):
    c = await connect_auth(core)
    ids = []
    reqs = [("info", "core"), ("health", "core"), ("nope", "core"), ("info", "bogus"),
            ("auth.tokens", "core"), ("subscribe", "core"), ("totp.status", "core")] * 4
    for action, ns in reqs:
        env = h.envelope(action, {"subscribe": ["*"]} if action == "subscribe" else {}, ns)
        ids.append(env["id"])
        await c.send_env(env)
    seen = {}
    deadline = time.monotonic() + h.t(5)
    while len(seen) < len(ids) and time.monotonic() < deadline:
        m = await c.recv_json(max(0.01, deadline - time.monotonic()))
        if m.get("type") == "response":
            h.check_response(m)
            seen[m["correlationId"]] = seen.get(m["correlationId"], 0) + 1
    # give duplicates a moment to show up
    try:
        while True:
            m = await c.recv_json(0.3)
            if m.get("type") == "response":
                seen[m.get("correlationId")] = seen.get(m.get("correlationId"), 0) + 1
    except asyncio.TimeoutError:
        pass
    assert set(seen) == set(ids), "missing %s extra %s" % (set(ids) - set(seen), set(seen) - set(ids))
    assert all(v == 1 for v in seen.values()), seen
    await c.close()


# --------------------------------------------------------------------------- tokens

@async_test
async def test_auth_tokens_lists_metadata_never_values(core):
    c = await connect_auth(core)
    g = await gen(c, "listed", scopes=["read:files"])
    await c.send_env(h.envelope("auth.tokens", rid="list-1"))
    raw = await asyncio.wait_for(c.ws.recv(), h.t(5))
    assert core.admin_token not in raw and g["token"] not in raw, "token value leaked by auth.tokens"
    m = json.loads(raw)
    h.check_response(m, "list-1")
    toks = {t["name"]: t for t in m["payload"]["tokens"]}
    assert {"env-token", "listed"} <= set(toks)
    for name, value in (("env-token", core.admin_token), ("listed", g["token"])):
        t = toks[name]
        for k in ("name", "prefix", "scopes", "createdAt", "expiresAt", "lastUsedAt", "totpEnabled"):
            assert k in t, (k, t)
        assert t["prefix"] == value[:8]
        assert isinstance(t["scopes"], list)
        created = h.parse_ts(t["createdAt"])
        assert abs((dt.datetime.now(dt.timezone.utc) - created).total_seconds()) < 120, t["createdAt"]
        assert t["expiresAt"] is None
        assert t["lastUsedAt"] is None or h.parse_ts(t["lastUsedAt"])
        assert t["totpEnabled"] is False
    assert set(toks["env-token"]["scopes"]) == h.ALL_SCOPES
    assert toks["listed"]["scopes"] == ["read:files"]
    await c.close()


@async_test
async def test_last_used_at_is_current(core):
    # Last-used times are batched to disk, but auth.tokens never shows a stale one.
    admin = await connect_auth(core)
    g = await gen(admin, "used-now")
    assert (await tokens(admin))["used-now"]["lastUsedAt"] is None
    before = dt.datetime.now(dt.timezone.utc)
    c = await connect(core)
    expect_ok(await c.auth(g["token"]))
    t = (await tokens(admin))["used-now"]
    assert t["lastUsedAt"] is not None, t
    assert abs((h.parse_ts(t["lastUsedAt"]) - before).total_seconds()) < 5, t
    await c.close()
    await admin.close()


@async_test
async def test_generate_token_and_use_it(core):
    admin = await connect_auth(core)
    g = await gen(admin, "t1")
    assert isinstance(g["scopes"], list) and g["scopes"]
    assert set(g["scopes"]) <= h.ALL_SCOPES
    assert g["expiresAt"] is None
    assert g["token"] != core.admin_token
    c = await connect(core)
    p = expect_ok(await c.auth(g["token"]))
    assert p["tokenName"] == "t1"
    assert set(p["scopes"]) == set(g["scopes"])
    await c.close()
    await admin.close()


@async_test
async def test_generate_token_with_scopes(core):
    admin = await connect_auth(core)
    g = await gen(admin, "scoped", scopes=["read:files", "chat:agent"])
    assert sorted(g["scopes"]) == ["chat:agent", "read:files"]
    c = await connect(core)
    p = expect_ok(await c.auth(g["token"]))
    assert sorted(p["scopes"]) == ["chat:agent", "read:files"]
    await c.close()
    await admin.close()


@async_test
async def test_generate_token_bad_arguments(core):
    admin = await connect_auth(core)
    for payload in ({}, {"name": ""}, {"name": 42}, {"name": "ok-name", "scopes": ["no:such-scope"]},
                    {"name": "ok-name2", "scopes": "read:files"}, {"name": "ok-name3", "expiresAt": "not a date"},
                    {"name": "ok-name4", "expiresAt": 10 ** 15},  # year 33658: not an ISO 8601 year
                    {"name": "ok-name5", "expiresAt": 2 ** 62}, {"name": "ok-name6", "expiresAt": -5.5},
                    {"name": "ok-name7", "expiresAt": "10000-01-01T00:00:00Z"}):
        m = await admin.request("auth.generateToken", payload)
        assert m["success"] is False, "accepted %r" % (payload,)
        assert h.err_code(m) in ("INVALID_ARGUMENT", "INVALID_MESSAGE"), (payload, m["error"])
    names = set(await tokens(admin))
    assert not names & {"ok-name", "ok-name2", "ok-name3", "ok-name4", "ok-name5", "ok-name6", "ok-name7"}
    assert await admin.is_open()
    await admin.close()


@async_test
async def test_name_taken(core):
    admin = await connect_auth(core)
    await gen(admin, "dup")
    expect_error(await admin.request("auth.generateToken", {"name": "dup"}), "NAME_TAKEN")
    expect_error(await admin.request("auth.generateToken", {"name": "env-token"}), "NAME_TAKEN")
    await admin.close()


@pytest.mark.parametrize("action,payload", [
    ("auth.rotateToken", {"name": "nope"}),
    ("auth.revokeToken", {"name": "nope"}),
    ("auth.rotateToken", {"tokenName": "nope"}),
    ("auth.revokeToken", {"tokenName": "nope"}),
    ("totp.setup", {"tokenName": "nope"}),
    ("totp.enable", {"tokenName": "nope", "code": "123456"}),
    ("totp.disable", {"tokenName": "nope"}),
    ("totp.status", {"tokenName": "nope"}),
    ("totp.status", {"name": "nope"}),
])
@async_test
async def test_not_found(shared_core, action, payload):
    admin = await connect_auth(shared_core)
    expect_error(await admin.request(action, payload), "NOT_FOUND")
    await admin.close()


@pytest.mark.parametrize("field", ["name", "tokenName"])
@async_test
async def test_name_and_tokenName_both_accepted(core, field):
    admin = await connect_auth(core)
    g = await gen(admin, "n1")
    p = expect_ok(await admin.request("totp.status", {field: "n1"}))
    assert p == {"configured": False, "enabled": False} or (p["configured"] is False and p["enabled"] is False)
    p = expect_ok(await admin.request("auth.rotateToken", {field: "n1"}))
    assert p["name"] == "n1" and h.TOKEN_RE.match(p["token"]) and p["token"] != g["token"]
    p = expect_ok(await admin.request("auth.revokeToken", {field: "n1"}))
    assert p["name"] == "n1" and p["revoked"] is True
    assert "n1" not in await tokens(admin)
    await admin.close()


@pytest.mark.parametrize("action,payload", ADMIN_ACTIONS, ids=[a for a, _ in ADMIN_ACTIONS])
@async_test
async def test_forbidden_without_admin_scope(core, action, payload):
    admin = await connect_auth(core)
    before = await tokens(admin)
    g = await gen(admin, "limited", scopes=["read:files", "write:files", "exec:terminal", "admin:workspace",
                                            "admin:project", "chat:agent", "chat:maestro"])
    c = await connect_auth(core, g["token"])
    expect_error(await c.request(action, payload), "FORBIDDEN")
    # "any" scope actions still work
    expect_ok(await c.request("info"))
    expect_ok(await c.request("health"))
    expect_ok(await c.request("subscribe", {"subscribe": ["core:*"]}))
    # nothing was changed
    after = await tokens(admin)
    assert set(after) == set(before) | {"limited"}
    assert not after["env-token"]["totpEnabled"]
    assert await admin.is_open()
    await c.close()
    await admin.close()


@async_test
async def test_token_with_no_scopes_list_empty(core):
    admin = await connect_auth(core)
    g = await gen(admin, "noscopes", scopes=[])
    c = await connect(core)
    p = expect_ok(await c.auth(g["token"]))
    assert p["scopes"] == []
    expect_error(await c.request("auth.tokens"), "FORBIDDEN")
    expect_error(await c.request("auth.rotateToken", {"name": "env-token"}), "FORBIDDEN")
    expect_ok(await c.request("health"))
    expect_ok(await c.request("info"))
    await c.close()
    await admin.close()


@async_test
async def test_expires_at(core):
    admin = await connect_auth(core)
    when = h.iso_in(3 * 86400)
    g = await gen(admin, "exp-later", expiresAt=when)
    assert abs((h.parse_ts(g["expiresAt"]) - h.parse_ts(when)).total_seconds()) < 1.5
    t = (await tokens(admin))["exp-later"]
    assert abs((h.parse_ts(t["expiresAt"]) - h.parse_ts(when)).total_seconds()) < 1.5
    c = await connect(core)
    expect_ok(await c.auth(g["token"]))
    await c.close()
    # Unix milliseconds, as an integer or with a fraction (time.time() * 1000)
    ms = (time.time() + 3600) * 1000
    for name, v in (("exp-ms", int(ms)), ("exp-ms-frac", ms + 0.4)):
        g = await gen(admin, name, expiresAt=v)
        assert abs(h.parse_ts(g["expiresAt"]).timestamp() * 1000 - ms) < 1000, (v, g)
        assert h.TS_RE.match(g["expiresAt"]), g
    await admin.close()


@async_test
async def test_rotate_keeps_expiry(core):
    admin = await connect_auth(core)
    when = h.iso_in(86400)
    await gen(admin, "rot-exp", expiresAt=when)
    before = (await tokens(admin))["rot-exp"]
    p = expect_ok(await admin.request("auth.rotateToken", {"name": "rot-exp"}))
    after = (await tokens(admin))["rot-exp"]
    assert after["expiresAt"] == before["expiresAt"]
    assert after["scopes"] == before["scopes"]
    c = await connect(core)
    expect_ok(await c.auth(p["token"]))
    await c.close()
    await admin.close()


@async_test
async def test_expired_token(core):
    admin = await connect_auth(core)
    g = await gen(admin, "exp-soon", expiresAt=h.iso_in(1.0))
    c = await connect(core)
    expect_ok(await c.auth(g["token"]))
    await c.close()
    deadline = h.parse_ts(g["expiresAt"]).timestamp() + 1.1
    await asyncio.sleep(max(0, deadline - time.time()))
    c = await connect(core)
    m = await c.auth(g["token"])
    expect_error(m, "TOKEN_EXPIRED")
    code, _ = await c.expect_close()
    assert code == 1008
    await admin.close()


# --------------------------------------------------------------------------- rotate / revoke

@async_test
async def test_rotate_closes_other_connections(core):
    admin = await connect_auth(core)
    g = await gen(admin, "rot", scopes=["read:files", "chat:agent"])
    b = await connect_auth(core, g["token"])
    c = await connect_auth(core, g["token"])
    p = expect_ok(await admin.request("auth.rotateToken", {"name": "rot"}))
    assert p["name"] == "rot" and h.TOKEN_RE.match(p["token"]) and p["token"] != g["token"]
    for x in (b, c):
        code, _ = await x.expect_close()
        assert code == 4001
    assert await admin.is_open()
    old = await connect(core)
    expect_error(await old.auth(g["token"]), "INVALID_TOKEN")
    assert (await old.expect_close())[0] == 1008
    new = await connect(core)
    np_ = expect_ok(await new.auth(p["token"]))
    assert np_["tokenName"] == "rot" and sorted(np_["scopes"]) == ["chat:agent", "read:files"]
    t = (await tokens(admin))["rot"]
    assert t["prefix"] == p["token"][:8]
    assert sorted(t["scopes"]) == ["chat:agent", "read:files"]
    await new.close()
    await admin.close()


@async_test
async def test_rotate_own_token_without_admin(core):
    admin = await connect_auth(core)
    g = await gen(admin, "selfrot", scopes=["read:files"])
    me = await connect_auth(core, g["token"])
    other = await connect_auth(core, g["token"])
    p = expect_ok(await me.request("auth.rotateToken", {"name": "selfrot"}))
    assert p["name"] == "selfrot" and h.TOKEN_RE.match(p["token"])
    code, _ = await other.expect_close()
    assert code == 4001
    assert await me.is_open(), "the caller's own connection must stay open"
    x = await connect(core)
    expect_error(await x.auth(g["token"]), "INVALID_TOKEN")
    y = await connect(core)
    expect_ok(await y.auth(p["token"]))
    await y.close()
    await me.close()
    await admin.close()


@async_test
async def test_rotate_own_token_with_tokenName_field(core):
    admin = await connect_auth(core)
    g = await gen(admin, "selfrot2", scopes=["chat:agent"])
    me = await connect_auth(core, g["token"])
    p = expect_ok(await me.request("auth.rotateToken", {"tokenName": "selfrot2"}))
    assert p["name"] == "selfrot2"
    await me.close()
    await admin.close()


@async_test
async def test_rotate_other_token_without_admin_forbidden(core):
    admin = await connect_auth(core)
    g = await gen(admin, "weak", scopes=["read:files"])
    await gen(admin, "victim", scopes=["read:files"])
    me = await connect_auth(core, g["token"])
    expect_error(await me.request("auth.rotateToken", {"name": "victim"}), "FORBIDDEN")
    expect_error(await me.request("auth.rotateToken", {"name": "env-token"}), "FORBIDDEN")
    expect_error(await me.request("auth.revokeToken", {"name": "weak"}), "FORBIDDEN")
    # env-token still valid
    x = await connect_auth(core)
    await x.close()
    await me.close()
    await admin.close()


@async_test
async def test_revoke(core):
    admin = await connect_auth(core)
    g = await gen(admin, "rev")
    b = await connect_auth(core, g["token"])
    p = expect_ok(await admin.request("auth.revokeToken", {"name": "rev"}))
    assert p == {"name": "rev", "revoked": True} or (p["name"] == "rev" and p["revoked"] is True)
    code, _ = await b.expect_close()
    assert code == 4001
    assert await admin.is_open()
    c = await connect(core)
    expect_error(await c.auth(g["token"]), "INVALID_TOKEN")
    assert (await c.expect_close())[0] == 1008
    assert "rev" not in await tokens(admin)
    expect_error(await admin.request("auth.revokeToken", {"name": "rev"}), "NOT_FOUND")
    # the name can be reused
    await gen(admin, "rev")
    await admin.close()


# --------------------------------------------------------------------------- connections

@async_test
async def test_connections_list(core):
    admin = await connect(core)
    ap = expect_ok(await admin.auth(core.admin_token, clientType="cli", clientId="adm-1"))
    other = await connect(core)
    op = expect_ok(await other.auth(core.admin_token, clientType="web"))
    p = expect_ok(await admin.request("connections.list"))
    conns = {c["sessionId"]: c for c in p["connections"]}
    assert ap["sessionId"] in conns and op["sessionId"] in conns
    a = conns[ap["sessionId"]]
    for k in ("sessionId", "tokenName", "ip", "clientType", "connectedAt"):
        assert k in a, (k, a)
    assert a["tokenName"] == "env-token"
    assert a["ip"] == "127.0.0.1"
    assert a["clientType"] == "cli"
    assert conns[op["sessionId"]]["clientType"] == "web"
    ts = h.parse_ts(a["connectedAt"])
    assert abs((dt.datetime.now(dt.timezone.utc) - ts).total_seconds()) < 60
    await other.close()
    await admin.close()


@async_test
async def test_connections_list_excludes_closed_and_unauthenticated(core):
    admin = await connect_auth(core)
    gone = await connect_auth(core)
    sid = gone.session["sessionId"]
    await gone.close()

    async def absent():
        p = expect_ok(await admin.request("connections.list"))
        return sid not in {c["sessionId"] for c in p["connections"]}
    deadline = time.monotonic() + h.t(3)
    while not await absent():
        assert time.monotonic() < deadline, "closed connection still listed"
        await asyncio.sleep(0.05)
    await admin.close()


@async_test
async def test_connections_close(core):
    admin = await connect_auth(core)
    target = await connect_auth(core)
    p = expect_ok(await admin.request("connections.close", {"sessionId": target.session["sessionId"]}))
    assert p["closed"] is True
    code, reason = await target.expect_close()
    assert code == 1000, (code, reason)
    assert await admin.is_open()
    p = expect_ok(await admin.request("connections.list"))
    assert target.session["sessionId"] not in {c["sessionId"] for c in p["connections"]}
    expect_error(await admin.request("connections.close", {"sessionId": h.new_id("no-such")}), "NOT_FOUND")
    await admin.close()


# --------------------------------------------------------------------------- subscribe

@async_test
async def test_subscribe(core):
    c = await connect_auth(core)
    p = expect_ok(await c.request("subscribe", {"subscribe": ["*"]}))
    assert "*" in p["subscribed"]
    p = expect_ok(await c.request("subscribe", {"subscribe": ["core:*", "terminal:output"]}))
    assert {"*", "core:*", "terminal:output"} <= set(p["subscribed"])
    p = expect_ok(await c.request("subscribe", {"unsubscribe": ["*", "terminal:output"]}))
    assert "*" not in p["subscribed"] and "terminal:output" not in p["subscribed"]
    assert "core:*" in p["subscribed"]
    p = expect_ok(await c.request("subscribe", {}))
    assert p["subscribed"] == ["core:*"]
    p = expect_ok(await c.request("subscribe", {"subscribe": None, "unsubscribe": None}))
    assert p["subscribed"] == ["core:*"]  # null is absent
    # idempotent
    p = expect_ok(await c.request("subscribe", {"subscribe": ["core:*"]}))
    assert p["subscribed"] == ["core:*"]
    await c.close()


@async_test
async def test_subscriptions_are_per_connection(core):
    a = await connect_auth(core)
    b = await connect_auth(core)
    expect_ok(await a.request("subscribe", {"subscribe": ["git:*"]}))
    p = expect_ok(await b.request("subscribe", {}))
    assert p["subscribed"] == []
    await a.close()
    await b.close()


# --------------------------------------------------------------------------- acting on oneself

@async_test
async def test_close_own_session(core):
    me = await connect_auth(core)
    await me.send_env(h.envelope("connections.close", {"sessionId": me.session["sessionId"]}, rid="self-close"))
    code, _ = await me.expect_close()
    assert code in (1000, 4001), code
    core.assert_alive()
    c = await connect_auth(core)
    expect_ok(await c.request("health"))
    await c.close()


@async_test
async def test_revoke_own_token(core):
    admin = await connect_auth(core)
    g = expect_ok(await admin.request("auth.generateToken", {"name": "self-rev"}))
    me = await connect_auth(core, g["token"])
    other = await connect_auth(core, g["token"])
    p = expect_ok(await me.request("auth.revokeToken", {"name": "self-rev"}))
    assert p["revoked"] is True
    assert (await other.expect_close())[0] == 4001
    x = await connect(core)
    expect_error(await x.auth(g["token"]), "INVALID_TOKEN")
    core.assert_alive()
    await admin.close()


@async_test
async def test_second_auth_on_authenticated_connection(core):
    admin = await connect_auth(core)
    g = expect_ok(await admin.request("auth.generateToken", {"name": "weak2", "scopes": ["read:files"]}))
    c = await connect_auth(core, g["token"])
    # a later auth must never raise privileges with a bad token
    m = await c.request("auth", {"token": h.rand_token()})
    if m["success"]:
        assert m["payload"]["tokenName"] == "weak2"
    if not m["success"]:
        assert (await c.expect_close())[0] == 1008
    else:
        expect_error(await c.request("auth.tokens"), "FORBIDDEN")
    core.assert_alive()
    await admin.close()
