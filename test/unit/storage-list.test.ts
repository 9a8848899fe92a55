// The listing (shared/storage.ts listObjects), read from ListObjectsV2 pages by a parser of its own rather
// than minio-js's XML parser (issue 21): against the real MinIO, over several pages, with keys that need
// escaping on the way out (the prefix, the continuation token) and decoding on the way back (spaces, '+',
// '&', '%', quotes, '<', non-ASCII), it must give exactly what minio-js's own listing gives.
import t from 'tap';
import { compareKeys, createMinioClient, ensureBucket, listHints, listObjects, parseListPage, removePrefix, uploadBuffer } from '../../shared/storage.js';
import { mapBounded } from '../../shared/bounded.js';

const endpoint = process.env.TRAINYARD_MINIO_ENDPOINT ?? 'http://127.0.0.1:9000';
const client = createMinioClient({ minioEndpoint: endpoint, minioAccessKey: process.env.TRAINYARD_MINIO_ACCESS_KEY ?? '', minioSecretKey: process.env.TRAINYARD_MINIO_SECRET_KEY ?? '' });
const bucket = `trainyard-list-${process.pid}-${Date.now()}`;
t.before(() => ensureBucket(client, bucket, { retries: 3 }));
t.teardown(async () => {
  await removePrefix(client, bucket, '', { retries: 1 }).catch(() => {});
  await client.removeBucket(bucket).catch(() => {});
});

async function minioJsListing(prefix: string): Promise<{ key: string; size: number; etag: string }[]> {
  const out: { key: string; size: number; etag: string }[] = [];
  for await (const o of client.listObjectsV2(bucket, prefix, true) as AsyncIterable<{ name?: string; size?: number; etag?: string }>) {
    if (o.name) out.push({ key: o.name, size: o.size ?? 0, etag: (o.etag ?? '').replace(/^"|"$/g, '') });
  }
  return out;
}

t.test('several pages, and keys that need escaping, listed exactly as minio-js lists them', async (t) => {
  const odd = ['a b.txt', 'plus+sign.txt', 'amp&er.txt', 'per%cent.txt', 'quote"d\'.txt', 'lt<gt>.txt', 'ünï cødé ✓.txt', 'sub dir/x y/z+.txt', '(paren)*!.txt', 'tilde~.txt'];
  const keys = [...odd.map((k) => `datasets/my set+1/${k}`), ...Array.from({ length: 2050 }, (_, i) => `datasets/my set+1/many/f${String(i).padStart(5, '0')}.bin`)];
  await mapBounded(keys, 32, (k, i) => uploadBuffer(client, bucket, k, Buffer.from(`body ${i}`), { retries: 2 }));
  await uploadBuffer(client, bucket, 'datasets/my set+10/other.txt', Buffer.from('not under the prefix'), { retries: 2 });
  const got = await listObjects(client, bucket, 'datasets/my set+1/', { retries: 1 });
  t.equal(got.length, keys.length, `all ${keys.length} objects, over three pages`);
  t.same(got, await minioJsListing('datasets/my set+1/'), 'the same keys, sizes and ETags, in the same order, as minio-js');
  t.same(got.map((o) => o.key).sort(), [...keys].sort(), 'every key decoded back to what was stored');
  t.ok(got.every((o) => /^[0-9a-f]{32}$/.test(o.etag)), 'ETags without their quotes');
  t.same(await listObjects(client, bucket, 'datasets/none/', { retries: 1 }), [], 'a prefix with no objects under it lists nothing');
});

t.test('a page that is not a listing, or is cut off, is an error, not an empty dataset', async (t) => {
  t.throws(() => parseListPage('<html>proxy error</html>'), /not a ListBucketResult/);
  t.throws(() => parseListPage('<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>a</Key>'), /cut off/);
  t.throws(() => parseListPage('<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>a</Key><Size>1</Size></Contents>'), /cut off/, 'cut off between two objects');
  const page = parseListPage('<?xml version="1.0"?><ListBucketResult><IsTruncated>true</IsTruncated><NextContinuationToken>t&amp;1</NextContinuationToken><Contents><Key>a%20b</Key><ETag>&#34;x&#34;</ETag><Size>3</Size></Contents></ListBucketResult>');
  t.same(page, { objects: [{ key: 'a b', size: 3, etag: 'x' }], truncated: true, next: 't&1' });
});

