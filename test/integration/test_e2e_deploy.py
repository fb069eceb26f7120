"""End to end, as deployed: the real binaries wired together the way docs/OPERATIONS.md
tells an operator to.

1. `make run` (contrib/run-demo.sh): Maestro and one Core on 127.0.0.1, the Core paired
   with a fresh one-time code, everything a person needs printed; SIGINT (to the script,
   or to its process group like Ctrl-C) stops both cleanly and the script exits 0; a
   second run on the same directory shows the same secrets, pairs nothing and the same
   Core comes online.

2. The production topology: nginx (Debian's) terminating TLS in front of Maestro with a
   certificate from a test CA made here with the openssl CLI, configured from
   contrib/nginx/condrix-maestro.conf (the header lines exactly as shipped); a Core
   joining over wss:// through it, refused while it does not trust the test CA and
   accepted with CONDRIX_MAESTRO_CA; a client (Python and the condrix CLI) signing in
   through the proxy and relaying to the Core; rate limits keyed on the address nginx
   forwards (two client addresses limited separately, forged headers dropped by nginx
   and ignored on a direct connection from an untrusted peer); and the Core's own
   wss:// with its own certificate.

   Where the machine allows (root, `ip netns`), Maestro and nginx run in one network
   namespace and the Core in another, joined by a veth pair, so the Core reaches nginx
   and clients reach the Core over a real interface. Otherwise everything runs on
   loopback, with the same assertions, and the test prints a note saying so.
"""
import asyncio
import ctypes
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import threading
import time
import warnings

import pytest
import websockets

import helpers as h
from helpers import expect_error, expect_ok

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CONTRIB = os.path.join(ROOT, "contrib")
DEMO_SCRIPT = os.path.join(CONTRIB, "run-demo.sh")
MAESTRO_BIN = os.path.join(h.BIN_DIR, "condrix-maestro")
CLI_BIN = os.path.join(h.BIN_DIR, "condrix")
PASSWORD_RE = re.compile(r"default-admin.*\n.*\n(\S{20})\n")


def tool(name):
    """A tool from `make deps`; a missing one fails the test (never a skip)."""
    p = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if not p:
        pytest.fail("%s is not installed: run `make deps`" % name)
    return p


def built(path):
    assert os.access(path, os.X_OK), "%s is not built (run make)" % path
    return path


def clean_env(**extra):
    e = {k: v for k, v in os.environ.items() if not k.startswith("CONDRIX_")}
    e.update({k: str(v) for k, v in extra.items()})
    return e


def no_sanitizer_report(text, what):
    assert "Sanitizer" not in text and "runtime error:" not in text, \
        "sanitizer report from %s:\n%s" % (what, text[-4000:])


# =========================================================================== networks

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


