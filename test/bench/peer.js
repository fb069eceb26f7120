// Reference peer for `make bench`: a small Node.js server on the npm ws package (the stack
// of the original TypeScript Condrix) that does what the Core does on the hot path, so the
// C server's figures can be read as ratios against it. It speaks the same core/auth
// handshake, checks tokens the same way (SHA-256 of the token looked up in a map, as the
// Core looks the hash up in its database), parses and validates every envelope, and builds
// each reply as a full envelope (random UUID id, ISO timestamp, correlationId).
// No rate limits: the bench runs the Core with its limits lifted, so the peer has none.
//
// usage: CONDRIX_CORE_TOKEN=<64 hex> node peer.js --port P [--host 127.0.0.1]
'use strict';

const http = require('http');
const crypto = require('crypto');
const { WebSocketServer } = require('ws');

const MESSAGE_MAX = 1 << 20;     // as the Core: larger messages close 1009
const AUTH_TIMEOUT_MS = 10000;   // upgrade to first message, as the Core
const PING_INTERVAL_MS = 30000;  // keep-alive, as the Core
const INVALID_MAX = 5;           // invalid messages in a row before close 1008
const TYPES = new Set(['request', 'response', 'event', 'stream']);
const SCOPES = ['read:files', 'write:files', 'exec:terminal', 'admin:workspace',
  'admin:project', 'admin:core', 'chat:agent', 'chat:maestro'];
const TOKEN_RE = /^[0-9a-f]{64}$/;

function parseArgs(argv) {
  const opt = { host: '127.0.0.1', port: 0 };
  for (let i = 2; i < argv.length; i++) {
    if (argv[i] === '--port') opt.port = Number(argv[++i]);
    else if (argv[i] === '--host') opt.host = argv[++i];
    else {
      process.stderr.write(`peer.js: unknown argument ${argv[i]}\n`);
      process.exit(2);
    }
  }
  if (!Number.isInteger(opt.port) || opt.port <= 0 || opt.port > 65535) {
    process.stderr.write('peer.js: --port is required\n');
    process.exit(2);
  }
  return opt;
}

const opt = parseArgs(process.argv);
const startedAt = Date.now();

// Token hashes (hex SHA-256) -> token record; the value itself is never kept.
const tokens = new Map();
const seed = process.env.CONDRIX_CORE_TOKEN || '';
if (!TOKEN_RE.test(seed)) {
  process.stderr.write('peer.js: CONDRIX_CORE_TOKEN must be 64 lowercase hex characters\n');
  process.exit(2);
}
tokens.set(crypto.createHash('sha256').update(seed).digest('hex'),
  { name: 'env-token', scopes: SCOPES, expiresAt: 0 });
delete process.env.CONDRIX_CORE_TOKEN;

function envelope(req, success, payload, error) {
  const msg = {
    id: crypto.randomUUID(),
    type: 'response',
    namespace: req && typeof req.namespace === 'string' ? req.namespace : 'core',
    action: req && typeof req.action === 'string' ? req.action : 'unknown',
    payload,
    timestamp: new Date().toISOString(),
    success,
  };
  if (req && typeof req.id === 'string') msg.correlationId = req.id;
  if (error) msg.error = error;
  return JSON.stringify(msg);
}

function fail(ws, req, code, message, payload) {
  ws.send(envelope(req, false, payload || {}, { code, message }));
}

// The envelope checks of PROTOCOL.md section 2: an object with string id (1..128),
// a known type, string namespace and action, an object payload when present.
function validEnvelope(m) {
  return m !== null && typeof m === 'object' && !Array.isArray(m) &&
    typeof m.id === 'string' && m.id.length >= 1 && m.id.length <= 128 &&
    typeof m.type === 'string' && TYPES.has(m.type) &&
    typeof m.namespace === 'string' && m.namespace.length > 0 &&
    typeof m.action === 'string' && m.action.length > 0 &&
    (m.payload === undefined || (typeof m.payload === 'object' && m.payload !== null)) &&
    (m.timestamp === undefined || typeof m.timestamp === 'string');
}

