// The Python example client (examples/clients/python) against a real stack, built as its README says, by
// its build.sh: a venv from the pinned requirements (kept once per machine here, under
// ~/.cache/trainyard/python-client/<hash>), and stubs generated from proto/ with grpcio-tools into its
// gitignored gen/ folder. It pushes, submits, follows, waits and downloads as a member of the project,
// with a bearer token.
import t from 'tap';
import { spawnSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Stack, root, tempDir, writeTree } from '../helpers/stack.js';

const client = path.join(root, 'examples', 'clients', 'python');

/** Where the venv for these exact requirements is kept between test runs (build.sh makes it if missing). */
function clientVenv(): string {
  const hash = createHash('sha256').update(readFileSync(path.join(client, 'requirements.txt'))).digest('hex').slice(0, 16);
  return path.join(os.homedir(), '.cache', 'trainyard', 'python-client', hash);
}

const trainPy = `
import os
class Main:
    def train(self, d):
        rows = open(os.path.join(d, "rows.csv")).read().split()
        extra = open(os.path.join(d, "more", "note.txt")).read().strip()
        print("training on %d rows" % len(rows), flush=True)
        print("note: %s" % extra, flush=True)
        os.makedirs(os.environ["artifacts_directory"], exist_ok=True)
        with open(os.path.join(os.environ["artifacts_directory"], "summary.txt"), "w") as fh:
            fh.write("rows=%d epochs=%s" % (len(rows), os.environ.get("EPOCHS", "?")))
    def save(self):
        open("model.txt", "w").write("ok")
`;

t.test('the Python client pushes, submits, follows, waits and downloads', async (t) => {
  const venv = clientVenv();
  const python = path.join(venv, 'bin', 'python');
  const gen = path.join(client, 'gen');
  rmSync(gen, { recursive: true, force: true }); // the stubs the client imports are the ones build.sh makes now
  const build = spawnSync(path.join(client, 'build.sh'), [], { encoding: 'utf8', timeout: 600_000, env: { ...process.env, VENV: venv } });
  t.equal(build.status, 0, `./build.sh ${build.stderr}${build.error ?? ''}`);
  for (const stub of ['trainyard_pb2.py', 'trainyard_pb2_grpc.py']) t.ok(existsSync(path.join(gen, stub)), `build.sh generated gen/${stub} from proto/`);
  for (const made of ['gen/trainyard_pb2.py', '.venv/bin/python']) {
    t.equal(spawnSync('git', ['check-ignore', '-q', path.join(client, made)], { cwd: root }).status, 0, `${made} is gitignored: build output, never committed`);
  }

  const s = await Stack.create(t);
  const member = (await s.cliJson(['tokens', 'create', '--project', 'default', '--role', 'member'])).token as string;
  const pkg = writeTree(tempDir(), { 'train.py': trainPy });
  const data = writeTree(tempDir(), { 'rows.csv': '1\n2\n3\n', 'more/note.txt': 'from python\n' });
  const out = tempDir('ty-pyout-');
  const args = [path.join(client, 'trainyard_client.py'), '--scheduler', s.schedulerAddress, '--package', pkg, '--package-name', 'pyclient',
    '--dataset', data, '--dataset-name', 'pydata', '--env', 'EPOCHS=3', '--out', out];
  const run = (token: string) => new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = spawn(python, args, { env: { PATH: process.env.PATH, HOME: process.env.HOME, TRAINYARD_TOKEN: token } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => { stdout += c.toString(); });
    child.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });

  const refused = await run('tyt_not_a_token');
  t.equal(refused.code, 1, 'a bad token: exit 1');
  t.match(refused.stderr, /error: UNAUTHENTICATED/, 'the scheduler refused it');

  const r = await run(member);
  t.equal(r.code, 0, `exit 0 ${r.stderr}`);
  const summary = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as Record<string, any>;
  t.match(summary, { status: 'Successful', package: 'pyclient', version: '1.0', output_version: '1.1' }, 'the run succeeded and made 1.1');
  t.match(r.stderr, /pushed dataset pydata: 2 files, 18 bytes/, 'both dataset files went up');
  t.match(r.stderr, /\[1:\d+ stdout\] training on 3 rows/, 'the log was followed (StreamLogs)');
  t.match(r.stderr, /\[1:\d+ stdout\] note: from python/);
  t.ok(summary.log_lines > 0, `${summary.log_lines} log lines`);
  t.ok(summary.files.includes('_results.json') && summary.files.includes('package.zip'), `outputs downloaded: ${summary.files.join(', ')}`);

  const [row] = await s.query('SELECT status, project, output_major, output_minor, attempt FROM runs WHERE id = $1', [summary.run_id]);
  t.match(row, { status: 'Successful', project: 'default', output_major: 1, output_minor: 1 }, 'Postgres agrees');
  const results = JSON.parse(readFileSync(path.join(out, '_results.json'), 'utf8'));
  t.match(results, {
    parameters: { pipeline: 'TRAIN_ONLY', inputs: { package: 'pyclient', version: '1.0', train_data: 'datasets/pydata/' }, env: { EPOCHS: '3' } },
    run_summary: { outputs: { package: 'pyclient', version: '1.1', artifacts_data: `runs/${summary.run_id}/attempt-1/artifacts/` } },
  }, 'the downloaded _results.json is the run\'s');
  t.same(results, JSON.parse(await s.objectText(`runs/${summary.run_id}/attempt-1/_results.json`)), 'byte for byte what the bucket holds');
  t.equal(readFileSync(path.join(out, 'artifacts', 'summary.txt'), 'utf8'), 'rows=3 epochs=3', 'the artifact train.py wrote');
});
