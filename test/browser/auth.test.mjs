// Browser tests of signing in and out: the security headers and the Origin check, wrong
// and right passwords, the session kept across reloads, sign-out killing the session on
// the server, and TOTP enrolment and sign-in with codes computed here.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startMaestro, launchBrowser, newPage, screenshot, fillSignIn, signIn, totp,
  awayFromStepEdge, rawHttp, upgradeRequest, cleanupAll, stopProcess, t,
} from './harness.mjs';

let maestro;
let browser;

before(async () => {
  [maestro, browser] = await Promise.all([startMaestro(), launchBrowser()]);
});
after(cleanupAll);

const get = (path, extra = '') => rawHttp(maestro.port,
  `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${maestro.port}\r\n${extra}\r\n`);

function assertSecurityHeaders(r, what) {
  const csp = r.headers['content-security-policy'] || '';
  assert.match(csp, /default-src 'self'/, `${what}: CSP default-src`);
  assert.match(csp, /frame-ancestors 'none'/, `${what}: CSP frame-ancestors`);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/, `${what}: no inline script`);
  assert.equal(r.headers['x-content-type-options'], 'nosniff', `${what}: nosniff`);
  assert.equal(r.headers['referrer-policy'], 'no-referrer', `${what}: referrer policy`);
}

test('static files carry types, ETags, Cache-Control and the security headers', { timeout: t(20000) }, async () => {
  const types = { '/': 'text/html', '/app.js': 'text/javascript', '/style.css': 'text/css', '/favicon.svg': 'image/svg+xml' };
  for (const [p, type] of Object.entries(types)) {
    const r = await get(p);
    assert.equal(r.status, 200, p);
    assert.ok(r.headers['content-type'].startsWith(type), `${p}: ${r.headers['content-type']}`);
    assert.match(r.headers.etag, /^"[0-9a-f]+"$/, `${p}: strong ETag`);
    assert.equal(r.headers['cache-control'], 'no-cache', p);
    assertSecurityHeaders(r, p);
    const again = await get(p, `If-None-Match: ${r.headers.etag}\r\n`);
    assert.equal(again.status, 304, `${p} revalidates`);
    assert.equal(again.body, '');
    assertSecurityHeaders(again, `${p} 304`);
  }
  const missing = await get('/no-such-file.js');
  assert.equal(missing.status, 404);
  assertSecurityHeaders(missing, '404');
  const post = await rawHttp(maestro.port, `POST /app.js HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n`);
  assert.equal(post.status, 405);
  assertSecurityHeaders(post, '405');
  const health = await get('/healthz');
  assert.equal(health.status, 200);
  assertSecurityHeaders(health, '/healthz');
});

test('the WebSocket upgrade checks Origin', { timeout: t(20000) }, async () => {
  assert.equal((await upgradeRequest(maestro.port, null)).status, 101, 'no Origin: a Core or the CLI');
  assert.equal((await upgradeRequest(maestro.port, maestro.url)).status, 101, 'own origin');
  const evil = await upgradeRequest(maestro.port, 'http://evil.example');
  assert.equal(evil.status, 403, 'foreign origin refused');
  assertSecurityHeaders(evil, '403');
  assert.equal((await upgradeRequest(maestro.port, 'null')).status, 403, 'opaque origin refused');
});

