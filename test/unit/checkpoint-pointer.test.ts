// Issue 22: the checkpoint pointer (shared/checkpoints.ts) is the one thing that makes a checkpoint count,
// and it is written with credentials a run could have taken: the scheduler and the agent both refuse one
// that is not this attempt's, names another folder, or lists a path that would leave checkpoint_directory.
import t from 'tap';
import { checkpointKeys, isMarker, parsePointer, resumedFromEnv, resumedFromOf } from '../../shared/checkpoints.js';
import { sessionPolicy } from '../../scheduler/storage/attempt-credentials.js';
import { attemptScope } from '../../scheduler/storage/credential-cache.js';
import { resumePointer } from '../../agent/checkpoints.js';

const run = 'run_aaaaaaaaaaaaaa';
const good = {
  version: 1, run_id: run, attempt: 2, seq: 3, prefix: checkpointKeys.folder(run, 2, 3), committed_at: 1_800_000_000.5, bytes: 15,
  files: [{ path: 'state.json', size: 5 }, { path: 'w/w.bin', size: 10 }], trigger: 'commit',
};
const text = (o: object) => JSON.stringify({ ...good, ...o });

t.test('a good pointer, and what the run and run get are told', async (t) => {
  const p = parsePointer(JSON.stringify(good), run, 2);
  t.equal(p.prefix, `runs/${run}/checkpoints/attempt-2/000003/`);
  t.same(resumedFromOf(p), { run_id: run, attempt: 2, seq: 3, committed_at: 1_800_000_000.5, bytes: 15, files: 2 });
  t.same(JSON.parse(resumedFromEnv(resumedFromOf(p))), { run, attempt: 2, time: '2027-01-15T08:00:00.500Z', size: 15, files: 2 });
  t.equal(resumedFromEnv(null), '', 'a fresh start: empty');
  t.equal(resumePointer(JSON.stringify(good))?.seq, 3, 'the agent checks it again the same way');
  t.equal(resumePointer(''), null);
});

t.test('pointers that are refused', async (t) => {
  for (const [why, bad, r, a] of [
    ['another run\'s', text({}), 'run_bbbbbbbbbbbbbb', 2],
    ['another attempt\'s', text({}), run, 1],
    ['another folder', text({ prefix: `runs/${run}/checkpoints/attempt-1/000003/` }), run, 2],
    ['a folder of another run', text({ prefix: 'runs/run_bbbbbbbbbbbbbb/checkpoints/attempt-2/000003/' }), run, 2],
    ['a path with ..', text({ files: [{ path: '../../attempt-1/package.zip', size: 15 }] }), run, 2],
    ['an absolute path', text({ files: [{ path: '/etc/shadow', size: 15 }] }), run, 2],
    ['an empty part', text({ files: [{ path: 'a//b', size: 15 }] }), run, 2],
    ['a backslash', text({ files: [{ path: '..\\\\x', size: 15 }] }), run, 2],
    ['a path twice', text({ files: [{ path: 'a', size: 5 }, { path: 'a', size: 10 }] }), run, 2],
    ['sizes that do not add up', text({ bytes: 16 }), run, 2],
    ['a negative size', text({ files: [{ path: 'a', size: -1 }], bytes: -1 }), run, 2],
    ['no sequence number', text({ seq: 0 }), run, 2],
    ['not JSON', '{', run, 2],
  ] as const) {
    t.throws(() => parsePointer(bad, r, a), { code: 'INVALID_ARGUMENT' }, `refused: ${why}`);
  }
});

t.test('the helper\'s markers are never uploaded', async (t) => {
  for (const m of ['.trainyard-commit', '.trainyard-progress', '.trainyard-commit.123.tmp']) t.ok(isMarker(m), m);
  for (const f of ['state.json', 'sub/.trainyard-commit', '.trainyard-commitment']) t.notOk(isMarker(f), f);
});

t.test('the attempt\'s storage policy: its own checkpoints to write and delete, the resumed one to read', async (t) => {
  const row = { id: run, attempt: 2, package_object_key: `packages/p/${'a'.repeat(64)}/package.zip`, dataset: 'd', dataset_sub: '', eval_dataset: null, eval_dataset_sub: '' };
  const policy = JSON.parse(sessionPolicy(attemptScope({ ...row, resumed_from: resumedFromOf(parsePointer(text({ attempt: 1, prefix: checkpointKeys.folder(run, 1, 3) }), run, 1)) }, 'b'))) as { Statement: { Effect: string; Action: string[]; Resource: string[] }[] };
  const allowed = (action: string) => policy.Statement.filter((s) => s.Effect === 'Allow' && s.Action.includes(action)).flatMap((s) => s.Resource);
  t.ok(allowed('s3:PutObject').includes(`arn:aws:s3:::b/runs/${run}/checkpoints/attempt-2/*`), 'writes its own checkpoints');
  t.same(allowed('s3:DeleteObject'), [`arn:aws:s3:::b/runs/${run}/checkpoints/attempt-2/*`], 'deletes nothing else');
  t.ok(allowed('s3:GetObject').includes(`arn:aws:s3:::b/runs/${run}/checkpoints/attempt-1/000003/*`), 'reads the one checkpoint it resumes from');
  t.notOk(allowed('s3:GetObject').some((r) => r.endsWith('/checkpoints/*') || r.endsWith('attempt-1/*')), 'and no other');
});
