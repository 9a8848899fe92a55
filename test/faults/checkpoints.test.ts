// Checkpoints and stalls (issue 22; README, "Checkpoints"): a run killed with its agent resumes from its
// latest complete checkpoint on another agent, never from one whose upload was cut short; --resume-from
// stays within a project; a successful run's checkpoints are deleted unless kept; a run that stops making
// progress is killed, requeued "stalled", and resumes from what it left at SIGTERM.
import t from 'tap';
import { Stack, tempDir, writeTree } from '../helpers/stack.js';
import { Gate, until, waitForLog } from '../helpers/packages.js';

/**
 * MODE says what a fresh start does: "commit" writes its state (STEP) and a nested file and asks for an
 * upload; "interval" writes and waits for the agent's timer; "stall" writes and then hangs silently;
 * "progress" stays silent but marks progress. Any attempt that finds a checkpoint prints what it found
 * and finishes at once, writing the step it resumed at as an artifact.
 */
const resumableTrainPy = `
import json, os, sys, time
import trainyard_checkpoint as ckpt

class Main:
    def train(self, d):
        cd = ckpt.directory()
        state = os.path.join(cd, "state.json")
        art = os.environ["artifacts_directory"]
        os.makedirs(art, exist_ok=True)
        print("resumed_from " + json.dumps(ckpt.resumed_from()), flush=True)
        print("files " + ",".join(sorted(os.path.relpath(os.path.join(r, f), cd) for r, _, fs in os.walk(cd) for f in fs)), flush=True)
        if os.path.exists(state):
            step = json.load(open(state))["step"]
            print("resuming at step %d" % step, flush=True)
            with open(os.path.join(art, "step.txt"), "w") as fh:
                fh.write(str(step))
            return
        mode = os.environ.get("MODE", "")
        if mode == "progress":
            for _ in range(int(os.environ.get("SILENT_S", "5"))):
                ckpt.progress()
                time.sleep(1)
            print("done", flush=True)
            return
        os.makedirs(os.path.join(cd, "weights"), exist_ok=True)
        with open(os.path.join(cd, "weights", "w.bin"), "wb") as fh:
            fh.write(b"\\x00\\x01" * 1000)
        with open(state, "w") as fh:
            json.dump({"step": int(os.environ.get("STEP", "1"))}, fh)
        if mode == "commit":
            # Links to what the run may not have uploaded: never followed, never uploaded.
            os.symlink("/etc/hostname", os.path.join(cd, "stolen.txt"))
            os.symlink("/etc", os.path.join(cd, "etc"))
            print("committed %s" % ckpt.commit(timeout=60), flush=True)
        else:
            print("written", flush=True)
        if mode == "stall":
            time.sleep(300)
        gate = os.environ.get("GATE")
        deadline = time.time() + 300
        while gate and not os.path.exists(gate) and time.time() < deadline:
            time.sleep(0.05)

    def save(self):
        with open("model.txt", "w") as fh:
            fh.write("ok")
`;

async function setUp(s: Stack): Promise<void> {
  await s.cliJson(['package', 'push', writeTree(tempDir(), { 'train.py': resumableTrainPy }), '--name', 'resumable']);
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'x.csv': '1\n' }), '--name', 'd']);
}

const submit = async (s: Stack, args: string[]) => (await s.cliJson(['run', 'train', '--package', 'resumable', '--dataset', 'd', ...args])).id as string;
const logText = async (s: Stack, id: string, attempt: number) => (await s.query('SELECT text FROM run_logs WHERE run_id = $1 AND attempt = $2 ORDER BY seq', [id, attempt])).map((r) => r.text as string);

