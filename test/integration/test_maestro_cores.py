"""Real condrix-core processes joining condrix-maestro (PROTOCOL section 6): the whole
pairing flow, crashes mid-pairing (CONDRIX_TEST_CRASH_AT), a Maestro restart, rotation
pushed and by hand, removal, replacement by a second link, multi-use codes, and the
relay end to end for admins and users (the Core applies the relayed role's scopes)."""
import asyncio
import json
import re
import time

import pytest

import helpers as h
from helpers import async_test, expect_error, expect_ok
import maestro_helpers as mh
from maestro_helpers import mx, mx_factory, mx_login, make_user, start_core  # noqa: F401


async def paired_core(core_factory, mx_srv, admin, name="core-a"):
    """Start a Core with a fresh code and wait until it is online. -> (core, coreId, id)."""
    code = await mh.new_code(admin)
    core = start_core(core_factory, mx_srv, code["code"], name=name)
    info = await mh.wait_core_linked(core)
    k = await mh.wait_core_status(admin, info["coreId"], "online")
    return core, info["coreId"], k["id"]


@async_test
async def test_pairing_flow_end_to_end(mx, core_factory):
    admin = await mx_login(mx)
    code = await mh.new_code(admin)
    core = start_core(core_factory, mx, code["code"], name="laptop")
    ev = await admin.wait_event("core.online", timeout=h.t(10))
    core_id = (await mh.core_info(core))["coreId"]
    assert ev["payload"]["coreId"] == core_id and ev["payload"]["displayName"] == "laptop", ev
    cid = ev["payload"]["id"]
    info = await mh.wait_core_linked(core)
    assert info["maestro"] == {"url": mx.url, "connected": True, "paired": True}, info
    # the ack arrives right after the token: wait for it to be recorded
    h.wait_until(lambda: mh.pairing_uses(mx, code["id"]) == 1, h.t(5), what="the code consumed by the ack")
    k = (await mh.cores_by_core_id(admin))[core_id]
    stored = mh.core_db_token(core)
    assert mh.HEX64.match(stored or ""), stored
    assert k["status"] == "online" and k["id"] == cid and k["displayName"] == "laptop", k
    assert k["tokenPrefix"] == stored[:8], (k, stored[:8])
    assert h.TS_RE.match(k["pairedAt"]) and h.TS_RE.match(k["lastSeenAt"]), k
    lst = expect_ok(await admin.mx("pairing.list"))["codes"]
    assert lst[0]["uses"] == 1, lst
    assert code["code"] not in core.all_stderr() and stored not in core.all_stderr()
    assert stored not in mx.all_stderr()

    # relay as admin: correlationId is the client's id, sourceCoreId the Core's Maestro id
    for action in ("info", "health", "auth.tokens", "connections.list"):
        rid = h.new_id("relay")
        m = await admin.request(action, {}, namespace="core", rid=rid, targetCoreId=cid)
        assert m["correlationId"] == rid and m["sourceCoreId"] == cid and "relay" not in m, m
        p = expect_ok(m)
        if action == "info":
            assert p["coreId"] == core_id and p["maestro"]["connected"] is True, p
        elif action == "health":
            assert p["status"] == "ok", p
        elif action == "auth.tokens":
            assert "env-token" in {t["name"] for t in p["tokens"]}, p
    m = await admin.relay(cid, "auth")
    assert set(expect_ok(m)["scopes"]) == h.ALL_SCOPES, m
    # admin actions too
    p = expect_ok(await admin.relay(cid, "auth.generateToken", {"name": "via-maestro"}))
    assert mh.HEX64.match(p["token"]), p
    await admin.close()


