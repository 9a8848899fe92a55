// Shared by the delete tests (issue 21): a package that can train and evaluate, the CLI as a token of a
// role, and the rows and objects a check compares before and after a refusal.
import { Stack } from './stack.js';

export const trainPy = `
class Main:
    def train(self, d):
        pass
    def evaluate(self, d):
        return 1.0
    def save(self):
        pass
`;

export type Cli = (args: string[]) => Promise<{ code: number; out: any; err: any }>;

export async function as(s: Stack, project: string, role: string): Promise<Cli> {
  const token = (await s.cliJson(['tokens', 'create', '--project', project, '--role', role])).token as string;
  return async (args) => {
    const r = await s.cli([...args, '--json', '--token', token]);
    return { code: r.code, out: r.code === 0 ? JSON.parse(r.stdout) : null, err: r.code !== 0 ? JSON.parse(r.stderr || '{}').error : null };
  };
}

/** Puts an object straight into the bucket, as an attempt (or a checkpointer) would have. */
export const put = (s: Stack, key: string, body = 'x') => s.minio.putObject(s.bucket, key, Buffer.from(body));

/** The rows and objects a check compares before and after a refusal. */
export async function snapshot(s: Stack) {
  return {
    runs: await s.query('SELECT id, status, deleting_at FROM runs ORDER BY id'),
    versions: await s.query('SELECT package, major, minor, deleting_at FROM package_versions ORDER BY 1, 2, 3'),
    datasets: await s.query('SELECT name, deleting_at FROM datasets ORDER BY name'),
    objects: await s.objects(),
  };
}


/**
 * Gives ended run `id` a complete checkpoint of attempt 1, as its agent would have left it (the pointer
 * names it), so that a run may be submitted with --resume-from it. The run is made to have had attempt 1.
 */
export async function fakeCheckpoint(s: Stack, id: string): Promise<void> {
  await s.query('UPDATE runs SET attempt = 1 WHERE id = $1', [id]);
  const prefix = `runs/${id}/checkpoints/attempt-1/000001/`;
  await put(s, `${prefix}model.pt`);
  await put(s, `runs/${id}/checkpoints/attempt-1/latest.json`, JSON.stringify({
    version: 1, run_id: id, attempt: 1, seq: 1, prefix, files: [{ path: 'model.pt', size: 1 }], bytes: 1, committed_at: Date.now() / 1000,
  }));
}
