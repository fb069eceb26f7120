// Maestro's web client: sign-in (with the TOTP step), the session kept across reloads,
// the connection kept up, and the views (Cores, Pair, Users, Account) switched by the
// URL fragment. Every piece of data comes from PROTOCOL.md section 5 over one socket.
import { Conn, maestroUrl } from './conn.js';
import { h, clear, field, statusLine, errorText } from './dom.js';
import { coresView } from './cores.js';
import { pairView } from './pair.js';
import { usersView } from './users.js';
import { accountView } from './account.js';

const TOKEN_KEY = 'condrix.maestro.sessionToken';
const RECONNECT_MAX_MS = 30000;
const TIMER_MAX_MS = 24 * 3600 * 1000; // setTimeout overflows past 2^31 ms

const views = {
  cores: { title: 'Cores', admin: false, render: coresView },
  pair: { title: 'Pair a Core', admin: true, render: pairView },
  users: { title: 'Users', admin: true, render: usersView },
  account: { title: 'Account', admin: false, render: accountView },
};

const main = document.getElementById('main');
const top = document.getElementById('top');
const nav = document.getElementById('nav');
const who = document.getElementById('who');
const banner = document.getElementById('banner');

// Shared state the views read: who is signed in, the Cores as last listed, and a
// request helper that turns a dead session into the sign-in screen.
export const app = {
  conn: null,
  user: null,
  cores: [],
  coreListeners: new Set(),
  cleanup: null,
  reconnectTry: 0,
  reconnectTimer: null,
  expiryTimer: null,
  pairingTimer: null,
  pairingLooks: 0,

  get isAdmin() {
    return !!this.user && this.user.role === 'admin';
  },

  async request(action, payload = {}) {
    try {
      return await this.conn.request(action, payload);
    } catch (e) {
      if (this.user && (e.code === 'INVALID_SESSION' || e.code === 'SESSION_EXPIRED')) {
        signedOut(errorText(e));
      }
      throw e;
    }
  },

  // The Cores list, fetched again (also after every online/offline event). A Core that
  // just redeemed a pairing code is online before it confirms its token, and no event
  // tells when it has: look again shortly, a few times, while one is in that state.
  async refreshCores() {
    const r = await this.request('cores.list', {});
    this.cores = Array.isArray(r.cores) ? r.cores : [];
    for (const fn of this.coreListeners) fn(this.cores, null);
    const pairing = this.cores.some((c) => c.status === 'online' && !c.pairedAt);
    clearTimeout(this.pairingTimer);
    if (pairing && this.pairingLooks < 10) {
      this.pairingLooks += 1;
      this.pairingTimer = setTimeout(() => this.refreshCores().catch(() => {}), 1000);
    } else if (!pairing) {
      this.pairingLooks = 0;
    }
    return this.cores;
  },

  onCores(fn) {
    this.coreListeners.add(fn);
    return () => this.coreListeners.delete(fn);
  },
};

function showBanner(text, kind = 'info') {
  if (!text) {
    banner.hidden = true;
    banner.textContent = '';
    return;
  }
  banner.hidden = false;
  banner.className = `banner ${kind}`;
  banner.textContent = text;
}

function setTitle(text) {
  document.title = text ? `${text} · Condrix Maestro` : 'Condrix Maestro';
}

function runCleanup() {
  if (app.cleanup) {
    try {
      app.cleanup();
    } catch {
      /* a view's cleanup failing must not block the next one */
    }
    app.cleanup = null;
  }
}

// ---- sign-in ----