@async_test
async def test_relay_for_users_with_and_without_grant(mx, core_factory):
    admin = await mx_login(mx)
    core, core_id, cid = await paired_core(core_factory, mx, admin, "shared-box")
    user, pw = await make_user(admin, "reader", "reader-pass-1")
    u = await mx_login(mx, "reader", pw)
    for action in ("info", "health", "auth.tokens"):
        m = await u.relay(cid, action)
        expect_error(m, "FORBIDDEN")
        assert m["sourceCoreId"] == cid and m["correlationId"], m
    assert expect_ok(await u.mx("cores.list"))["cores"] == []
    expect_ok(await admin.mx("users.grantCore", {"userId": user["id"], "coreId": core_id}))
    assert [c["coreId"] for c in expect_ok(await u.mx("cores.list"))["cores"]] == [core_id]
    p = expect_ok(await u.relay(cid, "info"))
    assert p["coreId"] == core_id
    assert expect_ok(await u.relay(cid, "health"))["status"] == "ok"
    # admin actions: FORBIDDEN (Maestro's read-only rule)
    for action, payload in (("auth.generateToken", {"name": "sneaky"}), ("auth.tokens", {}),
                            ("auth.revokeToken", {"name": "env-token"}), ("auth", {}),
                            ("connections.close", {"sessionId": "x"})):
        m = await u.relay(cid, action, payload)
        expect_error(m, "FORBIDDEN")
        assert m["sourceCoreId"] == cid, m
    # read-shaped actions that need admin:core: relayed, and the Core refuses them
    # (it serves a user's relay with read:files only)
    for action, payload in (("connections.list", {}), ("totp.status", {"tokenName": "env-token"})):
        m = await u.relay(cid, action, payload)
        expect_error(m, "FORBIDDEN")
        assert m["sourceCoreId"] == cid, m
        expect_ok(await admin.relay(cid, action, payload))
    # the token was not made
    names = {t["name"] for t in expect_ok(await admin.relay(cid, "auth.tokens"))["tokens"]}
    assert "sneaky" not in names, names
    # the Core goes: CORE_OFFLINE (users with a grant and admins alike)
    assert core.stop() == 0
    await mh.wait_core_status(admin, core_id, "offline")
    for cl in (u, admin):
        m = await cl.relay(cid, "info")
        expect_error(m, "CORE_OFFLINE")
        assert m["sourceCoreId"] == cid, m
    expect_ok(await admin.mx("users.revokeCore", {"userId": user["id"], "coreId": cid}))
    expect_error(await u.relay(cid, "info"), "FORBIDDEN")
    for cl in (u, admin):
        await cl.close()


@pytest.mark.parametrize("crash_at", ["before-store", "before-ack"])
@async_test
async def test_core_crash_mid_pairing_then_restart(mx, core_factory, crash_at):
    admin = await mx_login(mx)
    code = await mh.new_code(admin)
    core = start_core(core_factory, mx, code["code"], name="crashy",
                      env={"CONDRIX_TEST_CRASH_AT": crash_at}, wait=False)
    core.expected_dead = True
    try:
        rc = core.proc.wait(h.t(15))
    except Exception:
        raise AssertionError("the Core did not kill itself at %s\n%s" % (crash_at, core.stderr()[-3000:]))
    assert rc == -9, "exit %s, want SIGKILL\n%s" % (rc, core.stderr()[-2000:])
    stored = mh.core_db_token(core)
    if crash_at == "before-store":
        assert stored is None, stored
    else:
        assert mh.HEX64.match(stored or ""), stored
    assert mh.pairing_uses(mx, code["id"]) == 0, "consumed without an ack"
    # restart WITHOUT the crash hook, same home and same code in the environment
    del core.extra_env["CONDRIX_TEST_CRASH_AT"]
    core.start()
    info = await mh.wait_core_linked(core)
    k = await mh.wait_core_status(admin, info["coreId"], "online")
    assert info["maestro"]["paired"] is True
    # the Core is linked: an ack would have come right behind its auth
    h.wait_until(lambda: mh.pairing_uses(mx, code["id"]) == 1, h.t(1.5),
                 what="the pairing code consumed exactly once (uses=%r)" % mh.pairing_uses(mx, code["id"]))
    stored2 = mh.core_db_token(core)
    assert k["tokenPrefix"] == stored2[:8], (k, stored2)
    assert h.TS_RE.match(k["pairedAt"] or ""), k
    cores = await mh.cores_by_core_id(admin)
    assert list(cores) == [info["coreId"]], cores
    lst = expect_ok(await admin.mx("pairing.list"))["codes"]
    assert [(c["id"], c["uses"]) for c in lst] == [(code["id"], 1)], lst
    # exactly once: the code is used up for anybody else
    other, m = await mh.raw_core(mx, "someone-else", code["code"], expect_ok_=False)
    expect_error(m, "PAIRING_CODE_USED")
    # and the Core keeps working across a restart with its stored token
    assert core.stop() == 0
    core.start()
    await mh.wait_core_linked(core)
    assert mh.core_db_token(core) == stored2
    await admin.close()


