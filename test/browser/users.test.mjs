// Browser tests of users: an admin creates a plain user and grants it one of two real
// Cores; that user sees only the granted Core and no admin controls; and a session
// revoked from another browser context drops back to the sign-in screen at once.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startMaestro, startCore, cliPairCode, launchBrowser, newPage, screenshot, signIn,
  fillSignIn, cleanupAll, t,
} from './harness.mjs';

let maestro;
let browser;

before(async () => {
  [maestro, browser] = await Promise.all([startMaestro(), launchBrowser()]);
  const [c1, c2] = await Promise.all([cliPairCode(maestro), cliPairCode(maestro)]);
  startCore(maestro, c1, 'alpha');
  startCore(maestro, c2, 'beta');
});
after(cleanupAll);

test('a plain user sees only its granted Core; sessions revoke across contexts', { timeout: t(80000) }, async () => {
  const admin = await newPage(browser);
  await signIn(admin, maestro, 'default-admin', maestro.password);
  const cores = admin.locator('#core-list > li');
  await cores.filter({ hasText: 'alpha' }).locator('.badge.online').waitFor({ timeout: t(20000) });
  await cores.filter({ hasText: 'beta' }).locator('.badge.online').waitFor({ timeout: t(20000) });

  // Create alice with a password given here.
  await admin.locator('#nav').getByRole('link', { name: 'Users' }).click();
  const create = admin.locator('#user-create');
  await create.getByLabel('Username').fill('alice');
  await create.getByLabel('Role').selectOption('user');
  await create.getByLabel('Password').fill('alice-password-1');
  await create.getByRole('button', { name: 'Create user' }).click();
  await admin.getByText('Created alice (user).').waitFor();
  const alice = admin.locator('#user-list > li').filter({ hasText: 'alice' });
  await alice.waitFor();

  // And bob with a generated password, shown once.
  await create.getByLabel('Username').fill('bob');
  await create.getByLabel('Password').fill('');
  await create.getByRole('button', { name: 'Create user' }).click();
  await admin.getByText('Created bob (user).').waitFor();
  const generated = await admin.locator('#user-secret').getByLabel('Password').inputValue();
  assert.ok(generated.length >= 12, 'a generated password is shown');

  // Grant alice the Core alpha.
  const option = await alice.locator('select.core-select option').filter({ hasText: 'alpha' }).getAttribute('value');
  await alice.getByLabel('Core for alice').selectOption(option);
  await alice.getByRole('button', { name: 'Grant' }).click();
  await alice.getByText(/alice may now use alpha/).waitFor();
  assert.equal(await alice.locator('dd.granted').textContent(), 'alpha');
  await screenshot(admin, '30-users');
  // The grant comes back from users.list after a reload too.
  await admin.reload();
  await alice.locator('dd.granted').filter({ hasText: 'alpha' }).waitFor();

  // Alice, in another context: only alpha, and no admin controls.
  const a1 = await newPage(browser);
  await signIn(a1, maestro, 'alice', 'alice-password-1');
  const aliceCores = a1.locator('#core-list > li');
  await aliceCores.filter({ hasText: 'alpha' }).waitFor();
  assert.equal(await aliceCores.count(), 1);
  assert.equal(await a1.locator('#nav-users').count(), 0);
  assert.equal(await a1.locator('#nav-pair').count(), 0);
  assert.equal(await a1.getByRole('button', { name: 'Rename' }).count(), 0);
  assert.equal(await a1.getByRole('button', { name: 'Remove' }).count(), 0);
  assert.equal(await a1.getByRole('button', { name: 'Rotate token' }).count(), 0);
  await screenshot(a1, '31-user-sees-granted-core');
  // Typing an admin view's address changes nothing.
  await a1.goto(`${maestro.url}/#/users`);
  await a1.getByRole('heading', { name: 'Cores', level: 1 }).waitFor();

  // A phone-sized screen.
  await a1.setViewportSize({ width: 375, height: 740 });
  await screenshot(a1, '32-user-phone');
  await a1.setViewportSize({ width: 1100, height: 800 });

  // A second session of alice; the first one revokes it.
  const a2 = await newPage(browser);
  await signIn(a2, maestro, 'alice', 'alice-password-1');
  await a1.locator('#nav').getByRole('link', { name: 'Account' }).click();
  const sessions = a1.locator('#session-list > li');
  await sessions.nth(1).waitFor();
  assert.equal(await sessions.count(), 2);
  await screenshot(a1, '33-sessions');
  await sessions.filter({ has: a1.locator('[data-act="revoke-session"]', { hasText: 'Revoke' }) })
    .getByRole('button', { name: 'Revoke' }).click();
  await a1.getByRole('dialog').getByRole('button', { name: 'Revoke' }).click();
  await a1.getByText('Session revoked.').waitFor();

  // The other context is dropped to sign-in without doing anything.
  await a2.getByRole('alert').filter({ hasText: 'This session was revoked.' }).waitFor({ timeout: t(10000) });
  await a2.getByRole('heading', { name: 'Sign in to Maestro' }).waitFor();
  assert.equal(await a2.evaluate(() => localStorage.getItem('condrix.maestro.sessionToken')), null);
  await screenshot(a2, '34-revoked-elsewhere');
  await a1.waitForFunction(() => document.querySelectorAll('#session-list > li').length === 1);

  // The revoked browser signs in again fine.
  await fillSignIn(a2, 'alice', 'alice-password-1');
  await a2.getByRole('heading', { name: 'Cores', level: 1 }).waitFor();

  // The admin revokes alpha from alice: alice's list empties after a reload.
  await alice.getByLabel('Core for alice').selectOption(option);
  await alice.getByRole('button', { name: 'Revoke' }).click();
  await alice.getByText(/alice may no longer use alpha/).waitFor();
  await a2.reload();
  await a2.getByText('No Cores are shared with you yet.').waitFor();

  for (const p of [admin, a1, a2]) {
    assert.deepEqual(p.problems.filter((x) => !/Failed to load resource/.test(x)), []);
  }
});