test('sign in, reload, sign out, TOTP', { timeout: t(80000) }, async () => {
  const page = await newPage(browser);
  const requests = [];
  page.on('request', (r) => requests.push(r.url()));

  await page.goto(`${maestro.url}/`);
  await page.getByRole('heading', { name: 'Sign in to Maestro' }).waitFor();
  await screenshot(page, '00-sign-in');

  // Wrong password: plain words, still on the form.
  await fillSignIn(page, 'default-admin', 'not-the-password');
  await page.getByRole('alert').filter({ hasText: 'Wrong username or password.' }).waitFor({ timeout: t(15000) });
  await screenshot(page, '01-sign-in-wrong');

  // Right password.
  await fillSignIn(page, 'default-admin', maestro.password);
  await page.getByRole('heading', { name: 'Cores', level: 1 }).waitFor();
  assert.equal(await page.locator('#who').innerText().then((s) => s.includes('default-admin')), true);
  assert.ok(await page.locator('#nav-users').isVisible(), 'admins see Users');
  assert.ok(await page.locator('#nav-pair').isVisible(), 'admins see Pair');
  await screenshot(page, '02-cores-empty');

  // Reload: still signed in (token in localStorage, resumed with maestro/auth).
  await page.reload();
  await page.getByRole('heading', { name: 'Cores', level: 1 }).waitFor();
  const token = await page.evaluate(() => localStorage.getItem('condrix.maestro.sessionToken'));
  assert.match(token, /^[0-9a-f]{64}$/);

  // Maestro restarts: the page says so, reconnects by itself and resumes the session.
  await stopProcess(maestro.proc);
  await page.locator('#banner').filter({ hasText: 'Connection to Maestro lost' }).waitFor();
  await screenshot(page, '03-reconnecting');
  maestro = await startMaestro({}, maestro);
  await page.locator('#banner').waitFor({ state: 'hidden', timeout: t(20000) });
  await page.getByRole('heading', { name: 'Cores', level: 1 }).waitFor();
  assert.equal(await page.locator('#signin-form').count(), 0);

  // Sign out: back to the form, and the old token is dead on the server too.
  await page.locator('#signout').click();
  await page.getByText('You have signed out.').waitFor();
  assert.equal(await page.evaluate(() => localStorage.getItem('condrix.maestro.sessionToken')), null);
  await page.evaluate((tk) => localStorage.setItem('condrix.maestro.sessionToken', tk), token);
  await page.reload();
  await page.getByRole('alert').filter({ hasText: /session has ended/ }).waitFor();
  await screenshot(page, '04-session-ended');

  // TOTP enrolment, with a code computed here.
  await fillSignIn(page, 'default-admin', maestro.password);
  await page.getByRole('heading', { name: 'Cores', level: 1 }).waitFor();
  await page.locator('#nav').getByRole('link', { name: 'Account' }).click();
  await page.getByRole('heading', { name: 'Account', level: 1 }).waitFor();
  await screenshot(page, '05-account');
  await page.getByRole('button', { name: 'Set up two-factor sign-in' }).click();
  const secret = (await page.locator('#totp-secret').innerText()).trim();
  assert.match(secret, /^[A-Z2-7]+=*$/);
  await page.waitForFunction(() => {
    const img = document.getElementById('totp-qr');
    return img && img.complete && img.naturalWidth > 0;
  });
  await screenshot(page, '06-totp-setup');
  await page.getByLabel('Code from the app').fill('000000' === totp(secret) ? '111111' : '000000');
  await page.getByRole('button', { name: 'Turn on' }).click();
  await page.getByRole('alert').filter({ hasText: 'That code is wrong' }).waitFor();
  await awayFromStepEdge();
  // The previous step's code: the current one stays fresh for the sign-in below.
  await page.getByLabel('Code from the app').fill(totp(secret, Date.now() / 1000 - 30));
  await page.getByRole('button', { name: 'Turn on' }).click();
  await page.getByText('Two-factor sign-in is on.').waitFor();
  await screenshot(page, '07-account-totp-on');

  // TOTP sign-in: the code is asked for after the password.
  await page.locator('#signout').click();
  await page.getByText('You have signed out.').waitFor();
  await fillSignIn(page, 'default-admin', maestro.password);
  await page.getByLabel('6-digit code').waitFor();
  await screenshot(page, '08-sign-in-totp');
  await page.getByLabel('6-digit code').fill('12345');
  await page.getByRole('button', { name: 'Verify' }).click();
  await page.getByRole('alert').filter({ hasText: 'The code is 6 digits.' }).waitFor();
  const now = Date.now() / 1000;
  const wrong = [300, 330, 360].map((d) => totp(secret, now + d)).find((c) => ![-30, 0, 30].some((d) => totp(secret, now + d) === c));
  await page.getByLabel('6-digit code').fill(wrong);
  await page.getByRole('button', { name: 'Verify' }).click();
  await page.getByRole('alert').filter({ hasText: 'That code is wrong.' }).waitFor({ timeout: t(15000) });
  await awayFromStepEdge();
  await page.getByLabel('6-digit code').fill(totp(secret));
  await page.getByRole('button', { name: 'Verify' }).click();
  // Signed in, back on the view the address names (Account).
  await page.getByRole('heading', { name: 'Account', level: 1 }).waitFor({ timeout: t(15000) });

  // Turn TOTP off again with the password.
  await page.locator('#totp-off-password').fill(maestro.password);
  await page.getByRole('button', { name: 'Turn off' }).click();
  await page.getByText('Two-factor sign-in is off.').waitFor();

  // A phone-sized screen.
  await page.setViewportSize({ width: 375, height: 740 });
  await page.locator('#nav').getByRole('link', { name: 'Account' }).click();
  await screenshot(page, '09-account-phone');

  // No secret in any URL the page asked for, and nothing the CSP refused.
  for (const u of requests) {
    assert.doesNotMatch(u, new RegExp(`${token}|${maestro.password}|${secret}`), `secret in ${u}`);
    assert.ok(u.startsWith(maestro.url) || u.startsWith('blob:') || u.startsWith(maestro.wsUrl), `foreign request ${u}`);
  }
  assert.deepEqual(page.problems.filter((p) => !/Failed to load resource/.test(p)), []);
});
