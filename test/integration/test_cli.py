"""`condrix-core` command line: flags, and the `auth` verbs working on the same
database as a running server."""
import asyncio
import datetime as dt
import json
import os
import subprocess
import time

import pytest

import helpers as h
from helpers import async_test, connect, connect_auth, expect_error, expect_ok


def run(args, home=None, timeout=None, env=None):
    e = {k: v for k, v in os.environ.items() if not k.startswith("CONDRIX_")}
    if home:
        e["CONDRIX_HOME"] = str(home)
    e["TZ"] = "XST-13:45"
    e.update(env or {})
    return subprocess.run([h.CORE_BIN] + args, capture_output=True, text=True, env=e,
                          timeout=timeout or h.t(10), stdin=subprocess.DEVNULL)


def no_sanitizer(r):
    assert "Sanitizer" not in r.stderr and "runtime error:" not in r.stderr, r.stderr


def cli_json(srv, *args, rc=0):
    r = run(["auth"] + list(args) + ["--json"], srv.home)
    no_sanitizer(r)
    assert r.returncode == rc, "rc %d (want %d)\nstdout: %s\nstderr: %s" % (r.returncode, rc, r.stdout, r.stderr)
    if rc == 0:
        try:
            return json.loads(r.stdout)
        except ValueError:
            pytest.fail("--json output is not one JSON object: %r" % r.stdout)
    return r


# --------------------------------------------------------------------------- flags

def test_help():
    r = run(["--help"])
    no_sanitizer(r)
    assert r.returncode == 0
    assert "--port" in r.stdout and "CONDRIX_CORE_PORT" in r.stdout, r.stdout


def test_version():
    r = run(["--version"])
    no_sanitizer(r)
    assert r.returncode == 0
    assert any(ch.isdigit() for ch in r.stdout), r.stdout


@pytest.mark.parametrize("args", [["--no-such-flag"], ["--port"], ["-z"]],
                         ids=["unknown", "missing-value", "short-unknown"])
def test_bad_flags_exit_2(args, tmp_path):
    r = run(args, tmp_path)
    no_sanitizer(r)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.stderr.strip(), "no message on stderr"


@pytest.mark.parametrize("port", ["abc", "70000", "-1", "12ab"])
def test_bad_port_refused(port, tmp_path):
    r = run(["--host", "127.0.0.1", "--port", port], tmp_path, timeout=h.t(5))
    no_sanitizer(r)
    assert r.returncode != 0, (r.returncode, r.stderr)


# --------------------------------------------------------------------------- auth verbs

@async_test
async def test_create_and_use_against_running_server(core):
    p = cli_json(core, "create", "cli-made")
    assert set(("name", "token", "scopes", "expiresAt")) <= set(p), p
    assert p["name"] == "cli-made" and h.TOKEN_RE.match(p["token"])
    assert set(p["scopes"]) == h.ALL_SCOPES
    assert p["expiresAt"] is None
    c = await connect(core)
    a = expect_ok(await c.auth(p["token"]))
    assert a["tokenName"] == "cli-made"
    await c.close()


@async_test
async def test_create_with_scopes_and_expiry(core):
    p = cli_json(core, "create", "cli-scoped", "--scopes", "read:files,chat:agent", "--expires", "30d")
    assert sorted(p["scopes"]) == ["chat:agent", "read:files"]
    exp = h.parse_ts(p["expiresAt"])
    delta = exp - dt.datetime.now(dt.timezone.utc)
    assert abs(delta.total_seconds() - 30 * 86400) < 600, p["expiresAt"]
    c = await connect(core)
    a = expect_ok(await c.auth(p["token"]))
    assert sorted(a["scopes"]) == ["chat:agent", "read:files"]
    expect_error(await c.request("auth.tokens"), "FORBIDDEN")
    await c.close()
    admin = await connect_auth(core)
    toks = {t["name"]: t for t in expect_ok(await admin.request("auth.tokens"))["tokens"]}
    assert abs((h.parse_ts(toks["cli-scoped"]["expiresAt"]) - exp).total_seconds()) < 2
    await admin.close()


def test_create_taken_name_fails(core):
    cli_json(core, "create", "twice")
    r = cli_json(core, "create", "twice", rc=1)
    assert r.stderr.strip()
    cli_json(core, "create", "env-token", rc=1)


