"""Helpers and fixtures for the condrix-maestro black-box integration tests
(test_maestro_*.py). Contract: /work/shared/design/PROTOCOL.md sections 2, 5, 6, 7,
docs/PROTOCOL.md section 8, and the Maestro notes (first-start password on stdout,
payload shapes, close behaviours).

Everything runs against real processes on 127.0.0.1: condrix-maestro (MaestroServer),
condrix-core (conftest.CoreServer through the core_factory fixture) and the admin verbs
`condrix-maestro user|pair|cores|audit`. Test modules import the fixtures they use:

    from maestro_helpers import mx_factory, mx, ...  # noqa: F401 (pytest fixtures)
"""
import asyncio
import json
import os
import re
import sqlite3
import subprocess
import time

import pytest
import websockets

import helpers as h

MX_BIN = os.path.join(h.BIN_DIR, "condrix-maestro")
PASSWORD_RE = re.compile(r"default-admin.*\n.*\n(\S{20})\n")
HEX64 = re.compile(r"^[0-9a-f]{64}$")
PAIRING_CODE_RE = re.compile(r"^[A-HJ-NP-Za-km-z2-9]{6}$")  # no 0 O o 1 l I

# Defaults for every Maestro the suite starts: generous limits, quick logs.
BASE_ENV = {
    "CONDRIX_RATE_CONN_MAX": "0",
    "CONDRIX_RATE_AUTH_MAX": "0",
    "CONDRIX_RATE_MSG_MAX": "0",
    "CONDRIX_LOG_LEVEL": "debug",
}