function showSignIn(message, kind = 'info') {
  runCleanup();
  top.hidden = true;
  setTitle('Sign in');
  clear(main);
  let username = '';
  let password = '';

  const card = h('section', { class: 'card signin', 'aria-labelledby': 'signin-title' });
  const title = h('h1', { id: 'signin-title', tabindex: '-1' }, 'Sign in to Maestro');
  const note = message ? h('p', { class: `notice ${kind}`, role: kind === 'error' ? 'alert' : 'status' }, message) : null;
  const st = statusLine();

  const user = field('Username', { name: 'username', autocomplete: 'username', required: true, autocapitalize: 'none', spellcheck: 'false' });
  const pass = field('Password', { name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const pwForm = h('form', { method: 'post', id: 'signin-form', novalidate: true },
    user.wrap, pass.wrap, h('button', { type: 'submit', id: 'signin-submit' }, 'Sign in'));

  const code = field('6-digit code', { name: 'totp', inputmode: 'numeric', autocomplete: 'one-time-code', pattern: '[0-9]{6}', maxlength: '6', required: true },
    'From the authenticator app you set up for this account.');
  const totpForm = h('form', { method: 'post', id: 'totp-form', novalidate: true, hidden: true },
    h('p', {}, 'This account uses two-factor sign-in. Enter the current code from your authenticator app.'),
    code.wrap,
    h('div', { class: 'row' },
      h('button', { type: 'submit', id: 'totp-submit' }, 'Verify'),
      h('button', { type: 'button', class: 'secondary', id: 'totp-back', onclick: () => backToPassword() }, 'Back')));

  function backToPassword() {
    password = '';
    totpForm.hidden = true;
    pwForm.hidden = false;
    pass.input.value = '';
    st.clear();
    pass.input.focus();
  }

  async function attempt(totpCode) {
    const payload = { username, password };
    if (totpCode) payload.totpCode = totpCode;
    st.busy('Signing in…');
    for (const b of card.querySelectorAll('button')) b.disabled = true;
    try {
      const r = await app.conn.request('login', payload);
      password = '';
      localStorage.setItem(TOKEN_KEY, r.sessionToken);
      signedIn(r.user, r.expiresAt);
    } catch (e) {
      if (e.code === 'TOTP_REQUIRED') {
        pwForm.hidden = true;
        totpForm.hidden = false;
        st.ok('Password accepted. Now enter the 6-digit code.');
        code.input.value = '';
        code.input.focus();
      } else {
        if (e.code === 'INVALID_CREDENTIALS' && !totpForm.hidden) backToPassword();
        st.err(e);
        if (!totpForm.hidden) {
          code.input.select();
          code.input.focus();
        } else {
          pass.input.focus();
        }
      }
    } finally {
      for (const b of card.querySelectorAll('button')) b.disabled = false;
    }
  }

  pwForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    username = user.input.value.trim();
    password = pass.input.value;
    if (!username || !password) {
      st.err('Enter your username and password.');
      (username ? pass.input : user.input).focus();
      return;
    }
    attempt(null);
  });
  totpForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const c = code.input.value.replace(/\s+/g, '');
    if (!/^[0-9]{6}$/.test(c)) {
      st.err('The code is 6 digits.');
      code.input.focus();
      return;
    }
    attempt(c);
  });

  card.append(title, note || '', pwForm, totpForm, st.el);
  main.append(card);
  user.input.focus();
}

// ---- signed in ----

// An idle page learns of its session's expiry when the expiry comes: one request then
// is answered SESSION_EXPIRED, and app.request turns that into the sign-in screen.
function watchExpiry(expiresAt) {
  clearTimeout(app.expiryTimer);
  const at = Date.parse(expiresAt);
  if (Number.isNaN(at)) return;
  const wait = Math.min(TIMER_MAX_MS, Math.max(0, at - Date.now()) + 1000);
  app.expiryTimer = setTimeout(() => {
    if (!app.user) return;
    if (Date.now() < at) watchExpiry(expiresAt);
    else app.request('auth.totp.status', {}).catch(() => {});
  }, wait);
}

function signedIn(user, expiresAt) {
  watchExpiry(expiresAt);
  app.user = user;
  app.reconnectTry = 0;
  showBanner(null);
  top.hidden = false;
  clear(who).append(h('span', {}, user.username), ' ', h('span', { class: `badge role-${user.role}` }, user.role));
  clear(nav);
  for (const [key, v] of Object.entries(views)) {
    if (v.admin && !app.isAdmin) continue;
    nav.append(h('a', { href: `#/${key}`, id: `nav-${key}`, dataset: { view: key } }, v.title));
  }
  route(true);
}

function signedOut(message, kind = 'info') {
  localStorage.removeItem(TOKEN_KEY);
  app.user = null;
  app.cores = [];
  clearTimeout(app.reconnectTimer);
  clearTimeout(app.expiryTimer);
  clearTimeout(app.pairingTimer);
  showBanner(null);
  showSignIn(message, kind);
}

