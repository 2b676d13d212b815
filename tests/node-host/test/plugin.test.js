// The same plugin.wasm the Rust host runs, hosted by Node through jco: preview, create, list,
// image and delete, with the imports provided in JavaScript (host.js).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { codes } from '../generated/plugin.js';
import { calls, records } from '../host.js';

const request = (kind, source) => ({
  name: 'Poster',
  kind,
  page: 'pages/index/index',
  utm: { source, medium: undefined, campaign: '双11', content: undefined, term: undefined },
  params: [['id', '42']],
  image: {
    width: 430, autoColor: false, lineColor: undefined, isHyaline: false,
    envVersion: undefined, checkPath: undefined,
  },
});

// jco throws the WIT error variant as `payload`.
const errorOf = (fn) => {
  try {
    fn();
  } catch (e) {
    return e.payload;
  }
  assert.fail('expected an error');
};

test('preview counts the percent-encoded bytes and needs no authorization', () => {
  const preview = codes.preview(request('a', 'gzh'));
  assert.equal(preview.encoding.path, 'pages/index/index?id=42&utm_source=gzh&utm_campaign=%E5%8F%8C11&c=********');
  assert.equal(preview.quota.exhausted, false);
  assert.equal(preview.encoding.used, preview.encoding.path.length); // all ASCII once encoded
  assert.equal(preview.encoding.limit, 128);
  assert.equal(preview.quota.used, 1);
  const tooLong = errorOf(() => codes.preview({ ...request('a', 'x'), page: `pages/${'p'.repeat(130)}` }));
  assert.equal(tooLong.tag, 'too-long');
  assert.equal(tooLong.val.unit, 'bytes');
});

test('create, list, image and delete through the JavaScript host', () => {
  assert.equal(errorOf(() => codes.create(request('a', 'gzh'))).tag, 'not-authorized');
  codes.registerAuthorization('wx0123456789abcdef');
  const a = codes.create(request('a', 'gzh'));
  const b = codes.create(request('b', 'gzh'));
  assert.equal(b.encoding.scene, `c=${b.id}&id=42`);
  assert.equal(calls.length, 2);
  assert.equal(calls[1].endpoint, 'get-wxacode-unlimit');
  assert.equal(calls[1].body.scene, `c=${b.id}&id=42`);
  assert.ok(records.has(`codes/${a.id}`));
  assert.deepEqual(codes.list(false).map((c) => c.id).sort(), [a.id, b.id].sort());
  const image = codes.image(a.id);
  assert.equal(image.contentType, 'image/png');
  assert.equal(image.bytes[0], 0x89);
  codes.delete(a.id);
  assert.equal(errorOf(() => codes.image(a.id)).tag, 'deleted');
  assert.deepEqual(codes.list(false).map((c) => c.id), [b.id]);
  assert.equal(codes.list(true).length, 2);
  assert.equal(codes.quota().used, 1, 'one A code; B codes are unlimited');
});