@async_test
async def test_maestro_restart_cores_reconnect(mx, core_factory):
    admin = await mx_login(mx)
    c1, id1, _ = await paired_core(core_factory, mx, admin, "box-1")
    c2, id2, _ = await paired_core(core_factory, mx, admin, "box-2")
    await admin.close()
    rc = mx.stop()
    assert rc == 0
    await asyncio.gather(mh.wait_core_linked(c1, False, h.t(5)), mh.wait_core_linked(c2, False, h.t(5)))
    t0 = time.monotonic()
    mx.start()
    assert mx.stdout() == "", "a restart printed a password again"
    await asyncio.gather(mh.wait_core_linked(c1, True, h.t(10)), mh.wait_core_linked(c2, True, h.t(10)))
    print("Cores back after %.1fs" % (time.monotonic() - t0))
    admin = await mx_login(mx)
    cores = await mh.cores_by_core_id(admin)
    assert {k: v["status"] for k, v in cores.items()} == {id1: "online", id2: "online"}, cores
    # the Cores authenticated with their permanent tokens, not the (used) code
    acts = [(r["action"], r["result"], r["target"]) for r in mh.audit_rows(mx)]
    assert sum(1 for a in acts if a[0] == "core.auth" and a[1] == "ok:token") >= 2, acts
    await admin.close()


@async_test
async def test_rotation_pushed_then_core_restart(mx, core_factory):
    admin = await mx_login(mx)
    core, core_id, cid = await paired_core(core_factory, mx, admin, "rotator")
    h.wait_until(lambda: mh.core_db_token(core), h.t(5))
    old = mh.core_db_token(core)
    p = expect_ok(await admin.mx("cores.rotateToken", {"id": cid}, timeout=h.t(15)))
    assert p == {"id": cid, "pushed": True}, p
    new = mh.core_db_token(core)
    assert mh.HEX64.match(new) and new != old, (old, new)
    k = (await mh.cores_by_core_id(admin))[core_id]
    assert k["tokenPrefix"] == new[:8] and k["status"] == "online", k
    # the old token is dead, the Core restarts with the new one
    r, m = await mh.raw_core(mx, core_id, old, expect_ok_=False)
    expect_error(m, "INVALID_CREDENTIALS")
    assert core.stop() == 0
    await mh.wait_core_status(admin, core_id, "offline")
    core.start()
    await mh.wait_core_linked(core)
    await mh.wait_core_status(admin, core_id, "online")
    assert mh.core_db_token(core) == new
    rows = [r for r in mh.audit_rows(mx) if r["action"] == "core.rotate"]
    assert {"pushing", "ok:pushed"} <= {r["result"] for r in rows}, rows
    assert new not in mx.all_stderr() and new not in core.all_stderr()
    await admin.close()


