// The Cores view: every Core the user may see, with its live online/offline state
// (maestro/core.online and core.offline events, no polling), when it was last seen and
// its token prefix; admins also rename, rotate the token and remove.
import { h, clear, field, statusLine, timeEl, secretBox, confirmDialog } from './dom.js';

export function coresView(root, app) {
  const st = statusLine();
  const list = h('ul', { class: 'cards', id: 'core-list', 'aria-label': 'Cores' });
  const empty = h('p', { class: 'muted', id: 'cores-empty', hidden: true },
    app.isAdmin ? 'No Cores yet. ' : 'No Cores are shared with you yet. Ask an admin to grant you one.',
    app.isAdmin ? h('a', { href: '#/pair' }, 'Pair a Core') : '', app.isAdmin ? ' to add one.' : '');
  // Per-Core panels that must survive a re-render (an open rename form, a new token).
  const panels = new Map();

  // Redraws keep keyboard focus where it was: on the same control of the same Core.
  function render(cores) {
    const active = document.activeElement;
    const inList = active && list.contains(active);
    const li = inList ? active.closest('li[data-id]') : null;
    const act = inList ? active.dataset.act : undefined;
    clear(list);
    empty.hidden = cores.length > 0;
    for (const c of cores) list.append(card(c));
    if (!inList) return;
    if (document.contains(active)) {
      active.focus();
    } else if (li && act) {
      const again = list.querySelector(`li[data-id="${CSS.escape(li.dataset.id)}"] [data-act="${act}"]`);
      if (again) again.focus();
    }
  }

  function card(c) {
    const online = c.status === 'online';
    const li = h('li', { class: 'card core', dataset: { id: c.id, coreId: c.coreId, status: c.status } });
    li.append(
      h('div', { class: 'core-head' },
        h('h2', { class: 'core-name' }, c.displayName || c.coreId),
        h('span', { class: `badge ${online ? 'online' : 'offline'}`, 'aria-label': `status: ${c.status}` }, online ? 'online' : 'offline')),
      h('dl', { class: 'facts' },
        h('dt', {}, 'Last seen'), h('dd', {}, online ? 'now' : timeEl(c.lastSeenAt)),
        h('dt', {}, 'Token'), h('dd', { class: 'mono' }, c.tokenPrefix ? `${c.tokenPrefix}…` : (c.pairedAt ? 'none' : 'being confirmed…')),
        h('dt', {}, 'Core id'), h('dd', { class: 'mono small' }, c.coreId),
        h('dt', {}, 'Paired'), h('dd', {}, c.pairedAt ? timeEl(c.pairedAt) : 'pending')));
    if (app.isAdmin) {
      li.append(h('div', { class: 'row actions' },
        h('button', { type: 'button', class: 'secondary', dataset: { act: 'rename' }, onclick: () => openRename(c) }, 'Rename'),
        h('button', { type: 'button', class: 'secondary', dataset: { act: 'rotate' }, onclick: () => rotate(c) }, 'Rotate token'),
        h('button', { type: 'button', class: 'danger', dataset: { act: 'remove' }, onclick: () => remove(c) }, 'Remove')));
    }
    const panel = panels.get(c.id);
    if (panel) {
      li.classList.add('has-panel');
      li.append(panel);
    }
    return li;
  }

  function setPanel(id, el) {
    if (el) panels.set(id, el);
    else panels.delete(id);
    render(app.cores);
  }

  function openRename(c) {
    const f = field('New name', { value: c.displayName || '', maxlength: '128', required: true, autocomplete: 'off' });
    const pst = statusLine();
    const form = h('form', { method: 'post', class: 'panel', novalidate: true },
      f.wrap,
      h('div', { class: 'row' },
        h('button', { type: 'submit' }, 'Save name'),
        h('button', { type: 'button', class: 'secondary', onclick: () => setPanel(c.id, null) }, 'Cancel')),
      pst.el);
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const name = f.input.value.trim();
      if (!name) {
        pst.err('Enter a name.');
        return;
      }
      try {
        await app.request('cores.rename', { id: c.id, displayName: name });
        panels.delete(c.id);
        st.ok(`Renamed to ${name}.`);
        await app.refreshCores();
      } catch (e) {
        pst.err(e);
      }
    });
    setPanel(c.id, form);
    f.input.focus();
    f.input.select();
  }

  async function rotate(c) {
    const ok = await confirmDialog('Rotate the token?',
      `${c.displayName || c.coreId} gets a new token; the old one stops working.` +
      (c.status === 'online' ? ' The Core is online, so Maestro hands it the new token itself.' :
        ' The Core is offline, so you will have to give it the new token by hand.'), 'Rotate');
    if (!ok) return;
    st.busy('Rotating the token…');
    try {
      const r = await app.request('cores.rotateToken', { id: c.id });
      if (r.pushed) {
        st.ok(`New token stored by ${c.displayName || c.coreId}.`);
        setPanel(c.id, null);
      } else {
        st.ok('Token rotated. It could not be handed to the Core: copy it now, it is shown only once.');
        setPanel(c.id, h('div', { class: 'panel new-token' },
          h('p', {}, 'Start the Core with this token (as CONDRIX_MAESTRO_TOKEN), or store it in its settings. It is shown only once.'),
          secretBox('New token', r.token),
          h('button', { type: 'button', class: 'secondary', onclick: () => setPanel(c.id, null) }, 'Done')));
      }
      await app.refreshCores();
    } catch (e) {
      st.err(e);
    }
  }

  async function remove(c) {
    const ok = await confirmDialog(`Remove ${c.displayName || c.coreId}?`,
      'The Core is disconnected and its token stops working. To use it again you must pair it anew.', 'Remove');
    if (!ok) return;
    try {
      await app.request('cores.remove', { id: c.id });
      panels.delete(c.id);
      st.ok(`Removed ${c.displayName || c.coreId}.`);
      await app.refreshCores();
    } catch (e) {
      st.err(e);
    }
  }

  root.append(
    h('p', { class: 'muted' }, 'States update live as Cores connect and disconnect.'),
    st.el, empty, list);
  const off = app.onCores((cores) => render(cores));
  render(app.cores);
  app.refreshCores().catch((e) => st.err(e));
  // "Last seen" ages as time passes: redraw the relative times now and then.
  const tick = setInterval(() => render(app.cores), 30000);
  return () => {
    off();
    clearInterval(tick);
  };
}
