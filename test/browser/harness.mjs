// Helpers for the browser tests: real condrix-maestro and condrix-core processes on free
// ports with fresh data directories, Debian's chromium driven by playwright-core, TOTP
// codes computed here (RFC 6238), and screenshots into the test output directory.
import { spawn, execFile } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdtempSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
export const BIN_DIR = process.env.CONDRIX_BIN_DIR || path.resolve(here, '../../build/bin');
export const OUT_DIR = process.env.CONDRIX_TEST_OUTPUT || path.resolve(here, '../../test-output/browser');
mkdirSync(OUT_DIR, { recursive: true });

// Sanitizer builds run about three times slower: every timeout scales with them.
function detectScale() {
  if (process.env.CONDRIX_TEST_TIMEOUT_SCALE) return Number(process.env.CONDRIX_TEST_TIMEOUT_SCALE);
  try {
    const bin = readFileSync(path.join(BIN_DIR, 'condrix-maestro'));
    return bin.includes('__asan_init') ? 3 : 1;
  } catch {
    return 1;
  }
}
export const SCALE = detectScale();
export const t = (ms) => Math.round(ms * SCALE);

// Generous limits: the tests sign in many times from one address.
const RATE_ENV = {
  CONDRIX_RATE_CONN_MAX: '0',
  CONDRIX_RATE_MSG_MAX: '0',
  CONDRIX_RATE_AUTH_MAX: '1000',
  CONDRIX_RATE_BLOCK_SECONDS: '1',
  CONDRIX_LOG_LEVEL: 'info',
};

const cleanups = [];
const started = [];
// Register fn to run at the end of the test file (latest first).
export function onCleanup(fn) {
  cleanups.push(fn);
}
// Stop everything; then fail if a server reported a sanitizer error on its way.
export async function cleanupAll() {
  while (cleanups.length) {
    const fn = cleanups.pop();
    try {
      await fn();
    } catch {
      /* keep cleaning up */
    }
  }
  for (const p of started) {
    if (/ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:/.test(p.err)) {
      throw new Error(`${p.logName} reported a sanitizer error:\n${p.err}`);
    }
  }
}
const children = new Set();
process.on('exit', () => {
  for (const p of children) {
    try {
      p.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
});

function tempDir(prefix) {
  const d = mkdtempSync(path.join(os.tmpdir(), prefix));
  onCleanup(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

// Stop a child: SIGTERM, then SIGKILL if it lingers.
export function stopProcess(proc, graceMs = 3000) {
  if (!proc || proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => proc.kill('SIGKILL'), t(graceMs));
    proc.once('exit', () => {
      clearTimeout(timer);
      children.delete(proc);
      resolve();
    });
    proc.kill('SIGTERM');
  });
}

function startProcess(bin, args, env, logName) {
  const proc = spawn(path.join(BIN_DIR, bin), args, {
    env: { PATH: process.env.PATH, HOME: process.env.HOME || os.tmpdir(), ...RATE_ENV, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(proc);
  started.push(proc);
  proc.out = '';
  proc.err = '';
  proc.stdout.setEncoding('utf8');
  proc.stderr.setEncoding('utf8');
  proc.stdout.on('data', (d) => { proc.out += d; });
  proc.stderr.on('data', (d) => { proc.err += d; });
  proc.logName = logName;
  onCleanup(() => stopProcess(proc));
  return proc;
}

// Resolve with the first match of re in the process's output, or reject on timeout/exit.
function waitOutput(proc, stream, re, timeoutMs, what) {
  return new Promise((resolve, reject) => {
    const check = () => {
      const m = re.exec(proc[stream]);
      if (m) {
        done();
        resolve(m);
      }
    };
    const onExit = () => {
      done();
      reject(new Error(`${proc.logName} exited before ${what}:\n${proc.err}`));
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`timed out waiting for ${what}:\n${proc.err}`));
    }, timeoutMs);
    const done = () => {
      clearTimeout(timer);
      proc[stream === 'out' ? 'stdout' : 'stderr'].off('data', check);
      proc.off('exit', onExit);
    };
    proc[stream === 'out' ? 'stdout' : 'stderr'].on('data', check);
    proc.once('exit', onExit);
    check();
  });
}

// A real Maestro on a free port. Returns {url, port, home, password, proc}. Given
// `again` (an earlier result), starts it anew on the same port and data.
export async function startMaestro(env = {}, again = null) {
  const home = again ? again.home : tempDir('condrix-maestro-');
  const proc = startProcess('condrix-maestro', ['--host', '127.0.0.1', '--port', String(again ? again.port : 0)],
    { CONDRIX_HOME: home, ...env }, 'condrix-maestro');
  const m = await waitOutput(proc, 'err', /listening on wss?:\/\/127\.0\.0\.1:(\d+)/, t(15000), 'Maestro to listen');
  const password = again ? again.password
    : (await waitOutput(proc, 'out', /default-admin[^\n]*\n[^\n]*\n([^\s]+)\n/, t(5000), 'the default-admin password'))[1];
  const port = Number(m[1]);
  return { url: `http://127.0.0.1:${port}`, wsUrl: `ws://127.0.0.1:${port}`, port, home, password, proc };
}

// A pairing code made by the operator CLI on Maestro's own database.
export function cliPairCode(maestro) {
  return new Promise((resolve, reject) => {
    execFile(path.join(BIN_DIR, 'condrix-maestro'), ['pair', '--json'], {
      env: { PATH: process.env.PATH, CONDRIX_HOME: maestro.home },
      timeout: t(15000),
    }, (err, stdout) => {
      if (err) reject(err);
      else resolve(JSON.parse(stdout).code);
    });
  });
}

// A real Core that dials Maestro with a pairing code (or its stored token).
export function startCore(maestro, code, name) {
  const home = tempDir('condrix-core-');
  return startCoreIn(home, maestro, code, name);
}

export function startCoreIn(home, maestro, code, name) {
  const proc = startProcess('condrix-core', ['--host', '127.0.0.1', '--port', '0'], {
    CONDRIX_HOME: home,
    CONDRIX_MAESTRO_URL: maestro.wsUrl,
    CONDRIX_MAESTRO_TOKEN: code,
    CONDRIX_CORE_NAME: name,
  }, `condrix-core ${name}`);
  proc.home = home;
  return proc;
}

export const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--no-first-run'];

// Debian's chromium, headless. Playwright gives each launch a fresh --user-data-dir.
export async function launchBrowser() {
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: CHROMIUM_ARGS,
    timeout: t(30000),
  });
  onCleanup(() => browser.close());
  return browser;
}