@async_test
async def test_rotation_offline_core_manual_handover(mx, core_factory):
    admin = await mx_login(mx)
    core, core_id, cid = await paired_core(core_factory, mx, admin, "offline-box")
    assert core.stop() == 0
    await mh.wait_core_status(admin, core_id, "offline")
    p = expect_ok(await admin.mx("cores.rotateToken", {"id": cid}))
    assert p["id"] == cid and p["pushed"] is False and mh.HEX64.match(p["token"]), p
    k = (await mh.cores_by_core_id(admin))[core_id]
    assert k["tokenPrefix"] == p["token"][:8], k
    # started as before, the Core's stored token is refused
    core.start()
    h.wait_until(lambda: "INVALID_CREDENTIALS" in core.stderr(), h.t(10), what="the refusal in the Core's log")
    assert (await mh.core_info(core))["maestro"]["connected"] is False
    # handed the new token, it connects
    assert core.stop() == 0
    core.extra_env["CONDRIX_MAESTRO_TOKEN"] = p["token"]
    core.start()
    await mh.wait_core_linked(core)
    await mh.wait_core_status(admin, core_id, "online")
    # `condrix-maestro cores rotate` tells the operator the Core "uses it when its stored
    # token is refused, and stores it": without the environment it must still connect
    stored = mh.core_db_token(core)
    assert stored == p["token"], "the handed-over token was not stored (core.db has %s...)" % (stored or "")[:8]
    await admin.close()


@async_test
async def test_remove_core(mx, core_factory):
    admin = await mx_login(mx)
    core, core_id, cid = await paired_core(core_factory, mx, admin, "doomed")
    p = expect_ok(await admin.mx("cores.remove", {"id": cid}))
    assert p == {"id": cid, "removed": True}, p
    ev = await admin.wait_event("core.offline")
    assert ev["payload"]["id"] == cid, ev
    h.wait_until(lambda: re.search(r"link closed \(4001", core.stderr()), h.t(5), what="the Core's link closed 4001")
    assert core_id not in await mh.cores_by_core_id(admin)
    # its next connect is refused: INVALID_CREDENTIALS
    h.wait_until(lambda: any(r["action"] == "core.auth" and r["target"] == core_id and r["result"] == "INVALID_CREDENTIALS"
                             for r in mh.audit_rows(mx)), h.t(10), what="a refused core.auth in the audit")
    h.wait_until(lambda: "INVALID_CREDENTIALS" in core.stderr(), h.t(5))
    info = (await mh.core_info(core))["maestro"]
    assert info["connected"] is False and info["paired"] is False, info  # its token is dead
    assert core_id not in await mh.cores_by_core_id(admin)
    expect_error(await admin.relay(cid, "info"), "CORE_OFFLINE")
    # the operator re-pairs it: a new code in the environment is presented at once when
    # the stored token is refused (no credential wait: set to a minute here)
    code = await mh.new_code(admin)
    assert core.stop() == 0
    core.extra_env["CONDRIX_MAESTRO_TOKEN"] = code["code"]
    core.extra_env["CONDRIX_MAESTRO_CREDENTIAL_RETRY_MS"] = "60000"
    core.start()
    await mh.wait_core_linked(core, timeout=h.t(5))
    k = await mh.wait_core_status(admin, core_id, "online")
    h.wait_until(lambda: mh.pairing_uses(mx, code["id"]) == 1, h.t(5), what="the new code consumed")
    assert mh.core_db_token(core)[:8] == k["tokenPrefix"]
    await admin.close()


@async_test
async def test_multi_use_code_real_cores(mx, core_factory):
    admin = await mx_login(mx)
    code = await mh.new_code(admin, max_uses=2)
    cores = [start_core(core_factory, mx, code["code"], name="fleet-%d" % i) for i in range(2)]
    ids = []
    for c in cores:
        ids.append((await mh.wait_core_linked(c))["coreId"])
    h.wait_until(lambda: mh.pairing_uses(mx, code["id"]) == 2, h.t(5), what="both uses consumed")
    third = start_core(core_factory, mx, code["code"], name="fleet-3")
    h.wait_until(lambda: "PAIRING_CODE_USED" in third.stderr(), h.t(10), what="the third Core refused")
    assert (await mh.core_info(third))["maestro"] == {"url": mx.url, "connected": False, "paired": False}
    listed = await mh.cores_by_core_id(admin)
    assert sorted(listed) == sorted(ids) and all(v["status"] == "online" for v in listed.values()), listed
    await admin.close()


