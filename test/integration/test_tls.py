"""wss:// with CONDRIX_CORE_TLS_CERT / CONDRIX_CORE_TLS_KEY (PROTOCOL section 1)."""
import asyncio
import os
import signal
import socket
import ssl
import subprocess

import pytest
import websockets

import helpers as h
from helpers import RawWS, async_test, connect, connect_auth, expect_error, expect_ok


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    crt, key = str(d / "cert.pem"), str(d / "key.pem")
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-days", "1", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                        "-keyout", key, "-out", crt], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    os.chmod(key, 0o600)
    return crt, key


@pytest.fixture(scope="module")
def tls_core(module_factory, cert):
    return module_factory(tls=cert, env={"CONDRIX_LIMIT_UPGRADE_MS": "800", "CONDRIX_RATE_MSG_MAX": "0"})


@async_test
async def test_wss_auth_and_actions(tls_core):
    c = await connect(tls_core)
    p = expect_ok(await c.auth(tls_core.admin_token))
    assert p["tokenName"] == "env-token"
    info = expect_ok(await c.request("info"))
    assert info["devMode"] is False
    await c.close()


@async_test
async def test_wss_bad_token(tls_core):
    c = await connect(tls_core)
    expect_error(await c.auth(h.rand_token()), "INVALID_TOKEN")
    assert (await c.expect_close())[0] == 1008


@async_test
async def test_plain_ws_client_fails(tls_core):
    failed = False
    try:
        ws = await asyncio.wait_for(
            websockets.connect("ws://127.0.0.1:%d/" % tls_core.port, open_timeout=h.t(5),
                                             close_timeout=1), h.t(8))
    except Exception:
        failed = True
    else:
        await ws.close()
    assert failed, "a plain ws:// client completed the handshake on a TLS port"
    tls_core.assert_alive()


def test_plain_http_healthz_fails_on_tls_port(tls_core):
    try:
        data, closed = h.raw_http(tls_core.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", h.t(5))
    except (ConnectionResetError, BrokenPipeError):
        data = b""
    assert b" 200 " not in data.split(b"\r\n", 1)[0], data[:200]
    tls_core.assert_alive()


def test_healthz_over_tls(tls_core):
    status, _, body = h.http_get(tls_core.port, "/healthz", tls_ctx=tls_core.client_ssl)
    assert status == 200 and body.strip() == b"ok"


def test_tls_session_ends_with_close_notify(tls_core):
    # The server ends its TLS session with close_notify, so a strict client can tell a
    # complete answer from a cut one (a bare TCP close raises SSLEOFError here).
    ctx = ssl.create_default_context(cafile=tls_core.tls[0])
    ctx.options &= ~ssl.OP_IGNORE_UNEXPECTED_EOF  # Python's default forgives a missing one
    s = socket.create_connection(("127.0.0.1", tls_core.port), timeout=h.t(5))
    t = ctx.wrap_socket(s, server_hostname="127.0.0.1", suppress_ragged_eofs=False)
    try:
        t.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        data = b""
        for _ in range(100):
            chunk = t.recv(4096)
            if not chunk:
                break
            data += chunk
        assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"ok"), data
    finally:
        t.close()


def test_untrusting_client_rejects_cert(tls_core):
    ctx = ssl.create_default_context()  # system CAs only: self-signed must fail
    with pytest.raises(ssl.SSLError):
        s = h.open_sock(tls_core.port, tls_ctx=ctx)
        s.close()
    tls_core.assert_alive()


def test_tls_garbage_and_silence(tls_core):
    s = h.open_sock(tls_core.port)
    s.sendall(os.urandom(3000))
    data, closed = h.recv_all(s, h.t(5))
    s.close()
    assert closed
    # a client that never starts the handshake is dropped by the upgrade deadline
    s = h.open_sock(tls_core.port)
    data, closed = h.recv_all(s, h.t(5))
    s.close()
    assert closed, "silent TLS client not dropped"
    tls_core.assert_alive()


def test_tls_handshake_then_silence_dropped(tls_core):
    s = h.open_sock(tls_core.port, tls_ctx=tls_core.client_ssl)
    data, closed = h.recv_all(s, h.t(5))
    s.close()
    assert closed, "TLS client that sends no HTTP head not dropped"


def test_large_message_over_tls(tls_core):
    # a message spanning many TLS records is reassembled
    with RawWS(tls_core.port, tls_ctx=tls_core.client_ssl) as r:
        r.upgrade()
        env = h.envelope("auth", {"token": tls_core.admin_token, "clientId": "x" * 300000})
        r.send_json(env)
        m = r.recv_json()
        h.check_response(m, env["id"])
        assert m["success"] is True
        # and a burst of pipelined requests
        ids = []
        for i in range(50):
            e = h.envelope("health")
            ids.append(e["id"])
            r.send_json(e)
        got = set()
        while len(got) < 50:
            m = r.recv_json()
            got.add(m.get("correlationId"))
        assert got == set(ids)


@async_test
async def test_wss_graceful_shutdown(core_factory, cert):
    srv = core_factory(tls=cert)
    c = await connect_auth(srv)
    srv.send_signal(signal.SIGTERM)
    code, _ = await c.expect_close(h.t(5))
    assert code == 1001
    rc = srv.proc.wait(h.t(10))
    assert rc == 0


def refuses_to_start(srv, what):
    """Start srv and expect it to exit non-zero on its own within seconds."""
    srv.start(wait=False)
    try:
        rc = srv.proc.wait(h.t(5))
    except subprocess.TimeoutExpired:
        pytest.fail("server with %s kept running" % what)
    assert rc != 0
    srv.expected_dead = True


def test_missing_cert_file_refuses_to_start(core_factory, cert, tmp_path):
    srv = core_factory.create(tls=(str(tmp_path / "nope.pem"), cert[1]))
    refuses_to_start(srv, "a missing TLS certificate (serving plaintext?)")


def test_cert_without_key_refuses_to_start(core_factory, cert):
    srv = core_factory.create(env={"CONDRIX_CORE_TLS_CERT": cert[0]})
    refuses_to_start(srv, "a certificate but no key")


def test_key_of_another_cert_refuses_to_start_and_keeps_the_first_token(core_factory, cert, tmp_path):
    # A key that is not the certificate's: refused at start with a clear line, not at
    # every handshake; and the one-time default-admin token is not spent by that start.
    other = str(tmp_path / "other.key")
    r = subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-out", other], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    os.chmod(other, 0o600)
    srv = core_factory.create(tls=(cert[0], other))
    refuses_to_start(srv, "a mismatched TLS key")
    assert "do not fit together" in srv.stderr(), srv.stderr()
    assert not h.TOKEN_LINE_RE.search(srv.stdout()), "the first-start token was spent on a failed start"
    srv.tls = cert
    srv.start(expect_token=True)  # the first good start prints it


def test_slow_reader_over_tls(core_factory, cert):
    srv = core_factory(tls=cert, env=dict(h.small_quarantine_env(), CONDRIX_LIMIT_OUTQ_BYTES="65536",
                                       CONDRIX_RATE_MSG_MAX="0"))
    sent, dropped = h.check_slow_reader(srv)
    print("slow reader: sent %d bytes, dropped=%s" % (sent, dropped))
