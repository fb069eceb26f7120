"""Core links on condrix-maestro, driven by a Python stand-in Core (RawCore) so every
step is under the test's control: core/auth by pairing code, permanent token and legacy
secret, token.ack, re-issue before the ack, replacement (4003), rotation by push and its
fallbacks, relay forwarding format, events. PROTOCOL sections 5, 6, 7 and the notes."""
import asyncio
import re
import time

import helpers as h
from helpers import async_test, expect_error, expect_ok
import maestro_helpers as mh
from maestro_helpers import mx, mx_factory, mx_login, make_user, raw_core, raw_pair  # noqa: F401


@async_test
async def test_pairing_code_redeem_and_ack(mx):
    admin = await mx_login(mx)
    code = await mh.new_code(admin)
    rc, m = await raw_core(mx, "raw-core-1", code["code"])
    p = expect_ok(m)
    assert p["authenticated"] is True and mh.HEX64.match(p["permanentToken"]), p
    assert p["maestroId"] and p["id"] and p["id"] != "raw-core-1", p
    assert m["namespace"] == "core" and m["action"] == "auth", m
    tok = p["permanentToken"]
    ev = await admin.wait_event("core.online")
    assert ev["payload"] == {"id": p["id"], "coreId": "raw-core-1", "displayName": "raw-core-1"}, ev
    assert ev["type"] == "event" and ev["namespace"] == "maestro", ev
    # only the ack consumes the code
    assert mh.pairing_uses(mx, code["id"]) == 0
    expect_error(await rc.mx("token.ack", {"prefix": "00000000"}), "INVALID_ARGUMENT")
    expect_error(await rc.mx("token.ack", {}), "INVALID_ARGUMENT")
    a = expect_ok(await rc.ack(tok))
    assert a == {"acknowledged": True}, a
    lst = expect_ok(await admin.mx("pairing.list"))["codes"]
    assert [(c["id"], c["uses"]) for c in lst] == [(code["id"], 1)], lst
    cores = await mh.cores_by_core_id(admin)
    k = cores["raw-core-1"]
    assert k["status"] == "online" and k["id"] == p["id"] and k["tokenPrefix"] == tok[:8], k
    assert h.TS_RE.match(k["pairedAt"]) and h.TS_RE.match(k["lastSeenAt"]), k
    assert set(k) == {"id", "coreId", "displayName", "status", "lastSeenAt", "pairedAt", "tokenPrefix"}, k
    # core/auth again on the live link: same success payload, no new token
    m2 = expect_ok(await rc.core_auth("raw-core-1", tok))
    assert m2 == {"authenticated": True, "maestroId": p["maestroId"], "id": p["id"]}, m2
    # other Core requests: UNKNOWN_ACTION
    expect_error(await rc.mx("cores.list"), "UNKNOWN_ACTION")
    expect_error(await rc.request("info", {}, namespace="core"), "UNKNOWN_ACTION")
    await rc.close()
    ev = await admin.wait_event("core.offline")
    assert ev["payload"]["id"] == p["id"], ev
    assert (await mh.cores_by_core_id(admin))["raw-core-1"]["status"] == "offline"
    # reconnect with the permanent token: no permanentToken in the reply
    rc, m = await raw_core(mx, "raw-core-1", tok)
    assert expect_ok(m) == {"authenticated": True, "maestroId": p["maestroId"], "id": p["id"]}, m
    # the code is used up for another Core
    rc2, m = await raw_core(mx, "raw-core-2", code["code"], expect_ok_=False)
    expect_error(m, "PAIRING_CODE_USED")
    assert m["payload"]["authenticated"] is False
    code_, _ = await rc2.expect_close()
    assert code_ == 1008
    # the permanent token belongs to its coreId only
    rc3, m = await raw_core(mx, "raw-core-3", tok, expect_ok_=False)
    expect_error(m, "INVALID_CREDENTIALS")
    # audit rows, never a secret
    rows = mh.audit_rows(mx)
    acts = {(r["action"], r["result"]) for r in rows}
    assert ("core.pair", "ok:pairing") in acts and ("core.auth", "ok:token") in acts, acts
    assert any(r["action"] == "pairing.consume" for r in rows) and any(r["action"] == "core.token.ack" for r in rows)
    dump = str(rows) + mx.all_stderr()
    assert tok not in dump and code["code"] not in dump
    await rc.close()
    await admin.close()


