"""The `condrix` client CLI end to end: `condrix core info|health` against a real
condrix-core, and (when condrix-maestro is built) login, whoami, cores, pair and logout
against a real Maestro. Checks exit codes (0 ok, 1 refused, 2 usage, 3 connection,
4 not signed in), --json output, and that cli.json is private."""
import json
import os
import re
import signal
import stat
import subprocess
import time

import pytest

import helpers as h

CLI_BIN = os.path.join(h.BIN_DIR, "condrix")
MAESTRO_BIN = os.path.join(h.BIN_DIR, "condrix-maestro")

pytestmark = pytest.mark.skipif(not os.path.exists(CLI_BIN), reason="condrix not built")


def cli(args, home=None, env=None, stdin_text=None, timeout=None):
    """Run condrix with a clean environment; stdin is a pipe (not a terminal)."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("CONDRIX_")}
    e["CONDRIX_HOME"] = str(home) if home else "/nonexistent-condrix-home"
    e.update(env or {})
    r = subprocess.run([CLI_BIN] + list(args), input=stdin_text or "", capture_output=True,
                       text=True, env=e, timeout=timeout or h.t(15))
    assert "Sanitizer" not in r.stderr and "runtime error:" not in r.stderr, r.stderr
    return r


def one_json(r):
    try:
        return json.loads(r.stdout)
    except ValueError:
        pytest.fail("--json output is not one JSON object: %r (stderr %r)" % (r.stdout, r.stderr))


def want(r, rc):
    assert r.returncode == rc, "rc %d (want %d)\nstdout: %s\nstderr: %s" % (
        r.returncode, rc, r.stdout, r.stderr)
    return r


# --------------------------------------------------------------------------- basics

def test_help_version_usage():
    r = want(cli(["--help"]), 0)
    for word in ("login", "logout", "whoami", "cores", "pair", "rotate", "users", "sessions",
                 "core info", "CONDRIX_CORE_TOKEN"):
        assert word in r.stdout, word
    assert "core info" in want(cli(["core", "info", "--help"]), 0).stdout
    assert re.search(r"\d+\.\d+", want(cli(["--version"]), 0).stdout)
    want(cli([]), 2)
    want(cli(["no-such-command"]), 2)
    want(cli(["cores", "--no-such-flag"]), 2)
    assert "missing arguments; usage: condrix rotate" in want(cli(["rotate"]), 2).stderr
    # the message names what was wrong and what would be right
    assert 'unexpected argument "bogus"' in want(cli(["cores", "bogus"]), 2).stderr
    err = want(cli(["core", "bogus"]), 2).stderr
    assert 'unknown command "core bogus"' in err and "condrix core info" in err, err
    assert "condrix core health" in want(cli(["core"]), 2).stderr
    want(cli(["core", "info", "--url", "http://x"], env={"CONDRIX_CORE_TOKEN": "t"}), 2)


def test_not_signed_in_is_4(tmp_path):
    r = want(cli(["whoami"], home=tmp_path), 4)
    assert "condrix login" in r.stderr
    r = want(cli(["cores", "--json"], home=tmp_path), 4)
    assert one_json(r)["error"]["code"] == "NOT_SIGNED_IN"


# --------------------------------------------------------------------------- a Core, directly

def core_url(srv):
    return "ws://127.0.0.1:%d" % srv.port


def test_core_info_and_health(core):
    env = {"CONDRIX_CORE_TOKEN": core.admin_token}
    r = want(cli(["core", "info", "--url", core_url(core)], env=env), 0)
    assert "Version" in r.stdout and "0." in r.stdout
    info = one_json(want(cli(["core", "info", "--url", core_url(core), "--json"], env=env), 0))
    assert set(info) >= {"coreId", "displayName", "version", "devMode", "maestro"}, info
    assert info["devMode"] is False
    health = one_json(want(cli(["core", "health", "--url", core_url(core), "--json"], env=env), 0))
    assert health["status"] == "ok" and isinstance(health["uptimeSeconds"], int), health
    r = want(cli(["core", "health", "--url", core_url(core)], env=env), 0)
    assert r.stdout.startswith("ok")
    # The token may also come as a line on stdin (never in argv).
    want(cli(["core", "health", "--url", core_url(core)], stdin_text=core.admin_token + "\n"), 0)
    # CONDRIX_CORE_URL stands in for --url.
    want(cli(["core", "health"], env=dict(env, CONDRIX_CORE_URL=core_url(core))), 0)


def test_core_without_token(core, core_factory):
    # No token at all: a production Core answers TOKEN_REQUIRED (refused, with what to
    # set); a dev-mode Core lets a local client in.
    r = want(cli(["core", "info", "--url", core_url(core)], stdin_text=""), 1)
    assert "CONDRIX_CORE_TOKEN" in r.stderr, r.stderr
    dev = core_factory(dev=True, env_token=None)
    info = one_json(want(cli(["core", "info", "--url", core_url(dev), "--json"], stdin_text=""), 0))
    assert info["devMode"] is True, info


def test_core_wrong_token_is_1(core):
    env = {"CONDRIX_CORE_TOKEN": h.rand_token()}
    r = want(cli(["core", "info", "--url", core_url(core), "--json"], env=env), 1)
    err = one_json(r)["error"]
    assert err["code"] == "INVALID_TOKEN" and err["message"], err
    r = want(cli(["core", "health", "--url", core_url(core)], env=env), 1)
    assert "token" in r.stderr and r.stdout == ""


def test_core_closed_port_is_3():
    port = h.free_port()
    env = {"CONDRIX_CORE_TOKEN": h.rand_token()}
    start = time.monotonic()
    r = want(cli(["core", "info", "--url", "ws://127.0.0.1:%d" % port, "--json"], env=env), 3)
    assert time.monotonic() - start < h.t(5)
    assert one_json(r)["error"]["code"] == "CONNECT_FAILED"
    want(cli(["core", "health", "--url", "ws://127.0.0.1:%d" % port], env=env), 3)


def test_core_silent_server_times_out_3():
    """A listener that never answers the upgrade: bounded by --timeout."""
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    try:
        start = time.monotonic()
        r = want(cli(["core", "info", "--url", "ws://127.0.0.1:%d" % s.getsockname()[1],
                      "--timeout", "1", "--json"], env={"CONDRIX_CORE_TOKEN": "x"}), 3)
        assert time.monotonic() - start < h.t(5)
        assert one_json(r)["error"]["code"] == "TIMEOUT"
    finally:
        s.close()


# --------------------------------------------------------------------------- Maestro

class Maestro:
    def __init__(self, home, logdir):
        self.home = home
        self.port = None
        self.proc = None
        self.password = None
        self.logdir = logdir

    def start(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONDRIX_")}
        env.update(CONDRIX_HOME=self.home, CONDRIX_RATE_CONN_MAX="0", CONDRIX_RATE_AUTH_MAX="0",
                   CONDRIX_LOG_LEVEL="debug")
        self.port = h.free_port()
        self.out = os.path.join(self.logdir, "maestro.out")
        self.err = os.path.join(self.logdir, "maestro.err")
        with open(self.out, "wb") as o, open(self.err, "wb") as e:
            self.proc = subprocess.Popen([MAESTRO_BIN, "--host", "127.0.0.1", "--port", str(self.port)],
                                         env=env, stdout=o, stderr=e, stdin=subprocess.DEVNULL)

        def ready():
            if self.proc.poll() is not None:
                pytest.fail("condrix-maestro exited: %s" % open(self.err).read()[-3000:])
            text = open(self.out).read()
            m = re.search(r"default-admin.*\n(?:.*\n)*?(\S+)\n", text)
            if not m:
                return None
            try:
                status, _, _ = h.http_get(self.port, "/healthz", timeout=h.t(2))
            except (OSError, AssertionError, ValueError):
                return None
            return m if status == 200 else None

        m = h.wait_until(ready, h.t(10), 0.05, "condrix-maestro to start and print the password")
        # The password is the last line of the first-start notice.
        lines = [ln for ln in open(self.out).read().splitlines() if ln.strip()]
        self.password = lines[-1].strip()
        assert m
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(h.t(10))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        err = open(self.err).read() if os.path.exists(self.err) else ""
        assert "Sanitizer" not in err and "runtime error:" not in err, err[-3000:]


@pytest.fixture
def maestro(tmp_path):
    if not os.path.exists(MAESTRO_BIN):
        pytest.skip("condrix-maestro not built")
    home = tmp_path / "mhome"
    home.mkdir(mode=0o700)
    m = Maestro(str(home), str(tmp_path)).start()
    yield m
    m.stop()


def test_maestro_login_whoami_cores_pair_logout(maestro, tmp_path):
    home = tmp_path / "clihome"
    url = "ws://127.0.0.1:%d" % maestro.port

    r = want(cli(["login", url, "--username", "default-admin"], home, stdin_text="wrong-password\n"), 1)
    assert "wrong username or password" in r.stderr
    assert not (home / "cli.json").exists()

    r = want(cli(["login", url, "--username", "default-admin", "--json"], home,
                 stdin_text=maestro.password + "\n"), 0)
    p = one_json(r)
    assert p["user"]["username"] == "default-admin" and "sessionToken" not in p, p
    f = home / "cli.json"
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    saved = json.loads(f.read_text())
    assert saved["url"] == url and re.fullmatch(r"[0-9a-f]{64}", saved["sessionToken"])
    assert saved["sessionToken"] not in r.stdout + r.stderr
    assert not [n for n in os.listdir(home) if n != "cli.json"], "temporary files left behind"

    r = want(cli(["whoami"], home), 0)
    assert "default-admin" in r.stdout and url in r.stdout
    assert one_json(want(cli(["whoami", "--json"], home), 0))["user"]["role"] == "admin"

    cores = one_json(want(cli(["cores", "--json"], home), 0))
    assert cores["cores"] == []
    assert "condrix pair" in want(cli(["cores"], home), 0).stdout

    r = want(cli(["pair"], home), 0)
    m = re.search(r"CONDRIX_MAESTRO_URL=(\S+) CONDRIX_MAESTRO_TOKEN=(\S+) condrix-core", r.stdout)
    assert m and m.group(1) == url and len(m.group(2)) == 6, r.stdout
    code = one_json(want(cli(["pair", "--uses", "2", "--ttl", "1h", "--json"], home), 0))
    assert len(code["code"]) == 6 and code["maxUses"] == 2, code
    want(cli(["pair", "--ttl", "soon"], home), 2)

    listed = one_json(want(cli(["pair", "list", "--json"], home), 0))
    assert len(listed["codes"]) == 2
    sessions = one_json(want(cli(["sessions", "--json"], home), 0))["sessions"]
    assert any(s.get("current") for s in sessions), sessions
    assert "default-admin" in want(cli(["users"], home), 0).stdout
    r = want(cli(["rotate", "no-such-core", "--json"], home), 1)
    assert one_json(r)["error"]["code"] == "NOT_FOUND"

    r = want(cli(["logout"], home), 0)
    assert not f.exists()
    # The session is dead on the server too: a saved copy no longer works.
    f.write_text(json.dumps(saved))
    os.chmod(f, 0o600)
    r = want(cli(["cores", "--json"], home), 4)
    assert one_json(r)["error"]["code"] in ("INVALID_SESSION", "SESSION_EXPIRED")
    assert "condrix login %s" % url in r.stderr
    want(cli(["logout"], home), 0)  # the dead session file is cleared
    assert not f.exists()
    want(cli(["whoami"], home), 4)
    # --local forgets a session without reaching the server (here: a port nobody serves)
    dead = dict(saved, url="ws://127.0.0.1:%d" % h.free_port())
    f.write_text(json.dumps(dead))
    os.chmod(f, 0o600)
    r = want(cli(["logout"], home), 3)
    assert "logout --local" in r.stderr and f.exists()
    assert one_json(want(cli(["logout", "--local", "--json"], home), 0))["local"] is True
    assert not f.exists()


def test_maestro_pairing_a_core_then_rotate(maestro, tmp_path, core_factory):
    home = tmp_path / "clihome"
    url = "ws://127.0.0.1:%d" % maestro.port
    want(cli(["login", url, "-u", "default-admin"], home, stdin_text=maestro.password + "\n"), 0)
    code = one_json(want(cli(["pair", "--json"], home), 0))["code"]
    core_factory(env={"CONDRIX_MAESTRO_URL": url, "CONDRIX_MAESTRO_TOKEN": code},
                 args=["--name", "cli-test-core"])

    def online():
        r = cli(["cores", "--json"], home)
        cs = one_json(r)["cores"] if r.returncode == 0 else []
        return [c for c in cs if c["status"] == "online"]

    cs = h.wait_until(online, h.t(8), 0.1, "the paired Core to come online")
    assert cs[0]["displayName"] == "cli-test-core"
    r = want(cli(["cores"], home), 0)
    assert "cli-test-core" in r.stdout and "online" in r.stdout
    r = one_json(want(cli(["rotate", "cli-test-core", "--json"], home), 0))
    assert r.get("pushed") is True, r