class MaestroServer(h.ServerProcess):
    """One condrix-maestro process, restartable on the same home and port."""

    NAME = "condrix-maestro"

    def __init__(self, factory, home, env=None, args=None):
        self.factory = factory
        self.home = str(home)
        self.extra_env = dict(env or {})
        self.extra_args = list(args or [])
        self.port = None
        self.proc = None
        self.runs = 0
        self.stdout_path = self.stderr_path = None
        self.logs = []
        self.outs = []
        self.expected_dead = False
        self.password = None  # default-admin's first-start password

    @property
    def url(self):
        return "ws://127.0.0.1:%d/" % self.port

    def build_env(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONDRIX_")}
        env["HOME"] = str(self.factory.fake_home)
        env["CONDRIX_HOME"] = self.home
        env.update(BASE_ENV)
        env.update(self.extra_env)
        return {k: v for k, v in env.items() if v is not None}

    def start(self, wait=True):
        assert self.proc is None or self.proc.poll() is not None, "already running"
        for attempt in range(3):
            if self.port is None or (attempt > 0 and self.runs == 1):
                self.port = h.free_port()
            elif attempt > 0:
                time.sleep(0.2)  # a restart keeps its port: let the old socket go
            self.runs += 1
            base = os.path.join(self.factory.logdir, "maestro-%d-run%d" % (id(self) % 100000, self.runs))
            self.stdout_path, self.stderr_path = base + ".out", base + ".err"
            self.logs.append(self.stderr_path)
            self.outs.append(self.stdout_path)
            self.expected_dead = False
            args = [MX_BIN, "--host", "127.0.0.1", "--port", str(self.port)] + self.extra_args
            with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
                self.proc = subprocess.Popen(args, env=self.build_env(), stdout=out, stderr=err,
                                             stdin=subprocess.DEVNULL, close_fds=True)
            if not wait:
                return self
            if self._wait_ready():
                break
            if re.search(r"in use|EADDRINUSE", self.stderr(), re.I) and attempt < 2:
                continue
            pytest.fail("condrix-maestro exited during start (rc %s)\n%s"
                        % (self.proc.returncode, self.stderr()[-4000:]))
        m = PASSWORD_RE.search(self.stdout())
        if m:
            self.password = m.group(1)
        return self

    def restart(self):
        rc = self.stop()
        assert rc == 0, "exit code %s on SIGTERM\n%s" % (rc, self.stderr()[-3000:])
        return self.start()

    # -- the admin verbs on the same home ---------------------------------
    def cli(self, *args, stdin=None, expect_rc=0, json_out=True):
        """Run `condrix-maestro --data-dir HOME ARGS... [--json]`. -> parsed JSON (json_out)
        or the CompletedProcess."""
        argv = [MX_BIN, "--data-dir", self.home] + list(args) + (["--json"] if json_out else [])
        r = subprocess.run(argv, env=self.build_env(), input=stdin, capture_output=True, text=True,
                           timeout=h.t(20))
        if expect_rc is not None:
            assert r.returncode == expect_rc, "%s -> rc %d (want %d)\nstdout: %s\nstderr: %s" % (
                " ".join(args), r.returncode, expect_rc, r.stdout, r.stderr)
        if json_out and r.stdout.strip():
            lines = r.stdout.strip().splitlines()
            assert len(lines) == 1, "--json printed more than one line: %r" % r.stdout
            return json.loads(lines[0])
        return r

    def db(self):
        """A connection to maestro.db (the server keeps running; WAL allows it)."""
        c = sqlite3.connect(os.path.join(self.home, "maestro.db"), timeout=h.t(5))
        c.row_factory = sqlite3.Row
        return c


class MaestroFactory:
    def __init__(self, tmpdir):
        self.tmp = str(tmpdir)
        self.logdir = os.path.join(self.tmp, "mxlogs")
        os.makedirs(self.logdir, exist_ok=True)
        self.fake_home = os.path.join(self.tmp, "mxuserhome")
        os.makedirs(self.fake_home, exist_ok=True)
        self.servers = []
        self.n = 0

    def new_home(self):
        self.n += 1
        p = os.path.join(self.tmp, "mxhome%d" % self.n)
        os.makedirs(p, mode=0o700, exist_ok=True)
        return p

    def __call__(self, env=None, args=None, home=None, start=True):
        srv = MaestroServer(self, home or self.new_home(), env=env, args=args)
        self.servers.append(srv)
        if start:
            srv.start()
            assert srv.password, "no first-start password on stdout:\n%r" % srv.stdout()
        return srv

    def finish(self):
        problems = []
        for s in self.servers:
            problems += s.finish()
        return problems


@pytest.fixture
def mx_factory(tmp_path, core_factory):
    """Maestros for one test. Depends on core_factory so that Cores (torn down first,
    created later) stop before their Maestro: no reconnect noise at teardown."""
    f = MaestroFactory(tmp_path)
    yield f
    problems = []
    for c in core_factory.servers:  # stop Cores before their Maestro goes
        if c.alive():
            rc = c.stop()
            if rc != 0:
                problems.append("condrix-core (port %s): exit code %s on SIGTERM\n%s"
                                % (c.port, rc, c.stderr()[-2000:]))
    problems += f.finish()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def mx(mx_factory):
    """A Maestro with default settings; .password is default-admin's password."""
    return mx_factory()


# --------------------------------------------------------------------------- clients

class MxClient(h.Client):
    """helpers.Client speaking namespace maestro by default."""

    async def mx(self, action, payload=None, timeout=None, **extra):
        return await self.request(action, payload, namespace="maestro", timeout=timeout, **extra)

    async def login(self, username, password, totp=None, timeout=None):
        p = {"username": username, "password": password}
        if totp is not None:
            p["totpCode"] = totp
        m = await self.mx("login", p, timeout=timeout)
        assert isinstance(m.get("payload"), dict), "login answer without payload: %r" % m
        if m["success"]:
            self.session = m["payload"]
        return m

    async def relay(self, target, action, payload=None, namespace="core", timeout=None):
        return await self.request(action, payload, namespace=namespace, timeout=timeout,
                                  targetCoreId=target)

    async def wait_event(self, action, pred=None, timeout=None):
        """The next (or an already received) event maestro/<action> matching pred."""
        deadline = time.monotonic() + (timeout or h.t(5))
        while True:
            for i, e in enumerate(self.events):
                if e.get("action") == action and (pred is None or pred(e)):
                    return self.events.pop(i)
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no event %s within timeout; got %r" % (action, self.events))
            try:
                m = await self.recv_json(left)
            except asyncio.TimeoutError:
                continue
            if m.get("type") == "event":
                self.events.append(m)
            else:
                self.stray.append(m)

    async def no_event(self, action, pred=None, wait=0.3):
        """Assert no event maestro/<action> (matching pred) arrives within wait seconds."""
        deadline = time.monotonic() + wait
        while True:
            for e in self.events:
                assert not (e.get("action") == action and (pred is None or pred(e))), \
                    "unexpected event %r" % e
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                m = await self.recv_json(left)
            except asyncio.TimeoutError:
                return
            (self.events if m.get("type") == "event" else self.stray).append(m)

    async def is_open_mx(self):
        """Still open and answered (any answer) a maestro request?"""
        try:
            await self.mx("auth.totp.status", timeout=h.t(3))
            return True
        except AssertionError:
            return False


async def mx_connect(srv, headers=None, **kw):
    ws = await websockets.connect(srv.url, extra_headers=headers, open_timeout=h.t(5),
                                  close_timeout=h.t(2), max_size=64 << 20, max_queue=None, **kw)
    return MxClient(ws)


async def mx_login(srv, username="default-admin", password=None, headers=None, totp=None):
    c = await mx_connect(srv, headers=headers)
    m = await c.login(username, srv.password if password is None else password, totp=totp)
    assert m["success"], "login of %s failed: %r" % (username, m.get("error"))
    p = m["payload"]
    assert p["authenticated"] is True and HEX64.match(p["sessionToken"]), p
    return c


async def make_user(admin, username, password=None, role="user"):
    """users.create via an admin client. -> (user dict, password)."""
    payload = {"username": username, "role": role}
    if password is not None:
        payload["password"] = password
    p = h.expect_ok(await admin.mx("users.create", payload))
    return p["user"], password if password is not None else p["password"]


async def new_code(admin, max_uses=None, ttl=None):
    payload = {}
    if max_uses is not None:
        payload["maxUses"] = max_uses
    if ttl is not None:
        payload["ttlSeconds"] = ttl
    p = h.expect_ok(await admin.mx("pairing.create", payload))
    assert PAIRING_CODE_RE.match(p["code"]), p
    return p


async def cores_by_core_id(client):
    p = h.expect_ok(await client.mx("cores.list"))
    return {c["coreId"]: c for c in p["cores"]}


async def wait_core_status(client, core_id, status, timeout=None, what=None):
    """Poll cores.list until the Core with this coreId has status (None: gone)."""
    deadline = time.monotonic() + (timeout or h.t(10))
    last = None
    while True:
        cores = await cores_by_core_id(client)
        last = cores.get(core_id)
        if (status is None and last is None) or (last is not None and last["status"] == status):
            return last
        if time.monotonic() > deadline:
            raise AssertionError("Core %s did not become %s (%s); last seen %r"
                                 % (core_id, status, what or "", last))
        await asyncio.sleep(0.05)


# --------------------------------------------------------------------------- raw Cores

class RawCore(MxClient):
    """A Python stand-in for a Core: presents core/auth itself, so a test controls every
    byte (acks, wrong prefixes, answers to pushes and relays)."""

    async def core_auth(self, core_id, token, display_name=None, version="0.1.0", timeout=None):
        payload = {"coreId": core_id, "displayName": display_name or core_id, "version": version,
                   "accessToken": token}
        return await self.request("auth", payload, namespace="core", timeout=timeout)

    async def ack(self, token):
        return await self.mx("token.ack", {"prefix": token[:8]})

    async def next_request(self, timeout=None):
        """The next request Maestro sends this Core (push or relay)."""
        deadline = time.monotonic() + (timeout or h.t(5))
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("Maestro sent this Core no request")
            try:
                m = await self.recv_json(left)
            except asyncio.TimeoutError:
                continue
            if m.get("type") == "request":
                return m
            self.stray.append(m)

    async def answer(self, req, payload=None, success=True, error=None):
        env = h.envelope(req["action"], payload, req["namespace"], type_="response")
        env["correlationId"] = req["id"]
        env["success"] = success
        if error:
            env["error"] = error
        await self.send_env(env)


async def raw_core(srv, core_id, token, headers=None, expect_ok_=True):
    """Connect a RawCore and authenticate. -> (RawCore, response)."""
    ws = await websockets.connect(srv.url, extra_headers=headers, open_timeout=h.t(5),
                                  close_timeout=h.t(2), max_queue=None)
    rc = RawCore(ws)
    m = await rc.core_auth(core_id, token)
    if expect_ok_:
        assert m["success"], "core/auth refused: %r" % (m.get("error"),)
    return rc, m


async def raw_pair(srv, core_id, code):
    """Pair a RawCore with a code, ack. -> (RawCore, permanentToken, Maestro id of the Core)."""
    rc, m = await raw_core(srv, core_id, code)
    p = m["payload"]
    assert HEX64.match(p.get("permanentToken") or ""), p
    a = h.expect_ok(await rc.ack(p["permanentToken"]))
    assert a.get("acknowledged") is True, a
    return rc, p["permanentToken"], p["id"]


# --------------------------------------------------------------------------- real Cores

def start_core(core_factory, mx_srv, token, name=None, env=None, wait=True):
    """A condrix-core that dials mx_srv with CONDRIX_MAESTRO_TOKEN=token (a pairing code,
    or None to rely on the stored token)."""
    e = {"CONDRIX_MAESTRO_URL": mx_srv.url,
         "CONDRIX_MAESTRO_TOKEN": token,
         "CONDRIX_MAESTRO_CREDENTIAL_RETRY_MS": "2000",
         "CONDRIX_LOG_LEVEL": "debug"}
    if name:
        e["CONDRIX_CORE_NAME"] = name
    e.update(env or {})
    srv = core_factory.create(env=e)
    if wait:
        srv.start()
    else:
        srv.start(wait=False)
    return srv


async def core_info(core):
    c = await h.connect_auth(core)
    p = h.expect_ok(await c.request("info"))
    await c.close()
    return p


def core_db_token(core):
    """The Core's stored maestro.token (or None), read from its core.db."""
    c = sqlite3.connect(os.path.join(core.home, "core.db"), timeout=h.t(5))
    try:
        row = c.execute("SELECT value FROM settings WHERE key = 'maestro.token'").fetchone()
    finally:
        c.close()
    return row[0] if row else None


async def wait_core_linked(core, connected=True, timeout=None):
    """Poll the Core's own core/info until maestro.connected == connected."""
    deadline = time.monotonic() + (timeout or h.t(10))
    c = await h.connect_auth(core)
    try:
        while True:
            p = h.expect_ok(await c.request("info"))
            if p["maestro"]["connected"] is connected:
                return p
            if time.monotonic() > deadline:
                raise AssertionError("core/info maestro.connected stayed %r: %r\n%s"
                                     % (p["maestro"]["connected"], p, core.stderr()[-2000:]))
            await asyncio.sleep(0.05)
    finally:
        await c.close()


def audit_rows(mx_srv, limit=200):
    return mx_srv.cli("audit", "--limit", str(limit))["audit"]


def pairing_uses(mx_srv, pairing_id):
    with mx_srv.db() as c:
        row = c.execute("SELECT uses FROM pairing_codes WHERE id = ?", (pairing_id,)).fetchone()
    return row[0] if row else None


def latency_bound(ms):
    """A latency bound in seconds, scaled for sanitizer builds."""
    return h.t(ms / 1000.0)


# --------------------------------------------------------------------------- steady client (own process)

def steady_client_cmd(srv, token, period_s=0.02):
    """argv of a separate Python process that signs in with token, sends maestro/cores.list
    every period_s until its stdin closes, then prints the round trips (seconds) as JSON.
    Its own process, so the test's other clients do not share its interpreter lock."""
    import sys
    return [sys.executable, os.path.abspath(__file__), "steady", str(srv.port), token, str(period_s)]


def _steady_main(port, token, period_s):
    import sys

    async def run():
        ws = await websockets.connect("ws://127.0.0.1:%d/" % port, open_timeout=h.t(5))
        c = MxClient(ws)
        m = await c.mx("auth", {"sessionToken": token})
        if not m["success"]:
            print(json.dumps({"error": m}), flush=True)
            return
        print(json.dumps({"ready": True}), flush=True)
        loop = asyncio.get_running_loop()
        eof = loop.run_in_executor(None, sys.stdin.read)
        lat, errors = [], []
        while not eof.done():
            t0 = time.monotonic()
            m = await c.mx("cores.list", timeout=h.t(5))
            lat.append(time.monotonic() - t0)
            if not m["success"]:
                errors.append(m)
            await asyncio.sleep(period_s)
        await c.close()
        print(json.dumps({"latencies": lat, "errors": errors}), flush=True)

    asyncio.run(asyncio.wait_for(run(), h.t(120)))


if __name__ == "__main__":
    import sys
    if len(sys.argv) == 5 and sys.argv[1] == "steady":
        _steady_main(int(sys.argv[2]), sys.argv[3], float(sys.argv[4]))
