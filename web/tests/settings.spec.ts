// Project settings, for administrators: a key made (shown once) works against the API until it
// is revoked; an invitation link is made; the audit log records both, newest first.
import { expect, test } from '@playwright/test';
import { makeKey, signIn, switchKey } from './session';

test.beforeEach(async ({ page }) => {
  await signIn(page);
  await page.getByRole('link', { name: 'Project settings' }).click();
  await expect(page.getByRole('heading', { name: 'Project settings' })).toBeVisible();
});

test('a key is made and shown once, works, and stops working once revoked; the audit log says so', async ({ page, request }) => {
  const keys = page.getByRole('table', { name: 'API keys' });
  await page.locator('#make-key-role').selectOption('analyst');
  await page.getByLabel('Label (who or what holds it)').fill('Li Wei, analyst');
  await page.locator('#make-key-expires').selectOption('30d');
  await page.getByRole('button', { name: 'Make a key' }).click();
  const token = await page.getByLabel(/The new key, shown this once/).inputValue();
  expect(token).toMatch(/^plk_/);
  const row = keys.getByRole('row').filter({ hasText: 'Li Wei, analyst' });
  await expect(row).toContainText('Analyst');
  await expect(row).toContainText('active');

  const me = () => request.get('/v1/me', { headers: { authorization: `Bearer ${token}` } });
  const answer = await me();
  expect(answer.status()).toBe(200);
  expect((await answer.json()).key.role).toBe('analyst');
  await page.screenshot({ path: 'test-results/screens/settings-en.png', fullPage: true });

  await row.getByRole('button', { name: 'Revoke “Li Wei, analyst”' }).click();
  await row.getByRole('alertdialog').getByRole('button', { name: 'Revoke' }).click();
  await expect(row).toContainText('revoked');
  expect((await me()).status()).toBe(401);

  const audit = page.getByRole('table', { name: 'Audit log (newest first)' });
  const changes = await audit.locator('tbody tr td:nth-child(3)').allInnerTexts();
  expect(changes.slice(0, 2)).toEqual(['key.revoke', 'key.create']);
});

