"""Helpers for the condrix-core black-box integration suite.

Everything here talks to a real server process over 127.0.0.1: plain HTTP over raw
sockets, a hand-rolled synchronous WebSocket client (for malformed frames and slow
readers) and an asyncio client built on python3-websockets (for everything else).
The contract is docs/PROTOCOL.md sections 1-4 and 7.
"""
import asyncio
import base64
import datetime as dt
import functools
import hashlib
import itertools
import json
import os
import re
import secrets
import select
import signal
import socket
import ssl
import struct
import subprocess
import time
import uuid

import pytest
import websockets
import websockets.exceptions

BIN_DIR = os.environ.get("CONDRIX_BIN_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", "..", "build", "bin"))
CORE_BIN = os.path.join(BIN_DIR, "condrix-core")


def _detect_scale():
    env = os.environ.get("CONDRIX_TEST_TIMEOUT_SCALE")
    if env:
        return float(env)
    try:
        with open(CORE_BIN, "rb") as f:
            data = f.read()
        if b"AddressSanitizer" in data or b"__asan_init" in data:
            return 3.0
    except OSError:
        pass
    return 1.0


# Multiplies every timeout: sanitizer builds are roughly three times slower.
SCALE = _detect_scale()

ALL_SCOPES = {"read:files", "write:files", "exec:terminal", "admin:workspace",
              "admin:project", "admin:core", "chat:agent", "chat:maestro"}
TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
TOKEN_RE = re.compile(r"^[0-9a-f]{64}$")
TOKEN_LINE_RE = re.compile(r"^([0-9a-f]{64})$", re.M)
BASE32_RE = re.compile(r"^[A-Z2-7]+=*$")
RFC_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

_ids = itertools.count(1)


def t(seconds):
    """A timeout scaled for slow (sanitizer) builds."""
    return seconds * SCALE


def new_id(prefix="req"):
    return "%s-%d-%s" % (prefix, next(_ids), secrets.token_hex(3))


def rand_token():
    return secrets.token_hex(32)


def is_uuid(s):
    try:
        uuid.UUID(s)
    except (ValueError, TypeError, AttributeError):
        return False
    return isinstance(s, str) and len(s) == 36


def parse_ts(s):
    """Parse an ISO 8601 UTC timestamp (with or without millis) to an aware datetime."""
    assert isinstance(s, str), "timestamp is not a string: %r" % (s,)
    s2 = s[:-1] + "+00:00" if s.endswith("Z") else s
    return dt.datetime.fromisoformat(s2)


