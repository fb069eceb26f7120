// The Users view (admin): create users (with a password given or generated, shown
// once), delete them, change roles, reset passwords, and grant or revoke the Cores a
// plain user may see.
import { h, clear, field, selectField, statusLine, timeEl, secretBox, confirmDialog } from './dom.js';

export function usersView(root, app) {
  const st = statusLine();
  const list = h('ul', { class: 'cards', id: 'user-list', 'aria-label': 'Users' });
  const shown = h('div', { id: 'user-secret' });

  // ---- create ----
  const name = field('Username', { id: 'new-username', autocomplete: 'off', autocapitalize: 'none', spellcheck: 'false', maxlength: '64', required: true },
    'Letters, digits, ".", "_", "@" or "-".');
  const role = selectField('Role', [['user', 'user (granted Cores only)'], ['admin', 'admin (everything)']], { id: 'new-role' });
  const pw = field('Password', { id: 'new-password', type: 'password', autocomplete: 'new-password' },
    'Leave empty to generate one, shown once.');
  const cst = statusLine();
  const create = h('form', { method: 'post', class: 'card', id: 'user-create', novalidate: true, 'aria-labelledby': 'create-title' },
    h('h2', { id: 'create-title' }, 'Create a user'),
    h('div', { class: 'row wrap' }, name.wrap, role.wrap, pw.wrap),
    h('button', { type: 'submit', id: 'user-create-submit' }, 'Create user'), cst.el);

  create.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const username = name.input.value.trim();
    if (!username) {
      cst.err('Enter a username.');
      name.input.focus();
      return;
    }
    const payload = { username, role: role.input.value };
    if (pw.input.value) payload.password = pw.input.value;
    cst.busy('Creating…');
    try {
      const r = await app.request('users.create', payload);
      pw.input.value = '';
      name.input.value = '';
      cst.ok(`Created ${r.user.username} (${r.user.role}).`);
      clear(shown);
      if (r.password) {
        shown.append(h('div', { class: 'card panel' },
          h('p', {}, `The generated password of ${r.user.username}. Hand it over now: it is shown only once.`),
          secretBox('Password', r.password),
          h('button', { type: 'button', class: 'secondary', onclick: () => clear(shown) }, 'Done')));
      }
      load();
    } catch (e) {
      cst.err(e);
    }
  });

  // ---- list ----
  function userCard(u, cores) {
    const self = app.user && app.user.id === u.id;
    const li = h('li', { class: 'card user', dataset: { id: u.id, username: u.username } });
    const ust = statusLine();
    const roleSel = selectField(`Role of ${u.username}`, [['user', 'user'], ['admin', 'admin']], { class: 'role-select' });
    roleSel.input.value = u.role;
    const coreSel = selectField(`Core for ${u.username}`, cores.map((c) => [c.id, `${c.displayName || c.coreId} (${c.status})`]), { class: 'core-select' });
    // The Cores this user may see, kept in step with grant and revoke below.
    const granted = new Set(u.cores || []);
    const grantedEl = h('dd', { class: 'granted' });
    const showGranted = () => {
      const names = cores.filter((c) => granted.has(c.id)).map((c) => c.displayName || c.coreId);
      grantedEl.textContent = names.length ? names.join(', ') : 'none';
    };
    showGranted();
    const changeGrant = async (grant) => {
      const coreId = coreSel.input.value;
      await app.request(grant ? 'users.grantCore' : 'users.revokeCore', { userId: u.id, coreId });
      if (grant) granted.add(coreId);
      else granted.delete(coreId);
      showGranted();
    };

    const act = async (fn, okText) => {
      try {
        ust.busy('Working…');
        await fn();
        ust.ok(okText);
      } catch (e) {
        ust.err(e);
      }
    };

    li.append(...[
      h('div', { class: 'core-head' },
        h('h3', { class: 'user-name' }, u.username, self ? ' (you)' : ''),
        h('span', { class: `badge role-${u.role}` }, u.role)),
      h('dl', { class: 'facts' },
        h('dt', {}, 'Two-factor'), h('dd', {}, u.totpEnabled ? 'on' : 'off'),
        h('dt', {}, 'Created'), h('dd', {}, timeEl(u.createdAt)),
        ...(u.role === 'user' ? [h('dt', {}, 'Cores'), grantedEl] : [])),
      h('div', { class: 'row wrap' },
        roleSel.wrap,
        h('button', {
          type: 'button', class: 'secondary', dataset: { act: 'role' },
          onclick: () => act(async () => {
            await app.request('users.setRole', { id: u.id, role: roleSel.input.value });
            load();
          }, `${u.username} is now ${roleSel.input.value}.`),
        }, 'Change role')),
      u.role === 'user' && cores.length ? h('div', { class: 'row wrap' },
        coreSel.wrap,
        h('button', {
          type: 'button', class: 'secondary', dataset: { act: 'grant' },
          onclick: () => act(() => changeGrant(true),
            `${u.username} may now use ${coreSel.input.selectedOptions[0]?.textContent || 'the Core'}.`),
        }, 'Grant'),
        h('button', {
          type: 'button', class: 'secondary', dataset: { act: 'revoke-core' },
          onclick: () => act(() => changeGrant(false),
            `${u.username} may no longer use ${coreSel.input.selectedOptions[0]?.textContent || 'the Core'}.`),
        }, 'Revoke')) : null,
      h('div', { class: 'row wrap actions' },
        h('button', {
          type: 'button', class: 'secondary', dataset: { act: 'reset' },
          onclick: async () => {
            if (!(await confirmDialog(`Reset the password of ${u.username}?`,
              'A new password is generated and shown once; their sessions are signed out.', 'Reset password'))) return;
            try {
              const r = await app.request('users.resetPassword', { id: u.id });
              ust.ok('Password reset.');
              clear(shown).append(h('div', { class: 'card panel' },
                h('p', {}, `The new password of ${u.username}. Hand it over now: it is shown only once.`),
                secretBox('New password', r.password),
                h('button', { type: 'button', class: 'secondary', onclick: () => clear(shown) }, 'Done')));
              shown.querySelector('input')?.focus();
            } catch (e) {
              ust.err(e);
            }
          },
        }, 'Reset password'),
        h('button', {
          type: 'button', class: 'danger', dataset: { act: 'delete' },
          onclick: async () => {
            if (!(await confirmDialog(`Delete ${u.username}?`, 'The user and all its sessions are gone for good.', 'Delete'))) return;
            try {
              await app.request('users.delete', { id: u.id });
              st.ok(`Deleted ${u.username}.`);
              load();
            } catch (e) {
              ust.err(e);
            }
          },
        }, 'Delete')),
      ust.el].filter(Boolean));
    return li;
  }

  async function load() {
    try {
      const [r] = await Promise.all([app.request('users.list', {}), app.refreshCores()]);
      clear(list);
      for (const u of r.users || []) list.append(userCard(u, app.cores));
    } catch (e) {
      st.err(e);
    }
  }

  root.append(create, shown, st.el, h('h2', {}, 'All users'),
    h('p', { class: 'muted' }, 'Plain users see only the Cores granted to them. Pick a Core and grant or revoke it; doing it twice is harmless.'), list);
  load();
  return null;
}
