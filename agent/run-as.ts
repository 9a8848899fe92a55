// `--run-as-user NAME`: train.py runs as that unprivileged user instead of the agent's. It then cannot read
// the agent's /proc/PID/environ or its files (the work dir's identity, the venv cache's insides are
// read-only to it), and it cannot leave its cgroup. The privileges are dropped by setpriv(1), below the
// root shell that puts the process in its cgroup: real and effective uid and gid, the user's groups, and
// no_new_privs, so no setuid program can take them back.
import { execFile } from 'node:child_process';
import path from 'node:path';

export interface RunAsUser { name: string; uid: number; gid: number }

function exec(cmd: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: 15_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 127) : 0;
      resolve({ code, stdout, stderr: stderr || (err ? err.message : '') });
    });
  });
}

/** Looks the user up; refuses root and an unknown name (the agent does not start). */
export async function resolveRunAsUser(name: string): Promise<RunAsUser> {
  if (!/^[a-z_][a-z0-9_.-]*\$?$/i.test(name)) throw new Error(`--run-as-user: "${name}" is not a user name`);
  const uid = await exec('id', ['-u', name]);
  const gid = await exec('id', ['-g', name]);
  if (uid.code !== 0 || gid.code !== 0) throw new Error(`--run-as-user: no user "${name}" on this machine (create one: useradd -r ${name})`);
  const u: RunAsUser = { name, uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
  if (u.uid === 0 || u.gid === 0) throw new Error(`--run-as-user: "${name}" is root (uid ${u.uid}, gid ${u.gid}); name an unprivileged user`);
  if (process.getuid?.() !== 0) throw new Error('--run-as-user needs the agent to run as root (to switch users and to own the venv cache)');
  return u;
}

/** The command line that runs `command args` as the user. */
export function asUser(u: RunAsUser, command: string, args: string[]): { command: string; args: string[] } {
  return {
    command: 'setpriv',
    args: ['--reuid', String(u.uid), '--regid', String(u.gid), '--init-groups', '--no-new-privs', '--', command, ...args],
  };
}

/**
 * Checks, as the user, that it can reach what a run needs: the work dir and venv cache (to traverse) and
 * the harness (to read). A private home above them (a default under /root) would fail every run; the
 * agent refuses to start instead, naming the folder.
 */
export async function checkUserReaches(u: RunAsUser, o: { dirs: string[]; files: string[] }): Promise<void> {
  const script = [...o.dirs.map((d) => `[ -x ${q(d)} ] || { echo ${q(`cannot enter ${d}`)}; exit 1; }`),
    ...o.files.map((f) => `[ -r ${q(f)} ] || { echo ${q(`cannot read ${f}`)}; exit 1; }`)].join('\n');
  const cmd = asUser(u, '/bin/sh', ['-c', script]);
  const r = await exec(cmd.command, cmd.args);
  if (r.code !== 0) {
    throw new Error(`--run-as-user ${u.name}: the user ${(r.stdout || r.stderr).trim()}; choose folders it can reach (e.g. --work-dir /var/lib/trainyard/work --venv-dir /var/cache/trainyard/venvs)`);
  }
}

const q = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

/** The folders above and including `p`, top first. */
export function ancestors(p: string): string[] {
  const out: string[] = [];
  for (let d = path.resolve(p); ; d = path.dirname(d)) {
    out.unshift(d);
    if (d === path.dirname(d)) return out;
  }
}
