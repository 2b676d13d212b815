// The host side of the promolens plugin in plain JavaScript: an in-memory record store, a fake
// WeChat, the clock, ids and a log. jco maps the component's `promolens:codes/host` import here
// (package.json "build"); WASI imports go to @bytecodealliance/preview2-shim.
// Errors are thrown as the WIT `error` variant ({tag, val}); jco passes them to the plugin.

export const records = new Map(); // key → { value: Uint8Array, version: bigint }
export const calls = [];
export const logs = [];
let nextVersion = 1n;

export function wechatCall(endpoint, body) {
  calls.push({ endpoint, body: JSON.parse(body) });
  // A fake image: the PNG signature and the request it answers.
  const bytes = new Uint8Array([0x89, 0x50, 0x4e, 0x47, ...new TextEncoder().encode(body)]);
  return { contentType: 'image/png', bytes };
}

export function storeGet(key) {
  return records.get(key);
}

export function storePut(key, value, expected) {
  const current = records.get(key);
  if ((current?.version) !== expected) {
    throw { tag: 'conflict', val: `${key} changed` };
  }
  const version = nextVersion++;
  records.set(key, { value: Uint8Array.from(value), version });
  return version;
}

export function storeList(prefix) {
  return [...records.keys()].filter((k) => k.startsWith(prefix)).sort();
}

export function storeDelete(key) {
  records.delete(key);
}

export function nowMs() {
  return BigInt(Date.now());
}

export function newId() {
  let id = '';
  for (let i = 0; i < 8; i++) id += '0123456789abcdefghijklmnopqrstuvwxyz'[Math.floor(Math.random() * 36)];
  return id;
}

export function log(level, message) {
  logs.push(`${level}: ${message}`);
}
