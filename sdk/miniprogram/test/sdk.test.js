// The SDK against a fake `wx` and the real ingest server (`promolens serve`).
'use strict';

const test = require('node:test');
const assert = require('node:assert');
const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');

const { createTracker } = require('../promolens.js');

const BIN = process.env.PROMOLENS_BIN || path.join(__dirname, '../../../target/debug/promolens');

/** The operator's steps: project `sdkdemo` and its ingest and analyst keys. */
function provision(data) {
  const run = (...args) => execFileSync(BIN, args, { encoding: 'utf8', env: { ...process.env, RUST_LOG: 'warn' } }).trim();
  run('projects', '--data', data, 'create', 'sdkdemo');
  const key = (role) => run('keys', '--data', data, 'create', '--project', 'sdkdemo', '--role', role);
  return { ingest: key('ingest'), analyst: key('analyst') };
}

function startServer() {
  const data = fs.mkdtempSync(path.join(os.tmpdir(), 'promolens-sdk-'));
  const keys = provision(data);
  const child = spawn(BIN, ['serve', '--data', data, '--listen', '127.0.0.1:0', '--flush-seconds', '0.2'], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, RUST_LOG: 'warn' },
  });
  return new Promise((resolve, reject) => {
    const lines = readline.createInterface({ input: child.stdout });
    lines.on('line', (line) => {
      const m = line.match(/listening on (http:\/\/\S+)/);
      if (m) resolve({ url: m[1], child, data, keys });
    });
    child.on('exit', (code) => reject(new Error(`promolens exited with ${code}`)));
  });
}

/** A fake `wx`: storage in a Map, `wx.request` through fetch; `loseAnswers` makes the next N
 * requests reach the server but report a network failure to the SDK (a lost answer). */
function fakeWx() {
  const storage = new Map();
  const state = { loseAnswers: 0, requests: 0 };
  const wx = {
    getStorageSync: (k) => (storage.has(k) ? JSON.parse(storage.get(k)) : ''),
    setStorageSync: (k, v) => storage.set(k, JSON.stringify(v)),
    request({ url, method, data, header, success, fail }) {
      state.requests += 1;
      fetch(url, { method, body: data, headers: header })
        .then(async (res) => {
          const body = await res.json();
          if (state.loseAnswers > 0) {
            state.loseAnswers -= 1;
            fail({ errMsg: 'request:fail timeout' });
          } else {
            success({ statusCode: res.status, data: body });
          }
        })
        .catch((e) => fail({ errMsg: String(e) }));
    },
  };
  return { wx, state, storage };
}