t.test('agent lost mid-train: attempt 2 on another agent starts from the last complete checkpoint, then it is deleted', async (t) => {
  const s = await Stack.create(t, { agents: [{ name: 'doomed' }] });
  await setUp(s);
  const gate = new Gate();
  const id = await submit(s, ['--env', 'MODE=commit', '--env', 'STEP=5', '--env', `GATE=${gate.file}`]);
  await waitForLog(s, id, 'committed True');
  const pointer = JSON.parse(await s.objectText(`runs/${id}/checkpoints/attempt-1/latest.json`));
  t.match(pointer, { run_id: id, attempt: 1, seq: 1, trigger: 'commit', files: [{ path: 'state.json' }, { path: 'weights/w.bin', size: 2000 }] }, 'the pointer names checkpoint 1 and every file of it');
  t.same(pointer.files.map((f: { path: string }) => f.path), ['state.json', 'weights/w.bin'], 'only the regular files: the links to /etc are not followed');
  t.same(await s.objects(`runs/${id}/checkpoints/`), [`runs/${id}/checkpoints/attempt-1/000001/state.json`, `runs/${id}/checkpoints/attempt-1/000001/weights/w.bin`, `runs/${id}/checkpoints/attempt-1/latest.json`], 'nothing else went up');
  // What an upload cut short leaves: a newer folder's files with no pointer naming them. Never used.
  await s.minio.putObject(s.bucket, `runs/${id}/checkpoints/attempt-1/000002/state.json`, Buffer.from('{"step": 999}'));
  await s.daemons.find((d) => d.name === 'doomed')!.kill9();
  await s.startAgent('rescuer');
  const run = await s.waitForStatus(id, ['Successful', 'Failed']);
  t.equal(run.status, 'Successful');
  t.equal(run.attempt, 2);
  t.equal(run.last_agent, 'rescuer', 'attempt 2 ran on the other agent');
  const lines = await logText(s, id, 2);
  t.ok(lines.includes('resuming at step 5'), 'train() of attempt 2 found the committed state, not the incomplete one');
  t.ok(lines.includes('files state.json,weights/w.bin'), 'exactly the checkpoint\'s files, nested folder included, and no marker');
  const env = JSON.parse(lines.find((l) => l.startsWith('resumed_from '))!.slice('resumed_from '.length));
  t.match(env, { run: id, attempt: 1, size: 2000 + pointer.files[0].size, files: 2 }, 'resumed_from in its env: attempt, size');
  t.ok(!Number.isNaN(Date.parse(env.time)), 'and time');
  t.equal(await s.objectText(`runs/${id}/attempt-2/artifacts/step.txt`), '5');
  const got = await s.cliJson(['run', 'get', id]);
  t.match(got.resumed_from, { run_id: id, attempt: 1, seq: '1', files: 2 }, 'run get shows what it resumed from');
  t.match(got.lineage.resumed_from, { run_id: id, attempt: 1, seq: 1 }, 'so does the lineage');
  const text = (await s.cli(['run', 'get', id])).stdout;
  t.match(text, new RegExp(`resumed +from checkpoint 1 of ${id} attempt 1`), 'and its text');
  // Retention: deleted once it ended Successful (after the commit; polled).
  await until('the checkpoints to be deleted', async () => (await s.objects(`runs/${id}/checkpoints/`)).length === 0);
  t.pass('no checkpoint of the successful run is left');
  gate.open();
});