@async_test
async def test_list(core):
    made = cli_json(core, "create", "listed-cli")
    admin = await connect_auth(core)
    expect_ok(await admin.request("auth.generateToken", {"name": "listed-ws"}))
    await admin.close()
    r = run(["auth", "list", "--json"], core.home)
    assert r.returncode == 0, r.stderr
    assert made["token"] not in r.stdout and core.admin_token not in r.stdout
    p = json.loads(r.stdout)
    names = {t["name"] for t in p["tokens"]}
    assert {"env-token", "listed-cli", "listed-ws"} <= names
    # human output, too, never shows values
    r = run(["auth", "list"], core.home)
    assert r.returncode == 0
    assert "listed-cli" in r.stdout
    assert made["token"] not in r.stdout + r.stderr


@async_test
async def test_revoke_against_running_server(core):
    made = cli_json(core, "create", "to-revoke")
    live = await connect_auth(core, made["token"])
    other = await connect_auth(core)  # another token: untouched
    cli_json(core, "revoke", "to-revoke")
    t0 = time.monotonic()
    # the running server notices at once (a watch on its data directory) and closes 4001,
    # as over the wire
    code, reason = await live.expect_close(timeout=h.t(5))
    assert (code, reason) == (4001, "token revoked"), (code, reason)
    assert time.monotonic() - t0 < 0.5, "noticed only after %.2f s" % (time.monotonic() - t0)
    assert await other.is_open()
    await other.close()
    c = await connect(core)
    expect_error(await c.auth(made["token"]), "INVALID_TOKEN")
    assert (await c.expect_close())[0] == 1008
    cli_json(core, "revoke", "to-revoke", rc=1)
    cli_json(core, "revoke", "never-existed", rc=1)
    await live.close()


@async_test
async def test_rotate_against_running_server(core):
    made = cli_json(core, "create", "to-rotate", "--scopes", "read:files")
    live = await connect_auth(core, made["token"])
    p = cli_json(core, "rotate", "to-rotate")
    code, reason = await live.expect_close(timeout=h.t(5))
    assert (code, reason) == (4001, "token rotated"), (code, reason)
    assert h.TOKEN_RE.match(p["token"]) and p["token"] != made["token"]
    c = await connect(core)
    expect_error(await c.auth(made["token"]), "INVALID_TOKEN")
    c = await connect(core)
    a = expect_ok(await c.auth(p["token"]))
    assert a["tokenName"] == "to-rotate" and a["scopes"] == ["read:files"]
    await c.close()
    cli_json(core, "rotate", "never-existed", rc=1)


@async_test
async def test_totp_verbs(core):
    made = cli_json(core, "create", "cli-totp")
    s = cli_json(core, "totp", "setup", "cli-totp")
    assert h.BASE32_RE.match(s["secret"]) and s["otpauthUri"].startswith("otpauth://totp/")
    assert "secret=" + s["secret"] in s["otpauthUri"]
    st = cli_json(core, "totp", "status", "cli-totp")
    assert st["configured"] is True and st["enabled"] is False
    cli_json(core, "totp", "enable", "cli-totp", h.wrong_code(s["secret"]), rc=1)
    assert cli_json(core, "totp", "status", "cli-totp")["enabled"] is False
    codes = h.totp_steps(s["secret"])
    cli_json(core, "totp", "enable", "cli-totp", codes[0])
    st = cli_json(core, "totp", "status", "cli-totp")
    assert st["configured"] is True and st["enabled"] is True
    # the running server enforces it
    c = await connect(core)
    m = await c.auth(made["token"])
    expect_error(m, "TOTP_REQUIRED")
    expect_ok(await c.auth(made["token"], totp=codes[1]))
    await c.close()
    cli_json(core, "totp", "disable", "cli-totp")
    assert cli_json(core, "totp", "status", "cli-totp")["enabled"] is False
    c = await connect(core)
    expect_ok(await c.auth(made["token"]))
    await c.close()
    cli_json(core, "totp", "status", "never-existed", rc=1)
    cli_json(core, "totp", "setup", "never-existed", rc=1)


@async_test
async def test_server_changes_visible_to_cli(core):
    admin = await connect_auth(core)
    expect_ok(await admin.request("auth.generateToken", {"name": "from-ws"}))
    expect_ok(await admin.request("totp.setup", {"tokenName": "from-ws"}))
    await admin.close()
    st = cli_json(core, "totp", "status", "from-ws")
    assert st["configured"] is True and st["enabled"] is False


