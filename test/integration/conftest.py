"""Fixtures: start the real condrix-core on a free port with a fresh CONDRIX_HOME,
wait until GET /healthz answers, capture the printed default-admin token, and at
the end check the process did not crash, stops with exit code 0 on SIGTERM and
printed no sanitizer report."""
import os
import re
import signal
import ssl
import subprocess

import pytest

import helpers as h


class CoreServer(h.ServerProcess):
    """One condrix-core process (restartable on the same home)."""

    NAME = "condrix-core"

    def __init__(self, factory, home, dev=False, env=None, args=None, env_token=True,
                 tls=None, port_via_env=False, host_flag=True):
        self.factory = factory
        self.home = str(home)
        self.dev = dev
        self.extra_env = dict(env or {})
        self.extra_args = list(args or [])
        self.env_token = h.rand_token() if env_token is True else env_token
        self.tls = tls  # (cert, key) paths or None
        self.port_via_env = port_via_env
        self.host_flag = host_flag
        self.port = None
        self.proc = None
        self.printed_token = None
        self.runs = 0
        self.stdout_path = None
        self.stderr_path = None
        self.logs = []  # every stderr file of every run
        self.expected_dead = False
        self.client_ssl = None
        if tls and os.path.exists(tls[0]):
            self.client_ssl = ssl.create_default_context(cafile=tls[0])

    # -- environment -------------------------------------------------------
    def build_env(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONDRIX_")}
        env["HOME"] = str(self.factory.fake_home)
        env["CONDRIX_HOME"] = self.home
        env["CONDRIX_RATE_CONN_MAX"] = "0"
        env["CONDRIX_RATE_AUTH_MAX"] = "0"
        env["CONDRIX_LOG_LEVEL"] = "debug"
        # A zone far from UTC (POSIX form, needs no tzdata): a timestamp written in
        # local time but labelled Z shows up as 13:45 h off.
        env["TZ"] = "XST-13:45"
        if self.env_token:
            env["CONDRIX_CORE_TOKEN"] = self.env_token
        if self.tls:
            env["CONDRIX_CORE_TLS_CERT"], env["CONDRIX_CORE_TLS_KEY"] = self.tls
        if self.port_via_env:
            env["CONDRIX_CORE_HOST"] = "127.0.0.1"
            env["CONDRIX_CORE_PORT"] = str(self.port)
        env.update(self.extra_env)
        return {k: v for k, v in env.items() if v is not None}

    def build_args(self):
        args = [h.CORE_BIN]
        if not self.port_via_env:
            if self.host_flag:
                args += ["--host", "127.0.0.1"]
            args += ["--port", str(self.port)]
        if self.dev:
            args.append("--dev")
        return args + self.extra_args

    @property
    def admin_token(self):
        return self.env_token or self.printed_token

    @property
    def pid(self):
        return self.proc.pid

    # -- lifecycle ---------------------------------------------------------
    def start(self, expect_token=False, wait=True):
        """Start (or restart) and wait until ready. expect_token: wait for the
        64-hex default-admin line on stdout."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        for attempt in range(3):
            if self.port is None or attempt > 0:
                self.port = h.free_port()
            self.runs += 1
            base = os.path.join(self.factory.logdir, "core-%d-run%d" % (id(self) % 100000, self.runs))
            self.stdout_path, self.stderr_path = base + ".out", base + ".err"
            self.logs.append(self.stderr_path)
            self.expected_dead = False
            with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
                self.proc = subprocess.Popen(self.build_args(), env=self.build_env(), stdout=out,
                                             stderr=err, stdin=subprocess.DEVNULL, close_fds=True)
            if not wait:
                return self
            if self._wait_ready():
                break
            err = self.stderr()
            if re.search(r"in use|EADDRINUSE", err, re.I) and attempt < 2:
                continue
            pytest.fail("condrix-core exited during start (rc %s)\n--- stderr ---\n%s\n--- stdout ---\n%s"
                        % (self.proc.returncode, err[-4000:], self.stdout()[-2000:]))
        if expect_token:
            m = h.wait_until(lambda: h.TOKEN_LINE_RE.search(self.stdout()), h.t(5), 0.02,
                             "the default-admin token on stdout (is stdout flushed?)")
            self.printed_token = m.group(1)
        else:
            m = h.TOKEN_LINE_RE.search(self.stdout())
            if m:
                self.printed_token = m.group(1)
        return self

    def send_signal(self, sig):
        if sig in (signal.SIGTERM, signal.SIGINT, signal.SIGKILL):
            self.expected_dead = True
        self.proc.send_signal(sig)

    def kill9(self):
        self.assert_alive()
        self.expected_dead = True
        self.proc.kill()
        self.proc.wait(10)

    def restart(self, expect_token=False):
        rc = self.stop()
        assert rc == 0, "exit code %s on SIGTERM\n%s" % (rc, self.stderr()[-3000:])
        return self.start(expect_token=expect_token)


class Factory:
    def __init__(self, tmpdir):
        self.tmp = tmpdir
        self.logdir = os.path.join(str(tmpdir), "logs")
        os.makedirs(self.logdir, exist_ok=True)
        self.fake_home = os.path.join(str(tmpdir), "userhome")
        os.makedirs(self.fake_home, exist_ok=True)
        self.servers = []
        self.n = 0

    def new_home(self):
        self.n += 1
        p = os.path.join(str(self.tmp), "home%d" % self.n)
        os.makedirs(p, mode=0o700, exist_ok=True)
        return p

    def create(self, home=None, **kw):
        srv = CoreServer(self, home or self.new_home(), **kw)
        self.servers.append(srv)
        return srv

    def __call__(self, home=None, expect_token=False, **kw):
        """Create and start a server. kw: dev, env, args, env_token, tls, port_via_env."""
        return self.create(home, **kw).start(expect_token=expect_token)

    def finish(self):
        problems = []
        for s in self.servers:
            problems += s.finish()
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def core_factory(tmp_path):
    f = Factory(tmp_path)
    yield f
    f.finish()


@pytest.fixture(scope="module")
def module_factory(tmp_path_factory):
    f = Factory(tmp_path_factory.mktemp("mod"))
    yield f
    f.finish()


@pytest.fixture
def core(core_factory):
    """A production-mode server whose admin token is CONDRIX_CORE_TOKEN ("env-token")."""
    return core_factory()


@pytest.fixture(scope="module")
def shared_core(module_factory):
    """A production-mode server shared by a module's read-only tests."""
    return module_factory(env={"CONDRIX_RATE_MSG_MAX": "0"})


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for name in ("core_factory", "module_factory"):
            f = item.funcargs.get(name) if hasattr(item, "funcargs") else None
            if f is None:
                continue
            for s in f.servers:
                if s.stderr_path:
                    try:
                        rep.sections.append(("condrix-core stderr (port %s)" % s.port, s.all_stderr()[-4000:]))
                    except OSError:
                        pass
