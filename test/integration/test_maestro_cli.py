"""The operator verbs `condrix-maestro user|pair|cores|audit` run against the home of a
RUNNING Maestro; their effects must be visible through the protocol at once."""
import json
import subprocess

import helpers as h
from helpers import async_test, expect_error, expect_ok
import maestro_helpers as mh
from maestro_helpers import mx, mx_factory, mx_connect, mx_login, raw_core, raw_pair  # noqa: F401


@async_test
async def test_cli_users_against_running_server(mx):
    admin = await mx_login(mx)
    # user add: generated password, printed once (JSON), usable at once
    out = mx.cli("user", "add", "cliuser")
    assert out["user"]["username"] == "cliuser" and out["user"]["role"] == "user", out
    assert len(out["password"]) == 20, out
    pw = out["password"]
    u = await mx_login(mx, "cliuser", pw)
    # given on stdin, admin role
    out = mx.cli("user", "add", "cliadmin", "--role", "admin", "--password-stdin", stdin="cli-admin-pass\n")
    assert "password" not in out and out["user"]["role"] == "admin", out
    a2 = await mx_login(mx, "cliadmin", "cli-admin-pass")
    expect_ok(await a2.mx("users.list"))
    # errors
    out = mx.cli("user", "add", "CLIUSER", expect_rc=1)
    assert out["error"]["code"] == "NAME_TAKEN", out
    r = mx.cli("user", "add", "bad name", expect_rc=2, json_out=False)
    r = mx.cli("user", "add", "x", "--password", "secret", expect_rc=2, json_out=False)
    assert "stdin" in r.stderr, r.stderr
    out = mx.cli("user", "add", "shorty", "--password-stdin", stdin="short\n", expect_rc=1)
    assert out["error"]["code"] == "INVALID_ARGUMENT", out
    # user list == users.list
    out = mx.cli("user", "list")
    proto = expect_ok(await admin.mx("users.list"))["users"]
    assert sorted(x["username"] for x in out["users"]) == sorted(x["username"] for x in proto) == \
        ["cliadmin", "cliuser", "default-admin"], (out, proto)
    for x in out["users"]:
        assert set(x) == {"id", "username", "role", "createdAt", "totpEnabled"}, x
    r = mx.cli("user", "list", json_out=False)
    assert r.stdout.splitlines()[0].split()[:2] == ["USERNAME", "ROLE"], r.stdout
    assert "$argon2" not in r.stdout

    # user role: re-read on the next request of a running session
    expect_error(await u.mx("users.list"), "FORBIDDEN")
    out = mx.cli("user", "role", "cliuser", "admin")
    assert out == {"username": "cliuser", "role": "admin"}, out
    expect_ok(await u.mx("users.list"))
    mx.cli("user", "role", "cliuser", "user")
    expect_error(await u.mx("users.list"), "FORBIDDEN")
    mx.cli("user", "role", "cliuser", "boss", expect_rc=2, json_out=False)

    # user passwd: signs the user out everywhere (the server sees the sessions gone)
    out = mx.cli("user", "passwd", "cliuser")
    assert out["username"] == "cliuser" and out["changed"] is True and len(out["password"]) == 20, out
    m = await u.mx("cores.list")
    expect_error(m, "INVALID_SESSION")
    code, _ = await u.expect_close()
    assert code == 4002, code
    c = await mx_connect(mx)
    expect_error(await c.login("cliuser", pw), "INVALID_CREDENTIALS")
    expect_ok(await c.login("cliuser", out["password"]))
    out2 = mx.cli("user", "passwd", "cliuser", "--password-stdin", stdin="chosen-pass-1\n")
    assert "password" not in out2, out2
    expect_error(await c.mx("cores.list"), "INVALID_SESSION")
    d = await mx_connect(mx)
    expect_ok(await d.login("cliuser", "chosen-pass-1"))
    out = mx.cli("user", "passwd", "nobody-here", expect_rc=1)
    assert out["error"]["code"] == "NOT_FOUND", out

    # user remove: the running session dies on its next request
    out = mx.cli("user", "remove", "cliuser")
    assert out == {"username": "cliuser", "removed": True}, out
    m = await d.mx("cores.list")
    expect_error(m, "INVALID_SESSION")
    e = await mx_connect(mx)
    expect_error(await e.login("cliuser", "chosen-pass-1"), "INVALID_CREDENTIALS")
    # the last admin stays
    mx.cli("user", "role", "cliadmin", "user")
    out = mx.cli("user", "remove", "default-admin", expect_rc=1)
    assert out["error"]["code"] == "FORBIDDEN", out
    out = mx.cli("user", "role", "default-admin", "user", expect_rc=1)
    assert out["error"]["code"] == "FORBIDDEN", out
    expect_ok(await admin.mx("users.list"))
    for cl in (admin, a2, e):
        await cl.close()


