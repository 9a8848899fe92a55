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

