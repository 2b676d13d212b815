// The console's three speed figures (issue 13), each after checking that the page showed what
// the HTTP API answers for the same question:
// - first load, cold cache, key kept by the tab: navigation to the codes list with its numbers
//   (goal < 1 s), its layout shift (none wanted while the numbers load), and the JavaScript and
//   CSS it transferred, compressed (goal < 250 KB);
// - the live byte counter: keystroke (the input event's time) to the updated count, p95 over 200
//   keystrokes (goal < 50 ms);
// - the analysis page: a 30-day, 3-dimension answer's arrival (its resource timing) to the chart
//   and the table's first page drawn (ECharts' `finished`, marked by the page after the table)
//   (goal < 300 ms), on the demo and with 2,000 combinations.
import { expect, test, type Browser, type Page } from '@playwright/test';

const ADMIN = () => process.env.PROMOLENS_ADMIN_KEY!;
const LOADS = Number(process.env.PROMOLENS_BENCH_LOADS ?? 20);
const KEYSTROKES = 200;
const ANALYSES = Number(process.env.PROMOLENS_BENCH_ANALYSES ?? 20);

function quantile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];
}

function report(name: string, values: number[], unit: string, goal: string) {
  const f = (v: number) => v.toFixed(1);
  console.log(`${name}: median ${f(quantile(values, 0.5))} ${unit}, p95 ${f(quantile(values, 0.95))} ${unit}, max ${f(Math.max(...values))} ${unit} over ${values.length} (goal ${goal})`);
}

/** A page of a fresh context (empty cache) whose tab already holds the admin key. */
async function signedInPage(browser: Browser): Promise<Page> {
  const context = await browser.newContext();
  await context.addInitScript((key) => {
    sessionStorage.setItem('promolens.key', key);
    localStorage.setItem('promolens.lang', 'en');
  }, ADMIN());
  return context.newPage();
}

async function api<T>(page: Page, path: string): Promise<T> {
  const response = await page.request.get(path, { headers: { authorization: `Bearer ${ADMIN()}` } });
  expect(response.ok()).toBe(true);
  return response.json();
}

test('console speed', async ({ browser }) => {
  // First load.
  const times: number[] = [];
  const shifts: number[] = [];
  let transferred = { initial: 0, analysis: 0 };
  for (let i = 0; i < LOADS; i++) {
    const page = await signedInPage(browser);
    await page.addInitScript(() => {
      const w = window as unknown as { layoutShift: number };
      w.layoutShift = 0;
      new PerformanceObserver((list) => {
        for (const entry of list.getEntries() as unknown as { value: number; hadRecentInput: boolean }[]) if (!entry.hadRecentInput) w.layoutShift += entry.value;
      }).observe({ type: 'layout-shift', buffered: true });
      new MutationObserver((_, observer) => {
        if (document.querySelector('table.codes tbody td.number')) {
          (window as unknown as { listShown: number }).listShown = performance.now();
          observer.disconnect();
        }
      }).observe(document, { childList: true, subtree: true });
    });
    const assets: Promise<number>[] = [];
    page.on('response', (response) => {
      if (/\/assets\/.*\.(js|css)$/.test(response.url())) assets.push(response.request().sizes().then((s) => s.responseBodySize));
    });
    await page.goto('/');
    await expect(page.locator('table.codes tbody td.number').first()).toBeVisible();
    times.push(await page.evaluate(() => (window as unknown as { listShown: number }).listShown));
    // Layout shift until the page is settled (a frame after its numbers).
    await page.waitForTimeout(200);
    shifts.push(await page.evaluate(() => (window as unknown as { layoutShift: number }).layoutShift));
    if (i === 0) {
      const listed = await api<{ codes: { past_7_days: { new_users: number } }[] }>(page, '/v1/projects/demo/codes');
      const total = listed.codes.reduce((sum, c) => sum + c.past_7_days.new_users, 0);
      await expect(page.locator('.headline')).toHaveText(`New users in the past 7 days from promotion codes: ${total}`);
      transferred.initial = (await Promise.all(assets)).reduce((a, b) => a + b, 0);
      const before = assets.length;
      await page.getByRole('link', { name: 'Analysis' }).click();
      await expect(page.locator('main table tbody tr').first()).toBeVisible();
      transferred.analysis = (await Promise.all(assets.slice(before))).reduce((a, b) => a + b, 0);
    }
    await page.context().close();
  }
  report('first load to the codes list with numbers', times, 'ms', '< 1000 ms');
  console.log(`cumulative layout shift of the first load: max ${Math.max(...shifts).toFixed(3)} over ${shifts.length} (no shift while numbers load: 0)`);
  const kb = (bytes: number) => (bytes / 1024).toFixed(1);
  console.log(`JavaScript and CSS transferred (gzip): ${kb(transferred.initial)} KB for the codes list, ${kb(transferred.analysis)} KB more for the analysis page, ${kb(transferred.initial + transferred.analysis)} KB in all (goal < 250 KB)`);

  // The live counter.
  const page = await signedInPage(browser);
  await page.goto('/');
  await page.getByRole('button', { name: 'New code' }).click();
  const source = page.getByLabel('Source (utm_source)');
  await source.fill('x');
  const base = 'pages/index/index?utm_source=x&c=12345678'.length;
  const status = page.getByRole('status');
  await expect(status).toHaveText(`${base} of 128 bytes used`);
  await page.evaluate(() => {
    const w = window as unknown as { inputs: number[]; updates: [number, string][] };
    w.inputs = [];
    w.updates = [];
    document.addEventListener('input', (e) => w.inputs.push(e.timeStamp), true);
    const status = document.querySelector('[role=status]')!;
    new MutationObserver(() => w.updates.push([performance.now(), status.textContent ?? ''])).observe(status, { childList: true, subtree: true, characterData: true });
  });
  for (let i = 0; i < KEYSTROKES; i++) {
    const typed = i % 2 === 0;
    await page.keyboard.press(typed ? 'a' : 'Backspace');
    await expect(status).toHaveText(`${typed ? base + 1 : base} of 128 bytes used`);
  }
  const { inputs, updates } = await page.evaluate(() => {
    const w = window as unknown as { inputs: number[]; updates: [number, string][] };
    return { inputs: w.inputs, updates: w.updates };
  });
  expect(inputs.length).toBe(KEYSTROKES);
  const latencies = inputs.map((at, i) => {
    const want = `${i % 2 === 0 ? base + 1 : base} of 128 bytes used`;
    const shown = updates.find(([time, text]) => time >= at && text === want);
    if (!shown) throw new Error(`keystroke ${i}: no update to “${want}”`);
    return shown[0] - at;
  });
  report('keystroke to the updated byte count', latencies, 'ms', 'p95 < 50 ms');

  // The analysis page: 30 days by three dimensions, on the demo, then with many more
  // combinations (launches sent through the API: 20 sources × 10 media × 10 campaigns over the
  // past 30 days).
  await analysisDrawn(page);
  await sendWideLaunches(page, Number(process.env.PROMOLENS_BENCH_WIDE ?? 30_000));
  await analysisDrawn(page);
});