function authenticate(ws, st, req) {
  const token = req.payload && req.payload.token;
  if (typeof token !== 'string' || token.length === 0) {
    fail(ws, req, 'TOKEN_REQUIRED', 'a token is required', { authenticated: false, scopes: [] });
    ws.close(1008, 'auth failed');
    return;
  }
  const rec = TOKEN_RE.test(token)
    ? tokens.get(crypto.createHash('sha256').update(token).digest('hex'))
    : undefined;
  if (rec === undefined) {
    fail(ws, req, 'INVALID_TOKEN', 'invalid token', { authenticated: false, scopes: [] });
    ws.close(1008, 'auth failed');
    return;
  }
  if (rec.expiresAt !== 0 && rec.expiresAt <= Date.now()) {
    fail(ws, req, 'TOKEN_EXPIRED', 'token expired', { authenticated: false, scopes: [] });
    ws.close(1008, 'auth failed');
    return;
  }
  st.authed = true;
  st.sessionId = crypto.randomUUID();
  st.tokenName = rec.name;
  st.scopes = rec.scopes;
  clearTimeout(st.authTimer);
  st.authTimer = null;
  ws.send(envelope(req, true, {
    authenticated: true, scopes: st.scopes, sessionId: st.sessionId, tokenName: st.tokenName,
  }));
}

function onMessage(ws, st, data, isBinary) {
  if (isBinary) {
    ws.close(1003, 'binary frames are not supported');
    return;
  }
  let req;
  try {
    req = JSON.parse(data.toString('utf8'));
  } catch (e) {
    req = undefined;
  }
  if (!validEnvelope(req)) {
    fail(ws, req && typeof req === 'object' ? req : null, 'INVALID_MESSAGE', 'malformed message');
    if (++st.invalid >= INVALID_MAX) ws.close(1008, 'too many invalid messages');
    return;
  }
  st.invalid = 0;
  if (req.type !== 'request') return;
  if (req.namespace === 'core' && req.action === 'auth') {
    if (st.authed) {
      ws.send(envelope(req, true, {
        authenticated: true, scopes: st.scopes, sessionId: st.sessionId, tokenName: st.tokenName,
      }));
      return;
    }
    authenticate(ws, st, req);
    return;
  }
  if (!st.authed) {
    fail(ws, req, 'AUTH_REQUIRED', 'authenticate first');
    if (++st.strikes >= 3) ws.close(1008, 'auth required');
    return;
  }
  if (req.namespace === 'core' && req.action === 'health') {
    ws.send(envelope(req, true, {
      status: 'ok',
      uptimeSeconds: Math.floor((Date.now() - startedAt) / 1000),
      connections: wss.clients.size,
    }));
    return;
  }
  fail(ws, req, 'UNKNOWN_ACTION', `unknown action ${req.namespace}/${req.action}`);
}

const server = http.createServer((req, res) => {
  if (req.method === 'GET' && (req.url === '/healthz' || req.url.startsWith('/healthz?'))) {
    res.writeHead(200, { 'Content-Type': 'text/plain', Connection: 'close' });
    res.end('ok');
    return;
  }
  res.writeHead(404, { 'Content-Type': 'text/plain', Connection: 'close' });
  res.end('not found');
});

const wss = new WebSocketServer({ server, maxPayload: MESSAGE_MAX, perMessageDeflate: false });

wss.on('connection', (ws) => {
  const st = {
    authed: false, sessionId: null, tokenName: null, scopes: null, invalid: 0, strikes: 0,
    alive: true, authTimer: null,
  };
  st.authTimer = setTimeout(() => ws.close(1008, 'auth timeout'), AUTH_TIMEOUT_MS);
  ws.on('message', (data, isBinary) => onMessage(ws, st, data, isBinary));
  ws.on('pong', () => { st.alive = true; });
  ws.on('close', () => { if (st.authTimer) clearTimeout(st.authTimer); });
  ws.on('error', () => {});
  ws.benchState = st;
});

// One timer for all connections, the ws documentation's keep-alive pattern.
const pinger = setInterval(() => {
  for (const ws of wss.clients) {
    const st = ws.benchState;
    if (!st.alive) {
      ws.terminate();
      continue;
    }
    st.alive = false;
    ws.ping();
  }
}, PING_INTERVAL_MS);
pinger.unref();

server.on('error', (e) => {
  process.stderr.write(`peer.js: ${e.message}\n`);
  process.exit(1);
});
server.listen({ host: opt.host, port: opt.port, backlog: 1024 }, () => {
  process.stderr.write(`peer.js: listening on ws://${opt.host}:${opt.port} (ws ${require('ws/package.json').version})\n`);
});

process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