// A fresh context and page, with bounded timeouts and every console error, page error
// and CSP violation collected in page.problems.
export async function newPage(browser, viewport = { width: 1100, height: 800 }) {
  const context = await browser.newContext({ viewport });
  context.setDefaultTimeout(t(10000));
  context.setDefaultNavigationTimeout(t(15000));
  const page = await context.newPage();
  page.problems = [];
  page.on('console', (msg) => {
    if (msg.type() === 'error') page.problems.push(`console: ${msg.text()}`);
  });
  page.on('pageerror', (err) => page.problems.push(`pageerror: ${err.message}`));
  return page;
}

export async function screenshot(page, name) {
  await page.screenshot({ path: path.join(OUT_DIR, `${name}.png`), fullPage: true });
}

// Sign in through the form; stops at the TOTP step when the account asks for one.
export async function fillSignIn(page, username, password) {
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

export async function signIn(page, maestro, username, password) {
  await page.goto(`${maestro.url}/`);
  await fillSignIn(page, username, password);
  await page.locator('#view-title').waitFor();
}

// ---- TOTP (RFC 6238 with HMAC-SHA1, 30 s steps, 6 digits) ----

function base32Decode(s) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let value = 0;
  const out = [];
  for (const ch of s.replace(/=+$/, '').toUpperCase()) {
    const i = alphabet.indexOf(ch);
    if (i < 0) throw new Error(`not base32: ${ch}`);
    value = (value << 5) | i;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

export function totp(secret, unixSeconds = Date.now() / 1000) {
  const counter = Math.floor(unixSeconds / 30);
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(BigInt(counter));
  const mac = createHmac('sha1', base32Decode(secret)).update(msg).digest();
  const off = mac[mac.length - 1] & 0x0f;
  const bin = ((mac[off] & 0x7f) << 24) | (mac[off + 1] << 16) | (mac[off + 2] << 8) | mac[off + 3];
  return String(bin % 1000000).padStart(6, '0');
}

// Wait, if needed, until at least `margin` seconds remain in the current 30 s step.
export async function awayFromStepEdge(marginS = 4) {
  const into = (Date.now() / 1000) % 30;
  if (into > 30 - marginS) await new Promise((r) => setTimeout(r, (30 - into + 0.1) * 1000));
}

// ---- raw HTTP, for headers and the WebSocket Origin check ----

// Send raw request text; resolve with {status, headers (lower-cased), body}.
export function rawHttp(port, text) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    let data = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error('raw HTTP timed out'));
    }, t(5000));
    sock.setEncoding('latin1');
    sock.on('connect', () => sock.write(text));
    sock.on('data', (d) => {
      data += d;
      // An upgrade answer never closes by itself: stop at the end of the head.
      if (/^HTTP\/1\.1 101/.test(data) && data.includes('\r\n\r\n')) sock.destroy();
    });
    sock.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    sock.on('close', () => {
      clearTimeout(timer);
      const [head, ...rest] = data.split('\r\n\r\n');
      const lines = head.split('\r\n');
      const status = Number(lines[0].split(' ')[1]);
      const headers = {};
      for (const l of lines.slice(1)) {
        const i = l.indexOf(':');
        if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
      }
      resolve({ status, headers, body: rest.join('\r\n\r\n') });
    });
  });
}

export function upgradeRequest(port, origin) {
  return rawHttp(port, [
    'GET /ws HTTP/1.1',
    `Host: 127.0.0.1:${port}`,
    'Upgrade: websocket',
    'Connection: Upgrade',
    'Sec-WebSocket-Version: 13',
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
    origin ? `Origin: ${origin}` : null,
    '', '',
  ].filter((l) => l !== null).join('\r\n'));
}