t.test('--keep-checkpoints, the timer, and --resume-from within a project only', async (t) => {
  const s = await Stack.create(t);
  await setUp(s);
  const gate = new Gate();
  const a = await submit(s, ['--env', 'MODE=interval', '--env', 'STEP=7', '--env', `GATE=${gate.file}`, '--checkpoint-interval', '1', '--keep-checkpoints']);
  await waitForLog(s, a, 'written');
  const pointer = await until('a timed checkpoint', async () => {
    const p = await s.objectText(`runs/${a}/checkpoints/attempt-1/latest.json`).catch(() => null);
    return p ? JSON.parse(p) : null;
  });
  t.equal(pointer.trigger, 'interval', 'uploaded by the timer, without a commit()');
  gate.open();
  t.equal((await s.waitForStatus(a, ['Successful', 'Failed'])).status, 'Successful');
  const kept = await s.objects(`runs/${a}/checkpoints/`);
  t.ok(kept.includes(`runs/${a}/checkpoints/attempt-1/latest.json`), '--keep-checkpoints: kept after the success');

  const other = await s.cli(['run', 'train', '--package', 'resumable', '--dataset', 'd', '--project', 'other', '--resume-from', a, '--json']);
  t.equal(other.code, 1, 'another project\'s run: refused');
  const error = (r: { stderr: string }) => (JSON.parse(r.stderr) as { error: { code: string; message: string } }).error;
  t.match(error(other), { code: 'NOT_FOUND', message: `run ${a} not found in project "other"` }, 'as if it did not exist (NOT_FOUND)');
  const none = await submit(s, ['--env', 'MODE=progress', '--env', 'SILENT_S=0']);
  t.equal((await s.waitForStatus(none, ['Successful', 'Failed'])).status, 'Successful');
  const empty = await s.cli(['run', 'train', '--package', 'resumable', '--dataset', 'd', '--resume-from', none, '--json']);
  t.equal(empty.code, 1);
  t.match(error(empty), { code: 'NOT_FOUND', message: /has no complete checkpoint/ }, 'a run without a checkpoint: refused');
  const unknown = await s.cli(['run', 'train', '--package', 'resumable', '--dataset', 'd', '--resume-from', 'run_zzzzzzzzzzzzzz', '--json']);
  t.match(error(unknown), { code: 'NOT_FOUND', message: /run_zzzzzzzzzzzzzz not found/ }, 'an unknown run: refused');
  const before = (await s.query('SELECT count(*)::int AS n FROM runs'))[0]!.n;

  const b = await submit(s, ['--resume-from', a]);
  const run = await s.waitForStatus(b, ['Successful', 'Failed']);
  t.equal(run.status, 'Successful');
  t.ok((await logText(s, b, 1)).includes('resuming at step 7'), 'the new run\'s first attempt starts from the other run\'s checkpoint');
  t.match((await s.cliJson(['run', 'get', b])).resumed_from, { run_id: a, attempt: 1 });
  t.equal((await s.query('SELECT count(*)::int AS n FROM runs'))[0]!.n, before + 1, 'the refusals made no run');
});

t.test('--stall-timeout: a silent run is killed, requeued "stalled", and resumes from what it left at SIGTERM', async (t) => {
  const s = await Stack.create(t);
  await setUp(s);
  const id = await submit(s, ['--env', 'MODE=stall', '--env', 'STEP=3', '--stall-timeout', '3', '--max-attempts', '2']);
  const run = await s.waitForStatus(id, ['Successful', 'Failed']);
  t.equal(run.status, 'Successful');
  t.equal(run.attempt, 2);
  t.equal(run.lost_attempts, 1, 'the stall counts as an attempt');
  const events = await s.query('SELECT status, detail FROM run_events WHERE run_id = $1 ORDER BY id', [id]);
  t.ok(events.some((e) => e.status === 'Waiting for resources' && /^stalled: no log line, checkpoint or progress mark for 3 s/.test(e.detail)), 'requeued with reason "stalled"');
  t.ok((await logText(s, id, 1)).some((l) => /checkpoint 1 committed \(stop\)/.test(l)), 'the folder went up on SIGTERM, within the kill grace');
  t.ok((await logText(s, id, 2)).includes('resuming at step 3'), 'attempt 2 resumed from it');

  // Progress marks keep a silent run alive.
  const quiet = await submit(s, ['--env', 'MODE=progress', '--env', 'SILENT_S=6', '--stall-timeout', '3', '--max-attempts', '1']);
  const q = await s.waitForStatus(quiet, ['Successful', 'Failed']);
  t.equal(q.status, 'Successful', `six silent seconds with progress marks do not stall (${q.failure_reason})`);
  t.equal(q.attempt, 1);
});
