// The one WebSocket to Maestro (PROTOCOL.md sections 1, 2 and 5): requests matched to
// their responses by correlationId, events handed to a listener, and the socket opened
// again on demand after it dropped. Sign-in state is the caller's business.

const REQUEST_TIMEOUT_MS = 20000;

// An error response, or a failure to get one. code is the protocol's error code, or
// DISCONNECTED / TIMEOUT when no answer came.
export class ProtoError extends Error {
  constructor(code, message, details, payload) {
    super(message || code);
    this.code = code;
    this.details = details || null;
    this.payload = payload || null;
  }
}

let counter = 0;
function newId() {
  counter += 1;
  const rnd = crypto.getRandomValues(new Uint32Array(2));
  return `web-${Date.now().toString(36)}-${counter}-${rnd[0].toString(36)}${rnd[1].toString(36)}`;
}

// This Maestro as a Core dials it: ws: or wss: (as the page's scheme) to the page's host.
export function maestroOrigin(loc = window.location) {
  return `${loc.protocol === 'https:' ? 'wss:' : 'ws:'}//${loc.host}`;
}

// The page's socket; Maestro accepts the upgrade on any path, /ws names its purpose.
export function maestroUrl(loc = window.location) {
  return `${maestroOrigin(loc)}/ws`;
}

export class Conn {
  // onEvent(msg) for every event; onClose(code, reason, wasOpen) when a socket goes.
  constructor({ url, onEvent, onClose }) {
    this.url = url;
    this.onEvent = onEvent || (() => {});
    this.onClose = onClose || (() => {});
    this.ws = null;
    this.opening = null;
    this.pending = new Map();
  }

  get isOpen() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  // Resolves once a socket is open; one attempt, rejected with DISCONNECTED on failure.
  open() {
    if (this.isOpen) return Promise.resolve();
    if (this.opening) return this.opening;
    this.opening = new Promise((resolve, reject) => {
      let ws;
      try {
        ws = new WebSocket(this.url);
      } catch (e) {
        this.opening = null;
        reject(new ProtoError('DISCONNECTED', 'cannot reach Maestro'));
        return;
      }
      this.ws = ws;
      let opened = false;
      ws.addEventListener('open', () => {
        opened = true;
        this.opening = null;
        resolve();
      });
      ws.addEventListener('message', (ev) => this.handle(ev.data));
      ws.addEventListener('close', (ev) => {
        if (this.ws === ws) this.ws = null;
        if (!opened) {
          this.opening = null;
          reject(new ProtoError('DISCONNECTED', 'cannot reach Maestro'));
        }
        this.failPending(ws);
        this.onClose(ev.code, ev.reason, opened);
      });
    });
    return this.opening;
  }

  // Close the socket (no reconnect: the caller decides).
  close() {
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.close(1000, 'bye');
    }
  }

  failPending(ws) {
    for (const [id, p] of this.pending) {
      if (p.ws !== ws) continue;
      this.pending.delete(id);
      clearTimeout(p.timer);
      p.reject(new ProtoError('DISCONNECTED', 'the connection to Maestro was lost'));
    }
  }

  handle(text) {
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      return;
    }
    if (!msg || typeof msg !== 'object') return;
    if (msg.type === 'response' && typeof msg.correlationId === 'string') {
      const p = this.pending.get(msg.correlationId);
      if (!p) return;
      this.pending.delete(msg.correlationId);
      clearTimeout(p.timer);
      if (msg.success) {
        p.resolve(msg.payload ?? {});
      } else {
        const err = msg.error || {};
        p.reject(new ProtoError(err.code || 'INTERNAL', err.message, err.details, msg.payload));
      }
      return;
    }
    if (msg.type === 'event') this.onEvent(msg);
  }

  // Send a request and resolve with its response payload (reject with ProtoError).
  async request(action, payload = {}, ns = 'maestro') {
    await this.open();
    const ws = this.ws;
    const id = newId();
    const msg = {
      id,
      type: 'request',
      namespace: ns,
      action,
      payload,
      timestamp: new Date().toISOString(),
    };
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new ProtoError('TIMEOUT', 'Maestro did not answer in time'));
      }, REQUEST_TIMEOUT_MS);
      this.pending.set(id, { resolve, reject, timer, ws });
      try {
        ws.send(JSON.stringify(msg));
      } catch {
        this.pending.delete(id);
        clearTimeout(timer);
        reject(new ProtoError('DISCONNECTED', 'the connection to Maestro was lost'));
      }
    });
  }
}