def iso_in(seconds):
    """ISO 8601 UTC with millis, `seconds` from now."""
    d = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=seconds)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (d.microsecond // 1000)


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_until(pred, timeout, interval=0.02, what="condition"):
    """Poll pred() until it is truthy (bounded); return its value or raise."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)


# --------------------------------------------------------------------------- TOTP

def totp_code(secret, when=None):
    """The 6-digit TOTP code for the step containing unix time `when`, computed by
    oathtool (an independent implementation)."""
    when = int(time.time() if when is None else when)
    out = subprocess.run(["oathtool", "--totp", "-b", "-N", "@%d" % when, secret],
                         capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, "oathtool failed: %s" % out.stderr
    code = out.stdout.strip()
    assert re.fullmatch(r"\d{6}", code), code
    return code


def totp_steps(secret):
    """Codes for the previous, current and next 30 s step, all inside the allowed
    drift. The previous-step code must be used first and at once (enable); the
    other two stay valid for at least 30 s after that. Waits (at most ~2 s) when a
    step boundary is too near for the first use."""
    now = time.time()
    into = now % 30
    if into > 30 - t(0.5) - 1:
        time.sleep(30 - into + 0.05)
        now = time.time()
    step = int(now // 30)
    return [totp_code(secret, (step + d) * 30 + 1) for d in (-1, 0, 1)]


def wrong_code(secret):
    """A well-formed code valid for no step in the drift window."""
    valid = set(totp_steps_nowait(secret))
    for d in range(10, 40):
        c = totp_code(secret, time.time() + d * 30)
        if c not in valid:
            return c
    raise AssertionError("could not find a wrong code")


def totp_steps_nowait(secret):
    step = int(time.time() // 30)
    return [totp_code(secret, (step + d) * 30 + 1) for d in (-2, -1, 0, 1, 2)]


# --------------------------------------------------------------------------- HTTP

def recv_all(sock, timeout, limit=1 << 20):
    """Read until EOF (or timeout/limit). Returns (data, closed)."""
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    while len(data) < limit:
        left = deadline - time.monotonic()
        if left <= 0:
            return data, False
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return data, False
        except (ConnectionResetError, BrokenPipeError):
            return data, True
        if not chunk:
            return data, True
        data += chunk
    return data, False


def parse_http_head(data):
    """-> (status:int, headers:dict lowercased, body:bytes)."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    assert len(parts) >= 2 and parts[0].startswith("HTTP/1."), "bad status line %r" % lines[0]
    status = int(parts[1])
    headers = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, body


def open_sock(port, tls_ctx=None, timeout=5.0, rcvbuf=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(timeout)
    s.connect(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if tls_ctx is not None:
        s = tls_ctx.wrap_socket(s, server_hostname="127.0.0.1")
    return s


def raw_http(port, data, timeout=None, tls_ctx=None):
    """Send raw bytes, read the whole answer until the server closes.
    -> (bytes, closed_by_server)."""
    timeout = timeout or t(5)
    s = open_sock(port, tls_ctx, timeout)
    try:
        s.sendall(data)
        return recv_all(s, timeout)
    finally:
        s.close()


def http_get(port, path, tls_ctx=None, timeout=None, extra="", method="GET"):
    req = ("%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n%s\r\n"
           % (method, path, port, extra)).encode()
    data, _ = raw_http(port, req, timeout or t(3), tls_ctx)
    return parse_http_head(data)


# --------------------------------------------------------------------------- raw WebSocket

OP_CONT, OP_TEXT, OP_BIN, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


def encode_frame(opcode, payload=b"", fin=True, mask=True, rsv=0, length_override=None):
    if isinstance(payload, str):
        payload = payload.encode()
    b0 = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0x0F)
    n = len(payload) if length_override is None else length_override
    mbit = 0x80 if mask else 0
    if n < 126:
        hdr = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        hdr = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        hdr = struct.pack("!BBQ", b0, mbit | 127, n)
    if not mask:
        return hdr + payload
    key = os.urandom(4)
    if payload:
        # Fast XOR via int arithmetic over the whole payload.
        k = (key * (len(payload) // 4 + 1))[:len(payload)]
        masked = (int.from_bytes(payload, "big") ^ int.from_bytes(k, "big")).to_bytes(len(payload), "big")
    else:
        masked = b""
    return hdr + key + masked


def ws_key():
    return base64.b64encode(os.urandom(16)).decode()


def ws_accept(key):
    return base64.b64encode(hashlib.sha1((key + RFC_GUID).encode()).digest()).decode()


def upgrade_request(port, path="/", key=None, version="13", extra_headers=(), omit=()):
    key = key or ws_key()
    hdrs = [("Host", "127.0.0.1:%d" % port), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", version)]
    hdrs = [(k, v) for k, v in hdrs if k not in omit] + list(extra_headers)
    return ("GET %s HTTP/1.1\r\n" % path + "".join("%s: %s\r\n" % kv for kv in hdrs) + "\r\n").encode()


class Closed(Exception):
    """The server closed the TCP connection (with or without a close frame)."""


class RawWS:
    """A minimal synchronous WebSocket client that can send anything."""

    def __init__(self, port, tls_ctx=None, timeout=None, rcvbuf=None):
        self.port = port
        self.timeout = timeout or t(5)
        self.sock = open_sock(port, tls_ctx, self.timeout, rcvbuf)
        self.buf = b""
        self.close_frame = None  # (code, reason) once a close frame arrived

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def upgrade(self, path="/", extra_headers=(), first_bytes=b""):
        key = ws_key()
        self.sock.sendall(upgrade_request(self.port, path, key, extra_headers=extra_headers) + first_bytes)
        deadline = time.monotonic() + self.timeout
        while b"\r\n\r\n" not in self.buf:
            self._fill(deadline)
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        self.buf = rest
        status, headers, _ = parse_http_head(head + b"\r\n\r\n")
        assert status == 101, "upgrade answered %d: %r" % (status, head)
        assert headers.get("sec-websocket-accept") == ws_accept(key), headers
        assert headers.get("upgrade", "").lower() == "websocket", headers
        return headers

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no data from server")
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError("no data from server")
        except (ConnectionResetError, BrokenPipeError) as e:
            raise Closed(str(e))
        if not chunk:
            raise Closed("EOF")
        self.buf += chunk

    def send_raw(self, data):
        self.sock.sendall(data)

    def send_watching(self, data, chunk=65536):
        """Send data in chunks, stopping early when the server has something to say
        (e.g. a close frame) or drops us: what a client that reads while it writes sees.
        -> bytes sent."""
        off = 0
        while off < len(data):
            rd, _, _ = select.select([self.sock], [], [], 0)
            if rd:
                break
            try:
                self.sock.settimeout(self.timeout)
                off += self.sock.send(data[off:off + chunk])
            except OSError:
                break
        return off

    def send_frame(self, opcode, payload=b"", **kw):
        self.sock.sendall(encode_frame(opcode, payload, **kw))

    def send_text(self, text):
        self.send_frame(OP_TEXT, text)

    def send_json(self, obj):
        self.send_text(json.dumps(obj))

    def recv_frame(self, timeout=None):
        """-> (fin, opcode, payload). Raises Closed on EOF, TimeoutError."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while len(self.buf) < 2:
            self._fill(deadline)
        b0, b1 = self.buf[0], self.buf[1]
        assert not (b1 & 0x80), "server frame is masked"
        n = b1 & 0x7F
        off = 2
        if n == 126:
            while len(self.buf) < 4:
                self._fill(deadline)
            n = struct.unpack("!H", self.buf[2:4])[0]
            off = 4
        elif n == 127:
            while len(self.buf) < 10:
                self._fill(deadline)
            n = struct.unpack("!Q", self.buf[2:10])[0]
            off = 10
        while len(self.buf) < off + n:
            self._fill(deadline)
        payload = self.buf[off:off + n]
        self.buf = self.buf[off + n:]
        return bool(b0 & 0x80), b0 & 0x0F, payload

    def recv_message(self, timeout=None):
        """Next data message as text (control frames are answered/recorded).
        Raises Closed (self.close_frame set if a close frame came)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        parts = []
        while True:
            fin, op, payload = self.recv_frame(max(0.01, deadline - time.monotonic()))
            if op == OP_CLOSE:
                self._record_close(payload)
                raise Closed("close frame %r" % (self.close_frame,))
            if op == OP_PING:
                try:
                    self.send_frame(OP_PONG, payload)
                except OSError:
                    pass
                continue
            if op == OP_PONG:
                continue
            parts.append(payload)
            if fin:
                return b"".join(parts).decode("utf-8")

    def _record_close(self, payload):
        if len(payload) >= 2:
            self.close_frame = (struct.unpack("!H", payload[:2])[0], payload[2:].decode("utf-8", "replace"))
        else:
            self.close_frame = (1005, "")

    def recv_json(self, timeout=None):
        return json.loads(self.recv_message(timeout))

    def expect_close(self, timeout=None):
        """Read until the server closes. -> close code (None when TCP closed with no
        close frame). Fails if nothing happens within timeout."""
        deadline = time.monotonic() + (timeout or self.timeout)
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("server did not close the connection")
                try:
                    self.recv_message(left)
                except TimeoutError:
                    raise AssertionError("server did not close the connection")
        except Closed:
            return self.close_frame[0] if self.close_frame else None

    def request(self, action, payload=None, namespace="core", rid=None, timeout=None):
        rid = rid or new_id()
        self.send_json(envelope(action, payload, namespace, rid))
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            m = self.recv_json(max(0.01, deadline - time.monotonic()))
            if m.get("type") == "response" and m.get("correlationId") == rid:
                check_response(m, rid)
                return m


def upgraded(port, **kw):
    r = RawWS(port, **kw)
    r.upgrade()
    return r


# --------------------------------------------------------------------------- envelope

def now_ts():
    d = dt.datetime.now(dt.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (d.microsecond // 1000)


def envelope(action, payload=None, namespace="core", rid=None, type_="request"):
    return {"id": rid or new_id(), "type": type_, "namespace": namespace, "action": action,
            "payload": {} if payload is None else payload, "timestamp": now_ts()}


def check_response(m, rid=None):
    """Structural checks every response must pass (PROTOCOL section 2)."""
    assert isinstance(m, dict), m
    assert m.get("type") == "response", m
    assert isinstance(m.get("id"), str) and m["id"], "response without a non-empty id: %r" % m
    assert isinstance(m.get("timestamp"), str) and TS_RE.match(m["timestamp"]), \
        "bad timestamp %r" % (m.get("timestamp"),)
    skew = abs((parse_ts(m["timestamp"]) - dt.datetime.now(dt.timezone.utc)).total_seconds())
    assert skew < 120, "response timestamp %s is %.0f s off UTC now" % (m["timestamp"], skew)
    assert isinstance(m.get("success"), bool), "success missing/not bool: %r" % m
    if rid is not None:
        assert m.get("correlationId") == rid, m
    if m["success"] is False:
        err = m.get("error")
        assert isinstance(err, dict), "failed response without error object: %r" % m
        assert isinstance(err.get("code"), str) and err["code"], m
        assert isinstance(err.get("message"), str), m


def err_code(m):
    return (m.get("error") or {}).get("code")


def expect_error(m, code):
    assert m["success"] is False, "expected %s, got success: %r" % (code, m)
    assert err_code(m) == code, "expected %s, got %r" % (code, m.get("error"))
    return m


def expect_ok(m):
    assert m["success"] is True, "expected success, got %r" % (m.get("error"),)
    assert isinstance(m.get("payload"), dict), m
    return m["payload"]


# --------------------------------------------------------------------------- asyncio client

_live_clients = []


def async_test(fn):
    """Run an async test function to completion with an overall bound. Connections
    the test left open are aborted at the end, so teardown never waits for a
    close handshake with a server that was killed."""
    @functools.wraps(fn)
    def wrapper(*a, **kw):
        async def runner():
            try:
                return await asyncio.wait_for(fn(*a, **kw), t(60))
            finally:
                for c in _live_clients:
                    try:
                        c.ws.transport.abort()
                    except Exception:
                        pass
                _live_clients.clear()
        return asyncio.run(runner())
    return wrapper


class Client:
    """A websockets connection with request/response correlation. Messages that are
    not the awaited response are kept in .events (events) and .stray (others)."""

    def __init__(self, ws):
        self.ws = ws
        self.events = []
        self.stray = []
        _live_clients.append(self)

    async def send_raw(self, text):
        await self.ws.send(text)

    async def send_env(self, env):
        await self.ws.send(json.dumps(env))

    async def recv_json(self, timeout=None):
        raw = await asyncio.wait_for(self.ws.recv(), timeout or t(5))
        assert isinstance(raw, str), "server sent a binary message"
        return json.loads(raw)

    async def wait_response(self, rid, timeout=None):
        deadline = time.monotonic() + (timeout or t(5))
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no response to %s" % rid)
            try:
                m = await self.recv_json(left)
            except asyncio.TimeoutError:
                raise AssertionError("no response to %s within timeout" % rid)
            except websockets.exceptions.ConnectionClosed:
                raise AssertionError("connection closed (%s %r) before the response to %s"
                                     % (self.ws.close_code, self.ws.close_reason, rid))
            if m.get("type") == "response" and m.get("correlationId") == rid:
                check_response(m, rid)
                return m
            if m.get("type") == "event":
                self.events.append(m)
            else:
                self.stray.append(m)

    async def request(self, action, payload=None, namespace="core", rid=None, timeout=None, **extra):
        env = envelope(action, payload, namespace, rid)
        env.update(extra)
        await self.send_env(env)
        return await self.wait_response(env["id"], timeout)

    async def auth(self, token=None, totp=None, **kw):
        payload = dict(kw)
        if token is not None:
            payload["token"] = token
        if totp is not None:
            payload["totpCode"] = totp
        m = await self.request("auth", payload)
        assert isinstance(m.get("payload"), dict), "auth response without payload: %r" % m
        if m["success"]:
            p = m["payload"]
            assert p.get("authenticated") is True, m
        else:
            p = m["payload"]
            assert p.get("authenticated") is False, m
            assert p.get("scopes") == [], m
        return m

    async def expect_close(self, timeout=None):
        """Read until the connection closes; -> (code, reason). Messages are kept."""
        deadline = time.monotonic() + (timeout or t(5))
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("connection was not closed")
            try:
                raw = await asyncio.wait_for(self.ws.recv(), left)
            except asyncio.TimeoutError:
                raise AssertionError("connection was not closed")
            except websockets.exceptions.ConnectionClosed:
                await asyncio.wait_for(self.ws.wait_closed(), t(5))
                return self.ws.close_code, self.ws.close_reason
            try:
                self.stray.append(json.loads(raw))
            except ValueError:
                self.stray.append(raw)

    async def is_open(self):
        """True if a health request is still answered."""
        try:
            m = await self.request("health", timeout=t(3))
            return m["success"] is True
        except AssertionError:
            return False

    async def close(self):
        try:
            await asyncio.wait_for(self.ws.close(), t(3))
        except Exception:
            pass


async def connect(server, headers=None, path="/", ssl=None, **kw):
    ssl = ssl if ssl is not None else getattr(server, "client_ssl", None)
    scheme = "wss" if ssl else "ws"
    ws = await websockets.connect("%s://127.0.0.1:%d%s" % (scheme, server.port, path),
                                  extra_headers=headers, ssl=ssl, open_timeout=t(5),
                                  close_timeout=t(2), max_size=64 << 20, **kw)
    return Client(ws)


async def connect_auth(server, token=None, headers=None, **kw):
    c = await connect(server, headers=headers)
    m = await c.auth(token or server.admin_token, **kw)
    assert m["success"], "auth failed: %r" % (m.get("error"),)
    c.session = m["payload"]
    return c


# --------------------------------------------------------------------------- slow reader

def small_quarantine_env():
    """Environment for a server whose memory use a test measures: under ASan, freed
    memory sits in a quarantine (256 MB by default) and would count as growth."""
    opts = os.environ.get("ASAN_OPTIONS", "")
    return {"ASAN_OPTIONS": (opts + ":" if opts else "") + "quarantine_size_mb=8"}


def check_slow_reader(srv, n_tokens=60):
    """A client that sends many large-answer requests and never reads must not hurt
    the server: other clients still get answers, memory stays bounded. Being
    dropped (1008 slow consumer / TCP reset) or back-pressured are both fine."""
    import ssl as _ssl

    async def make_tokens():
        admin = await connect_auth(srv)
        for i in range(n_tokens):
            await admin.send_env(envelope("auth.generateToken", {"name": "bulk-token-%03d" % i,
                                                                 "scopes": sorted(ALL_SCOPES)}))
        for i in range(n_tokens):
            await admin.recv_json()
        p = expect_ok(await admin.request("auth.tokens"))
        assert len(p["tokens"]) > n_tokens
        await admin.close()
    asyncio.run(asyncio.wait_for(make_tokens(), t(30)))

    rss_before = rss_kb(srv.pid)
    slow = RawWS(srv.port, tls_ctx=srv.client_ssl, rcvbuf=4096)
    slow.upgrade()
    assert slow.request("auth", {"token": srv.admin_token})["success"]
    slow.sock.setblocking(False)
    counter = [0]

    def more_frames():
        out = []
        for _ in range(200):
            counter[0] += 1
            out.append(encode_frame(OP_TEXT, json.dumps(envelope("auth.tokens", rid="slow-%d" % counter[0]))))
        return b"".join(out)
    pending = more_frames()
    sent = 0
    dropped = False
    stuck_since = None
    t0 = time.monotonic()
    while time.monotonic() - t0 < t(4) and sent < 50 * 1024 * 1024:
        if not pending:
            pending = more_frames()
        try:
            n = slow.sock.send(pending[:16384])
            pending = pending[n:]
            sent += n
            stuck_since = None
        except (BlockingIOError, _ssl.SSLWantWriteError, _ssl.SSLWantReadError):
            if stuck_since is None:
                stuck_since = time.monotonic()
            elif time.monotonic() - stuck_since > 1.0:
                break  # the server stopped reading from us: backpressure, fine
            select.select([], [slow.sock], [], 0.05)
        except (BrokenPipeError, ConnectionResetError, _ssl.SSLError):
            dropped = True
            break
    assert sent > 0

    async def other_client():
        c = await connect_auth(srv)
        t1 = time.monotonic()
        for _ in range(5):
            expect_ok(await c.request("health", timeout=t(3)))
        p = expect_ok(await c.request("auth.tokens", timeout=t(3)))
        assert len(p["tokens"]) > n_tokens
        await c.close()
        return time.monotonic() - t1
    took = asyncio.run(asyncio.wait_for(other_client(), t(20)))
    assert took < t(3), "server unresponsive while a slow reader is connected (%.1fs)" % took
    rss_after = rss_kb(srv.pid)
    print("RSS %d -> %d kB" % (rss_before, rss_after))
    assert rss_after - rss_before < 100 * 1024, "RSS grew by %d MB" % ((rss_after - rss_before) // 1024)
    srv.assert_alive()
    slow.close()
    status, _, body = http_get(srv.port, "/healthz", tls_ctx=srv.client_ssl)
    assert status == 200 and body.strip() == b"ok"
    return sent, dropped


# --------------------------------------------------------------------------- server processes

class ServerProcess:
    """What the Core's and Maestro's test harnesses share: readiness, logs, stopping, and
    the teardown checks. Subclasses set NAME, proc, port, stdout_path, stderr_path, logs,
    expected_dead, client_ssl, and define start()."""

    NAME = "server"
    client_ssl = None

    def _wait_ready(self):
        deadline = time.monotonic() + t(10)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                status, _, body = http_get(self.port, "/healthz", tls_ctx=self.client_ssl, timeout=t(2))
                if status == 200 and body.strip() == b"ok":
                    return True
            except (OSError, AssertionError, ValueError, ssl.SSLError):
                pass
            time.sleep(0.02)
        pytest.fail("%s not ready (GET /healthz) within %.0fs\n%s" % (self.NAME, t(10), self.stderr()[-3000:]))

    def stdout(self):
        with open(self.stdout_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stderr(self):
        with open(self.stderr_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def all_stderr(self):
        out = []
        for p in self.logs:
            try:
                with open(p, "rb") as f:
                    out.append(f.read().decode("utf-8", "replace"))
            except OSError:
                pass
        return "\n".join(out)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def assert_alive(self):
        assert self.alive(), "%s died (rc %s)\n%s" % (self.NAME, self.proc.returncode, self.stderr()[-4000:])

    def stop(self, sig=signal.SIGTERM, timeout=None):
        """Send sig, wait for exit (bounded), return the exit code."""
        self.assert_alive()
        self.expected_dead = True
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout or t(10))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            pytest.fail("%s did not exit within %.0fs of signal %d" % (self.NAME, timeout or t(10), sig))

    def finish(self):
        """Teardown: -> list of problems (a bad exit, a death nobody asked for, a sanitizer
        report in any run's stderr)."""
        problems = []
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    rc = self.proc.wait(t(10))
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(5)
                    rc = "timeout"
                if rc != 0:
                    problems.append("%s: exit code %s after SIGTERM at teardown" % (self.NAME, rc))
            elif not self.expected_dead:
                problems.append("%s exited on its own before teardown (rc %s)" % (self.NAME, self.proc.returncode))
        err = self.all_stderr()
        if "Sanitizer" in err or "runtime error:" in err:
            i = max(err.find("Sanitizer"), err.find("runtime error:"))
            problems.append("sanitizer report in %s stderr:\n%s" % (self.NAME, err[max(0, i - 500):i + 3000]))
        if problems:
            problems.append("--- %s stderr tail ---\n%s" % (self.NAME, err[-3000:]))
        return problems
