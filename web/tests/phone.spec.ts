// The console on a phone (390 × 844, touch): nothing wider than the screen, the codes' names and
// numbers and the actions within reach.
import { expect, test, type Page } from '@playwright/test';

test.use({ viewport: { width: 390, height: 844 }, hasTouch: true, isMobile: true });

async function widerThanScreen(page: Page): Promise<number> {
  return (await page.evaluate(() => document.documentElement.scrollWidth)) - page.viewportSize()!.width;
}

test('every page fits a phone’s width', async ({ page }) => {
  await page.addInitScript(() => localStorage.setItem('promolens.lang', 'zh'));
  await page.goto('/');
  expect(await widerThanScreen(page), 'sign in').toBeLessThanOrEqual(0);
  await page.locator('#key').fill(process.env.PROMOLENS_ADMIN_KEY!);
  await page.locator('button[type=submit]').click();
  await expect(page.locator('main table tbody tr').first()).toBeVisible();
  expect(await widerThanScreen(page), 'codes').toBeLessThanOrEqual(0);
  await expect(page.getByRole('button', { name: '新建推广码' })).toBeInViewport();
  await page.screenshot({ path: 'test-results/screens/codes-phone-zh.png', fullPage: true });
  // The headers are hidden: the order is chosen from a list, both ways.
  const figures = async () => (await page.locator('table.codes tbody td.number').allInnerTexts()).map(Number);
  await page.getByLabel('排序').selectOption({ label: '近 7 天新增用户 ↓' });
  const down = await figures();
  expect(down).toEqual([...down].sort((a, b) => b - a));
  await page.getByLabel('排序').selectOption({ label: '近 7 天新增用户 ↑' });
  const up = await figures();
  expect(up).toEqual([...up].sort((a, b) => a - b));
  expect(up).not.toEqual(down);
  await page.locator('main td button.link').first().click();
  await expect(page.locator('aside.panel')).toBeInViewport();
  expect(await widerThanScreen(page), 'code panel').toBeLessThanOrEqual(0);
  await page.keyboard.press('Escape');
  await page.goto('/#/analysis?by=utm_source,utm_campaign&days=30');
  await expect(page.locator('main table[aria-busy="false"] tbody tr').first()).toBeVisible();
  expect(await widerThanScreen(page), 'analysis').toBeLessThanOrEqual(0);
  await page.screenshot({ path: 'test-results/screens/analysis-phone-zh.png', fullPage: true });
  await page.goto('/#/settings');
  await expect(page.locator('main section.settings table tbody tr').first()).toBeVisible();
  expect(await widerThanScreen(page), 'settings').toBeLessThanOrEqual(0);
});