class Net:
    """Where the processes of the topology run and how the test reaches them.

    netns mode: namespace `mx` holds Maestro and nginx (the server host), namespace
    `core` holds the Core (another machine); a veth pair joins them (MX_ADDR <->
    CORE_ADDR). The test reaches processes in a namespace with sockets made there
    (setns in a helper thread), so its clients use that host's own loopback.
    loopback mode: both "hosts" are this network namespace, both addresses 127.0.0.1.
    """

    MX_ADDR_NS, CORE_ADDR_NS = "192.0.2.1", "192.0.2.2"

    def __init__(self):
        self.mode = "loopback"
        self.note = ""
        self.ns = {"mx": None, "core": None}
        self.mx_addr = self.core_addr = "127.0.0.1"
        self._made_ns = []
        self._veth = None

    def setup(self):
        if os.environ.get("CONDRIX_E2E_NETNS") == "0":
            self.note = "CONDRIX_E2E_NETNS=0 in the environment"
            return self
        ip = shutil.which("ip", path="/usr/sbin:/sbin:/usr/bin:/bin")
        if not ip:
            self.note = "no `ip` command (package iproute2)"
            return self
        tag = secrets.token_hex(3)
        names = {"mx": "cx-e2e-mx-" + tag, "core": "cx-e2e-core-" + tag}
        veth = ("cxm" + tag, "cxc" + tag)
        steps = [
            ["netns", "add", names["mx"]],
            ["netns", "add", names["core"]],
            ["link", "add", veth[0], "netns", names["mx"], "type", "veth",
             "peer", "name", veth[1], "netns", names["core"]],
            ["-n", names["mx"], "addr", "add", self.MX_ADDR_NS + "/30", "dev", veth[0]],
            ["-n", names["core"], "addr", "add", self.CORE_ADDR_NS + "/30", "dev", veth[1]],
            ["-n", names["mx"], "link", "set", "lo", "up"],
            ["-n", names["core"], "link", "set", "lo", "up"],
            ["-n", names["mx"], "link", "set", veth[0], "up"],
            ["-n", names["core"], "link", "set", veth[1], "up"],
            ["netns", "exec", names["mx"], "true"],  # can we run processes in there?
        ]
        for st in steps:
            r = subprocess.run([ip] + st, capture_output=True, text=True, timeout=10)
            if st[:2] == ["netns", "add"] and r.returncode == 0:
                self._made_ns.append(st[2])
            if r.returncode != 0:
                self.note = "`ip %s` failed: %s" % (" ".join(st), r.stderr.strip())
                self.teardown()
                return self
        self.mode = "netns"
        self.ns = names
        self.mx_addr, self.core_addr = self.MX_ADDR_NS, self.CORE_ADDR_NS
        self._veth = veth
        # The veth link must carry traffic before anything starts (DAD is off for v4).
        try:
            h.wait_until(lambda: self._ping_ok(), h.t(5), 0.1, "the veth link to come up")
        except AssertionError as e:
            self.note = str(e)
            self.teardown()
            self.mode, self.ns = "loopback", {"mx": None, "core": None}
            self.mx_addr = self.core_addr = "127.0.0.1"
        return self

    def _ping_ok(self):
        """A TCP listener in `core`, a connect from `mx` over the veth."""
        srv = self.socket("core")
        try:
            srv.bind((self.core_addr, 0))
            srv.listen(1)
            port = srv.getsockname()[1]
            c = self.socket("mx")
            c.settimeout(1)
            try:
                c.connect((self.core_addr, port))
                return True
            except OSError:
                return False
            finally:
                c.close()
        finally:
            srv.close()

    def teardown(self):
        ip = shutil.which("ip", path="/usr/sbin:/sbin:/usr/bin:/bin") or "ip"
        for name in reversed(self._made_ns):  # deleting a namespace deletes its veth end
            subprocess.run([ip, "netns", "del", name], capture_output=True, timeout=10)
        self._made_ns = []

    def prefix(self, host):
        """argv prefix that runs a command on `host` ("mx" or "core")."""
        ns = self.ns[host]
        return ["ip", "netns", "exec", ns] if ns else []

    def socket(self, host, family=socket.AF_INET):
        """A TCP socket in `host`'s network namespace."""
        ns = self.ns[host]
        if ns is None:
            return socket.socket(family, socket.SOCK_STREAM)
        box = {}

        def run():  # setns changes only this (short-lived) thread's namespace
            fd = os.open("/run/netns/" + ns, os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    e = ctypes.get_errno()
                    raise OSError(e, "setns(%s): %s" % (ns, os.strerror(e)))
                box["s"] = socket.socket(family, socket.SOCK_STREAM)
            except BaseException as e:  # handed to the caller
                box["e"] = e
            finally:
                os.close(fd)
        th = threading.Thread(target=run)
        th.start()
        th.join()
        if "e" in box:
            raise box["e"]
        return box["s"]

    def connect(self, host, addr, port, src=None, timeout=None):
        """A connected TCP socket from `host` (bound to source address src)."""
        s = self.socket(host)
        try:
            s.settimeout(timeout or h.t(5))
            if src:
                s.bind((src, 0))
            s.connect((addr, port))
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return s
        except BaseException:
            s.close()
            raise


def http_get(net, host, addr, port, path, tls_ctx=None, timeout=None):
    """GET over a socket from `host`; -> (status, body)."""
    s = net.connect(host, addr, port, timeout=timeout or h.t(2))
    try:
        if tls_ctx is not None:
            s = tls_ctx.wrap_socket(s, server_hostname=addr)
        s.sendall(("GET %s HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n\r\n"
                   % (path, addr, port)).encode())
        data, _ = h.recv_all(s, timeout or h.t(2))
    finally:
        s.close()
    status, _, body = h.parse_http_head(data)
    return status, body


async def ws_connect(net, host, addr, port, tls_ctx=None, src=None, headers=None):
    """A helpers.Client over a socket made on `host`, from source address src."""
    s = net.connect(host, addr, port, src=src)
    s.setblocking(False)
    scheme = "wss" if tls_ctx else "ws"
    kw = {"ssl": tls_ctx, "server_hostname": addr} if tls_ctx else {}
    ws = await websockets.connect("%s://%s:%d/" % (scheme, addr, port), sock=s,
                                  extra_headers=headers, open_timeout=h.t(5),
                                  close_timeout=h.t(2), **kw)
    return h.Client(ws)


async def login(c, username, password):
    return await c.request("login", {"username": username, "password": password},
                           namespace="maestro", timeout=h.t(10))


# =========================================================================== processes

class Proc:
    """A server process with its stdout/stderr in files; stop() is bounded."""

    def __init__(self, name, argv, env, logdir, prefix=()):
        self.name = name
        self.out = os.path.join(logdir, name + ".out")
        self.err = os.path.join(logdir, name + ".err")
        with open(self.out, "ab") as o, open(self.err, "ab") as e:
            self.proc = subprocess.Popen(list(prefix) + list(argv), env=env, stdout=o, stderr=e,
                                         stdin=subprocess.DEVNULL, close_fds=True)

    def stdout(self):
        with open(self.out, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stderr(self):
        with open(self.err, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def alive(self):
        return self.proc.poll() is None

    def check_alive(self):
        assert self.alive(), "%s exited (rc %s):\n%s" % (self.name, self.proc.returncode,
                                                          self.stderr()[-3000:])

    def stop(self, timeout=None):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout or h.t(10))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                return "timeout"
        return self.proc.returncode


def openssl(*args):
    r = subprocess.run([tool("openssl")] + list(args), capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, "openssl %s:\n%s" % (" ".join(args), r.stderr)


def make_pki(d, names):
    """A test CA and one leaf per name -> {"ca": path, name: (cert, key)}.
    names: {name: [SAN entries]}."""
    d.mkdir()
    ca_key, ca = str(d / "ca.key"), str(d / "ca.pem")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/CN=Condrix e2e test CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    out = {"ca": ca}
    for name, sans in names.items():
        key, csr, cert = (str(d / (name + ext)) for ext in (".key", ".csr", ".pem"))
        ext = d / (name + ".ext")
        ext.write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                       "extendedKeyUsage=serverAuth\nsubjectAltName=%s\n" % ",".join(sans))
        openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", key, "-out", csr, "-subj", "/CN=%s" % name)
        openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
                "-out", cert, "-days", "1", "-extfile", str(ext))
        os.chmod(key, 0o600)
        out[name] = (cert, key)
    return out


# The lines of the shipped nginx site that decide who the client is and how WebSockets
# pass: the test config must keep them exactly.
NGINX_SECURITY_LINES = [
    "proxy_set_header X-Forwarded-For $remote_addr;",
    'proxy_set_header CF-Connecting-IP "";',
    "proxy_set_header Upgrade $http_upgrade;",
    "proxy_set_header Connection $condrix_connection_upgrade;",
    "proxy_http_version 1.1;",
]


def nginx_site(listen_addrs, port_http, port_https, upstream, cert, key):
    """contrib/nginx/condrix-maestro.conf with test addresses, ports, upstream and
    certificate; everything else as shipped."""
    with open(os.path.join(CONTRIB, "nginx", "condrix-maestro.conf")) as f:
        text = f.read()
    for line in NGINX_SECURITY_LINES:
        assert line in text, "contrib/nginx/condrix-maestro.conf no longer has %r" % line
    https = "".join("listen %s:%d ssl;\n    " % (a, port_https) for a in listen_addrs).rstrip()
    subs = [
        (r"(?m)^\s*listen \[::\]:\d+.*\n", ""),  # the test host may lack IPv6
        (r"(?m)^(\s*)listen 80;", r"\g<1>listen 127.0.0.1:%d;" % port_http),
        (r"(?m)^(\s*)listen 443 ssl;", lambda m: m.group(1) + https),
        (r"(?m)^(\s*ssl_certificate)\s+\S+;", r"\g<1> %s;" % cert),
        (r"(?m)^(\s*ssl_certificate_key)\s+\S+;", r"\g<1> %s;" % key),
        (r"proxy_pass http://127\.0\.0\.1:9200;", "proxy_pass http://127.0.0.1:%d;" % upstream),
    ]
    for pat, rep in subs:
        text, n = re.subn(pat, rep, text)
        assert n >= 1, "the nginx site no longer has %r" % pat
    for line in NGINX_SECURITY_LINES:
        assert line in text, line
    return text


# =========================================================================== 1. make run

class Demo:
    """contrib/run-demo.sh as `make run` starts it, its stdout read by a thread."""

    def __init__(self, demo_dir, mport, cport, home):
        env = clean_env(CONDRIX_DEMO_DIR=demo_dir, CONDRIX_MAESTRO_PORT=mport,
                        CONDRIX_CORE_PORT=cport, HOME=home)
        # Its own session and process group, like a shell job: interrupt(group=True) can
        # then do what Ctrl-C in a terminal does.
        self.proc = subprocess.Popen([DEMO_SCRIPT, h.BIN_DIR], env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        self.chunks = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in iter(self.proc.stdout.readline, b""):
            self.chunks.append(line.decode("utf-8", "replace"))

    def text(self):
        return "".join(self.chunks)

    def wait_ready(self):
        def ready():
            if self.proc.poll() is not None:
                pytest.fail("run-demo.sh exited (rc %s) before it was ready:\n%s"
                            % (self.proc.returncode, self.text()))
            return "Stop:" in self.text()
        h.wait_until(ready, h.t(30), 0.05, "run-demo.sh to print the URL and how to stop")
        out = self.text()
        info = {}
        for key, pat in (("url", r"Open:\s+(\S+)"), ("password", r"Password:\s+(\S+)"),
                         ("token", r"Core token:\s+(\S+)"), ("login", r"(\S*condrix login .*)")):
            m = re.search(pat, out)
            assert m, "run-demo.sh did not print %s:\n%s" % (key, out)
            info[key] = m.group(1)
        return info

    def children(self):
        """pid -> name of the servers the script started."""
        kids = {}
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % d) as f:
                    st = f.read()
            except OSError:
                continue
            name = st[st.index("(") + 1:st.rindex(")")]
            ppid = int(st[st.rindex(")") + 2:].split()[1])
            if ppid == self.proc.pid and name.startswith("condrix"):
                kids[int(d)] = name
        return kids

    def interrupt(self, group):
        """SIGINT to the script, or (group) to its whole process group as Ctrl-C in a
        terminal sends it; -> exit code (bounded)."""
        if group:
            os.killpg(self.proc.pid, signal.SIGINT)
        else:
            self.proc.send_signal(signal.SIGINT)
        try:
            rc = self.proc.wait(h.t(20))
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail("run-demo.sh did not exit within %.0f s of SIGINT:\n%s"
                        % (h.t(20), self.text()))
        self.reader.join(5)
        return rc

    def kill(self):
        if self.proc.poll() is None:  # (the servers run in sessions of their own)
            for pid in self.children():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.kill()
            self.proc.wait(5)


async def demo_cores(mport, password):
    """Sign in to the demo's Maestro as default-admin; -> (cores, pairing codes)."""
    ws = await websockets.connect("ws://127.0.0.1:%d/" % mport, open_timeout=h.t(5),
                                  close_timeout=h.t(2))
    c = h.Client(ws)
    try:
        expect_ok(await login(c, "default-admin", password))

        async def online():
            cores = expect_ok(await c.request("cores.list", namespace="maestro"))["cores"]
            return cores if cores and all(x["status"] == "online" for x in cores) else None
        deadline = time.monotonic() + h.t(10)
        cores = await online()
        while cores is None and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            cores = await online()
        if cores is None:
            cores = expect_ok(await c.request("cores.list", namespace="maestro"))["cores"]
        codes = expect_ok(await c.request("pairing.list", namespace="maestro"))["codes"]
        return cores, codes
    finally:
        await c.close()


async def core_info_direct(cport, token):
    ws = await websockets.connect("ws://127.0.0.1:%d/" % cport, open_timeout=h.t(5),
                                  close_timeout=h.t(2))
    c = h.Client(ws)
    try:
        expect_ok(await c.auth(token))
        return expect_ok(await c.request("info"))
    finally:
        await c.close()


def test_make_run_demo(tmp_path):
    """contrib/run-demo.sh twice on one directory: the first run pairs and is stopped by
    SIGINT to the script; the second reuses everything and is stopped by SIGINT to its
    whole process group, as Ctrl-C in a terminal does."""
    built(MAESTRO_BIN), built(h.CORE_BIN), built(CLI_BIN)
    tool("curl")
    demo_dir = str(tmp_path / "demo")
    home = tmp_path / "home"
    home.mkdir()
    runs = []
    for run in (1, 2):
        mport, cport = h.free_port(), h.free_port()
        while cport == mport:
            cport = h.free_port()
        demo = Demo(demo_dir, mport, cport, str(home))
        try:
            info = demo.wait_ready()
            out = demo.text()
            assert info["url"] == "http://127.0.0.1:%d/" % mport, out
            assert "default-admin" in out and "Ctrl-C" in out, out
            assert re.fullmatch(r"[0-9a-f]{64}", info["token"]), out
            assert "condrix login ws://127.0.0.1:%d/" % mport in info["login"], out
            assert "demo-secrets.txt" in out, "the output must say where the secrets are kept"
            kids = demo.children()
            assert sorted(kids.values()) == ["condrix-core", "condrix-maestro"], kids

            # What Maestro says: one Core, online; and the printed password works.
            cores, codes = asyncio.run(asyncio.wait_for(demo_cores(mport, info["password"]),
                                                        h.t(30)))
            assert len(cores) == 1, "run %d: Maestro lists %r" % (run, cores)
            assert cores[0]["status"] == "online", cores
            # The printed Core token works directly and the Core says it is linked.
            ci = asyncio.run(asyncio.wait_for(core_info_direct(cport, info["token"]), h.t(20)))
            assert ci["coreId"] == cores[0]["coreId"], (ci, cores)
            assert ci["maestro"]["connected"] is True and ci["maestro"]["paired"] is True, ci
            runs.append((info, cores[0], codes))
            if run == 1:
                assert "paired with Maestro just now" in out, out
                # A second demo on the same ports while this one runs refuses at once
                # (it would otherwise take the running servers' health checks as its own).
                r = subprocess.run([DEMO_SCRIPT, h.BIN_DIR], capture_output=True, text=True,
                                   timeout=h.t(20), stdin=subprocess.DEVNULL,
                                   env=clean_env(CONDRIX_DEMO_DIR=demo_dir, HOME=str(home),
                                                 CONDRIX_MAESTRO_PORT=mport,
                                                 CONDRIX_CORE_PORT=cport))
                assert r.returncode == 1 and "already in use" in r.stderr, (r.stdout, r.stderr)
                assert demo.proc.poll() is None and sorted(demo.children()) == sorted(kids)
            else:
                assert "no new pairing code" in out, out
        except BaseException:
            print(demo.text())
            demo.kill()
            raise
        rc = demo.interrupt(group=run == 2)
        out = demo.text()
        assert rc == 0, "run-demo.sh exited %d after SIGINT:\n%s" % (rc, out)
        for pid in kids:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)  # both servers gone (and reaped by the script)
        for p in (mport, cport):
            with pytest.raises(OSError):
                h.open_sock(p, timeout=1).close()
        for log in ("maestro.log", "core.log"):
            with open(os.path.join(demo_dir, log)) as f:
                text = f.read()
            no_sanitizer_report(text, log)
            assert "stopped" in text, "%s: no clean stop:\n%s" % (log, text[-2000:])

    (info1, core1, codes1), (info2, core2, codes2) = runs
    # Same secrets shown again, same Core, no second pairing code.
    assert info2["password"] == info1["password"]
    assert info2["token"] == info1["token"]
    assert core2["id"] == core1["id"] and core2["coreId"] == core1["coreId"]
    assert len(codes1) == 1 and len(codes2) == 1, (codes1, codes2)
    # Files: directories 0700, the secrets file 0600, no stray copies of the secrets.
    for d in ("", "maestro", "core"):
        mode = stat.S_IMODE(os.stat(os.path.join(demo_dir, d)).st_mode)
        assert mode == 0o700, "%s is %o" % (os.path.join(demo_dir, d), mode)
    sec = os.path.join(demo_dir, "demo-secrets.txt")
    assert stat.S_IMODE(os.stat(sec).st_mode) == 0o600
    with open(sec) as f:
        text = f.read()
    assert info1["password"] in text and info1["token"] in text
    for name in os.listdir(demo_dir):
        p = os.path.join(demo_dir, name)
        if os.path.isfile(p) and name != "demo-secrets.txt":
            with open(p, errors="replace") as f:
                body = f.read()
            assert info1["password"] not in body and info1["token"] not in body, \
                "%s holds a copy of a secret" % p


