// cli/dataset-push.ts: the push's messages, data ones encoded by hand (issue 21: a copy less per MiB). Each
// is decoded here by the service's own deserializer, the scheduler's, so a wrong tag or length shows.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { appendFileSync, truncateSync } from 'node:fs';
import path from 'node:path';
import { CHUNK_BYTES, pushMessages } from '../../cli/dataset-push.js';
import { loadProto } from '../../shared/proto.js';
import { walkFiles } from '../../shared/local-files.js';
import { tempDir, writeTree } from '../helpers/stack.js';

const method = loadProto().trainyard.v1.Trainyard.service.PushDataset;
type Decoded = { part?: string; header?: { name: string; size_bytes: string }; file?: { path: string; size_bytes: string }; data?: Buffer };
const decode = (m: object) => method.requestDeserialize(Buffer.isBuffer(m) ? m : method.requestSerialize(m)) as Decoded;

t.test('every message decodes as the scheduler reads it, each file\'s bytes whole, at every length boundary', async (t) => {
  // Lengths around each varint width and the chunk size; an empty file sends no data message.
  const sizes = [0, 1, 127, 128, 16383, 16384, CHUNK_BYTES - 1, CHUNK_BYTES, CHUNK_BYTES + 1, 3 * CHUNK_BYTES + 5];
  const tree: Record<string, Buffer> = {};
  sizes.forEach((n, i) => { tree[`d${i % 3}/f${String(i).padStart(2, '0')}.bin`] = randomBytes(n); });
  const dir = writeTree(tempDir(), tree);
  const files = await walkFiles(dir);
  const got = new Map<string, Buffer[]>();
  let current = '';
  let header: Decoded['header'] | undefined;
  let counted = 0;
  for await (const { message, bytes } of pushMessages(dir, 'ds', files)) {
    const m = decode(message);
    counted += bytes;
    if (m.header) header = m.header;
    else if (m.file) { current = m.file.path; got.set(current, []); t.equal(Number(m.file.size_bytes), tree[current]!.length, `${current}: its size announced`); }
    else if (m.data) { t.equal(m.part, 'data'); t.ok(m.data.length <= CHUNK_BYTES); t.equal(bytes, m.data.length, 'the bytes it says it carries'); got.get(current)!.push(m.data); }
    else t.fail(`a message of no known part: ${JSON.stringify(m)}`);
  }
  t.same(header, { name: 'ds', size_bytes: String(sizes.reduce((a, b) => a + b, 0)) }, 'the header comes first, with the total');
  t.equal(counted, sizes.reduce((a, b) => a + b, 0), 'the progress adds up to every byte');
  t.same([...got.keys()], files.map((f) => f.rel), 'every file, in the walk\'s order');
  for (const [rel, chunks] of got) t.ok(Buffer.concat(chunks).equals(tree[rel]!), `${rel}: byte for byte (${chunks.length} data messages)`);
  t.equal(got.get(files.find((f) => f.size === 0)!.rel)!.length, 0, 'an empty file: no data message');
});

t.test('a file that changed size since the walk fails the push, naming it; a small one read ahead too', async (t) => {
  for (const [what, change] of [['grew', (f: string) => appendFileSync(f, 'x')], ['shrank', (f: string) => truncateSync(f, 10)]] as const) {
    for (const size of [100, 2 * CHUNK_BYTES + 1]) {
      const dir = writeTree(tempDir(), { 'a.bin': randomBytes(50), 'b.bin': randomBytes(size), 'c.bin': randomBytes(60) });
      const files = await walkFiles(dir);
      change(path.join(dir, 'b.bin'));
      const err = await (async () => { for await (const _ of pushMessages(dir, 'ds', files)) { /* drain */ } })().catch((e: unknown) => e);
      t.match(err, { code: 'INVALID_ARGUMENT', message: new RegExp(`b\\.bin ${what} while it was pushed`) }, `${size} bytes, ${what}`);
    }
  }
});
