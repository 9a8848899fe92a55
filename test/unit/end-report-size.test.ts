// An attempt's end report always fits one gRPC message (issue 20 #6). It carries the lineage (a manifest
// of the data, and of the evaluation data for a full pipeline) and the attempt's last log lines (at most
// one batch: 500 lines of up to 16 KiB). A dataset of 20,000 files with long paths made a manifest of over
// 16 MiB by itself; grpc-js refused the report with RESOURCE_EXHAUSTED, which was retried for ever while
// the run held its slot and GPUs. The manifest now keeps entries up to a byte budget (its hash still
// covers every file) and says it was truncated.
import t from 'tap';
import { createHash } from 'node:crypto';
import { manifestOf, MAX_MANIFEST_BYTES, type ManifestEntry } from '../../agent/lineage.js';
import { channelOptions } from '../../shared/proto.js';
import { MAX_LINE } from '../../agent/lines.js';

const files = (n: number, tag: string): ManifestEntry[] => Array.from({ length: n }, (_, i) => ({
  path: `${tag}/${'d'.repeat(200)}/${'e'.repeat(200)}/${'f'.repeat(200)}/${'g'.repeat(200)}/file-${String(i).padStart(6, '0')}.csv`,
  size: i, sha256: createHash('sha256').update(`${tag}${i}`).digest('hex'),
}));

t.test('a lineage of two 20,000-file datasets with long paths and a full log batch fit one message', async (t) => {
  const data = files(20_000, 'train');
  const evalData = files(20_000, 'eval');
  const lineage = { data: manifestOf(data), eval_data: manifestOf(evalData), python: '3.11.2', packages: Array.from({ length: 300 }, (_, i) => `pkg${i}==1.0.${i}`) };
  for (const m of [lineage.data, lineage.eval_data]) {
    t.equal(m.files, 20_000, 'the manifest counts every file');
    t.ok(m.truncated, 'and says its list was cut');
    t.ok(m.entries.length > 0 && m.entries.length < 20_000, `it lists ${m.entries.length} of them`);
    t.ok(Buffer.byteLength(JSON.stringify(m.entries)) <= MAX_MANIFEST_BYTES + 4096, 'its entries stay within the budget');
  }
  t.equal(manifestOf(data).sha256, manifestOf([...data].reverse()).sha256, 'the hash covers every file, in tree order');
  const lines = 500 * (MAX_LINE + 64); // the largest batch the report may carry, with each line's fields
  const report = Buffer.byteLength(JSON.stringify(lineage)) + lines + 64 * 1024;
  const limit = channelOptions['grpc.max_send_message_length'] as number;
  t.ok(report < limit, `the report (${(report / 2 ** 20).toFixed(1)} MiB) is under the message limit (${limit / 2 ** 20} MiB)`);
});

t.test('a small dataset\'s manifest lists every file', async (t) => {
  const m = manifestOf(files(50, 'small'));
  t.equal(m.entries.length, 50);
  t.notOk(m.truncated);
});