@async_test
async def test_cli_pair_and_cores_against_running_server(mx):
    admin = await mx_login(mx)
    out = mx.cli("pair", "--uses", "2", "--ttl", "10m")
    assert mh.PAIRING_CODE_RE.match(out["code"]) and out["maxUses"] == 2, out
    ttl = (h.parse_ts(out["expiresAt"]) - h.parse_ts(h.now_ts())).total_seconds()
    assert 590 < ttl <= 601, out
    assert out["code"] in out["command"] and "CONDRIX_MAESTRO_TOKEN=" in out["command"], out
    lst = expect_ok(await admin.mx("pairing.list"))["codes"]
    assert [(c["id"], c["createdBy"], c["maxUses"], c["uses"]) for c in lst] == [(out["id"], "cli", 2, 0)], lst
    for bad in (("--uses", "0"), ("--uses", "1001"), ("--ttl", "0s"), ("--ttl", "31d"), ("--ttl", "soon")):
        mx.cli("pair", *bad, expect_rc=2, json_out=False)
    r = mx.cli("pair", json_out=False)
    assert r.returncode == 0 and "condrix-core" in r.stdout, r.stdout

    core, tok, cid = await raw_pair(mx, "cli-core", out["code"])
    # cores list == cores.list
    lst = mx.cli("cores", "list")["cores"]
    assert len(lst) == 1, lst
    k = lst[0]
    assert k["id"] == cid and k["coreId"] == "cli-core" and k["tokenPrefix"] == tok[:8], k
    assert h.TS_RE.match(k["pairedAt"]), k
    # rename by the Core's own id; visible through the protocol
    out = mx.cli("cores", "rename", "cli-core", "Renamed by CLI")
    assert out == {"id": cid, "displayName": "Renamed by CLI"}, out
    assert (await mh.cores_by_core_id(admin))["cli-core"]["displayName"] == "Renamed by CLI"
    mx.cli("cores", "rename", cid, "", expect_rc=1)
    out = mx.cli("cores", "rename", "no-such-core", "x", expect_rc=1)
    assert out["error"]["code"] == "NOT_FOUND", out
    # rotate: a new token, printed once; the old one is dead, and so is the live link
    # that used it (the running Maestro notices the change within a second)
    out = mx.cli("cores", "rotate", cid)
    assert out["id"] == cid and out["pushed"] is False and mh.HEX64.match(out["token"]), out
    assert out["tokenPrefix"] == out["token"][:8]
    assert (await mh.cores_by_core_id(admin))["cli-core"]["tokenPrefix"] == out["token"][:8]
    assert await core.expect_close(timeout=h.t(5)) == (4001, "token rotated")
    r, m = await raw_core(mx, "cli-core", tok, expect_ok_=False)
    expect_error(m, "INVALID_CREDENTIALS")
    core, m = await raw_core(mx, "cli-core", out["token"])
    # remove, with the Core online: gone from cores.list, its link closed, its token refused
    out2 = mx.cli("cores", "remove", "cli-core")
    assert out2 == {"id": cid, "removed": True}, out2
    assert await core.expect_close(timeout=h.t(5)) == (4001, "Core removed from Maestro")
    assert await mh.cores_by_core_id(admin) == {}
    r, m = await raw_core(mx, "cli-core", out["token"], expect_ok_=False)
    expect_error(m, "INVALID_CREDENTIALS")
    out = mx.cli("cores", "remove", cid, expect_rc=1)
    assert out["error"]["code"] == "NOT_FOUND", out

    # audit: newest first, the CLI's rows and the server's, never a secret
    rows = mx.cli("audit", "--limit", "500")["audit"]
    assert rows and set(rows[0]) == {"time", "actor", "action", "target", "address", "result"}, rows[:1]
    assert h.TS_RE.match(rows[0]["time"])
    times = [r["time"] for r in rows]
    assert times == sorted(times, reverse=True), "audit not newest first"
    acts = {(r["actor"], r["action"]) for r in rows}
    for a in ("pairing.create", "core.rename", "core.rotate", "core.remove"):
        assert ("cli", a) in acts, (a, acts)
    assert ("default-admin", "login") in acts, acts
    assert any(r["action"] == "core.pair" for r in rows)
    two = mx.cli("audit", "--limit", "2")["audit"]
    assert two == rows[:2], (two, rows[:2])
    assert tok not in str(rows) and mx.password not in str(rows)
    r = mx.cli("audit", json_out=False)
    assert r.stdout.splitlines()[0].split()[:3] == ["TIME", "ACTOR", "ACTION"], r.stdout
    mx.cli("audit", "--limit", "0", expect_rc=2, json_out=False)
    await admin.close()


def test_data_dir_after_the_verb(mx):
    r = subprocess.run([mh.MX_BIN, "user", "list", "--data-dir", mx.home, "--json"],
                       env={k: v for k, v in mx.build_env().items() if k != "CONDRIX_HOME"},
                       capture_output=True, text=True, timeout=h.t(20))
    assert r.returncode == 0, r.stderr
    assert "default-admin" in [u["username"] for u in json.loads(r.stdout)["users"]]


def test_cli_usage_errors(mx):
    for argv in (["user"], ["user", "frobnicate"], ["cores", "list", "extra"], ["audit", "--role", "admin"],
                 ["user", "list", "--bogus"]):
        r = subprocess.run([mh.MX_BIN, "--data-dir", mx.home] + argv, capture_output=True, text=True,
                           timeout=h.t(10), env=mx.build_env())
        assert r.returncode == 2, (argv, r)
    r = subprocess.run([mh.MX_BIN, "user", "--help"], capture_output=True, text=True, timeout=h.t(10))
    assert r.returncode == 0 and "user add" in r.stdout, r
