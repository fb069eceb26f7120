"""First start, restart persistence, crash recovery, graceful shutdown, storage
permissions, configuration precedence and keep-alive."""
import asyncio
import os
import signal
import socket
import stat
import subprocess
import time

import pytest

import helpers as h
from helpers import OP_CLOSE, OP_PING, OP_TEXT, RawWS, async_test, connect, connect_auth, expect_error, expect_ok


# --------------------------------------------------------------------------- first start

@async_test
async def test_first_start_prints_default_admin_token(core_factory):
    srv = core_factory(env_token=None, expect_token=True)
    out = srv.stdout()
    assert "default-admin" in out, out
    assert len(h.TOKEN_LINE_RE.findall(out)) == 1, out
    c = await connect(srv)
    p = expect_ok(await c.auth(srv.printed_token))
    assert p["tokenName"] == "default-admin"
    assert set(p["scopes"]) == h.ALL_SCOPES
    toks = {t["name"]: t for t in expect_ok(await c.request("auth.tokens"))["tokens"]}
    assert "default-admin" in toks and toks["default-admin"]["prefix"] == srv.printed_token[:8]
    await c.close()
    assert srv.printed_token not in srv.stderr(), "the token was also written to the log"


@async_test
async def test_second_start_prints_no_token(core_factory):
    srv = core_factory(env_token=None, expect_token=True)
    first = srv.printed_token
    srv.restart()
    await asyncio.sleep(0.2)
    assert not h.TOKEN_LINE_RE.search(srv.stdout()), "a token was printed again:\n" + srv.stdout()
    c = await connect(srv)
    p = expect_ok(await c.auth(first))
    assert p["tokenName"] == "default-admin"
    await c.close()


@async_test
async def test_env_token_is_idempotent(core_factory):
    srv = core_factory()
    srv.restart()
    srv.restart()
    c = await connect_auth(srv)
    names = [t["name"] for t in expect_ok(await c.request("auth.tokens"))["tokens"]]
    assert names.count("env-token") == 1, names
    await c.close()


# --------------------------------------------------------------------------- persistence

@async_test
async def test_restart_keeps_tokens(core_factory):
    srv = core_factory()
    admin = await connect_auth(srv)
    keep = expect_ok(await admin.request("auth.generateToken", {"name": "keep", "scopes": ["read:files"]}))
    gone = expect_ok(await admin.request("auth.generateToken", {"name": "gone"}))
    expect_ok(await admin.request("auth.revokeToken", {"name": "gone"}))
    expect_ok(await admin.request("totp.setup", {"tokenName": "keep"}))
    await admin.close()
    printed_before = srv.stdout()
    srv.restart()
    assert not h.TOKEN_LINE_RE.search(srv.stdout()) or h.TOKEN_LINE_RE.search(printed_before), \
        "a default-admin token appeared on restart"
    c = await connect(srv)
    p = expect_ok(await c.auth(keep["token"]))
    assert p["tokenName"] == "keep" and p["scopes"] == ["read:files"]
    await c.close()
    c = await connect(srv)
    expect_error(await c.auth(gone["token"]), "INVALID_TOKEN")
    admin = await connect_auth(srv)
    st = expect_ok(await admin.request("totp.status", {"tokenName": "keep"}))
    assert st["configured"] is True and st["enabled"] is False
    await admin.close()


@async_test
async def test_sigkill_then_restart(core_factory):
    srv = core_factory()
    admin = await connect_auth(srv)
    made = []
    for i in range(5):
        made.append(expect_ok(await admin.request("auth.generateToken", {"name": "k%d" % i})))
    srv.kill9()
    srv.start()
    for g in made:
        c = await connect(srv)
        expect_ok(await c.auth(g["token"]))
        await c.close()
    c = await connect_auth(srv)
    expect_ok(await c.request("auth.tokens"))
    await c.close()


