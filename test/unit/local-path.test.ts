// shared/storage.ts localPathOf: where an object of a dataset goes in a run's folder. Its fast path (a clean
// key under an absolute folder) must give exactly what the general one (join, resolve, relative) gives, and
// a key that would leave the folder is refused either way.
import t from 'tap';
import path from 'node:path';
import { localPathOf } from '../../shared/storage.js';

/** The general path, as it was before the fast one: the reference. */
function reference(key: string, prefix: string, dir: string): { rel: string; dest: string } | null {
  const rel = key.slice(prefix.length);
  if (!rel || rel.endsWith('/')) return null;
  const dest = path.join(dir, ...rel.split('/'));
  if (!dest.startsWith(path.resolve(dir) + path.sep)) return { rel: 'REFUSED', dest: '' };
  return { rel: path.relative(dir, dest).split(path.sep).join('/'), dest };
}
const tryIt = (key: string, prefix: string, dir: string) => {
  try { return localPathOf(key, prefix, dir); } catch { return { rel: 'REFUSED', dest: '' }; }
};

const rels = ['a.csv', 'sub/b.csv', 'deep/er/c.bin', '.hidden', 'sub/.hidden', '..data', 'a..b/c', '...', 'x/.../y', 'sp ace/é.txt', 'a\\b.txt',
  './a', 'a/./b', 'a/../b', '../escape', 'a/../../escape', 'a//b', '/abs', 'a/.', 'a/..', '.', '..', 'sub/', ''];
const dirs = ['/tmp/run/data', '/tmp/run/data/', '/tmp//run/./data', 'relative/data'];
for (const dir of dirs) {
  for (const rel of rels) {
    t.same(tryIt(`datasets/d/${rel}`, 'datasets/d/', dir), reference(`datasets/d/${rel}`, 'datasets/d/', dir), `${JSON.stringify(rel)} under ${dir}`);
  }
}
t.throws(() => localPathOf('datasets/d/../../etc/passwd', 'datasets/d/', '/tmp/run/data'), /leaves/, 'a key that leaves the folder is refused');
t.same(localPathOf('datasets/d/a/b.csv', 'datasets/d/', '/tmp/run/data'), { rel: 'a/b.csv', dest: '/tmp/run/data/a/b.csv' });
