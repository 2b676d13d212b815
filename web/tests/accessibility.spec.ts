// axe-core over every page of the console, in both languages: no serious or critical violation.
import AxeBuilder from '@axe-core/playwright';
import { expect, test, type Page } from '@playwright/test';

async function violations(page: Page) {
  const results = await new AxeBuilder({ page }).analyze();
  return results.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(' ')).join(', ')})`);
}

for (const lang of ['en', 'zh'] as const) {
  test(`no serious accessibility violation on any page (${lang})`, async ({ page }) => {
    await page.addInitScript((lang) => localStorage.setItem('promolens.lang', lang), lang);
    await page.goto('/');
    expect(await violations(page), 'sign in').toEqual([]);
    await page.locator('#key').fill(process.env.PROMOLENS_ADMIN_KEY!);
    await page.locator('button[type=submit]').click();
    await expect(page.locator('main table tbody tr').first()).toBeVisible();
    expect(await violations(page), 'codes').toEqual([]);
    await page.locator('main td button.link').first().click();
    await expect(page.locator('aside.panel img')).toBeVisible();
    expect(await violations(page), 'code panel').toEqual([]);
    await page.keyboard.press('Escape');
    await page.locator('main .actions button').nth(1).click();
    await expect(page.locator('form.batch')).toBeVisible();
    expect(await violations(page), 'batch').toEqual([]);
    await page.locator('form.batch .actions button').nth(1).click();
    await page.locator('main .actions button').nth(0).click();
    await expect(page.locator('form.new-code')).toBeVisible();
    await page.locator('details.more summary').click();
    await expect(page.getByRole('status')).not.toBeEmpty();
    expect(await violations(page), 'new code').toEqual([]);
    await page.goto('/#/settings');
    await expect(page.locator('main section.settings table tbody tr').first()).toBeVisible();
    expect(await violations(page), 'settings').toEqual([]);
    await page.goto('/#/analysis?by=utm_source&days=7');
    await expect(page.locator('main table[aria-busy="false"] tbody tr').first()).toBeVisible();
    expect(await violations(page), 'analysis').toEqual([]);
  });
}

/** Presses Tab until the focused element's text is `text` (at most 60 times). */
async function tabTo(page: Page, text: RegExp) {
  for (let i = 0; i < 60; i++) {
    await page.keyboard.press('Tab');
    const focused = await page.evaluate(() => document.activeElement?.textContent?.trim() ?? '');
    if (text.test(focused)) return;
  }
  throw new Error(`Tab never reached ${text}`);
}

test('the console is usable from the keyboard alone', async ({ page }) => {
  await page.addInitScript(() => localStorage.setItem('promolens.lang', 'en'));
  await page.goto('/');
  await tabTo(page, /^$/); // the key's field (an input has no text)
  await page.keyboard.type(process.env.PROMOLENS_ADMIN_KEY!);
  await page.keyboard.press('Enter');
  await expect(page.getByRole('heading', { name: 'Acquisition management' })).toBeVisible();
  await tabTo(page, /^New code$/);
  await page.keyboard.press('Enter');
  await expect(page.getByRole('heading', { name: 'New promotion code' })).toBeVisible();
  await tabTo(page, /^Analysis$/);
  await page.keyboard.press('Enter');
  // The analysis's own table, answered (the codes' table may still be on screen a moment).
  await expect(page.locator('main table[aria-busy="false"] tbody tr').first()).toBeVisible();
  // A row of the table drilled into with Enter.
  await tabTo(page, /^gzh/);
  await page.keyboard.press('Enter');
  await expect(page).toHaveURL(/f\.utm_source=gzh/);
});