@async_test
async def test_sigkill_during_writes_keeps_acknowledged_tokens(core_factory):
    srv = core_factory(env={"CONDRIX_RATE_MSG_MAX": "0"})
    admin = await connect_auth(srv)
    envs = [h.envelope("auth.generateToken", {"name": "w%03d" % i}) for i in range(200)]
    for e in envs:
        await admin.send_env(e)
    acked = []
    while len(acked) < 30:
        m = await admin.recv_json()
        if m.get("type") == "response" and m.get("success"):
            acked.append(m["payload"])
    srv.kill9()
    srv.start()
    assert acked
    for g in acked:
        c = await connect(srv)
        p = expect_ok(await c.auth(g["token"]))
        assert p["tokenName"] == g["name"]
        await c.close()


# --------------------------------------------------------------------------- shutdown

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
@async_test
async def test_graceful_shutdown(core_factory, sig):
    srv = core_factory()
    authed = await connect_auth(srv)
    pending = await connect(srv)  # upgraded, not yet authenticated
    t0 = time.monotonic()
    srv.send_signal(sig)
    for c in (authed, pending):
        code, _ = await c.expect_close(h.t(5))
        assert code == 1001
    rc = await asyncio.get_running_loop().run_in_executor(None, srv.proc.wait, h.t(10))
    assert rc == 0
    assert time.monotonic() - t0 < h.t(5)


def test_shutdown_with_idle_tcp_and_half_frames(core_factory):
    srv = core_factory()
    idle = h.open_sock(srv.port)
    half = RawWS(srv.port)
    half.upgrade()
    half.send_raw(h.encode_frame(OP_TEXT, b'{"id":"x","type":"request"}')[:5])
    rc = srv.stop()
    assert rc == 0
    idle.close()
    half.close()


# --------------------------------------------------------------------------- storage

def test_home_and_db_permissions(core_factory, tmp_path):
    os.makedirs(tmp_path / "fresh")
    home = tmp_path / "fresh" / "condrix-home"
    srv = core_factory(home=str(home))
    st = os.stat(home)
    assert stat.S_IMODE(st.st_mode) == 0o700, oct(st.st_mode)
    db = home / "core.db"
    assert db.exists(), os.listdir(home)
    for f in os.listdir(home):
        if f.startswith("core.db"):
            mode = stat.S_IMODE(os.stat(home / f).st_mode)
            assert mode == 0o600, "%s has mode %o" % (f, mode)
    srv.restart()
    assert stat.S_IMODE(os.stat(db).st_mode) == 0o600


def test_data_dir_flag_overrides_env(core_factory, tmp_path):
    a, b = tmp_path / "env-home", tmp_path / "flag-home"
    os.makedirs(a, mode=0o700)
    srv = core_factory(home=str(a), args=["--data-dir", str(b)])
    assert (b / "core.db").exists()
    assert not (a / "core.db").exists()
    srv.assert_alive()


# --------------------------------------------------------------------------- configuration

def test_port_from_env(core_factory):
    srv = core_factory.create(port_via_env=True)
    srv.port = h.free_port()
    srv.start()
    status, _, body = h.http_get(srv.port, "/healthz")
    assert status == 200


def test_port_flag_overrides_env(core_factory):
    env_port = h.free_port()
    srv = core_factory(env={"CONDRIX_CORE_PORT": str(env_port)})
    assert srv.port != env_port
    status, _, _ = h.http_get(srv.port, "/healthz")
    assert status == 200
    with pytest.raises(OSError):
        h.http_get(env_port, "/healthz", timeout=1)


