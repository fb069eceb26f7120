// The Pair view (admin): make a pairing code, show it large with its countdown, and the
// exact commands that start a Core with it (bash and PowerShell, this page's Maestro
// URL filled in). The new Core is announced here, and in the Cores list, as soon as it
// connects.
import { h, clear, statusLine, selectField, timeEl, copyText, nextId, confirmDialog } from './dom.js';
import { maestroOrigin } from './conn.js';

function shellQuote(s) {
  return `'${String(s).replace(/'/g, "'\\''")}'`;
}

function psQuote(s) {
  return `'${String(s).replace(/'/g, "''")}'`;
}

export function bashCommand(url, code) {
  return `CONDRIX_MAESTRO_URL=${shellQuote(url)} CONDRIX_MAESTRO_TOKEN=${shellQuote(code)} condrix-core`;
}

export function powershellCommand(url, code) {
  return `$env:CONDRIX_MAESTRO_URL = ${psQuote(url)}; $env:CONDRIX_MAESTRO_TOKEN = ${psQuote(code)}; condrix-core`;
}

function countdown(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  const m = Math.floor(s / 60);
  return `${m}:${String(s % 60).padStart(2, '0')}`;
}

function commandBox(label, text, id) {
  const st = h('span', { class: 'muted copy-status', role: 'status', 'aria-live': 'polite' });
  const pre = h('pre', { class: 'command', id, tabindex: '0', 'aria-label': label }, h('code', {}, text));
  return h('div', { class: 'command-box' },
    h('div', { class: 'row between' },
      h('h3', {}, label),
      h('button', {
        type: 'button',
        class: 'secondary',
        'aria-label': `Copy the ${label} command`,
        onclick: async () => {
          st.textContent = (await copyText(text)) ? 'Copied.' : 'Select the command and copy it.';
        },
      }, 'Copy')),
    pre, st);
}

export function pairView(root, app) {
  const st = statusLine();
  const ttl = selectField('Valid for', [['900', '15 minutes'], ['3600', '1 hour'], ['86400', '1 day']], { id: 'pair-ttl' });
  const uses = selectField('Cores that may use it', [['1', 'One Core'], ['5', 'Up to 5 Cores'], ['25', 'Up to 25 Cores']], { id: 'pair-uses' });
  const gen = h('button', { type: 'submit', id: 'pair-generate' }, 'Generate pairing code');
  const form = h('form', { method: 'post', class: 'card', novalidate: true },
    h('p', {}, 'A pairing code lets a new Core join this Maestro. The Core trades it for its own permanent token the first time it connects.'),
    h('div', { class: 'row wrap' }, ttl.wrap, uses.wrap), gen);
  const result = h('section', { class: 'card pair-result', id: 'pair-result', hidden: true, 'aria-live': 'polite' });
  const codesBox = h('section', { class: 'card', 'aria-labelledby': 'codes-title' });
  root.append(form, st.el, result, codesBox);

  let timer = null;
  let known = new Set(app.cores.map((c) => c.id));
  let offCores = null;

  async function loadCodes() {
    try {
      const r = await app.request('pairing.list', {});
      const codes = (r.codes || []).filter((c) => Date.parse(c.expiresAt) > Date.now() && c.uses < c.maxUses);
      clear(codesBox).append(h('h2', { id: 'codes-title' }, 'Active pairing codes'));
      if (!codes.length) {
        codesBox.append(h('p', { class: 'muted' }, 'None.'));
        return;
      }
      const ul = h('ul', { class: 'plain' });
      for (const c of codes) {
        ul.append(h('li', { class: 'row between' },
          h('span', {}, `Made by ${c.createdBy || 'an operator'}, used ${c.uses} of ${c.maxUses}, expires `, timeEl(c.expiresAt)),
          h('button', {
            type: 'button',
            class: 'danger small',
            onclick: async () => {
              if (!(await confirmDialog('Revoke this pairing code?', 'Cores can no longer pair with it.', 'Revoke'))) return;
              try {
                await app.request('pairing.revoke', { id: c.id });
                st.ok('Pairing code revoked.');
                loadCodes();
              } catch (e) {
                st.err(e);
              }
            },
          }, 'Revoke')));
      }
      codesBox.append(ul);
    } catch (e) {
      st.err(e);
    }
  }

  function show(r) {
    clearInterval(timer);
    const url = maestroOrigin();
    const exp = Date.parse(r.expiresAt);
    const left = h('span', { id: 'pair-countdown', class: 'countdown' });
    const waiting = h('p', { id: 'pair-waiting', class: 'muted', role: 'status', 'aria-live': 'polite' }, 'Waiting for a Core to connect with this code…');
    const codeId = nextId('code');
    clear(result).append(
      h('h2', { tabindex: '-1', id: 'pair-result-title' }, 'Pairing code'),
      h('p', { class: 'pair-code mono', id: 'pair-code', 'aria-describedby': codeId }, r.code),
      h('p', { id: codeId }, 'Expires in ', left, r.maxUses > 1 ? ` · usable by ${r.maxUses} Cores` : ' · usable once', '. It is shown only now.'),
      h('p', {}, 'On the machine of the new Core, run:'),
      commandBox('bash', bashCommand(url, r.code), 'cmd-bash'),
      commandBox('PowerShell', powershellCommand(url, r.code), 'cmd-powershell'),
      waiting);
    result.hidden = false;
    const tick = () => {
      const ms = exp - Date.now();
      if (ms <= 0) {
        left.textContent = '0:00';
        result.classList.add('expired');
        waiting.textContent = 'This code has expired. Generate a new one.';
        clearInterval(timer);
        return;
      }
      left.textContent = countdown(ms);
    };
    tick();
    timer = setInterval(tick, 1000);
    known = new Set(app.cores.map((c) => c.id));
    if (offCores) offCores();
    offCores = app.onCores((cores, ev) => {
      if (!ev || ev.action !== 'core.online') return;
      const id = ev.payload && ev.payload.id;
      if (!id || known.has(id)) return;
      known.add(id);
      const name = (ev.payload && (ev.payload.displayName || ev.payload.coreId)) || 'A new Core';
      waiting.className = 'ok';
      clear(waiting).append(`${name} connected and is paired. `, h('a', { href: '#/cores' }, 'See it in Cores'), '.');
      loadCodes();
    });
  }

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    gen.disabled = true;
    st.busy('Making a pairing code…');
    try {
      await app.refreshCores().catch(() => {});
      const r = await app.request('pairing.create', { ttlSeconds: Number(ttl.input.value), maxUses: Number(uses.input.value) });
      st.clear();
      show(r);
      document.getElementById('pair-result-title').focus();
      loadCodes();
    } catch (e) {
      st.err(e);
    } finally {
      gen.disabled = false;
    }
  });

  loadCodes();
  return () => {
    clearInterval(timer);
    if (offCores) offCores();
  };
}
