// Signing in: a key of a role that may use the console opens acquisition management; the public
// ingest key is refused with a message saying what it is for.
import { expect, test } from '@playwright/test';

test.beforeEach(async ({ page }) => {
  // English first; the language tests switch.
  await page.addInitScript(() => {
    if (!localStorage.getItem('promolens.lang')) localStorage.setItem('promolens.lang', 'en');
  });
});

test('an admin key opens acquisition management with the demo project', async ({ page }) => {
  const failed: string[] = [];
  page.on('console', (message) => message.type() === 'error' && failed.push(message.text()));
  page.on('requestfailed', (request) => failed.push(`${request.url()}: ${request.failure()?.errorText}`));
  await page.goto('/');
  await page.getByLabel('API key').fill(process.env.PROMOLENS_ADMIN_KEY!);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.getByRole('heading', { name: 'Acquisition management' })).toBeVisible();
  await expect(page.getByText('Authorized mini-program: wx0123456789abcdef')).toBeVisible();
  await expect(page.getByText('demo · Administrator')).toBeVisible();
  expect(failed).toEqual([]);
});

test('an ingest key is refused, saying what it is for', async ({ page }) => {
  await page.goto('/');
  await page.getByLabel('API key').fill(process.env.PROMOLENS_INGEST_KEY!);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.getByRole('alert')).toContainText('This is an ingest key');
  await expect(page.getByRole('heading', { name: 'Acquisition management' })).toHaveCount(0);
});

test('the language switches to Chinese and is remembered', async ({ page }) => {
  await page.goto('/');
  await page.getByRole('button', { name: '中文' }).click();
  await expect(page.getByRole('heading', { name: '登录' })).toBeVisible();
  await page.reload();
  await expect(page.getByRole('heading', { name: '登录' })).toBeVisible();
});