def test_port_in_use_exits_nonzero(core_factory):
    first = core_factory()
    second = core_factory.create()
    second.port = first.port
    p = subprocess.Popen(second.build_args(), env=second.build_env(), stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    try:
        _, err = p.communicate(timeout=h.t(5))
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        pytest.fail("second server on a busy port did not exit")
    assert p.returncode != 0
    assert b"Sanitizer" not in err
    first.assert_alive()


@async_test
async def test_many_connections(core_factory):
    srv = core_factory(env={"CONDRIX_RATE_MSG_MAX": "0"})
    clients = await asyncio.gather(*[connect_auth(srv) for _ in range(150)])
    p = expect_ok(await clients[0].request("health"))
    assert p["connections"] >= 150
    await asyncio.gather(*[c.close() for c in clients])
    # abrupt disconnects in every state
    for i in range(30):
        r = RawWS(srv.port)
        if i % 3:
            r.upgrade()
        if i % 3 == 2:
            r.send_raw(h.encode_frame(OP_TEXT, b'{"id":"partial"}')[:4])
        r.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        r.close()  # RST
    c = await connect_auth(srv)
    expect_ok(await c.request("health"))
    await c.close()


# --------------------------------------------------------------------------- keep-alive

@async_test
async def test_keepalive_answered_pings_keep_connection(core_factory):
    srv = core_factory(env={"CONDRIX_LIMIT_PING_MS": "150", "CONDRIX_LIMIT_PONG_MS": "500"})
    c = await connect_auth(srv)
    await asyncio.sleep(1.1)
    assert await c.is_open()
    await c.close()


def test_keepalive_silent_peer_dropped(core_factory):
    srv = core_factory(env={"CONDRIX_LIMIT_PING_MS": "200", "CONDRIX_LIMIT_PONG_MS": "700"})
    r = RawWS(srv.port)
    r.upgrade()
    assert r.request("auth", {"token": srv.admin_token})["success"]
    pings = 0
    t0 = time.monotonic()
    closed = False
    while time.monotonic() - t0 < h.t(5):
        try:
            fin, op, payload = r.recv_frame(h.t(5))
        except h.Closed:
            closed = True
            break
        except TimeoutError:
            break
        if op == OP_PING:
            pings += 1  # never answered
        elif op == OP_CLOSE:
            closed = True
            break
    elapsed = time.monotonic() - t0
    r.close()
    assert pings >= 1, "server sent no ping"
    assert closed, "peer that never answers pings was not dropped"
    assert elapsed >= 0.5, "dropped after %.2fs, before the pong deadline" % elapsed


# --------------------------------------------------------------------------- secrets at rest

@async_test
async def test_database_holds_no_token_values(core_factory):
    srv = core_factory(env_token=None, expect_token=True)
    admin = await connect_auth(srv)
    g = expect_ok(await admin.request("auth.generateToken", {"name": "at-rest"}))
    r = expect_ok(await admin.request("auth.rotateToken", {"name": "at-rest"}))
    await admin.close()
    assert srv.stop() == 0
    blob = b""
    for f in os.listdir(srv.home):
        path = os.path.join(srv.home, f)
        if os.path.isfile(path):
            with open(path, "rb") as fh:
                blob += fh.read()
    for tok in (srv.printed_token, g["token"], r["token"]):
        assert tok.encode() not in blob, "a token value is stored in plain text under CONDRIX_HOME"
        assert bytes.fromhex(tok) not in blob, "a raw token is stored under CONDRIX_HOME"
    srv.start()


@async_test
async def test_graceful_shutdown_many_clients(core_factory):
    srv = core_factory(env={"CONDRIX_RATE_MSG_MAX": "0"})
    clients = await asyncio.gather(*[connect_auth(srv) for _ in range(60)])
    # some with requests in flight
    for c in clients[:20]:
        await c.send_env(h.envelope("auth.tokens"))
    t0 = time.monotonic()
    srv.send_signal(signal.SIGTERM)
    codes = await asyncio.gather(*[c.expect_close(h.t(5)) for c in clients])
    assert all(code == 1001 for code, _ in codes), sorted(set(c for c, _ in codes))
    rc = await asyncio.get_running_loop().run_in_executor(None, srv.proc.wait, h.t(10))
    assert rc == 0
    assert time.monotonic() - t0 < h.t(5)


def test_production_start_after_dev_start_prints_token(core_factory):
    # a home first used in dev mode must still give the operator a way in
    srv = core_factory(dev=True, env_token=None)
    assert srv.stop() == 0
    assert not h.TOKEN_LINE_RE.search(srv.stdout())
    srv.dev = False
    srv.start(expect_token=True)
    assert "default-admin" in srv.stdout()


@async_test
async def test_log_level(core_factory):
    counts = {}
    for level in ("debug", "error"):
        srv = core_factory(env={"CONDRIX_LOG_LEVEL": level})
        c = await connect_auth(srv)
        expect_ok(await c.request("auth.generateToken", {"name": "lv"}))
        await c.close()
        bad = await connect(srv)
        await bad.auth(h.rand_token())
        await asyncio.sleep(0.1)
        counts[level] = len([ln for ln in srv.stderr().splitlines() if ln.strip()])
    assert counts["debug"] > counts["error"], counts