@pytest.mark.parametrize("args", [
    ["auth"], ["auth", "frobnicate"], ["auth", "create"], ["auth", "create", "a", "b"],
    ["auth", "totp"], ["auth", "totp", "enable", "x"], ["auth", "list", "--bogus"],
    ["auth", "create", "bad name!"], ["auth", "create", "x1", "--scopes", "no:such"],
    ["auth", "create", "x2", "--expires", "9999999999d"],
    ["auth", "create", "x3", "--expires", "10000-01-01T00:00:00Z"],
], ids=["no-verb", "unknown-verb", "create-no-name", "create-extra", "totp-no-verb", "enable-no-code",
        "unknown-option", "bad-name", "bad-scope", "expires-past-9999", "expires-year-10000"])
def test_usage_errors_exit_2(core, args):
    r = run(args, core.home)
    no_sanitizer(r)
    assert r.returncode == 2, (args, r.returncode, r.stdout, r.stderr)
    # with --json, scripts read the same error on stdout
    r = run(args + ["--json"], core.home)
    assert r.returncode == 2, (args, r.returncode, r.stdout, r.stderr)
    if "--bogus" not in args:
        err = json.loads(r.stdout)["error"]
        assert err["code"] == "USAGE" and err["message"], r.stdout


def test_verbs_refuse_a_home_without_database(tmp_path):
    # A mistyped --data-dir / CONDRIX_HOME: said so, and no empty database is left there;
    # only `create` may make one (a token before the first start).
    home = tmp_path / "typo"
    home.mkdir(mode=0o700)
    for args in (["auth", "list"], ["auth", "revoke", "x"], ["auth", "totp", "status", "x"]):
        r = run(args, str(home))
        no_sanitizer(r)
        assert r.returncode == 1 and "no Core database at" in r.stderr, (args, r.stderr)
    assert not list(home.iterdir()), list(home.iterdir())
    r = run(["auth", "create", "early", "--json"], str(home))
    assert r.returncode == 0, r.stderr
    assert (home / "core.db").exists()
    # --data-dir works after the verb too (no CONDRIX_HOME here)
    r = run(["auth", "list", "--data-dir", str(home), "--json"])
    assert r.returncode == 0, r.stderr
    assert [t["name"] for t in json.loads(r.stdout)["tokens"]] == ["early"]


def test_cli_without_server_and_db_modes(core_factory, tmp_path):
    srv = core_factory()
    home = srv.home
    assert srv.stop() == 0
    p = cli_json(srv, "create", "offline-made")
    assert h.TOKEN_RE.match(p["token"])
    for f in os.listdir(home):
        if f.startswith("core.db"):
            mode = os.stat(os.path.join(home, f)).st_mode & 0o777
            assert mode == 0o600, "%s mode %o after CLI use" % (f, mode)
    srv.start()

    async def check():
        c = await connect(srv)
        expect_ok(await c.auth(p["token"]))
        await c.close()
    asyncio.run(asyncio.wait_for(check(), h.t(20)))


@async_test
async def test_cli_and_server_write_concurrently(core_factory):
    srv = core_factory(env={"CONDRIX_RATE_MSG_MAX": "0"})
    admin = await connect_auth(srv)
    loop = asyncio.get_running_loop()

    def cli_burst():
        out = []
        for i in range(8):
            r = run(["auth", "create", "cli-c%02d" % i, "--json"], srv.home)
            out.append(r)
        return out
    fut = loop.run_in_executor(None, cli_burst)
    ws_results = []
    i = 0
    while not fut.done() and i < 2000:
        envs = [h.envelope("auth.generateToken", {"name": "ws-c%04d" % (i + k)}) for k in range(10)]
        i += 10
        for e in envs:
            await admin.send_env(e)
        for e in envs:
            ws_results.append(await admin.wait_response(e["id"], timeout=h.t(10)))
    cli = await fut
    for r in cli:
        no_sanitizer(r)
        assert r.returncode == 0, "CLI failed while the server was writing: %s" % r.stderr
    bad = [m["error"] for m in ws_results if not m["success"]]
    assert not bad, "server writes failed while the CLI was writing: %s" % bad[:3]
    toks = {t["name"] for t in expect_ok(await admin.request("auth.tokens"))["tokens"]}
    assert {"cli-c%02d" % i for i in range(8)} <= toks
    for r in cli[:2]:
        c = await connect(srv)
        expect_ok(await c.auth(json.loads(r.stdout)["token"]))
        await c.close()
    await admin.close()