@async_test
async def test_reissue_before_ack_voids_unacked_token(mx):
    admin = await mx_login(mx)
    code = await mh.new_code(admin)
    rc, m = await raw_core(mx, "crashy", code["code"])
    tok1 = m["payload"]["permanentToken"]
    rc.ws.transport.abort()  # "crash" before the ack
    await asyncio.sleep(0.05)
    rc, m = await raw_core(mx, "crashy", code["code"])  # same code, same coreId: a new token
    tok2 = m["payload"]["permanentToken"]
    assert tok2 != tok1 and mh.HEX64.match(tok2)
    # another Core cannot take the single use held in flight
    other, m = await raw_core(mx, "other-core", code["code"], expect_ok_=False)
    expect_error(m, "PAIRING_CODE_USED")
    expect_ok(await rc.ack(tok2))
    await rc.close()
    assert mh.pairing_uses(mx, code["id"]) == 1
    # the voided token is refused, the acked one works
    bad, m = await raw_core(mx, "crashy", tok1, expect_ok_=False)
    expect_error(m, "INVALID_CREDENTIALS")
    ok, m = await raw_core(mx, "crashy", tok2)
    assert "permanentToken" not in m["payload"]
    await ok.close()
    await admin.close()


@async_test
async def test_multi_use_code(mx):
    admin = await mx_login(mx)
    code = await mh.new_code(admin, max_uses=2)
    a, _, _ = await raw_pair(mx, "multi-a", code["code"])
    b, _, _ = await raw_pair(mx, "multi-b", code["code"])
    c, m = await raw_core(mx, "multi-c", code["code"], expect_ok_=False)
    expect_error(m, "PAIRING_CODE_USED")
    lst = expect_ok(await admin.mx("pairing.list"))["codes"]
    assert lst[0]["uses"] == 2 and lst[0]["maxUses"] == 2, lst
    assert set(await mh.cores_by_core_id(admin)) == {"multi-a", "multi-b"}
    for x in (a, b, admin):
        await x.close()


@async_test
async def test_revoked_and_unknown_codes(mx):
    admin = await mx_login(mx)
    code = await mh.new_code(admin)
    expect_ok(await admin.mx("pairing.revoke", {"id": code["id"]}))
    rc, m = await raw_core(mx, "revoked-core", code["code"], expect_ok_=False)
    expect_error(m, "INVALID_CREDENTIALS")
    code_, _ = await rc.expect_close()
    assert code_ == 1008
    # a well-formed code nobody made; a malformed credential
    for tok in ("abcdef", "ABCDEF", "", "x" * 300):
        rc, m = await raw_core(mx, "unknown-core", tok, expect_ok_=False)
        expect_error(m, "INVALID_CREDENTIALS")
        code_, _ = await rc.expect_close()
        assert code_ == 1008
    # a bad coreId
    for cid in ("has space", "x" * 129, ""):
        rc, m = await raw_core(mx, cid, "abcdef", expect_ok_=False)
        expect_error(m, "INVALID_CREDENTIALS")
    assert await mh.cores_by_core_id(admin) == {}
    await admin.close()


@async_test
async def test_second_core_auth_on_a_link(mx):
    # core/auth again on a signed-in Core link: its own credential is fine; another
    # identity or a wrong token ends the link (no switching identities mid-link)
    admin = await mx_login(mx)
    code = await mh.new_code(admin)
    core, tok, cid = await raw_pair(mx, "twice-core", code["code"])
    p = expect_ok(await core.core_auth("twice-core", tok))
    assert p["authenticated"] is True and p["id"] == cid, p
    m = await core.core_auth("someone-else", "x" * 64)
    expect_error(m, "INVALID_CREDENTIALS")
    assert m["payload"]["authenticated"] is False
    assert (await core.expect_close())[0] == 1008
    await admin.close()


@async_test
async def test_expired_code_via_protocol_ttl(mx):
    # pairing.create {ttlSeconds: 1}: a short-lived code, over the wire
    admin = await mx_login(mx)
    out = await mh.new_code(admin, ttl=1)
    time.sleep(1.2)
    rc, m = await raw_core(mx, "late-core-2", out["code"], expect_ok_=False)
    expect_error(m, "PAIRING_CODE_EXPIRED")
    assert (await rc.expect_close())[0] == 1008
    await admin.close()