# =========================================================================== 2. topology

def test_e2e_nginx_tls_netns_topology(tmp_path):
    built(MAESTRO_BIN), built(h.CORE_BIN), built(CLI_BIN)
    nginx_bin = tool("nginx")
    tool("openssl")
    net = Net().setup()
    if net.mode == "loopback":
        msg = ("NOTE: not using network namespaces (%s): the e2e topology "
               "runs on loopback instead, with every assertion." % net.note)
    else:
        msg = ("e2e topology: Maestro and nginx in netns %s (%s), the Core in netns %s (%s), "
               "joined by a veth pair." % (net.ns["mx"], net.mx_addr, net.ns["core"],
                                          net.core_addr))
    print(msg)
    if net.mode == "loopback":
        warnings.warn(msg)  # shown in pytest's summary: the fallback is never silent
    procs = []

    async def run():
        try:
            await asyncio.wait_for(topology(net, tmp_path, nginx_bin, procs), h.t(50))
        finally:  # connections a failed step left open: no close handshakes at teardown
            for c in h._live_clients:
                c.ws.transport.abort()
            h._live_clients.clear()
    try:
        asyncio.run(run())
    finally:
        for p in reversed(procs):
            p.stop()
        net.teardown()
    problems = []
    for p in procs:
        if p.name.startswith(("maestro", "core")):
            no_sanitizer_report(p.stderr(), p.name)
            if p.proc.returncode != 0:
                problems.append("%s exited %s on SIGTERM:\n%s" % (p.name, p.proc.returncode,
                                                                   p.stderr()[-2000:]))
    assert not problems, "\n".join(problems)