async function analysisDrawn(page: Page) {
  const question = 'by=utm_source,utm_medium,utm_campaign&days=30';
  const answer = await api<{ rows: { new_users: number }[] }>(page, `/v1/projects/demo/acquisition?${question}`);
  const drawn: number[] = [];
  for (let i = 0; i < ANALYSES; i++) {
    await page.goto(`/#/analysis?${question}&round=${i}`);
    await page.reload();
    await expect(page.locator('main table tbody tr')).toHaveCount(Math.min(answer.rows.length, 100));
    await page.waitForFunction(() => performance.getEntriesByName('promolens:chart-drawn').length > 0);
    drawn.push(
      await page.evaluate(() => {
        const arrived = performance.getEntriesByType('resource').find((e) => e.name.includes('/analyses:run')) as PerformanceResourceTiming;
        return performance.getEntriesByName('promolens:chart-drawn')[0].startTime - arrived.responseEnd;
      }),
    );
  }
  // The page's first 100 rows are the API's, and it says how many there are in all.
  const shown = (await page.locator('main table tbody tr td:nth-child(4)').allInnerTexts()).map((n) => Number(n.replace(/,/g, '')));
  expect(shown).toEqual(answer.rows.slice(0, 100).map((r) => r.new_users));
  if (answer.rows.length > 100) {
    await expect(page.getByText(`Rows 1–100 of ${answer.rows.length.toLocaleString('en')}`)).toBeVisible();
    await page.getByRole('button', { name: 'Next rows' }).click();
    await expect(page.getByText(`Rows 101–200 of ${answer.rows.length.toLocaleString('en')}`)).toBeVisible();
    const next = (await page.locator('main table tbody tr td:nth-child(4)').allInnerTexts()).map((n) => Number(n.replace(/,/g, '')));
    expect(next).toEqual(answer.rows.slice(100, 200).map((r) => r.new_users));
  }
  report(`answer (${answer.rows.length} rows) to the chart and table drawn`, drawn, 'ms', '< 300 ms');
}

/** `count` launches of new users, each from one of 2,000 UTM combinations, over the past 30 days. */
async function sendWideLaunches(page: Page, count: number) {
  const now = Date.now();
  for (let sent = 0; sent < count; sent += 1000) {
    const events = Array.from({ length: Math.min(1000, count - sent) }, (_, j) => {
      const n = sent + j;
      return {
        event_id: `wide-${now}-${n}`,
        user_id: `wide-user-${now}-${n}`,
        ts: now - 86_400_000 - ((n * 7919) % (29 * 86_400_000)),
        scene: 1047,
        path: 'pages/index/index',
        query: { utm_source: `source-${n % 20}`, utm_medium: `medium-${Math.floor(n / 20) % 10}`, utm_campaign: `campaign-${Math.floor(n / 200) % 10}` },
      };
    });
    const response = await page.request.post('/v1/projects/demo/events', {
      headers: { authorization: `Bearer ${process.env.PROMOLENS_INGEST_KEY}` },
      data: events,
    });
    expect(response.ok(), await response.text()).toBe(true);
  }
  // Queries see events after their flush (`--flush-seconds`, 10 by default).
  const question = '/v1/projects/demo/acquisition?by=utm_source,utm_medium,utm_campaign&days=30';
  await expect.poll(async () => (await api<{ rows: unknown[] }>(page, question)).rows.length, { timeout: 60_000 }).toBeGreaterThan(1000);
}