@async_test
async def test_expired_code_via_cli_ttl(mx):
    out = mx.cli("pair", "--ttl", "1s")
    assert mh.PAIRING_CODE_RE.match(out["code"]) and out["maxUses"] == 1, out
    left = (h.parse_ts(out["expiresAt"]) - h.parse_ts(h.now_ts())).total_seconds()
    assert left <= 1.01, out
    time.sleep(max(0.0, left) + 0.1)
    rc, m = await raw_core(mx, "late-core", out["code"], expect_ok_=False)
    expect_error(m, "PAIRING_CODE_EXPIRED")
    assert m["payload"]["authenticated"] is False
    code_, _ = await rc.expect_close()
    assert code_ == 1008


@async_test
async def test_legacy_shared_secret(mx_factory):
    secret = "legacy-shared-secret-" + h.rand_token()[:16]
    srv = mx_factory(env={"CONDRIX_MAESTRO_CORE_SECRET": secret})
    with open("/proc/%d/environ" % srv.proc.pid, "rb") as f:
        assert secret.encode() not in f.read(), "the secret stays in the process environment"
    rc, m = await raw_core(srv, "legacy-1", secret)
    p = expect_ok(m)
    assert mh.HEX64.match(p.get("permanentToken") or ""), p  # so it can leave the secret
    expect_ok(await rc.ack(p["permanentToken"]))
    await rc.close()
    rc, m = await raw_core(srv, "legacy-1", secret)  # known coreId: accepted, no new token
    assert "permanentToken" not in m["payload"], m
    await rc.close()
    rc, m = await raw_core(srv, "legacy-1", p["permanentToken"])
    await rc.close()
    rc, m = await raw_core(srv, "legacy-2", secret + "x", expect_ok_=False)
    expect_error(m, "INVALID_CREDENTIALS")
    assert secret not in srv.all_stderr()
    acts = {(r["action"], r["result"]) for r in mh.audit_rows(srv)}
    assert ("core.auth", "ok:secret") in acts, acts


@async_test
async def test_second_link_replaces_first_4003(mx):
    admin = await mx_login(mx)
    code = await mh.new_code(admin)
    a, tok, cid = await raw_pair(mx, "dup-core", code["code"])
    await admin.wait_event("core.online")
    b, m = await raw_core(mx, "dup-core", tok)
    assert m["payload"]["id"] == cid
    got, _ = await a.expect_close()
    assert got == 4003, got
    await admin.wait_event("core.online")  # the new link announces itself
    await admin.no_event("core.offline", wait=0.3)  # but no offline for a replacement
    k = (await mh.cores_by_core_id(admin))["dup-core"]
    assert k["status"] == "online"
    # relays go to the new link
    rid = h.new_id("dup")
    env = h.envelope("health", {}, "core", rid)
    env["targetCoreId"] = cid
    await admin.send_env(env)
    fwd = await b.next_request()
    await b.answer(fwd, {"status": "ok", "uptimeSeconds": 1, "connections": 0})
    expect_ok(await admin.wait_response(rid))
    await b.close()
    await admin.close()