@async_test
async def test_second_connection_with_core_token_replaces_core(mx, core_factory):
    admin = await mx_login(mx)
    core, core_id, cid = await paired_core(core_factory, mx, admin, "original")
    h.wait_until(lambda: mh.core_db_token(core), h.t(5))
    tok = mh.core_db_token(core)
    impostor, m = await mh.raw_core(mx, core_id, tok)
    assert m["payload"]["id"] == cid and "permanentToken" not in m["payload"], m
    h.wait_until(lambda: "replaced ours" in core.stderr() or "4003" in core.stderr(), h.t(5),
                 what="the Core's link closed 4003")
    # the Core reconnects by itself and in turn replaces the impostor
    got, _ = await impostor.expect_close(timeout=h.t(10))
    assert got == 4003, got
    await mh.wait_core_linked(core)
    assert (await mh.cores_by_core_id(admin))[core_id]["status"] == "online"
    p = expect_ok(await admin.relay(cid, "info"))
    assert p["coreId"] == core_id
    await admin.close()


@async_test
async def test_relayed_requests_cannot_reach_the_link_itself(mx, core_factory):
    # core/maestro.setToken is Maestro's push; a client relaying it must not rewrite the
    # Core's stored credential (that would lock the Core out at its next reconnect).
    admin = await mx_login(mx)
    core, core_id, cid = await paired_core(core_factory, mx, admin, "guarded")
    h.wait_until(lambda: mh.core_db_token(core), h.t(5))
    before = mh.core_db_token(core)
    m = await admin.relay(cid, "maestro.setToken", {"token": "b" * 64})
    expect_error(m, "UNKNOWN_ACTION")
    assert m["sourceCoreId"] == cid, m
    assert mh.core_db_token(core) == before
    # relayed subscribes are answered and leave nothing behind in the Core (the ASan
    # pass checks for leaks when the Core stops)
    for _ in range(20):
        p = expect_ok(await admin.relay(cid, "subscribe", {"subscribe": ["core:*", "*"]}))
        assert set(p["subscribed"]) == {"core:*", "*"}, p
    assert core.stop() == 0
    core.start()
    await mh.wait_core_linked(core)
    expect_ok(await admin.relay(cid, "info"))
    await admin.close()


@async_test
async def test_relay_that_would_grow_too_large_is_refused_not_fatal(mx_factory, core_factory):
    # 0.1 re-encodes as 0.10000000000000001: 800 KB from the client would reach the Core
    # as about 4 MB. Maestro answers it itself; the Core keeps its link.
    mx = mx_factory(env={"CONDRIX_RATE_MSG_MAX": "0"})
    admin = await mx_login(mx)
    core, core_id, cid = await paired_core(core_factory, mx, admin, "bulky")
    nums = "[" + ",".join(["0.1"] * 200000) + "]"
    env = h.envelope("health", None, "core")
    env["targetCoreId"] = cid
    del env["payload"]
    text = json.dumps(env)[:-1] + ', "payload": {"nums": ' + nums + "}}"
    assert len(text) < 1 << 20
    await admin.send_raw(text)
    m = await admin.wait_response(env["id"])
    expect_error(m, "INVALID_ARGUMENT")
    await admin.no_event("core.offline", wait=1.0)
    expect_ok(await admin.relay(cid, "health"))
    assert (await mh.core_info(core))["maestro"]["connected"] is True
    await admin.close()
