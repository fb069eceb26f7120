"""contrib/ and docs/OPERATIONS.md, checked against the real tools and binaries:
the systemd units pass `systemd-analyze verify`, the sysusers file makes the users the
units run as, the nginx site parses (`nginx -t`) and, run for real in front of a Core,
proxies WebSockets and hands over the client address the way Maestro expects, the env
examples document every variable the binaries read, and the backup/restore drill of
docs/OPERATIONS.md works on a running Core.

The tools come from `make deps` (Debian packages systemd, nginx, sqlite3, openssl);
a missing one fails the test with a message saying so, it is never skipped."""
import json
import os
import re
import shutil
import signal
import ssl
import subprocess

import pytest
import websockets

import helpers as h
from helpers import async_test, expect_error, expect_ok

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CONTRIB = os.path.join(ROOT, "contrib")
MAESTRO_BIN = os.path.join(h.BIN_DIR, "condrix-maestro")
BINS = {"core": h.CORE_BIN, "maestro": MAESTRO_BIN}

# Sandbox settings each unit must carry (name -> required value, None: any value).
HARDENING = {
    "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
    "PrivateTmp": "yes", "PrivateDevices": "yes", "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes", "ProtectControlGroups": "yes",
    "RestrictNamespaces": "yes", "LockPersonality": "yes", "MemoryDenyWriteExecute": "yes",
    "RestrictRealtime": "yes", "RestrictSUIDSGID": "yes", "SystemCallArchitectures": "native",
    "UMask": "0077", "CapabilityBoundingSet": "",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "Restart": "on-failure", "KillSignal": "SIGTERM", "TimeoutStopSec": None,
}


def tool(name):
    """Path of a tool from `make deps`; fails (never skips) when it is missing."""
    p = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if not p:
        pytest.fail("%s is not installed: run `make deps` (Debian package %s)"
                    % (name, {"systemd-analyze": "systemd", "systemd-sysusers": "systemd"}
                       .get(name, name)))
    return p


def binary(which):
    p = BINS[which]
    assert os.access(p, os.X_OK), "%s is not built (run make)" % p
    return p


def clean_env(**extra):
    e = {k: v for k, v in os.environ.items() if not k.startswith("CONDRIX_")}
    e.update(extra)
    return e


def unit_settings(text):
    """[Service] settings of a unit file -> {name: [values]} (comments dropped)."""
    out, section = {}, None
    for line in text.splitlines():
        s = line.strip()
        if not s or s[0] in "#;":
            continue
        if s.startswith("["):
            section = s
            continue
        if section == "[Service]" and "=" in s:
            k, _, v = s.partition("=")
            out.setdefault(k.strip(), []).append(v.strip())
    return out


# --------------------------------------------------------------------------- systemd

@pytest.mark.parametrize("which", ["core", "maestro"])
def test_systemd_unit_verifies(which, tmp_path):
    """systemd-analyze verify needs ExecStart's binary to exist: the unit is checked as
    shipped, with only that path pointed at the built binary."""
    analyze = tool("systemd-analyze")
    src = os.path.join(CONTRIB, "systemd", "condrix-%s.service" % which)
    with open(src) as f:
        text = f.read()
    installed = "/usr/local/bin/condrix-%s" % which
    assert re.search(r"^ExecStart=%s$" % re.escape(installed), text, re.M), \
        "ExecStart should run %s" % installed
    unit = tmp_path / ("condrix-%s.service" % which)
    unit.write_text(text.replace("ExecStart=" + installed, "ExecStart=" + binary(which)))
    r = subprocess.run([analyze, "verify", "--man=no", str(unit)], capture_output=True,
                       text=True, timeout=60, env=clean_env(SYSTEMD_LOG_COLOR="0"))
    out = (r.stdout + r.stderr).strip()
    assert r.returncode == 0 and not out, \
        "systemd-analyze verify (rc %d):\n%s" % (r.returncode, out)

    s = unit_settings(text)
    for k, want in HARDENING.items():
        assert k in s, "%s lacks %s=" % (src, k)
        if want is not None:
            assert want in s[k], "%s: %s=%s, want %s" % (src, k, s[k], want)
    assert "@system-service" in s.get("SystemCallFilter", []), src
    assert "condrix-%s" % which in s.get("StateDirectory", []), src
    assert "CONDRIX_HOME=%%S/condrix-%s" % which in s.get("Environment", []), src
    assert "-/etc/condrix/%s.env" % which in s.get("EnvironmentFile", []), src
    assert s.get("User") or s.get("DynamicUser") == ["yes"], "%s runs as root" % src