@async_test
async def test_relay_forwarding_and_events(mx):
    admin = await mx_login(mx)
    code = await mh.new_code(admin)
    core, _, cid = await raw_pair(mx, "relay-core", code["code"])
    me = admin.session["user"]
    rid = h.new_id("client")
    env = h.envelope("tree", {"path": "/"}, "file", rid)
    env["targetCoreId"] = cid
    env["workspaceId"] = "ws-1"
    await admin.send_env(env)
    fwd = await core.next_request()
    assert fwd["namespace"] == "file" and fwd["action"] == "tree" and fwd["payload"] == {"path": "/"}, fwd
    assert re.fullmatch(r"mx-[0-9a-f]{8}-\d+", fwd["id"]) and "targetCoreId" not in fwd, fwd
    first_id = fwd["id"]
    assert fwd["relay"] == {"userId": me["id"], "username": "default-admin", "role": "admin"}, fwd
    assert fwd.get("workspaceId") == "ws-1", fwd
    await core.answer(fwd, {"entries": []})
    m = await admin.wait_response(rid)
    assert m["correlationId"] == rid and m["sourceCoreId"] == cid and "relay" not in m, m
    assert expect_ok(m) == {"entries": []}
    # an error answer from the Core passes through
    rid = h.new_id("client")
    env = h.envelope("read", {"path": "/x"}, "file", rid)
    env["targetCoreId"] = cid
    await admin.send_env(env)
    fwd = await core.next_request()
    assert fwd["id"] != first_id, (fwd["id"], first_id)
    await core.answer(fwd, None, success=False, error={"code": "NOT_FOUND", "message": "no such file"})
    m = await admin.wait_response(rid)
    expect_error(m, "NOT_FOUND")
    assert m["sourceCoreId"] == cid
    # Core events reach signed-in clients that may see the Core, with sourceCoreId
    _, upw = await make_user(admin, "evuser", "evuser-pass-1")
    u = await mx_login(mx, "evuser", upw)
    ev = h.envelope("output", {"data": "hi"}, "terminal", type_="event")
    await core.send_env(ev)
    got = await admin.wait_event("output")
    assert got["sourceCoreId"] == cid and got["payload"] == {"data": "hi"}, got
    await u.no_event("output", wait=0.3)
    # the Core disconnects with a relay in flight: CORE_OFFLINE
    rid = h.new_id("client")
    env = h.envelope("health", {}, "core", rid)
    env["targetCoreId"] = cid
    await admin.send_env(env)
    await core.next_request()
    await core.close()
    m = await admin.wait_response(rid)
    expect_error(m, "CORE_OFFLINE")
    assert m["sourceCoreId"] == cid, m
    # offline and unknown targets
    expect_error(await admin.relay(cid, "info"), "CORE_OFFLINE")
    m = await admin.relay("no-such-core", "info")
    expect_error(m, "CORE_OFFLINE")
    assert m["sourceCoreId"] == "no-such-core", m
    # a user: FORBIDDEN before CORE_OFFLINE
    m = await u.relay("no-such-core", "info")
    expect_error(m, "FORBIDDEN")
    for x in (admin, u):
        await x.close()


@async_test
async def test_rotation_push_fallbacks(mx):
    admin = await mx_login(mx)
    code = await mh.new_code(admin)
    core, tok, cid = await raw_pair(mx, "rot-core", code["code"])
    # the Core refuses the push: manual rotation, token returned, link closed 4001
    rid = h.new_id("rot")
    await admin.send_env(h.envelope("cores.rotateToken", {"id": cid}, "maestro", rid))
    push = await core.next_request()
    assert push["namespace"] == "core" and push["action"] == "maestro.setToken", push
    assert push["id"].startswith("mx-push-") and mh.HEX64.match(push["payload"]["token"]), push
    # a second rotation while one is in flight
    expect_error(await admin.mx("cores.rotateToken", {"id": cid}), "INVALID_ARGUMENT")
    await core.answer(push, None, success=False, error={"code": "INTERNAL", "message": "disk full"})
    m = await admin.wait_response(rid)
    p = expect_ok(m)
    assert p["id"] == cid and p["pushed"] is False and mh.HEX64.match(p["token"]), p
    got, _ = await core.expect_close()
    assert got == 4001, got
    new_tok = p["token"]
    r, m = await raw_core(mx, "rot-core", tok, expect_ok_=False)
    expect_error(m, "INVALID_CREDENTIALS")
    core, m = await raw_core(mx, "rot-core", new_tok)
    assert (await mh.cores_by_core_id(admin))["rot-core"]["tokenPrefix"] == new_tok[:8]
    # the Core accepts: pushed:true, and only then the new token counts
    rid = h.new_id("rot")
    await admin.send_env(h.envelope("cores.rotateToken", {"id": cid}, "maestro", rid))
    push = await core.next_request()
    pushed = push["payload"]["token"]
    # before the answer the old token still works (a new link with it replaces ours)
    await core.answer(push, {"stored": True})
    p = expect_ok(await admin.wait_response(rid))
    assert p == {"id": cid, "pushed": True}, p
    assert (await mh.cores_by_core_id(admin))["rot-core"]["tokenPrefix"] == pushed[:8]
    await core.close()
    r, m = await raw_core(mx, "rot-core", new_tok, expect_ok_=False)
    expect_error(m, "INVALID_CREDENTIALS")
    core, m = await raw_core(mx, "rot-core", pushed)
    # the Core disconnects during a push: manual rotation
    rid = h.new_id("rot")
    await admin.send_env(h.envelope("cores.rotateToken", {"id": cid}, "maestro", rid))
    await core.next_request()
    await core.close()
    p = expect_ok(await admin.wait_response(rid))
    assert p["pushed"] is False and mh.HEX64.match(p["token"]), p
    expect_error(await admin.mx("cores.rotateToken", {"id": "no-such-core"}), "NOT_FOUND")
    expect_error(await admin.mx("cores.rotateToken", {}), "INVALID_ARGUMENT")
    await admin.close()


