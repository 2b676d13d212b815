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
    await expect(page.locator('main table tbody tr').first()).toBeVisible();
    expect(await violations(page), 'settings').toEqual([]);
    await page.goto('/#/analysis?by=utm_source&days=7');
    await expect(page.locator('main table tbody tr').first()).toBeVisible();
    expect(await violations(page), 'analysis').toEqual([]);
  });
}