def test_sysusers_makes_the_unit_users(tmp_path):
    sysusers = tool("systemd-sysusers")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    with open(os.path.join(CONTRIB, "systemd", "condrix-sysusers.conf")) as f:
        r = subprocess.run([sysusers, "--root=%s" % root, "-"], stdin=f, capture_output=True,
                           text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    passwd = (root / "etc" / "passwd").read_text()
    for which in ("core", "maestro"):
        with open(os.path.join(CONTRIB, "systemd", "condrix-%s.service" % which)) as f:
            user = unit_settings(f.read())["User"][0]
        m = re.search(r"^%s:x:\d+:\d+:[^:]*:([^:]*):(/usr/sbin/nologin)$" % re.escape(user),
                      passwd, re.M)
        assert m, "sysusers did not make %s:\n%s" % (user, passwd)


# --------------------------------------------------------------------------- env examples

def help_variables(which):
    """Every CONDRIX_ variable `--help` names, its abbreviations expanded:
    "CONDRIX_LIMIT_HEAD_BYTES, _MESSAGE_BYTES" and "(and *_WINDOW_SECONDS)"."""
    r = subprocess.run([binary(which), "--help"], capture_output=True, text=True,
                       timeout=h.t(10), env=clean_env())
    assert r.returncode == 0, r.stderr
    text = r.stdout
    names, last = set(), None
    for m in re.finditer(r"(?<![A-Za-z0-9_$*])(CONDRIX_[A-Z0-9_]*[A-Z0-9]|_[A-Z][A-Z0-9_]*[A-Z0-9]|\*_[A-Z][A-Z0-9_]*[A-Z0-9])", text):
        w = m.group(1)
        if w.startswith("CONDRIX_"):
            names.add(w)
            last = w
        elif w.startswith("*_"):
            for n in list(names):
                if n.endswith("_MAX"):
                    names.add(n[:-len("_MAX")] + w[1:])
        elif last:
            # _MESSAGE_BYTES after CONDRIX_LIMIT_HEAD_BYTES: same CONDRIX_<GROUP> prefix.
            names.add("_".join(last.split("_")[:2]) + w)
    assert len(names) >= 15, "could not read the variables from --help:\n%s" % text
    return names


def source_variables(which):
    """Variables the sources read with getenv()/cx_env_*() or list in the library's
    tables of tunables: a variable missing from --help is still documented."""
    dirs = [os.path.join(ROOT, which), os.path.join(ROOT, "libcondrix-proto", "src")]
    names = set()
    for d in dirs:
        for fn in sorted(os.listdir(d)):
            if fn.endswith(".c"):
                with open(os.path.join(d, fn)) as f:
                    src = f.read()
                names |= set(re.findall(r'(?:getenv|cx_env_\w+)\(\s*"(CONDRIX_\w+)"', src))
                names |= set(re.findall(r'\{\s*"(CONDRIX_\w+)"', src))
    return names


@pytest.mark.parametrize("which", ["core", "maestro"])
def test_env_example_documents_every_variable(which):
    path = os.path.join(CONTRIB, "systemd", "%s.env.example" % which)
    with open(path) as f:
        text = f.read()
    documented = set(re.findall(r"^#?(CONDRIX_[A-Z0-9_]+)=", text, re.M))
    want = help_variables(which) | source_variables(which)
    missing = sorted(want - documented)
    assert not missing, "%s does not document %s" % (path, ", ".join(missing))
    # Every line is commented out: the file is safe to install as it is.
    live = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert not live, "uncommented settings in %s: %r" % (path, live)
    if which == "core":
        assert re.search(r"one-time pairing code", text, re.I), \
            "core.env.example must explain that CONDRIX_MAESTRO_TOKEN is a one-time pairing code"


# --------------------------------------------------------------------------- nginx

def nginx_site(port_http, port_https, upstream, cert, key):
    """contrib/nginx/condrix-maestro.conf with test ports, upstream and certificate;
    everything else exactly as shipped."""
    with open(os.path.join(CONTRIB, "nginx", "condrix-maestro.conf")) as f:
        text = f.read()
    subs = [
        (r"(?m)^\s*listen \[::\]:\d+.*\n", ""),  # the test host may lack IPv6
        (r"(?m)^(\s*)listen 80;", r"\g<1>listen 127.0.0.1:%d;" % port_http),
        (r"(?m)^(\s*)listen 443 ssl;", r"\g<1>listen 127.0.0.1:%d ssl;" % port_https),
        (r"(?m)^(\s*ssl_certificate)\s+\S+;", r"\g<1> %s;" % cert),
        (r"(?m)^(\s*ssl_certificate_key)\s+\S+;", r"\g<1> %s;" % key),
        (r"proxy_pass http://127\.0\.0\.1:9200;", "proxy_pass http://127.0.0.1:%d;" % upstream),
    ]
    for pat, rep in subs:
        text, n = re.subn(pat, rep, text)
        assert n >= 1, "the nginx site no longer has %r" % pat
    return text


def nginx_setup(tmp_path, upstream=9200):
    nginx = tool("nginx")
    openssl = tool("openssl")
    d = tmp_path / "nginx"
    d.mkdir()
    cert, key = d / "cert.pem", d / "key.pem"
    r = subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key), "-out",
                        str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    port_http, port_https = h.free_port(), h.free_port()
    (d / "site.conf").write_text(nginx_site(port_http, port_https, upstream, cert, key))
    temp = "".join("    %s_temp_path %s;\n" % (k, d / ("tmp-" + k))
                   for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (d / "nginx.conf").write_text(
        "pid %s;\nerror_log %s info;\nevents {}\nhttp {\n    access_log off;\n%s"
        "    include %s;\n}\n" % (d / "nginx.pid", d / "error.log", temp, d / "site.conf"))
    return nginx, d, port_https


def test_nginx_config_parses(tmp_path):
    nginx, d, _ = nginx_setup(tmp_path)
    r = subprocess.run([nginx, "-t", "-q", "-p", str(d), "-e", str(d / "error.log"),
                        "-c", str(d / "nginx.conf")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, "nginx -t:\n%s%s" % (r.stdout, r.stderr)


@async_test
async def test_nginx_proxies_websocket_with_the_real_client_address(core_factory, tmp_path):
    """Through the shipped nginx site, a client that forges CF-Connecting-IP and
    X-Forwarded-For is still seen as the address nginx saw (127.0.0.1). Directly, the
    same headers from loopback (a trusted proxy) would win: the check has teeth."""
    srv = core_factory()
    nginx, d, port = nginx_setup(tmp_path, upstream=srv.port)
    forged = {"CF-Connecting-IP": "198.51.100.9", "X-Forwarded-For": "203.0.113.7"}
    proc = subprocess.Popen([nginx, "-p", str(d), "-e", str(d / "error.log"),
                             "-c", str(d / "nginx.conf"),
                             "-g", "daemon off; master_process off;"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        def up():
            if proc.poll() is not None:
                pytest.fail("nginx exited: %s\n%s" % (proc.stderr.read().decode(),
                                                      (d / "error.log").read_text()))
            try:
                h.open_sock(port, timeout=0.5).close()
                return True
            except OSError:
                return False
        h.wait_until(up, h.t(10), 0.05, "nginx to listen")
        ctx = ssl.create_default_context(cafile=str(d / "cert.pem"))
        ctx.check_hostname = False
        ws = await websockets.connect("wss://127.0.0.1:%d/" % port, ssl=ctx,
                                      extra_headers=forged, open_timeout=h.t(5),
                                      close_timeout=h.t(2))
        c = h.Client(ws)
        expect_ok(await c.auth(srv.admin_token))
        conns = expect_ok(await c.request("connections.list"))["connections"]
        assert [x["ip"] for x in conns] == ["127.0.0.1"], conns
        await c.close()

        direct = await h.connect(srv, headers=forged)
        expect_ok(await direct.auth(srv.admin_token))
        conns = expect_ok(await direct.request("connections.list"))["connections"]
        assert "198.51.100.9" in [x["ip"] for x in conns], conns
        await direct.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(h.t(10))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# --------------------------------------------------------------------------- backup drill

def sqlite(*args):
    r = subprocess.run([tool("sqlite3")] + list(args), capture_output=True, text=True,
                       timeout=h.t(30))
    assert r.returncode == 0, "sqlite3 %s: %s" % (" ".join(args), r.stderr)
    return r.stdout.strip()


@async_test
async def test_backup_and_restore_drill(core_factory, tmp_path):
    """docs/OPERATIONS.md, "Back up and restore": an online .backup of core.db from a
    running Core, restored into a fresh data directory, keeps tokens and the Core id."""
    srv = core_factory(env_token=False, expect_token=True)
    admin = srv.printed_token
    r = subprocess.run([h.CORE_BIN, "auth", "create", "drill", "--json"], capture_output=True,
                       text=True, timeout=h.t(10), env=clean_env(CONDRIX_HOME=srv.home),
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    drill = json.loads(r.stdout)["token"]
    assert h.TOKEN_RE.match(drill)

    c = await h.connect_auth(srv, drill)  # a live session while the backup runs
    core_id = expect_ok(await c.request("info"))["coreId"]
    backup = tmp_path / "backup" / "core-backup.db"
    backup.parent.mkdir(mode=0o700)
    sqlite(os.path.join(srv.home, "core.db"), ".backup '%s'" % backup)
    assert (await c.request("health"))["success"], "the Core stopped answering during .backup"
    await c.close()
    assert sqlite(str(backup), "PRAGMA integrity_check") == "ok"
    assert "drill" in sqlite(str(backup), "SELECT name FROM auth_tokens").split()
    assert srv.stop() == 0

    # Restore: the backup becomes core.db of an empty data directory.
    home = core_factory.new_home()
    shutil.copyfile(str(backup), os.path.join(home, "core.db"))
    os.chmod(os.path.join(home, "core.db"), 0o600)
    restored = core_factory(home=home, env_token=False)
    assert not h.TOKEN_LINE_RE.search(restored.stdout()), \
        "the restored Core thought it was a first start and made a new default-admin"
    for token, name in ((drill, "drill"), (admin, "default-admin")):
        c = await h.connect(restored)
        m = expect_ok(await c.auth(token))
        assert m["tokenName"] == name, m
        assert expect_ok(await c.request("info"))["coreId"] == core_id
        await c.close()
    c = await h.connect(restored)
    expect_error(await c.auth(h.rand_token()), "INVALID_TOKEN")
    await c.close()
    st = os.stat(os.path.join(home, "core.db"))
    assert st.st_mode & 0o777 == 0o600, oct(st.st_mode)