t.test('compareKeys is the order of the keys\' UTF-8 bytes, with surrogates or without', async (t) => {
  // Characters from each part of the range where the two orders differ or could: ASCII, the rest of the
  // BMP below and above the surrogates, pairs (past U+FFFF) and lone surrogates (which UTF-8 cannot hold:
  // Buffer.from writes U+FFFD for them, as S3 would receive).
  const alphabet = ['a', 'z', '/', '~', '\u00e9', '\u07ff', '\u0800', '\ud7ff', '\ue000', '\ufb00', '\uffff', '\u{10000}', '\u{1d11e}', '\u{10ffff}', '\ud800', '\udfff'];
  let seed = 7;
  const rand = (n: number) => { seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5; return (seed >>> 0) % n; }; // xorshift32
  const word = () => Array.from({ length: 1 + rand(5) }, () => alphabet[rand(alphabet.length)]).join('');
  let wrong = 0;
  let fast = 0;
  for (let i = 0; i < 5000; i++) {
    const a = word();
    const b = rand(4) === 0 ? a : rand(2) ? word() : a + word();
    const want = Math.sign(Buffer.compare(Buffer.from(a), Buffer.from(b)));
    if (Math.sign(compareKeys(a, b)) !== want) wrong++;
    if (!/[\uD800-\uDFFF]/.test(a + b)) fast++;
  }
  t.equal(wrong, 0, 'the same sign as comparing the UTF-8 bytes, for 5,000 pairs');
  t.ok(fast > 500 && fast < 4500, `pairs with surrogates and pairs without them, both many (${fast} without)`);
  t.ok(compareKeys('\uffff', '\u{10000}') < 0 && '\uffff' > '\u{10000}', 'U+FFFF before U+10000, as UTF-8 orders them and < does not');
  t.equal(compareKeys('datasets/a/f1', 'datasets/a/f1'), 0, 'equal keys');
});

t.test('a listing with hints from an earlier one is listed in ranges at once, and is the listing as it is now', async (t) => {
  const prefix = 'datasets/hinted/';
  // U+FB00 sorts before U+1D11E in UTF-8 (what S3 orders by), after it in JavaScript's UTF-16 order.
  const keys = ['\uFB00 ligature.txt', '\u{1D11E} clef.txt', ...Array.from({ length: 2500 }, (_, i) => `many/f${String(i).padStart(5, '0')}.bin`)].map((k) => prefix + k);
  await mapBounded(keys, 32, (k, i) => uploadBuffer(client, bucket, k, Buffer.from(`body ${i}`), { retries: 2 }));
  const first = await listObjects(client, bucket, prefix, { retries: 1 });
  t.same(first, await minioJsListing(prefix), 'without hints: minio-js\'s listing');
  t.ok(first.findIndex((o) => o.key.includes('\uFB00')) < first.findIndex((o) => o.key.includes('\u{1D11E}')), 'in UTF-8 order');
  t.ok(compareKeys('\uFB00', '\u{1D11E}') < 0 && '\uFB00' > '\u{1D11E}', 'which compareKeys follows and < does not');
  const hints = listHints(first);
  t.same(hints, [first[999]!.key, first[1999]!.key], 'a hint where each page of 1,000 ended');

  // Count the requests and what they asked for (the client is the real one, only watched).
  const queries: string[] = [];
  const watched = Object.create(client) as typeof client;
  watched.makeRequestAsync = ((o: { query?: string }, ...rest: unknown[]) => {
    queries.push(o.query ?? '');
    return (client.makeRequestAsync as (...a: unknown[]) => unknown)(o, ...rest);
  }) as typeof client.makeRequestAsync;
  t.same(await listObjects(watched, bucket, prefix, { retries: 1 }, hints), first, 'unchanged: the same listing');
  t.equal(queries.length, 3, `one page per range, none wasted (${queries.length} requests)`);
  t.equal(queries.filter((q) => q.includes('start-after=')).length, 2, 'two ranges began after a hint');

  // Changed behind the hints' back: a hint's own key gone, keys added before, inside (a range of two
  // pages now) and after them, some removed.
  await client.removeObject(bucket, hints[0]!);
  await client.removeObjects(bucket, [first[5]!.key, first[1500]!.key, first[2501]!.key]);
  const added = [`${prefix}many/f00003a.bin`, ...Array.from({ length: 1200 }, (_, i) => `${prefix}many/f01500-${String(i).padStart(4, '0')}.bin`), `${prefix}zzz/last.bin`];
  await mapBounded(added, 32, (k) => uploadBuffer(client, bucket, k, Buffer.from('new'), { retries: 2 }));
  queries.length = 0;
  const now = await listObjects(watched, bucket, prefix, { retries: 1 }, hints);
  t.same(now, await minioJsListing(prefix), 'changed: exactly what minio-js lists now');
  t.equal(now.length, keys.length - 4 + added.length, 'every key added is in it and every key removed is not');
  t.ok(queries.length >= 4, `the range that grew past a page took another (${queries.length} requests)`);
  t.same(await listObjects(client, bucket, prefix, { retries: 1 }, ['datasets/elsewhere/x', `${prefix}zzzz-after-everything`, `${prefix}0-before-everything`]), now,
    'hints outside the prefix, or past or before every key, change nothing');
});
