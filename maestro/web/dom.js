// Small DOM helpers: elements built from data (never from HTML strings, so nothing a
// server or user sends can become markup), plain-words error texts, times and copying.

// h('button', {type: 'button', onclick: fn, class: 'x'}, 'text', child...)
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') {
      el.addEventListener(k.slice(2), v);
    } else if (k === 'class') {
      el.className = v;
    } else if (k === 'dataset') {
      Object.assign(el.dataset, v);
    } else if (k === 'value') {
      el.value = v;
    } else if (v === true) {
      el.setAttribute(k, '');
    } else {
      el.setAttribute(k, String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

let uid = 0;
// A unique id for label/input pairs.
export function nextId(prefix) {
  uid += 1;
  return `${prefix}-${uid}`;
}

// A labelled input: returns {wrap, input}.
export function field(label, attrs = {}, hint = null) {
  const id = attrs.id || nextId('f');
  const input = h('input', { ...attrs, id });
  const kids = [h('label', { for: id }, label), input];
  if (hint) {
    const hid = `${id}-hint`;
    input.setAttribute('aria-describedby', hid);
    kids.push(h('small', { id: hid, class: 'hint' }, hint));
  }
  return { wrap: h('div', { class: 'field' }, kids), input };
}

// A labelled select of [value, text] options.
export function selectField(label, options, attrs = {}) {
  const id = attrs.id || nextId('s');
  const sel = h('select', { ...attrs, id }, options.map(([v, t]) => h('option', { value: v }, t)));
  return { wrap: h('div', { class: 'field' }, h('label', { for: id }, label), sel), input: sel };
}

// A status line under a form: role=status for progress and success, role=alert for errors.
export function statusLine() {
  const el = h('p', { class: 'status', role: 'status', 'aria-live': 'polite' });
  return {
    el,
    ok(text) {
      el.className = 'status ok';
      el.setAttribute('role', 'status');
      el.textContent = text;
    },
    err(e) {
      el.className = 'status error';
      el.setAttribute('role', 'alert');
      el.textContent = typeof e === 'string' ? e : errorText(e);
    },
    busy(text) {
      el.className = 'status muted';
      el.setAttribute('role', 'status');
      el.textContent = text;
    },
    clear() {
      el.className = 'status';
      el.textContent = '';
    },
  };
}

function sentence(s) {
  if (!s) return '';
  const t = s.charAt(0).toUpperCase() + s.slice(1);
  return /[.!?]$/.test(t) ? t : `${t}.`;
}

// What went wrong, in plain words, for any ProtoError (or other failure).
export function errorText(e) {
  const code = e && e.code;
  switch (code) {
    case 'INVALID_CREDENTIALS':
      return 'Wrong username or password.';
    case 'TOTP_REQUIRED':
      return 'This account needs a 6-digit code from its authenticator app.';
    case 'INVALID_TOTP':
      return /already used/.test(e.message || '')
        ? 'That code was already used. Wait for the next one and try again.'
        : 'That code is wrong. Check your authenticator app and try again.';
    case 'RATE_LIMITED': {
      const n = Number(e.details && e.details.retryAfter) || 1;
      return `Too many attempts. Try again in ${n} second${n === 1 ? '' : 's'}.`;
    }
    case 'SESSION_EXPIRED':
      return 'Your session has expired. Sign in again.';
    case 'INVALID_SESSION':
      return 'Your session has ended. Sign in again.';
    case 'FORBIDDEN':
      return sentence(e.message) || 'You are not allowed to do this.';
    case 'DISCONNECTED':
      return 'Cannot reach Maestro. Check the connection and try again.';
    case 'TIMEOUT':
      return 'Maestro did not answer in time. Try again.';
    case 'NAME_TAKEN':
      return sentence(e.message) || 'This name is taken.';
    case 'NOT_FOUND':
      return sentence(e.message) || 'It no longer exists.';
    default:
      return sentence(e && e.message) || 'Something went wrong.';
  }
}

// "3 minutes ago", with the exact time in a title.
export function ago(iso) {
  if (!iso) return 'never';
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return String(iso);
  const s = Math.round((Date.now() - t) / 1000);
  if (s < -45) return `in ${span(-s)}`;
  if (s < 45) return 'just now';
  return `${span(s)} ago`;
}

// "3 minutes", "2 hours", "5 days" for a number of seconds (at least 45).
function span(s) {
  if (s < 90) return 'a minute';
  const m = Math.round(s / 60);
  if (m < 60) return `${m} minutes`;
  const hr = Math.round(m / 60);
  if (hr < 36) return `${hr} hour${hr === 1 ? '' : 's'}`;
  const d = Math.round(hr / 24);
  return `${d} days`;
}

export function timeEl(iso) {
  const t = iso ? Date.parse(iso) : NaN;
  if (Number.isNaN(t)) return h('span', {}, iso ? String(iso) : 'never');
  return h('time', { datetime: iso, title: new Date(t).toLocaleString() }, ago(iso));
}

// Copy text; falls back to selecting it when the Clipboard API is not available.
export async function copyText(text, fallbackEl) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    if (fallbackEl && fallbackEl.select) {
      fallbackEl.focus();
      fallbackEl.select();
      try {
        return document.execCommand('copy');
      } catch {
        return false;
      }
    }
    return false;
  }
}

// A read-only secret with a copy button; shown once, never stored.
export function secretBox(label, value) {
  const id = nextId('secret');
  const input = h('input', { id, type: 'text', readonly: true, value, class: 'mono secret', spellcheck: 'false', autocomplete: 'off' });
  const st = h('span', { class: 'muted copy-status', role: 'status', 'aria-live': 'polite' });
  const btn = h('button', {
    type: 'button',
    class: 'secondary',
    onclick: async () => {
      st.textContent = (await copyText(value, input)) ? 'Copied.' : 'Select the text and copy it.';
    },
  }, 'Copy');
  return h('div', { class: 'field' }, h('label', { for: id }, label), h('div', { class: 'row' }, input, btn), st);
}

// A modal yes/no question on the page's one <dialog>; resolves true on confirm.
export function confirmDialog(title, text, okLabel = 'Confirm') {
  const dlg = document.getElementById('confirm');
  document.getElementById('confirm-title').textContent = title;
  document.getElementById('confirm-text').textContent = text;
  const ok = document.getElementById('confirm-ok');
  const cancel = document.getElementById('confirm-cancel');
  ok.textContent = okLabel;
  const back = document.activeElement;
  return new Promise((resolve) => {
    const done = (v) => {
      ok.removeEventListener('click', onOk);
      cancel.removeEventListener('click', onCancel);
      dlg.removeEventListener('close', onClose);
      if (dlg.open) dlg.close();
      if (back && back.focus && document.contains(back)) back.focus();
      resolve(v);
    };
    const onOk = () => done(true);
    const onCancel = () => done(false);
    const onClose = () => done(false);
    ok.addEventListener('click', onOk);
    cancel.addEventListener('click', onCancel);
    dlg.addEventListener('close', onClose);
    dlg.showModal();
    cancel.focus();
  });
}
