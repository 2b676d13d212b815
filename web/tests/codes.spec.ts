// Making a code through the form: the live counter, Generate, the image.
import { readFileSync } from 'node:fs';
import { expect, test } from '@playwright/test';

test.beforeEach(async ({ page }) => {
  await page.addInitScript(() => {
    if (!localStorage.getItem('promolens.lang')) localStorage.setItem('promolens.lang', 'en');
  });
  await page.goto('/');
  await page.getByLabel('API key').fill(process.env.PROMOLENS_ADMIN_KEY!);
  await page.getByRole('button', { name: 'Sign in' }).click();
});

test('the counter follows each keystroke and Generate makes the code and shows its image', async ({ page }) => {
  await page.getByRole('button', { name: 'New code' }).click();
  await page.getByLabel('Name', { exact: true }).fill('Poster, Nanjing Road');
  await page.getByLabel('Page', { exact: true }).fill('pages/index/index');
  // What WeChat gets: the page, then the code's reference (an id of 8 characters).
  const path = `pages/index/index?c=${'x'.repeat(8)}`;
  await expect(page.getByRole('status')).toHaveText(`${path.length} of 128 bytes used`);
  await page.getByLabel('Source (utm_source)').fill('poster');
  const withSource = `${path}&utm_source=poster`;
  await expect(page.getByRole('status')).toHaveText(`${withSource.length} of 128 bytes used`);
  await page.getByRole('button', { name: 'Generate' }).click();
  await expect(page.getByText(/^Made code [0-9a-z]{8}\.$/)).toBeVisible();
  const image = page.getByRole('img', { name: 'The code “Poster, Nanjing Road”' });
  await expect(image).toBeVisible();
  expect(await image.evaluate((img: HTMLImageElement) => img.naturalWidth)).toBeGreaterThan(0);
  await expect(page.getByRole('cell', { name: 'Poster, Nanjing Road', exact: true })).toBeVisible();
  await page.screenshot({ path: 'test-results/screens/codes-new-en.png', fullPage: true });
});

test('an analyst sees the codes and their numbers but no button to make one', async ({ page, request }) => {
  // A key of role analyst, made by the admin through the API.
  const made = await request.post('/v1/projects/demo/keys', {
    headers: { authorization: `Bearer ${process.env.PROMOLENS_ADMIN_KEY}` },
    data: { role: 'analyst', label: 'browser test' },
  });
  expect(made.status()).toBe(201);
  const { token } = await made.json();
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByLabel('API key').fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.getByText('demo · Analyst')).toBeVisible();
  await expect(page.getByRole('cell', { name: '公众号菜单 Official account menu', exact: true })).toBeVisible();
  await expect(page.getByRole('button', { name: 'New code' })).toHaveCount(0);
});

test('a code is downloaded, renamed inline, and deleted after a confirmation that says what it does', async ({ page }) => {
  const row = (name: string) => page.getByRole('row').filter({ has: page.getByRole('cell', { name, exact: true }) });
  const name = '合作伙伴 Partner leaflet';
  const downloading = page.waitForEvent('download');
  await page.getByRole('button', { name: `Download the image of “${name}”` }).click();
  const download = await downloading;
  const path = await download.path();
  const bytes = readFileSync(path);
  expect(bytes.subarray(1, 4).toString()).toBe('PNG');
  expect(download.suggestedFilename()).toMatch(/^[0-9a-z]{8}-.+\.png$/);

  await page.getByRole('button', { name: `Rename “${name}”` }).click();
  await page.getByLabel('New name').fill('Partner leaflet, autumn');
  await page.getByRole('button', { name: 'Save' }).click();
  await expect(row('Partner leaflet, autumn')).toHaveCount(1);

  await page.getByRole('button', { name: 'Delete “Partner leaflet, autumn”' }).click();
  const dialog = page.getByRole('alertdialog');
  await expect(dialog).toContainText('Scans of codes already printed still count');
  await dialog.getByRole('button', { name: 'Delete the code' }).click();
  await expect(row('Partner leaflet, autumn')).toHaveCount(0);
});

test('the list is searched and sorted by new users, both ways', async ({ page }) => {
  const names = () => page.locator('tbody tr td:first-child').allInnerTexts();
  const figures = () => page.locator('tbody tr td:nth-child(7)').allInnerTexts();
  await page.getByRole('button', { name: 'New users, past 7 days' }).click();
  const down = (await figures()).map(Number);
  expect(down).toEqual([...down].sort((a, b) => b - a));
  await page.getByRole('button', { name: /New users, past 7 days/ }).click();
  const up = (await figures()).map(Number);
  expect(up).toEqual([...up].sort((a, b) => a - b));
  await page.getByLabel('Search codes').fill('GZH');
  // The demo's two codes placed in the official account (utm_source gzh), whatever their names.
  expect((await names()).sort()).toEqual(['公众号文章 Article, Double 11', '公众号菜单 Official account menu']);
});