@async_test
async def test_old_token_valid_until_push_answered(mx):
    admin = await mx_login(mx)
    code = await mh.new_code(admin)
    core, tok, cid = await raw_pair(mx, "pend-core", code["code"])
    rid = h.new_id("rot")
    await admin.send_env(h.envelope("cores.rotateToken", {"id": cid}, "maestro", rid))
    push = await core.next_request()
    assert (push["namespace"], push["action"]) == ("core", "maestro.setToken"), push
    assert mh.HEX64.match(push["payload"]["token"]) and push["payload"]["token"] != tok, push
    # a second link with the OLD token is still accepted before the answer
    other, m = await raw_core(mx, "pend-core", tok)
    assert m["payload"]["id"] == cid, m
    got, _ = await core.expect_close()
    assert got == 4003
    await other.close()
    await admin.close()


@async_test
async def test_cores_rename_and_remove(mx):
    admin = await mx_login(mx)
    code = await mh.new_code(admin)
    core, tok, cid = await raw_pair(mx, "named-core", code["code"])
    p = expect_ok(await admin.mx("cores.rename", {"id": cid, "displayName": "Build box"}))
    assert p == {"id": cid, "displayName": "Build box"}, p
    assert (await mh.cores_by_core_id(admin))["named-core"]["displayName"] == "Build box"
    for bad in ({"id": cid, "displayName": ""}, {"id": cid, "displayName": "x" * 129}, {"id": cid}):
        expect_error(await admin.mx("cores.rename", bad), "INVALID_ARGUMENT")
    expect_error(await admin.mx("cores.rename", {"id": "nope", "displayName": "x"}), "NOT_FOUND")
    p = expect_ok(await admin.mx("cores.remove", {"id": cid}))
    assert p == {"id": cid, "removed": True}, p
    got, _ = await core.expect_close()
    assert got == 4001, got
    ev = await admin.wait_event("core.offline")
    assert ev["payload"] == {"id": cid, "coreId": "named-core", "displayName": "Build box"}, ev
    assert await mh.cores_by_core_id(admin) == {}
    r, m = await raw_core(mx, "named-core", tok, expect_ok_=False)
    expect_error(m, "INVALID_CREDENTIALS")
    expect_error(await admin.mx("cores.remove", {"id": cid}), "NOT_FOUND")
    expect_error(await admin.mx("cores.remove", {}), "INVALID_ARGUMENT")
    await admin.close()


@async_test
async def test_grants_and_user_visibility(mx):
    admin = await mx_login(mx)
    code = await mh.new_code(admin, max_uses=2)
    c1, _, id1 = await raw_pair(mx, "vis-1", code["code"])
    c2, _, id2 = await raw_pair(mx, "vis-2", code["code"])
    user, pw = await make_user(admin, "viewer", "viewer-pass-1")
    u = await mx_login(mx, "viewer", pw)
    assert expect_ok(await u.mx("cores.list"))["cores"] == []
    expect_error(await u.relay(id1, "info"), "FORBIDDEN")
    # grant by the Core's own coreId; the reply carries Maestro's id
    p = expect_ok(await admin.mx("users.grantCore", {"userId": user["id"], "coreId": "vis-1"}))
    assert p == {"userId": user["id"], "coreId": id1, "granted": True}, p
    expect_ok(await admin.mx("users.grantCore", {"userId": user["id"], "coreId": id1}))  # idempotent
    lst = expect_ok(await u.mx("cores.list"))["cores"]
    assert [c["id"] for c in lst] == [id1], lst
    # users.list shows each user's grants (Maestro ids)
    users = {x["username"]: x for x in expect_ok(await admin.mx("users.list"))["users"]}
    assert users["viewer"]["cores"] == [id1], users["viewer"]
    assert users["default-admin"]["cores"] == [], users["default-admin"]
    expect_ok(await admin.mx("users.grantCore", {"userId": user["id"], "coreId": id2}))
    users = {x["username"]: x for x in expect_ok(await admin.mx("users.list"))["users"]}
    assert sorted(users["viewer"]["cores"]) == sorted([id1, id2]), users["viewer"]
    expect_ok(await admin.mx("users.revokeCore", {"userId": user["id"], "coreId": id2}))
    for bad, code_ in (({"userId": "nope", "coreId": id1}, "NOT_FOUND"), ({"userId": user["id"], "coreId": "nope"}, "NOT_FOUND"),
                       ({"coreId": id1}, "INVALID_ARGUMENT"), ({"userId": user["id"]}, "INVALID_ARGUMENT")):
        expect_error(await admin.mx("users.grantCore", bad), code_)
    # events only for visible Cores
    await c2.close()
    await u.no_event("core.offline", wait=0.3)
    await c1.close()
    ev = await u.wait_event("core.offline")
    assert ev["payload"]["id"] == id1
    p = expect_ok(await admin.mx("users.revokeCore", {"userId": user["id"], "coreId": id1}))
    assert p == {"userId": user["id"], "coreId": id1, "revoked": True}, p
    assert expect_ok(await u.mx("cores.list"))["cores"] == []
    users = {x["username"]: x for x in expect_ok(await admin.mx("users.list"))["users"]}
    assert users["viewer"]["cores"] == [], users["viewer"]
    expect_error(await admin.mx("users.revokeCore", {"userId": user["id"], "coreId": "nope"}), "NOT_FOUND")
    for x in (u, admin):
        await x.close()


