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