async function sql(server, query) {
  const res = await fetch(`${server.url}/v1/sql`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${server.keys.analyst}` },
    body: JSON.stringify({ sql: query }),
  });
  assert.strictEqual(res.status, 200, await res.clone().text());
  return (await res.json()).rows;
}

async function eventually(fn, timeoutMs = 10000) {
  const start = Date.now();
  for (;;) {
    try {
      return await fn();
    } catch (e) {
      if (Date.now() - start > timeoutMs) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

test('cold and hot launches arrive once each, attributed, even when an answer is lost', async (t) => {
  const server = await startServer();
  t.after(() => {
    server.child.kill('SIGTERM');
    fs.rmSync(server.data, { recursive: true, force: true });
  });
  const { wx, state } = fakeWx();
  const tracker = createTracker({
    wx,
    endpoint: `${server.url}/v1/projects/sdkdemo/events`,
    key: server.keys.ingest,
    flushDelay: 10,
    maxBackoff: 50,
    appVersion: '3.1.0',
  });

  // Cold start by scanning a B code: onLaunch, then onShow with the same options.
  const coldOptions = { scene: 1047, path: 'pages/index/index', query: { scene: 'utm_source%3Dgzh%26utm_campaign%3D1111' } };
  assert.ok(tracker.onLaunch(coldOptions));
  assert.strictEqual(tracker.onShow(coldOptions), null, 'the onShow of a cold start is the same launch');
  // Later a link QR code is scanned while the app is in the background: onShow only.
  const link = encodeURIComponent('https://m.example.com/p?utm_source=%E6%B5%B7%E6%8A%A5&utm_medium=offline');
  assert.ok(tracker.onShow({ scene: 1011, path: 'pages/index/index', query: { q: link } }));

  // The first answer is lost: the SDK must send the same events again.
  state.loseAnswers = 1;
  await eventually(async () => {
    await tracker.flush();
    assert.strictEqual(tracker.pending(), 0);
  });
  assert.ok(state.requests >= 2, 'a retry was sent');

  const rows = await eventually(async () => {
    const r = await sql(server,
      "SELECT launch_type, utm_source, utm_medium, utm_campaign, code_kind, user_id, count(*) AS n FROM launch_events WHERE project = 'sdkdemo' GROUP BY 1,2,3,4,5,6 ORDER BY 1");
    assert.strictEqual(r.length, 2, JSON.stringify(r));
    return r;
  });
  assert.deepStrictEqual(rows.map((r) => [r.launch_type, r.utm_source, r.utm_medium, r.utm_campaign, r.code_kind, r.n]), [
    ['cold', 'gzh', null, '1111', 'B', 1],
    ['hot', '海报', 'offline', null, 'link', 1],
  ]);
  assert.strictEqual(rows[0].user_id, tracker.userId());
  assert.strictEqual(rows[1].user_id, tracker.userId());
});

test('the user id is stable across app restarts and the queue survives them', async () => {
  const { wx, storage } = fakeWx();
  let down = true;
  const offline = {
    ...wx,
    request(o) {
      if (down) o.fail({ errMsg: 'request:fail' });
      else wx.request(o);
    },
  };
  const first = createTracker({ wx: offline, endpoint: 'http://127.0.0.1:9/none', key: 'plk_test', flushDelay: 100000 });
  first.onLaunch({ scene: 1001, query: {} });
  const id = first.userId();
  // "Restart": a new tracker over the same storage.
  const second = createTracker({ wx: offline, endpoint: 'http://127.0.0.1:9/none', key: 'plk_test', flushDelay: 100000 });
  assert.strictEqual(second.userId(), id);
  assert.strictEqual(second.pending(), 1);
  assert.ok(storage.has('promolens_queue'));
  down = false;
});

test('events refused for a wrong key wait for the right one instead of being dropped', async (t) => {
  const server = await startServer();
  t.after(() => {
    server.child.kill('SIGTERM');
    fs.rmSync(server.data, { recursive: true, force: true });
  });
  const { wx, storage } = fakeWx();
  const endpoint = `${server.url}/v1/projects/sdkdemo/events`;
  const wrong = createTracker({ wx, endpoint, key: `plk_${'0'.repeat(16)}_${'0'.repeat(64)}`, flushDelay: 100000, maxBackoff: 50 });
  wrong.onLaunch({ scene: 1047, path: 'pages/index/index', query: { scene: 'utm_source%3Dkept' } });
  await wrong.flush();
  assert.strictEqual(wrong.pending(), 1, 'a 401 keeps the batch');
  // The next version of the mini-program ships the right key; the queue in storage survives.
  const right = createTracker({ wx, endpoint, key: server.keys.ingest, flushDelay: 100000 });
  assert.strictEqual(right.pending(), 1);
  await eventually(async () => {
    await right.flush();
    assert.strictEqual(right.pending(), 0);
  });
  assert.ok(storage.has('promolens_queue'));
  const rows = await eventually(async () => {
    const r = await sql(server, "SELECT utm_source FROM launch_events");
    assert.strictEqual(r.length, 1, JSON.stringify(r));
    return r;
  });
  assert.strictEqual(rows[0].utm_source, 'kept');
});

test('core events and a login arrive in `events`, amounts as numbers, the login once per device', async (t) => {
  const server = await startServer();
  t.after(() => {
    server.child.kill('SIGTERM');
    fs.rmSync(server.data, { recursive: true, force: true });
  });
  const { wx } = fakeWx();
  const tracker = createTracker({ wx, endpoint: `${server.url}/v1/projects/sdkdemo/events`, key: server.keys.ingest, flushDelay: 10 });
  tracker.onLaunch({ scene: 1047, path: 'pages/index/index', query: { utm_source: 'gzh' } });
  tracker.track('signup', { method: 'wechat_phone' });
  tracker.track('purchase', { amount: 59.9, sku: 'A-1', quantity: 2 });
  assert.ok(tracker.identify('member-42'));
  assert.strictEqual(tracker.identify('member-42'), null, 'the same login is linked once');
  assert.throws(() => tracker.track('launch'), /not a core event name/);
  assert.throws(() => tracker.track('add to cart'), /not a core event name/);
  assert.throws(() => tracker.track('purchase', [1]), /props must be an object/);
  await eventually(async () => {
    await tracker.flush();
    assert.strictEqual(tracker.pending(), 0);
  });
  const rows = await eventually(async () => {
    const r = await sql(server,
      "SELECT event, user_id, props_number['amount'] AS amount, props_text['sku'] AS sku, props_text['login_id'] AS login FROM events ORDER BY event");
    assert.strictEqual(r.length, 3, JSON.stringify(r));
    return r;
  });
  assert.deepStrictEqual(rows.map((r) => [r.event, r.amount, r.sku, r.login]), [
    ['$identify', null, null, 'member-42'],
    ['purchase', 59.9, 'A-1', null],
    ['signup', null, null, null],
  ]);
  for (const r of rows) assert.strictEqual(r.user_id, tracker.userId());
  const launches = await sql(server, 'SELECT count(*) AS n FROM launch_events');
  assert.strictEqual(launches[0].n, 1, 'core events are not launches');
});
