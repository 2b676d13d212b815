// Every page in both languages: in Chinese no English sentence of the console is left, in
// English no Chinese one, no console error or failed request; screenshots of each page in each
// language for README.
import { expect, test, type Page } from '@playwright/test';
import { readFileSync } from 'node:fs';

/** The console's words of one language, by key, read from its source (web/src/i18n.ts). */
function dictionary(lang: 'en' | 'zh'): Map<string, string> {
  const source = readFileSync(new URL('../src/i18n.ts', import.meta.url), 'utf8');
  const block = lang === 'en' ? source.split('const en = {')[1].split('} as const;')[0] : source.split('const zh: Record<Key, string> = {')[1].split('};')[0];
  return new Map([...block.matchAll(/'([\w.]+)':\s*'([^']*)'/g)].map((m) => [m[1], m[2]]));
}

function words(lang: 'en' | 'zh'): string[] {
  return [...dictionary(lang).values()].map((w) => w.replace(/\{\w+\}/g, '').trim());
}

/** Words that are the same in both languages on purpose. */
const SAME_IN_BOTH = new Set(['app.title', 'auth.appId', 'auth.secret']);

test('every word has a translation of its own', () => {
  const en = dictionary('en');
  const zh = dictionary('zh');
  expect(en.size).toBeGreaterThan(50);
  expect([...en.keys()].sort()).toEqual([...zh.keys()].sort());
  const untranslated = [...en].filter(([key, text]) => zh.get(key) === text && !SAME_IN_BOTH.has(key));
  expect(untranslated).toEqual([]);
});

/** Each page, and what opens its parts (the new-code form, the batch form, a code's panel). */
const pages: [string, string, ((page: Page) => Promise<void>)?][] = [
  ['codes', '#/'],
  ['codes-new', '#/', async (page) => {
    await page.locator('main .actions button').nth(0).click();
    await page.locator('details.more summary').click();
    await expect(page.getByRole('status')).not.toBeEmpty();
  }],
  ['codes-batch', '#/', (page) => page.locator('main .actions button').nth(1).click()],
  ['codes-panel', '#/', (page) => page.locator('main td button.link').first().click()],
  ['analysis', '#/analysis?by=utm_source,utm_campaign&days=30'],
  ['settings', '#/settings'],
];

async function signIn(page: Page, lang: 'en' | 'zh') {
  await page.addInitScript((lang) => localStorage.setItem('promolens.lang', lang), lang);
  await page.goto('/');
  await page.screenshot({ path: `test-results/screens/sign-in-${lang}.png` });
  await page.locator('#key').fill(process.env.PROMOLENS_ADMIN_KEY!);
  await page.locator('button[type=submit]').click();
  await expect(page.locator('main h1')).toBeVisible();
}

for (const lang of ['zh', 'en'] as const) {
  test(`every page in ${lang === 'zh' ? 'Chinese' : 'English'} has none of the other language's words`, async ({ page }) => {
    const other = words(lang === 'zh' ? 'en' : 'zh').filter((w) => w.length > 3 && !words(lang).includes(w));
    // No console error and no failed request on any page either.
    const problems: string[] = [];
    page.on('console', (message) => message.type() === 'error' && problems.push(`console: ${message.text()}`));
    page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
    page.on('requestfailed', (request) => problems.push(`failed: ${request.url()}`));
    page.on('response', (response) => response.status() >= 400 && problems.push(`${response.status()}: ${response.url()}`));
    await signIn(page, lang);
    for (const [name, hash, open] of pages) {
      await page.goto(`/${hash}`);
      await page.reload();
      await expect(page.locator('main h1')).toBeVisible();
      await expect(page.locator('main table tbody tr').first()).toBeVisible();
      await open?.(page);
      const text = await page.locator('body').innerText();
      const left = other.filter((w) => text.includes(w));
      expect(left, `${name} in ${lang}`).toEqual([]);
      await page.screenshot({ path: `test-results/screens/${name}-${lang}.png`, fullPage: true });
    }
    expect(problems).toEqual([]);
  });
}