@async_test
async def test_relays_in_flight_bounded(mx):
    admin = await mx_login(mx)
    code = await mh.new_code(admin)
    core, _, cid = await raw_pair(mx, "slow-core", code["code"])
    envs = []
    for i in range(257):
        env = h.envelope("health", {}, "core")
        env["targetCoreId"] = cid
        envs.append(env)
        await admin.send_env(env)
    want = {e["id"] for e in envs}
    answers = {}
    while envs[-1]["id"] not in answers:
        m = await admin.recv_json()
        if m.get("type") == "response" and m.get("correlationId") in want:
            answers[m["correlationId"]] = m
    m = answers[envs[-1]["id"]]
    expect_error(m, "RATE_LIMITED")
    assert m["error"]["details"]["retryAfter"] == 1, m
    # the Core saw 256; answer one, the rest fail with CORE_OFFLINE when it goes
    first = await core.next_request()
    await core.answer(first, {"status": "ok", "uptimeSeconds": 1, "connections": 0})
    await core.close()
    deadline = time.monotonic() + h.t(10)
    while len(answers) < 257 and time.monotonic() < deadline:
        m = await admin.recv_json()
        if m.get("type") == "response" and m.get("correlationId") in want:
            h.check_response(m, m["correlationId"])
            answers[m["correlationId"]] = m
    got = {e["id"]: (h.err_code(answers[e["id"]]) or "ok") if e["id"] in answers else None for e in envs[:-1]}
    assert list(got.values()).count("ok") == 1 and list(got.values()).count("CORE_OFFLINE") == 255, got
    await admin.close()


@async_test
async def test_core_waits_after_credential_refusal(mx, core_factory):
    quick = mh.start_core(core_factory, mx, "abcdef", name="quick",
                          env={"CONDRIX_MAESTRO_CREDENTIAL_RETRY_MS": "300"})
    slow = mh.start_core(core_factory, mx, "bcdefg", name="slow",
                         env={"CONDRIX_MAESTRO_CREDENTIAL_RETRY_MS": None})
    qid = (await mh.core_info(quick))["coreId"]
    sid = (await mh.core_info(slow))["coreId"]

    def refusals(cid):
        return sum(1 for r in mh.audit_rows(mx, 500) if r["action"] == "core.auth" and r["target"] == cid
                   and r["result"] == "INVALID_CREDENTIALS")
    h.wait_until(lambda: refusals(qid) >= 3, h.t(5), what="the Core retrying after 300 ms")
    assert refusals(sid) == 1, "a Core with the default wait (5 min) retried: %d" % refusals(sid)
    for c in (quick, slow):
        assert "condrix-maestro pair" in c.stderr() and "CONDRIX_MAESTRO_TOKEN" in c.stderr(), \
            "no line telling the operator what to do:\n" + c.stderr()[-2000:]
    assert (await mh.core_info(slow))["maestro"] == {"url": mx.url, "connected": False, "paired": False}