AUTH_MAX = 2   # failed sign-ins per address before a block
CONN_MAX = 6   # new connections per address per minute


async def topology(net, tmp, nginx_bin, procs):
    logdir = tmp / "logs"
    logdir.mkdir()
    extra = ["IP:%s" % net.mx_addr] if net.mode == "netns" else []
    pki = make_pki(tmp / "pki", {
        "maestro": ["IP:127.0.0.1", "DNS:localhost"] + extra,
        "core": ["IP:127.0.0.1", "DNS:localhost"]
        + (["IP:%s" % net.core_addr] if net.mode == "netns" else []),
    })
    ca_ctx = ssl.create_default_context(cafile=pki["ca"])  # verifies name and chain

    # ---- Maestro, plain ws:// on the server host's loopback, trusting only nginx.
    mport = h.free_port()
    mhome = tmp / "maestro"
    mhome.mkdir(mode=0o700)
    menv = clean_env(HOME=str(tmp), CONDRIX_HOME=mhome, CONDRIX_LOG_LEVEL="debug",
                     CONDRIX_TRUSTED_PROXIES="127.0.0.1/32",
                     CONDRIX_RATE_AUTH_MAX=AUTH_MAX, CONDRIX_RATE_AUTH_WINDOW_SECONDS=300,
                     CONDRIX_RATE_BLOCK_SECONDS=300, CONDRIX_RATE_CONN_MAX=CONN_MAX,
                     CONDRIX_RATE_CONN_WINDOW_SECONDS=60)
    mx = Proc("maestro", [MAESTRO_BIN, "--host", "127.0.0.1", "--port", str(mport)], menv,
              str(logdir), net.prefix("mx"))
    procs.append(mx)

    def mx_ready():
        mx.check_alive()
        m = PASSWORD_RE.search(mx.stdout())
        if not m:
            return None
        try:
            st, body = http_get(net, "mx", "127.0.0.1", mport, "/healthz")
        except (OSError, AssertionError, ValueError):
            return None
        return m.group(1) if st == 200 and body.strip() == b"ok" else None
    password = h.wait_until(mx_ready, h.t(10), 0.05, "Maestro to start and print the password")
    if net.mode == "netns":  # started through `ip netns exec`, which execs in place
        assert os.readlink("/proc/%d/exe" % mx.proc.pid) == os.path.realpath(MAESTRO_BIN)

    # ---- nginx in front of it: TLS with the test CA's certificate, from the shipped site.
    nd = tmp / "nginx"
    nd.mkdir()
    nport, nport_http = h.free_port(), h.free_port()
    listen = ["127.0.0.1"] + ([net.mx_addr] if net.mode == "netns" else [])
    (nd / "site.conf").write_text(nginx_site(listen, nport_http, nport, mport, *pki["maestro"]))
    temp = "".join("    %s_temp_path %s;\n" % (k, nd / ("tmp-" + k))
                   for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (nd / "nginx.conf").write_text(
        "%spid %s;\nerror_log %s info;\nevents {}\nhttp {\n"
        "    log_format e2e '$remote_addr $status \"$request\"';\n"
        "    access_log %s e2e;\n%s    include %s;\n}\n"
        % ("user root;\n" if os.geteuid() == 0 else "", nd / "nginx.pid", nd / "error.log",
           nd / "access.log", temp, nd / "site.conf"))
    r = subprocess.run(net.prefix("mx") + [nginx_bin, "-t", "-q", "-p", str(nd), "-e",
                                           str(nd / "error.log"), "-c", str(nd / "nginx.conf")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, "nginx -t:\n%s%s" % (r.stdout, r.stderr)
    ngx = Proc("nginx", [nginx_bin, "-p", str(nd), "-e", str(nd / "error.log"), "-c",
                         str(nd / "nginx.conf"), "-g", "daemon off; master_process off;"],
               clean_env(), str(logdir), net.prefix("mx"))
    procs.append(ngx)

    def ngx_ready():
        if not ngx.alive():
            pytest.fail("nginx exited: %s\n%s" % (ngx.stderr(), (nd / "error.log").read_text()))
        try:
            return http_get(net, "mx", "127.0.0.1", nport, "/healthz", tls_ctx=ca_ctx)
        except (OSError, AssertionError, ValueError, ssl.SSLError):
            return None
    st, body = h.wait_until(ngx_ready, h.t(10), 0.05, "nginx to listen")
    assert st == 200 and body.strip() == b"ok", (st, body)
    if net.mode == "netns":  # and across the veth, as the Core will see it
        st, body = http_get(net, "core", net.mx_addr, nport, "/healthz", tls_ctx=ca_ctx)
        assert st == 200 and body.strip() == b"ok"

    # ---- an admin signs in through the proxy, verifying nginx's certificate.
    admin = await ws_connect(net, "mx", "127.0.0.1", nport, tls_ctx=ca_ctx, src="127.0.0.4")
    p = expect_ok(await login(admin, "default-admin", password))
    assert p["user"]["role"] == "admin"
    code = expect_ok(await admin.request("pairing.create", {}, namespace="maestro"))["code"]
    assert expect_ok(await admin.request("cores.list", namespace="maestro"))["cores"] == []

    # ---- the Core, on its own host, with its own certificate, dialing wss:// via nginx.
    cport = h.free_port()
    chome = tmp / "core"
    chome.mkdir(mode=0o700)
    murl = "wss://%s:%d/" % (net.mx_addr, nport)

    def core_env(with_ca):
        e = clean_env(HOME=str(tmp), CONDRIX_HOME=chome, CONDRIX_LOG_LEVEL="debug",
                      CONDRIX_MAESTRO_URL=murl, CONDRIX_MAESTRO_TOKEN=code,
                      CONDRIX_CORE_TLS_CERT=pki["core"][0], CONDRIX_CORE_TLS_KEY=pki["core"][1])
        if with_ca:
            e["CONDRIX_MAESTRO_CA"] = pki["ca"]
        return e
    core_argv = [h.CORE_BIN, "--host", net.core_addr, "--port", str(cport), "--name", "e2e-core"]

    def core_ready(core):
        def ready():
            core.check_alive()
            try:
                st, body = http_get(net, "mx", net.core_addr, cport, "/healthz", tls_ctx=ca_ctx)
            except (OSError, AssertionError, ValueError, ssl.SSLError):
                return False
            return st == 200 and body.strip() == b"ok"
        h.wait_until(ready, h.t(10), 0.05, "the Core to serve wss://%s:%d" % (net.core_addr, cport))

    # Without the test CA: certificate verification refuses nginx, nothing reaches Maestro.
    core = Proc("core-noca", core_argv, core_env(False), str(logdir), net.prefix("core"))
    procs.append(core)
    core_ready(core)
    token = h.wait_until(lambda: h.TOKEN_LINE_RE.search(core.stdout()), h.t(5), 0.02,
                         "the Core's default-admin token on stdout").group(1)
    h.wait_until(lambda: re.search(r"maestro: cannot reach", core.stderr()), h.t(10), 0.05,
                 "the Core to report that it cannot reach Maestro")
    await asyncio.sleep(h.t(1))
    err = core.stderr()
    assert re.search(r"maestro: cannot reach .*certificate verification failed: the certificate "
                     r"is not signed by a trusted CA \(set CONDRIX_MAESTRO_CA", err), \
        "the refusal should name the certificate check and the fix:\n%s" % err[-3000:]
    assert "maestro: connected" not in err and "paired" not in err, err[-3000:]
    assert expect_ok(await admin.request("cores.list", namespace="maestro"))["cores"] == []
    assert "online from" not in mx.stderr(), mx.stderr()[-3000:]
    assert core.stop() == 0

    # With CONDRIX_MAESTRO_CA: pairs through the proxy and stays linked.
    core = Proc("core", core_argv, core_env(True), str(logdir), net.prefix("core"))
    procs.append(core)
    core_ready(core)

    async def core_online():
        cs = expect_ok(await admin.request("cores.list", namespace="maestro"))["cores"]
        return [x for x in cs if x["status"] == "online"]
    deadline = time.monotonic() + h.t(10)
    online = await core_online()
    while not online and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        online = await core_online()
    assert len(online) == 1, "the Core did not come online:\n%s" % core.stderr()[-3000:]
    entry = online[0]
    assert entry["displayName"] == "e2e-core" and entry["pairedAt"], entry
    assert "paired; permanent token" in core.stderr(), core.stderr()[-3000:]
    # Maestro saw the Core at the address nginx forwarded (X-Forwarded-For
    # $remote_addr): in netns mode the Core's own veth address.
    h.wait_until(lambda: re.search(r"online from %s\b" % re.escape(net.core_addr), mx.stderr()),
                 h.t(5), 0.05, "Maestro to log the Core online from %s" % net.core_addr)

    # Relay through Maestro to the Core, and the Core's own wss:// with its own certificate.
    relayed = expect_ok(await admin.request("info", targetCoreId=entry["id"], timeout=h.t(10)))
    direct = await ws_connect(net, "mx", net.core_addr, cport, tls_ctx=ca_ctx)
    expect_ok(await direct.auth(token))
    info = expect_ok(await direct.request("info"))
    await direct.close()
    assert relayed["coreId"] == info["coreId"] == entry["coreId"], (relayed, info, entry)
    assert info["maestro"] == {"url": murl, "connected": True, "paired": True}, info
    r = subprocess.run(net.prefix("mx") + [CLI_BIN, "core", "info", "--url",
                       "wss://%s:%d/" % (net.core_addr, cport), "--ca", pki["ca"], "--json"],
                       env=clean_env(HOME=str(tmp), CONDRIX_CORE_TOKEN=token),
                       capture_output=True, text=True, timeout=h.t(15))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["coreId"] == info["coreId"]
    # The Core's TLS is verified too: a client without the test CA is refused.
    with pytest.raises(ssl.SSLError):
        http_get(net, "mx", net.core_addr, cport, "/healthz",
                 tls_ctx=ssl.create_default_context())

    # ---- the condrix CLI signs in through the proxy and sees the Core online.
    cli_home = tmp / "cli"
    cli_env = clean_env(HOME=str(tmp), CONDRIX_HOME=cli_home)
    proxy_url = "wss://127.0.0.1:%d/" % nport
    r = subprocess.run(net.prefix("mx") + [CLI_BIN, "login", proxy_url, "--username",
                       "default-admin", "--ca", pki["ca"], "--password-stdin", "--json"],
                       input=password + "\n", env=cli_env, capture_output=True, text=True,
                       timeout=h.t(15))
    assert r.returncode == 0, "condrix login through nginx: %s%s" % (r.stdout, r.stderr)
    r = subprocess.run(net.prefix("mx") + [CLI_BIN, "cores", "--json"], env=cli_env,
                       capture_output=True, text=True, timeout=h.t(15))
    assert r.returncode == 0, r.stderr
    cs = json.loads(r.stdout)["cores"]
    assert [(x["id"], x["status"]) for x in cs] == [(entry["id"], "online")], cs

    # ---- failed sign-ins are limited per forwarded address.
    await rate_limits(net, nport, mport, ca_ctx, password)
    await connection_limits(net, nport, mport, ca_ctx)

    # Everything still standing: the Core never lost its link.
    assert len(await core_online()) == 1
    assert "maestro: link closed" not in core.stderr(), core.stderr()[-3000:]
    await admin.close()
    for p in (mx, ngx, core):
        p.check_alive()


def unknown_user():
    return "nobody-" + secrets.token_hex(4)  # fresh each time: no per-username block


async def fail_until_limited(c, what):
    """Wrong passwords (each for a new unknown user, so only the address counts) until
    RATE_LIMITED; -> the number of failures answered INVALID_CREDENTIALS first."""
    for n in range(AUTH_MAX + 2):
        m = await login(c, unknown_user(), "wrong-password")
        if not m["success"] and h.err_code(m) == "RATE_LIMITED":
            assert m["error"].get("details", {}).get("retryAfter", 0) > 0, m
            return n
        expect_error(m, "INVALID_CREDENTIALS")
    pytest.fail("%s: no RATE_LIMITED after %d failures" % (what, AUTH_MAX + 2))


async def rate_limits(net, nport, mport, ca_ctx, password):
    """CONDRIX_RATE_AUTH_MAX failures from one forwarded address block that address
    only; headers a client forges are cleared by nginx, and ignored on a direct
    connection from a peer that is not a trusted proxy."""
    # Client A (127.0.0.2 as nginx sees it): blocked after AUTH_MAX failures...
    a = await ws_connect(net, "mx", "127.0.0.1", nport, tls_ctx=ca_ctx, src="127.0.0.2")
    assert await fail_until_limited(a, "client 127.0.0.2") == AUTH_MAX
    # ... even with the right password now.
    expect_error(await login(a, "default-admin", password), "RATE_LIMITED")

    # Client B (127.0.0.3) is not: its own failure is an ordinary one, and it signs in,
    # although it claims, in both headers Maestro reads, to be the blocked 127.0.0.2:
    # nginx replaced X-Forwarded-For and dropped CF-Connecting-IP.
    forged = {"X-Forwarded-For": "127.0.0.2", "CF-Connecting-IP": "127.0.0.2"}
    b = await ws_connect(net, "mx", "127.0.0.1", nport, tls_ctx=ca_ctx, src="127.0.0.3",
                         headers=forged)
    expect_error(await login(b, unknown_user(), "wrong-password"), "INVALID_CREDENTIALS")
    p = expect_ok(await login(b, "default-admin", password))
    sessions = expect_ok(await b.request("sessions.list", namespace="maestro"))["sessions"]
    assert [s["ip"] for s in sessions if s["current"]] == ["127.0.0.3"], sessions
    assert p["user"]["username"] == "default-admin"

    # A direct connection from 127.0.0.5 (not in CONDRIX_TRUSTED_PROXIES=127.0.0.1/32)
    # forging the blocked address: not believed (an ordinary failure, not RATE_LIMITED),
    # and its failures count against 127.0.0.5 itself, not the address it names.
    d = await ws_connect(net, "mx", "127.0.0.1", mport, src="127.0.0.5", headers=forged)
    expect_error(await login(d, unknown_user(), "wrong-password"), "INVALID_CREDENTIALS")
    await d.close()
    d = await ws_connect(net, "mx", "127.0.0.1", mport, src="127.0.0.5",
                         headers={"X-Forwarded-For": "127.0.0.3", "CF-Connecting-IP": "127.0.0.3"})
    assert await fail_until_limited(d, "direct client 127.0.0.5") == AUTH_MAX - 1
    await d.close()
    d = await ws_connect(net, "mx", "127.0.0.1", mport, src="127.0.0.5")
    expect_error(await login(d, "default-admin", password), "RATE_LIMITED")
    await d.close()
    # The same forged header from a trusted peer (127.0.0.1, as nginx is) is believed:
    # it is the trust list, not the header, that kept 127.0.0.5 from naming others.
    t = await ws_connect(net, "mx", "127.0.0.1", mport, src="127.0.0.1",
                         headers={"X-Forwarded-For": "127.0.0.2"})
    expect_error(await login(t, "default-admin", password), "RATE_LIMITED")
    await t.close()
    # 127.0.0.3, which the direct client named, was not charged.
    b2 = await ws_connect(net, "mx", "127.0.0.1", nport, tls_ctx=ca_ctx, src="127.0.0.3")
    expect_ok(await login(b2, "default-admin", password))
    for c in (a, b, b2):
        await c.close()


async def connection_limits(net, nport, mport, ca_ctx):
    """CONDRIX_RATE_CONN_MAX new connections per forwarded address: the next one is
    closed 1008; another address is unaffected; a forged header on a direct connection
    does not move a connection to another address's budget."""
    held = []
    for _ in range(CONN_MAX):
        held.append(await ws_connect(net, "mx", "127.0.0.1", nport, tls_ctx=ca_ctx,
                                     src="127.0.0.6"))
    over = await ws_connect(net, "mx", "127.0.0.1", nport, tls_ctx=ca_ctx, src="127.0.0.6")
    code, reason = await over.expect_close(h.t(5))
    assert code == 1008 and "rate limited" in reason, (code, reason)
    other = await ws_connect(net, "mx", "127.0.0.1", nport, tls_ctx=ca_ctx, src="127.0.0.7")
    expect_error(await login(other, unknown_user(), "pw-of-nobody"), "INVALID_CREDENTIALS")
    # Directly from 127.0.0.8 naming the exhausted 127.0.0.6: still served.
    d = await ws_connect(net, "mx", "127.0.0.1", mport, src="127.0.0.8",
                         headers={"X-Forwarded-For": "127.0.0.6", "CF-Connecting-IP": "127.0.0.6"})
    expect_error(await login(d, unknown_user(), "pw-of-nobody"), "INVALID_CREDENTIALS")
    for c in held + [other, d]:
        await c.close()