async function resume(token) {
  try {
    const r = await app.conn.request('auth', { sessionToken: token });
    const wasReconnect = app.user !== null;
    if (wasReconnect && app.user.id === r.user.id) {
      watchExpiry(r.expiresAt);
      app.user = r.user;
      app.reconnectTry = 0;
      showBanner(null);
      route(false);
    } else {
      signedIn(r.user, r.expiresAt);
    }
  } catch (e) {
    if (e.code === 'INVALID_SESSION' || e.code === 'SESSION_EXPIRED') {
      signedOut(errorText(e), 'error');
    } else if (e.code === 'RATE_LIMITED') {
      scheduleReconnect(token, (Number(e.details && e.details.retryAfter) || 1) * 1000);
    } else {
      scheduleReconnect(token);
    }
  }
}

function scheduleReconnect(token, atLeast = 0) {
  clearTimeout(app.reconnectTimer);
  const base = Math.min(RECONNECT_MAX_MS, 1000 * 2 ** app.reconnectTry);
  app.reconnectTry += 1;
  const delay = Math.max(atLeast, Math.round(base * (0.5 + Math.random() / 2)));
  if (!app.user) {
    top.hidden = true;
    clear(main).append(h('p', { class: 'muted' }, 'Connecting to Maestro…'));
  }
  showBanner(`Connection to Maestro lost. Reconnecting in ${Math.ceil(delay / 1000)} s…`, 'warn');
  app.reconnectTimer = setTimeout(() => resume(token), delay);
}

const endReasons = {
  'session revoked': 'This session was revoked. Sign in again.',
  'session expired': 'Your session has expired. Sign in again.',
  'logged out': 'You were signed out. Sign in again.',
  'password reset': 'Your password was reset by an admin. Sign in with the new password.',
  'user deleted': 'This account was deleted.',
};

function onClose(code, reason, wasOpen) {
  // Not signed in: the next request opens a new socket. Never opened: resume() retries.
  if (!app.user || !wasOpen) return;
  if (code === 4002 || code === 4001) {
    signedOut(endReasons[reason] || 'Your session has ended. Sign in again.', 'error');
    return;
  }
  const token = localStorage.getItem(TOKEN_KEY);
  if (!token) {
    signedOut('Your session has ended. Sign in again.', 'error');
    return;
  }
  scheduleReconnect(token);
}

function onEvent(msg) {
  if (msg.namespace === 'maestro' && (msg.action === 'core.online' || msg.action === 'core.offline')) {
    if (!app.user) return;
    app.refreshCores().then(() => {
      for (const fn of app.coreListeners) fn(app.cores, msg);
    }).catch(() => {});
  }
}

async function signOut() {
  const btn = document.getElementById('signout');
  btn.disabled = true;
  let message = 'You have signed out.';
  try {
    await app.conn.request('logout', {});
  } catch (e) {
    if (e.code !== 'INVALID_SESSION' && e.code !== 'SESSION_EXPIRED') {
      message = 'Signed out on this device, but Maestro could not be reached to end the session. Revoke it from another device under Account.';
    }
  } finally {
    btn.disabled = false;
  }
  signedOut(message, 'info');
}

// ---- views ----

function currentView() {
  const m = /^#\/([a-z]+)/.exec(window.location.hash);
  const key = m && views[m[1]] ? m[1] : 'cores';
  if (views[key].admin && !app.isAdmin) return 'cores';
  return key;
}

function route(focus) {
  if (!app.user) return;
  runCleanup();
  const key = currentView();
  const v = views[key];
  for (const a of nav.querySelectorAll('a')) {
    if (a.dataset.view === key) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  setTitle(v.title);
  clear(main);
  const heading = h('h1', { tabindex: '-1', id: 'view-title' }, v.title);
  const body = h('div', { class: 'view', id: `view-${key}` });
  main.append(heading, body);
  app.cleanup = v.render(body, app) || null;
  if (focus) heading.focus();
}

function start() {
  app.conn = new Conn({ url: maestroUrl(), onEvent, onClose });
  document.getElementById('signout').addEventListener('click', signOut);
  window.addEventListener('hashchange', () => route(true));
  // Another tab signed out (or in): follow it.
  window.addEventListener('storage', (ev) => {
    if (ev.key === TOKEN_KEY && !ev.newValue && app.user) {
      app.conn.close();
      signedOut('You signed out in another tab.');
    }
  });
  const token = localStorage.getItem(TOKEN_KEY);
  if (token) {
    clear(main).append(h('p', { class: 'muted' }, 'Signing in…'));
    resume(token);
  } else {
    showSignIn(null);
  }
}

start();
