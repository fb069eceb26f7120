// The Account view: change the password, set up TOTP (scan the server's QR code, confirm
// a code) or turn it off with the password, and see and revoke one's own sessions.
import { h, clear, field, statusLine, timeEl, confirmDialog } from './dom.js';

export function accountView(root, app) {
  const cleanups = [];

  // ---- password ----
  const oldPw = field('Current password', { type: 'password', autocomplete: 'current-password', id: 'pw-old', required: true });
  const newPw = field('New password', { type: 'password', autocomplete: 'new-password', id: 'pw-new', required: true }, 'At least 8 characters.');
  const newPw2 = field('New password again', { type: 'password', autocomplete: 'new-password', id: 'pw-new2', required: true });
  const pst = statusLine();
  const pwForm = h('form', { method: 'post', class: 'card', id: 'password-form', novalidate: true, 'aria-labelledby': 'pw-title' },
    h('h2', { id: 'pw-title' }, 'Change password'), oldPw.wrap, newPw.wrap, newPw2.wrap,
    h('button', { type: 'submit', id: 'pw-submit' }, 'Change password'), pst.el);
  pwForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (!oldPw.input.value || !newPw.input.value) {
      pst.err('Fill in the current and the new password.');
      return;
    }
    if (newPw.input.value !== newPw2.input.value) {
      pst.err('The two new passwords differ.');
      newPw2.input.focus();
      return;
    }
    pst.busy('Changing…');
    try {
      await app.request('auth.changePassword', { oldPassword: oldPw.input.value, newPassword: newPw.input.value });
      for (const f of [oldPw, newPw, newPw2]) f.input.value = '';
      pst.ok('Password changed. Your other sessions were signed out.');
      loadSessions();
    } catch (e) {
      pst.err(e.code === 'INVALID_CREDENTIALS' ? 'The current password is wrong.' : e);
    }
  });

  // ---- TOTP ----
  const totpBox = h('section', { class: 'card', id: 'totp-box', 'aria-labelledby': 'totp-title' });
  const tst = statusLine();
  let qrUrl = null;
  const dropQr = () => {
    if (qrUrl) URL.revokeObjectURL(qrUrl);
    qrUrl = null;
  };
  cleanups.push(dropQr);

  async function loadTotp() {
    dropQr();
    clear(totpBox).append(h('h2', { id: 'totp-title' }, 'Two-factor sign-in (TOTP)'));
    try {
      const r = await app.request('auth.totp.status', {});
      if (r.enabled) showTotpOn();
      else showTotpOff();
    } catch (e) {
      totpBox.append(tst.el);
      tst.err(e);
    }
  }

  function showTotpOff() {
    const btn = h('button', { type: 'button', id: 'totp-setup' }, 'Set up two-factor sign-in');
    btn.addEventListener('click', async () => {
      btn.disabled = true;
      try {
        const r = await app.request('auth.totp.setup', {});
        showEnrol(r);
      } catch (e) {
        tst.err(e);
        btn.disabled = false;
      }
    });
    totpBox.append(h('p', {}, 'Off. With it on, signing in also asks for a 6-digit code from an authenticator app.'), btn, tst.el);
  }

  function showEnrol(r) {
    dropQr();
    // The server's SVG is shown as an image: it can hold no script, and needs no inline markup.
    qrUrl = URL.createObjectURL(new Blob([r.qrSvg], { type: 'image/svg+xml' }));
    const code = field('Code from the app', { id: 'totp-code', inputmode: 'numeric', autocomplete: 'one-time-code', pattern: '[0-9]{6}', maxlength: '6', required: true });
    const form = h('form', { method: 'post', id: 'totp-enable-form', novalidate: true },
      code.wrap,
      h('div', { class: 'row' },
        h('button', { type: 'submit', id: 'totp-enable' }, 'Turn on'),
        h('button', { type: 'button', class: 'secondary', onclick: () => loadTotp() }, 'Cancel')));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const c = code.input.value.replace(/\s+/g, '');
      if (!/^[0-9]{6}$/.test(c)) {
        tst.err('The code is 6 digits.');
        code.input.focus();
        return;
      }
      try {
        await app.request('auth.totp.enable', { code: c });
        await loadTotp();
        tst.ok('Two-factor sign-in is on. You will be asked for a code when you sign in.');
      } catch (e) {
        tst.err(e.code === 'INVALID_TOTP' ? 'That code is wrong. Check the time on your phone and try the current code.' : e);
        code.input.select();
        code.input.focus();
      }
    });
    clear(totpBox).append(
      h('h2', { id: 'totp-title' }, 'Two-factor sign-in (TOTP)'),
      h('ol', {},
        h('li', {}, 'Scan this QR code with an authenticator app (or type the key below).'),
        h('li', {}, 'Enter the 6-digit code the app shows, to prove it works.')),
      h('img', { src: qrUrl, alt: 'QR code of the TOTP key for this account', class: 'qr', id: 'totp-qr', width: '220', height: '220' }),
      h('p', {}, 'Key: ', h('code', { class: 'mono', id: 'totp-secret' }, r.secret)),
      form, tst.el);
    code.input.focus();
  }

  function showTotpOn() {
    const pw = field('Password', { type: 'password', autocomplete: 'current-password', id: 'totp-off-password', required: true });
    const form = h('form', { method: 'post', id: 'totp-disable-form', novalidate: true },
      h('p', {}, 'On. To turn it off, confirm with your password.'), pw.wrap,
      h('button', { type: 'submit', class: 'danger', id: 'totp-disable' }, 'Turn off'));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      if (!pw.input.value) {
        tst.err('Enter your password.');
        return;
      }
      try {
        await app.request('auth.totp.disable', { password: pw.input.value });
        pw.input.value = '';
        await loadTotp();
        tst.ok('Two-factor sign-in is off.');
      } catch (e) {
        tst.err(e.code === 'INVALID_CREDENTIALS' ? 'The password is wrong.' : e);
      }
    });
    totpBox.append(form, tst.el);
  }

  // ---- sessions ----
  const sessBox = h('section', { class: 'card', 'aria-labelledby': 'sess-title' });
  const sst = statusLine();
  const sessList = h('ul', { class: 'plain sessions', id: 'session-list' });
  sessBox.append(h('h2', { id: 'sess-title' }, 'Your sessions'),
    h('p', { class: 'muted' }, 'Every browser or device signed in as you. Revoke one to sign it out at once.'), sst.el, sessList);

  async function loadSessions() {
    try {
      const r = await app.request('sessions.list', {});
      clear(sessList);
      for (const s of r.sessions || []) {
        sessList.append(h('li', { class: 'session', dataset: { id: s.id, current: s.current ? '1' : '0' } },
          h('div', {},
            h('strong', {}, s.current ? 'This browser' : (s.userAgent ? s.userAgent.slice(0, 80) : 'Unknown client')),
            h('div', { class: 'muted small' }, `from ${s.ip || 'unknown address'} · signed in `, timeEl(s.createdAt), ' · last active ', timeEl(s.lastSeenAt))),
          h('button', {
            type: 'button',
            class: s.current ? 'secondary' : 'danger',
            dataset: { act: 'revoke-session' },
            onclick: async () => {
              if (!(await confirmDialog(s.current ? 'Sign out this browser?' : 'Revoke this session?',
                s.current ? 'This browser is signed out.' : 'That browser or device is signed out at once.', 'Revoke'))) return;
              try {
                await app.request('sessions.revoke', { id: s.id });
                if (!s.current) {
                  sst.ok('Session revoked.');
                  loadSessions();
                }
              } catch (e) {
                sst.err(e);
              }
            },
          }, s.current ? 'End this session' : 'Revoke')));
      }
    } catch (e) {
      sst.err(e);
    }
  }

  root.append(h('p', {}, 'Signed in as ', h('strong', {}, app.user.username), ` (${app.user.role}).`), pwForm, totpBox, sessBox);
  loadTotp();
  loadSessions();
  return () => cleanups.forEach((fn) => fn());
}