test('an invitation link is made, listed, and revoked', async ({ page, request }) => {
  await page.locator('#make-invitation-role').selectOption('marketer');
  await page.getByRole('button', { name: 'Make an invitation link' }).click();
  const link = await page.getByLabel(/The invitation link, shown this once/).inputValue();
  const token = link.match(/#\/accept\/(pli_\S+)$/)![1];
  const invitations = page.getByRole('table', { name: 'Invitations' });
  const row = invitations.getByRole('row').filter({ hasText: 'Marketer' }).filter({ hasText: 'active' });
  await expect(row).toHaveCount(1);
  await row.getByRole('button', { name: /^Revoke/ }).click();
  await row.getByRole('alertdialog').getByRole('button', { name: 'Revoke' }).click();
  await expect(invitations.getByRole('row').filter({ hasText: 'Marketer' }).filter({ hasText: 'active' })).toHaveCount(0);
  const accepted = await request.post('/v1/invitations:accept', { data: { token } });
  expect(accepted.status()).toBeGreaterThanOrEqual(400);
});

test('only an administrator sees the settings', async ({ page, request }) => {
  await switchKey(page, await makeKey(request, 'marketer', 'Zhang Min (settings test)'));
  await expect(page.getByText('demo · Marketer')).toBeVisible();
  await expect(page.getByRole('link', { name: 'Project settings' })).toHaveCount(0);
  await page.goto('/#/settings');
  await expect(page.getByRole('heading', { name: 'Acquisition management' })).toBeVisible();
});

test('attribution settings are edited and saved as a version; a stale edit is refused; a channel rule names the analysis’ channels', async ({ page, request }) => {
  const settingsUrl = '/v1/projects/demo/settings';
  const headers = { authorization: `Bearer ${process.env.PROMOLENS_ADMIN_KEY}` };
  const before = (await (await request.get(settingsUrl, { headers })).json()).version as number;
  const form = page.getByRole('form', { name: 'Attribution settings' });
  await expect(form).toBeVisible();

  // Two rules, the second moved first; an alias list; normalisation of sources; the window.
  await form.getByRole('button', { name: 'Add a rule' }).click();
  await form.getByLabel('Rule 1: Channel').fill('partners');
  await form.getByLabel('Rule 1: utm_source').fill('partner, Fair');
  await form.getByRole('button', { name: 'Add a rule' }).click();
  await form.getByLabel('Rule 2: Channel').fill('gzh_menu');
  await form.getByLabel('Rule 2: utm_medium').fill('menu');
  await form.getByRole('button', { name: 'Move rule 2 up' }).click();
  await form.getByLabel('Source (utm_source) read from').fill('utm_source, src，_um_channel');
  await form.getByLabel('Trim: Source').check();
  await form.getByLabel('Lower-case: Source').check();
  await form.getByLabel('Merge spellings: Source').fill('WeChat = wechat\n微信 = wechat');
  await form.getByLabel(/Lookback window/).fill('14');
  await form.getByRole('button', { name: `Save as version ${before + 1}` }).click();
  await expect(form.getByRole('status')).toHaveText(`Saved as version ${before + 1}.`);

  const saved = await (await request.get(settingsUrl, { headers })).json();
  expect(saved.version).toBe(before + 1);
  expect(saved.settings).toEqual({
    lookback_days: 14,
    aliases: { utm_source: ['utm_source', 'src', '_um_channel'] },
    normalize: { utm_source: { trim: true, lowercase: true, values: { WeChat: 'wechat', 微信: 'wechat' } } },
    channel_rules: [
      { channel: 'gzh_menu', utm_medium: ['menu'] },
      { channel: 'partners', utm_source: ['partner', 'Fair'] },
    ],
  });
  await page.screenshot({ path: 'test-results/screens/attribution-settings-en.png', fullPage: true });
  const audit = page.getByRole('table', { name: 'Audit log (newest first)' });
  await expect(audit.locator('tbody tr').first()).toContainText(`settings.change`);
  await expect(audit.locator('tbody tr').first()).toContainText(`version ${before + 1}`);

  // The rules apply to stored launches at once: the analysis by channel shows them, with the
  // figures analyses:run gives for the same spec.
  await page.goto('/#/analysis?by=channel&preset=past_30_days');
  const answer = await (
    await request.post('/v1/projects/demo/analyses:run', { headers, data: { dimensions: ['channel'], range: { preset: 'past_30_days' } } })
  ).json();
  expect(answer.settings.version).toBe(before + 1);
  const byChannel = Object.fromEntries((answer.rows as Record<string, string | number>[]).map((row) => [row.channel, row.new_users]));
  expect(Object.keys(byChannel)).toEqual(expect.arrayContaining(['gzh_menu', 'partners']));
  for (const channel of ['gzh_menu', 'partners']) {
    const row = page.locator('table[aria-busy="false"] tbody tr').filter({ has: page.getByRole('cell', { name: channel, exact: true }) });
    await expect(row.locator('td').nth(1)).toHaveText(Number(byChannel[channel]).toLocaleString('en'));
  }

  // Someone else saves meanwhile: this page's edit is refused, nothing is lost silently, and the
  // current version loads.
  await page.goto('/#/settings');
  await expect(form.getByLabel(/Lookback window/)).toHaveValue('14');
  const other = await request.put(settingsUrl, { headers, data: { version: before + 1, settings: { ...saved.settings, lookback_days: 21 } } });
  expect(other.status()).toBe(200);
  await form.getByLabel(/Lookback window/).fill('10');
  await form.getByRole('button', { name: `Save as version ${before + 2}` }).click();
  await expect(form.getByRole('alert')).toContainText(`Someone saved a newer version since you opened version ${before + 1}`);
  expect((await (await request.get(settingsUrl, { headers })).json()).settings.lookback_days).toBe(21);
  await form.getByRole('button', { name: 'Load the current version' }).click();
  await expect(form.getByLabel(/Lookback window/)).toHaveValue('21');

  // What cannot be read is said before anything is sent; what the server refuses, it names.
  await form.getByLabel('Merge spellings: Medium').fill('Banner');
  await form.getByRole('button', { name: `Save as version ${before + 3}` }).click();
  await expect(form.getByRole('alert')).toHaveText('Medium: “Banner” has no “=”: write each merge as “spelling = value”.');
  await form.getByLabel('Merge spellings: Medium').fill('');
  await form.getByLabel('Rule 1: Channel').fill('Bad Channel!');
  await form.getByRole('button', { name: `Save as version ${before + 3}` }).click();
  await expect(form.getByRole('alert')).toContainText('channel_rules[0]');
  expect((await (await request.get(settingsUrl, { headers })).json()).version).toBe(before + 2);

  // Every version is listed, newest first.
  const history = page.getByRole('table', { name: 'Versions (newest first)' });
  expect(await history.locator('tbody tr td:first-child').allInnerTexts()).toEqual(
    Array.from({ length: before + 3 }, (_, i) => String(before + 2 - i)),
  );
  await expect(history.locator('tbody tr').first()).toContainText('2 channel rules, aliases for 1 fields, 1 fields normalised, lookback 21 days');

  // Back to the defaults, as a new version, for the tests after this one.
  const reset = await request.put(settingsUrl, { headers, data: { version: before + 2, settings: {} } });
  expect(reset.status()).toBe(200);
});
