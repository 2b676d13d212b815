// The analysis page, as an analyst: the numbers are the HTTP API's for the same question, a
// dimension is added, a row drilled into, and the page reloaded from its URL shows the same.
import { expect, test } from '@playwright/test';
import { makeKey, signIn } from './session';

test('acquisition by source, a dimension added and removed, a source drilled into by medium, survives a reload', async ({ page, request }) => {
  const failed: string[] = [];
  page.on('console', (message) => message.type() === 'error' && failed.push(message.text()));
  await signIn(page, await makeKey(request, 'analyst', 'Wang Fang (analysis test)'));
  await expect(page.getByRole('button', { name: 'New code' })).toHaveCount(0);
  await page.getByRole('link', { name: /New users in the past 7 days/ }).click();
  await expect(page).toHaveURL(/#\/analysis\?by=code&days=7$/);
  await page.getByRole('link', { name: 'Analysis' }).click();
  await expect(page.getByRole('heading', { name: 'Acquisition analysis' })).toBeVisible();

  // The same question over HTTP.
  const api = async (query: string) => {
    const response = await request.get(`/v1/projects/demo/acquisition?${query}`, {
      headers: { authorization: `Bearer ${process.env.PROMOLENS_ADMIN_KEY}` },
    });
    return (await response.json()).rows as Record<string, string | number | null>[];
  };
  const bySource = await api('by=utm_source&days=7');
  expect(bySource.length).toBeGreaterThan(1);
  const body = page.locator('tbody tr');
  await expect(body).toHaveCount(bySource.length);
  const first = bySource[0];
  await expect(body.first()).toHaveText(
    `${first.utm_source ?? '(none)'}${[first.new_users, first.users, first.launches].map((n) => Number(n).toLocaleString('en')).join('')}`,
  );

  // Drill into the first source: the next dimension, medium, within it.
  await page.getByLabel('Add a dimension').selectOption('utm_campaign');
  await page.getByRole('button', { name: 'Remove Campaign' }).click();
  // The answer to the new question is on screen: one dimension and three metrics.
  await expect(page.locator('table[aria-busy="false"] thead th')).toHaveCount(4);
  // The row of launches without attribution has no drill-down: drill into the first source.
  const source = bySource.find((r) => r.utm_source !== '(unattributed)')!;
  await body.filter({ has: page.getByRole('cell', { name: String(source.utm_source), exact: true }) }).click();
  await expect(page.getByText(`Source is ${source.utm_source}`)).toBeVisible();
  const byMedium = (await api('by=utm_source,utm_medium&days=7')).filter((r) => r.utm_source === source.utm_source);
  await expect(body).toHaveCount(byMedium.length);
  const url = page.url();
  expect(url).toContain('f.utm_source=');

  await page.reload();
  await expect(page.getByText(`Source is ${source.utm_source}`)).toBeVisible();
  await expect(body).toHaveCount(byMedium.length);
  await page.screenshot({ path: 'test-results/screens/analysis-en.png', fullPage: true });
  expect(failed).toEqual([]);
});

test('a range from one day to another is the HTTP API answer for those days, and in the URL', async ({ page, request }) => {
  await signIn(page, await makeKey(request, 'analyst', 'Wang Fang (range test)'));
  await page.getByRole('link', { name: 'Analysis' }).click();
  // The last 30 days of the demo's sample end yesterday: take the 20 days before the last 10.
  const day = (daysAgo: number) => new Date(Date.now() - daysAgo * 86_400_000).toISOString().slice(0, 10);
  const [from, to] = [day(30), day(10)];
  await page.getByLabel('From').fill(from);
  await page.getByLabel('to', { exact: true }).fill(to);
  await page.getByRole('button', { name: 'Apply', exact: true }).click();
  await expect(page.getByText(new RegExp(`^${from} to ${to} `))).toBeVisible();
  expect(page.url()).toContain(`from=${from}&to=${to}`);
  const response = await request.get(`/v1/projects/demo/acquisition?by=utm_source&from=${from}&to=${to}`, {
    headers: { authorization: `Bearer ${process.env.PROMOLENS_ADMIN_KEY}` },
  });
  const rows = (await response.json()).rows as Record<string, number | string | null>[];
  const shown = await page.locator('table[aria-busy="false"] tbody tr').allInnerTexts();
  expect(shown.map((r) => r.split('\t').slice(1).map((n) => Number(n.replace(/,/g, ''))))).toEqual(
    rows.map((r) => [Number(r.new_users), Number(r.users), Number(r.launches)]),
  );
});

test('a range without launches says so and what to do next', async ({ page }) => {
  await signIn(page);
  await page.goto('/#/analysis?by=utm_source&from=2020-01-01&to=2020-01-07');
  await expect(page.getByText('No launches in this range.')).toBeVisible();
  await expect(page.locator('tbody tr')).toHaveCount(0);
});

test('split by day, a preset range draws lines and shows the rows analyses:run gives for the same spec', async ({ page, request }) => {
  await signIn(page);
  await page.goto('/#/analysis?by=day,utm_source&preset=last_week');
  await expect(page.getByRole('img', { name: 'New users by Day' })).toBeVisible();
  const response = await request.post('/v1/projects/demo/analyses:run', {
    headers: { authorization: `Bearer ${process.env.PROMOLENS_ADMIN_KEY}` },
    data: { dimensions: ['day', 'utm_source'], range: { preset: 'last_week' } },
  });
  const { rows, window } = await response.json();
  await expect(page.getByText(new RegExp(`^${window.from} to ${window.to} `))).toBeVisible();
  const shown = page.locator('table[aria-busy="false"] tbody tr');
  await expect(shown).toHaveCount(Math.min(rows.length, 100));
  const cells = await shown.first().locator('td').allInnerTexts();
  expect(cells).toEqual([rows[0].day, rows[0].utm_source, ...['new_users', 'users', 'launches'].map((m) => Number(rows[0][m]).toLocaleString('en'))]);
  await page.screenshot({ path: 'test-results/screens/analysis-days-en.png', fullPage: true });
});

test('compared with the previous period, each figure shows its previous value and change as analyses:run gives them', async ({ page, request }) => {
  await signIn(page);
  await page.goto('/#/analysis?by=utm_source&preset=last_week');
  await page.getByLabel('Compare with the previous period').check();
  await expect(page).toHaveURL(/compare=1/);
  const response = await request.post('/v1/projects/demo/analyses:run', {
    headers: { authorization: `Bearer ${process.env.PROMOLENS_ADMIN_KEY}` },
    data: { dimensions: ['utm_source'], range: { preset: 'last_week' }, compare: true },
  });
  const { rows, previous_window } = await response.json();
  await expect(page.locator('thead th')).toHaveCount(7);
  const row = rows.find((r: Record<string, unknown>) => r.new_users_change != null && r.utm_source !== '(unattributed)');
  const cells = page.locator('table[aria-busy="false"] tbody tr').filter({ has: page.getByRole('cell', { name: row.utm_source, exact: true }) }).locator('td');
  // The change, computed here from the two values the API gave.
  const percent = ((row.new_users - row.new_users_previous) / row.new_users_previous) * 100;
  const sign = percent > 0 ? '+' : percent < 0 ? '−' : '';
  await expect(cells.nth(2)).toHaveText(`${row.new_users_previous.toLocaleString('en')} (${sign}${Math.abs(percent).toFixed(1)}%)`);
  expect(previous_window.to < (await response.json()).window.from).toBe(true);
  // Split by day there is nothing to compare day with day.
  await page.goto('/#/analysis?by=day&preset=last_week&compare=1');
  await expect(page.getByLabel('Compare with the previous period')).toBeDisabled();
  await expect(page.locator('table[aria-busy="false"] thead th')).toHaveCount(4);
});

test('a core event added, compared with the previous period, saved and reopened shows what analyses:run gives for the saved spec', async ({ page, request }) => {
  const failed: string[] = [];
  page.on('console', (message) => message.type() === 'error' && failed.push(message.text()));
  await signIn(page, await makeKey(request, 'marketer', 'Li Lei (saved analysis test)'));
  await page.goto('/#/analysis?by=utm_source&preset=past_30_days');
  await page.getByLabel('Core event', { exact: true }).fill('purchase');
  await page.getByRole('button', { name: 'Add the event' }).click();
  await expect(page).toHaveURL(/m=new_users%2Cusers%2Claunches%2Cpurchase_users%2Cpurchase_rate%2Cpurchase_value/);
  await page.getByLabel('Compare with the previous period').check();
  await expect(page.locator('table[aria-busy="false"] thead th')).toHaveCount(1 + 6 * 2);
  const name = `Purchases by source ${Date.now()}`;
  await page.getByLabel('Name', { exact: true }).fill(name);
  await page.getByRole('button', { name: 'Save as a new analysis' }).click();
  await expect(page.getByRole('status').filter({ hasText: 'Saved.' })).toBeVisible();
  await expect(page).toHaveURL(/saved=/);

  // Elsewhere, then back through the list of saved analyses.
  await page.goto('/#/analysis?by=utm_medium&days=7');
  await expect(page.locator('table[aria-busy="false"] thead th')).toHaveCount(4);
  await page.getByLabel('Saved analyses').selectOption({ label: name });
  await expect(page.locator('table[aria-busy="false"] thead th')).toHaveCount(1 + 6 * 2);

  // The saved spec, run by the API.
  const headers = { authorization: `Bearer ${process.env.PROMOLENS_ADMIN_KEY}` };
  const list = await (await request.get('/v1/projects/demo/analyses', { headers })).json();
  const saved = list.analyses.find((a: { name: string }) => a.name === name);
  expect(saved.spec.metrics).toEqual(['new_users', 'users', 'launches', 'purchase_users', 'purchase_rate', 'purchase_value']);
  expect(saved.spec.compare).toBe(true);
  const run = await (await request.post(`/v1/projects/demo/analyses/${saved.id}/run`, { headers })).json();
  const direct = await (await request.post('/v1/projects/demo/analyses:run', { headers, data: saved.spec })).json();
  expect(run.rows).toEqual(direct.rows);
  const rows = run.rows as Record<string, number | string | null>[];
  expect(rows.some((r) => Number(r.purchase_users) > 0)).toBe(true);
  const shown = page.locator('table[aria-busy="false"] tbody tr');
  await expect(shown).toHaveCount(rows.length);
  const percent = (v: unknown) => (v == null ? '—' : `${(Number(v) * 100).toFixed(1)}%`);
  const change = (v: unknown) => {
    if (v == null) return '—';
    const p = Number(v) * 100;
    return `${p > 0 ? '+' : p < 0 ? '−' : ''}${Math.abs(p).toFixed(1)}%`;
  };
  for (const [i, row] of rows.slice(0, 5).entries()) {
    const cells = await shown.nth(i).locator('td').allInnerTexts();
    expect(cells[0]).toBe(String(row.utm_source));
    expect(cells[1]).toBe(Number(row.new_users).toLocaleString('en'));
    expect(cells[7]).toBe(Number(row.purchase_users).toLocaleString('en'));
    expect(cells[9]).toBe(percent(row.purchase_rate));
    expect(cells[11]).toBe(Number(row.purchase_value).toFixed(2));
    expect(cells[12]).toBe(`${Number(row.purchase_value_previous).toFixed(2)} (${change(row.purchase_value_change)})`);
  }

  // Renamed, then deleted: gone from the list.
  await page.getByLabel('Name', { exact: true }).fill(`${name} (renamed)`);
  await page.getByRole('button', { name: 'Rename' }).click();
  await expect(page.getByRole('status').filter({ hasText: 'Renamed.' })).toBeVisible();
  await expect(page.getByLabel('Saved analyses').locator('option', { hasText: `${name} (renamed)` })).toHaveCount(1);
  await page.getByRole('button', { name: `Delete the saved analysis ${name} (renamed)` }).click();
  await page.getByRole('alertdialog').getByRole('button', { name: 'Delete' }).click();
  await expect(page.getByRole('status').filter({ hasText: 'Deleted.' })).toBeVisible();
  await expect(page.getByLabel('Saved analyses').locator('option', { hasText: name })).toHaveCount(0);
  await page.screenshot({ path: 'test-results/screens/analysis-saved-en.png', fullPage: true });
  expect(failed).toEqual([]);
});

test('a user group and an attribution model chosen on the page give what analyses:run gives for the same spec', async ({ page, request }) => {
  await signIn(page);
  await page.goto('/#/analysis?by=utm_source&preset=past_30_days&m=new_users%2Cusers%2Cpurchase_users%2Cpurchase_count%2Cpurchase_value');
  await page.getByLabel('Users counted').selectOption('did');
  await page.getByRole('group', { name: 'Users and attribution' }).getByLabel('Core event', { exact: true }).fill('purchase');
  await page.getByRole('button', { name: 'Count these users' }).click();
  await expect(page).toHaveURL(/g=did%3Apurchase/);
  await page.getByLabel('Credit core events to').selectOption('linear');
  await page.getByLabel('Launches within (days)').fill('14');
  await expect(page).toHaveURL(/model=linear&lookback=14/);
  const response = await request.post('/v1/projects/demo/analyses:run', {
    headers: { authorization: `Bearer ${process.env.PROMOLENS_ADMIN_KEY}` },
    data: {
      metrics: ['new_users', 'users', 'purchase_users', 'purchase_count', 'purchase_value'],
      dimensions: ['utm_source'],
      range: { preset: 'past_30_days' },
      group: { kind: 'did', event: 'purchase' },
      attribution: { model: 'linear', lookback_days: 14 },
    },
  });
  const answer = await response.json();
  expect(answer.attribution).toEqual({ model: 'linear', lookback_days: 14 });
  const rows = answer.rows as Record<string, number | string>[];
  expect(rows.length).toBeGreaterThan(1);
  const shown = page.locator('table[aria-busy="false"] tbody tr');
  await expect(shown).toHaveCount(rows.length);
  for (const [i, row] of rows.entries()) {
    const cells = await shown.nth(i).locator('td').allInnerTexts();
    expect(cells).toEqual([
      String(row.utm_source),
      Number(row.new_users).toLocaleString('en'),
      Number(row.users).toLocaleString('en'),
      Number(row.purchase_users).toLocaleString('en'),
      Number(row.purchase_count).toLocaleString('en'),
      Number(row.purchase_value).toFixed(2),
    ]);
  }
  // Split by day, the model is the first touch's.
  await page.goto('/#/analysis?by=day&preset=last_week');
  await expect(page.getByLabel('Credit core events to')).toBeDisabled();
});

test('split by channel, each channel is named in the reader’s words with the figures analyses:run gives', async ({ page, request }) => {
  await signIn(page);
  await page.goto('/#/analysis?by=channel&preset=past_30_days');
  const response = await request.post('/v1/projects/demo/analyses:run', {
    headers: { authorization: `Bearer ${process.env.PROMOLENS_ADMIN_KEY}` },
    data: { dimensions: ['channel'], range: { preset: 'past_30_days' } },
  });
  const rows = (await response.json()).rows as Record<string, string | number>[];
  const words: Record<string, string> = { mini_program_code: 'Mini-program code', qr_code: 'QR code', shared_card: 'Shared card', recents: 'Recents and taskbar', other: 'Other', direct: 'Direct', official_account: 'WeChat official account', search: 'Search', ads: 'Ads', mini_program: 'Another mini-program' };
  const shown = page.locator('table[aria-busy="false"] tbody tr');
  await expect(shown).toHaveCount(rows.length);
  for (const [i, row] of rows.entries()) {
    expect(await shown.nth(i).locator('td').allInnerTexts()).toEqual([
      words[String(row.channel)],
      ...['new_users', 'users', 'launches'].map((m) => Number(row[m]).toLocaleString('en')),
    ]);
  }
  expect(rows.map((r) => r.channel)).toContain('mini_program_code');
});

test('filters of every kind added on the page give what analyses:run gives for the same spec, and survive a reload', async ({ page, request }) => {
  await signIn(page);
  await page.goto('/#/analysis?by=utm_source,utm_medium&preset=past_30_days');
  const addFilter = async (dimension: string, condition: string, value?: string) => {
    await page.getByLabel('Filter on', { exact: true }).selectOption({ label: dimension });
    await page.getByLabel('Condition', { exact: true }).selectOption({ label: condition });
    if (value !== undefined) await page.getByLabel(/^Values?/).fill(value);
    await page.getByRole('button', { name: 'Add the filter' }).click();
  };
  await addFilter('Medium', 'is none of', 'menu, article');
  await addFilter('Source', 'contains', 'a');
  await addFilter('Content', 'has no value');
  const chips = page.locator('ul.filters li');
  await expect(chips).toHaveText(['Medium is none of menu, article ×', 'Source contains a ×', 'Content has no value ×']);
  await page.screenshot({ path: 'test-results/screens/analysis-filters-en.png', fullPage: true });

  const run = async (filters: unknown[]) => {
    const response = await request.post('/v1/projects/demo/analyses:run', {
      headers: { authorization: `Bearer ${process.env.PROMOLENS_ADMIN_KEY}` },
      data: { dimensions: ['utm_source', 'utm_medium'], range: { preset: 'past_30_days' }, filters },
    });
    expect(response.status()).toBe(200);
    return ((await response.json()).rows as Record<string, string | number>[]).map((r) =>
      [String(r.utm_source), String(r.utm_medium), ...['new_users', 'users', 'launches'].map((m) => Number(r[m]).toLocaleString('en'))],
    );
  };
  const shown = page.locator('table[aria-busy="false"] tbody tr');
  const all = [
    { dimension: 'utm_medium', op: 'not_in', values: ['menu', 'article'] },
    { dimension: 'utm_source', op: 'contains', value: 'a' },
    { dimension: 'utm_content', op: 'is_null' },
  ];
  const expected = await run(all);
  expect(expected.length).toBeGreaterThan(0);
  const cells = (rows: string[][]) => rows.map((row) => row.join(''));
  await expect(shown).toHaveText(cells(expected));
  expect(expected.every(([source, medium]) => source.includes('a') && !['menu', 'article'].includes(medium))).toBe(true);

  await page.reload();
  await expect(chips).toHaveCount(3);
  await expect(shown).toHaveText(cells(expected));

  // One filter removed: the rows of the other two.
  await page.getByRole('button', { name: 'Remove the filter on Source' }).click();
  await expect(chips).toHaveCount(2);
  await expect(shown).toHaveText(cells(await run([all[0], all[2]])));
});
