// Issue 21, push at the machine's speed: `dataset push` of many small files has the scheduler store
// several at once (not one round trip after the other), and a file over the part size goes up as a
// multipart upload whose parts are sent at once. The scheduler talks to MinIO through a TCP proxy that
// counts the connections used; every object is then read back and compared with the file pushed.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { minioEndpoint, Stack, tempDir, writeTree } from '../helpers/stack.js';
import { startTcpProxy } from '../helpers/tcp-proxy.js';
import { PART_BYTES } from '../../shared/storage.js';

t.test('a push stores many small files several at once and a large one in parallel parts, every byte right', async (t) => {
  const m = new URL(minioEndpoint);
  const proxy = await startTcpProxy({ host: m.hostname, port: Number(m.port) });
  t.teardown(() => proxy.close());
  const s = await Stack.create(t, { agents: [], schedulerEnv: { TRAINYARD_MINIO_ENDPOINT: proxy.endpoint } });
  const tree: Record<string, Buffer> = {};
  for (let i = 0; i < 60; i++) tree[`small/${String(i).padStart(2, '0')}.bin`] = randomBytes(2048 + i);
  const small = writeTree(tempDir(), tree);
  proxy.reset();
  const pushed = await s.cliJson(['dataset', 'push', small, '--name', 'many']);
  t.equal(pushed.file_count, 60);
  t.ok(proxy.used > 2, `the scheduler stored files several at once (${proxy.used} connections to MinIO used)`);

  const bigDir = writeTree(tempDir(), { 'big.bin': randomBytes(PART_BYTES * 2 + 4096) });
  proxy.reset();
  const big = await s.cliJson(['dataset', 'push', bigDir, '--name', 'big']);
  t.equal(Number(big.size_bytes), PART_BYTES * 2 + 4096);
  t.ok(proxy.used > 1, `the parts went at once (${proxy.used} connections to MinIO used)`);

  const read = async (key: string) => {
    const chunks: Buffer[] = [];
    for await (const c of await s.minio.getObject(s.bucket, key)) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  };
  t.ok((await read('datasets/big/big.bin')).equals(readFileSync(path.join(bigDir, 'big.bin'))), 'the large file is stored whole');
  let same = 0;
  for (const rel of Object.keys(tree)) if ((await read(`datasets/many/${rel}`)).equals(tree[rel]!)) same++;
  t.equal(same, 60, 'every small file is stored as pushed');
});
