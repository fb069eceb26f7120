// Browser tests of the Cores an admin manages: pairing a real Core from the page and
// seeing it come online by itself, live offline state, rename, token rotation (pushed
// to an online Core; shown once for an offline one) and removal with confirmation.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startMaestro, startCore, startCoreIn, stopProcess, launchBrowser, newPage, screenshot,
  signIn, cleanupAll, t,
} from './harness.mjs';

let maestro;
let browser;

before(async () => {
  [maestro, browser] = await Promise.all([startMaestro(), launchBrowser()]);
});
after(cleanupAll);

test('pair, rename, rotate and remove a real Core', { timeout: t(80000) }, async () => {
  const page = await newPage(browser);
  await signIn(page, maestro, 'default-admin', maestro.password);

  // Pair: a code, its countdown, and the commands with this page's Maestro URL.
  await page.locator('#nav').getByRole('link', { name: 'Pair a Core' }).click();
  await page.getByRole('button', { name: 'Generate pairing code' }).click();
  const code = (await page.locator('#pair-code').innerText()).trim();
  assert.match(code, /^[A-Za-z0-9]{6}$/);
  assert.match(await page.locator('#pair-countdown').innerText(), /^1[45]:\d\d$/);
  const bash = await page.locator('#cmd-bash').innerText();
  const ps = await page.locator('#cmd-powershell').innerText();
  assert.equal(bash, `CONDRIX_MAESTRO_URL='${maestro.wsUrl}' CONDRIX_MAESTRO_TOKEN='${code}' condrix-core`);
  assert.equal(ps, `$env:CONDRIX_MAESTRO_URL = '${maestro.wsUrl}'; $env:CONDRIX_MAESTRO_TOKEN = '${code}'; condrix-core`);
  await screenshot(page, '20-pair-code');

  // Start a real Core with that code: the page says so by itself.
  const core = startCore(maestro, code, 'build-box');
  await page.locator('#pair-waiting').filter({ hasText: 'build-box connected' }).waitFor({ timeout: t(20000) });
  await screenshot(page, '21-pair-connected');

  // Cores: online, with last seen and token prefix.
  await page.locator('#nav').getByRole('link', { name: 'Cores' }).click();
  const card = page.locator('#core-list > li').filter({ hasText: 'build-box' });
  await card.locator('.badge.online').waitFor();
  // Its token prefix shows once the Core has confirmed the token it was issued.
  await card.locator('.facts').filter({ hasText: /Token\s*[0-9a-f]{8}…/ }).waitFor({ timeout: t(15000) });
  await screenshot(page, '22-cores-online');

  // Rename.
  await card.getByRole('button', { name: 'Rename' }).click();
  await page.getByLabel('New name').fill('Build server');
  await page.getByRole('button', { name: 'Save name' }).click();
  const renamed = page.locator('#core-list > li').filter({ hasText: 'Build server' });
  await renamed.waitFor();
  await page.getByText('Renamed to Build server.').waitFor();

  // Rotate while online: Maestro pushes the token, nothing to copy.
  await renamed.getByRole('button', { name: 'Rotate token' }).click();
  await page.getByRole('dialog').getByText('hands it the new token itself').waitFor();
  await screenshot(page, '23-rotate-confirm');
  await page.getByRole('dialog').getByRole('button', { name: 'Rotate' }).click();
  await page.getByText('New token stored by Build server.').waitFor({ timeout: t(15000) });

  // The Core stops: the list shows it offline, live.
  await stopProcess(core);
  await renamed.locator('.badge.offline').waitFor({ timeout: t(10000) });

  // Rotate while offline: the new token is shown once, with a copy button.
  await renamed.getByRole('button', { name: 'Rotate token' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Rotate' }).click();
  const tokenBox = renamed.getByLabel('New token');
  await tokenBox.waitFor();
  const token = await tokenBox.inputValue();
  assert.match(token, /^[0-9a-f]{64}$/);
  await renamed.getByRole('button', { name: 'Copy' }).click();
  await renamed.getByText(/Copied\.|Select the text/).waitFor();
  await screenshot(page, '24-rotate-offline-token');

  // The Core, given that token by hand, comes back online.
  const back = startCoreIn(core.home, maestro, token, 'build-box');
  await renamed.locator('.badge.online').waitFor({ timeout: t(20000) });

  // Remove, after a confirmation (cancel first: nothing happens).
  await renamed.getByRole('button', { name: 'Remove' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Cancel' }).click();
  assert.equal(await renamed.count(), 1);
  await renamed.getByRole('button', { name: 'Remove' }).click();
  await screenshot(page, '25-remove-confirm');
  await page.getByRole('dialog').getByRole('button', { name: 'Remove' }).click();
  await page.getByText('Removed Build server.').waitFor();
  await renamed.waitFor({ state: 'detached' });
  await page.locator('#cores-empty').waitFor();
  await stopProcess(back);
  assert.deepEqual(page.problems.filter((p) => !/Failed to load resource/.test(p)), []);
});
