// How a root agent runs something as a run's uid, and the programs it executes to do so. Privileges are
// dropped by setpriv(1), below the root shell that puts the process in its cgroup: real and effective uid
// and gid, no supplementary groups, and no_new_privs, so no setuid program can take them back.
//
// Root executes nothing a run or a build could write: every helper (setpriv, the shell, the base Python
// that warm interpreters start from) is named by an absolute path resolved once at start and checked to be
// root's and writable by nobody else, the file and every folder above it. A helper named by name would be
// looked up in PATH, and a run's PATH starts with its venv's bin/, where any wheel may put a `setpriv`.
import { execFile } from 'node:child_process';
import { lstat, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { ErrorCodes, TrainyardError } from '../shared/errors.js';

/** A run's identity: a uid of the agent's pool (agent/run-uids.ts), with its passwd name and group. */
export interface RunAsUser { name: string; uid: number; gid: number }

/** The programs root executes for runs, by absolute path (resolveHelpers). */
export interface Helpers { setpriv: string; sh: string; python: string; pythonVersion: string }

export class HelperError extends TrainyardError {
  constructor(message: string) {
    super(ErrorCodes.FailedPrecondition, message);
    this.name = 'HelperError';
  }
}

export function exec(cmd: string, args: string[], env?: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: 30_000, env }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 127) : 0;
      resolve({ code, stdout, stderr: stderr || (err ? err.message : '') });
    });
  });
}

/**
 * Throws unless `file` (links resolved) and every folder above it are owned by root and writable by
 * nobody else (a sticky folder such as /tmp does not count as safe: anyone may create there).
 */
export async function checkRootOwned(what: string, file: string): Promise<string> {
  const real = await realpath(file).catch(() => { throw new HelperError(`${what}: ${file} does not exist`); });
  for (const p of ancestors(real)) {
    const st = await lstat(p);
    if (st.uid !== 0 || (st.mode & 0o022) !== 0) {
      throw new HelperError(`${what}: ${p} (on the way to ${real}) is ${st.uid !== 0 ? `owned by uid ${st.uid}` : 'writable by group or others'}; root executes it for runs, so it must be root's alone`);
    }
  }
  return real;
}

/** The first of `candidates` that exists, checked root-owned. */
async function firstRootOwned(what: string, candidates: string[]): Promise<string> {
  for (const c of candidates) if (await stat(c).then((s) => s.isFile(), () => false)) return checkRootOwned(what, c);
  throw new HelperError(`${what}: none of ${candidates.join(', ')} exists`);
}

/**
 * Resolves the helpers once, at the agent's start. `python` is the agent's --python (a name is looked up in
 * the agent's own PATH, never a run's): the interpreter it names, by its real path, is what venvs are made
 * from and what warm interpreters start as. `checkOwner`: only a root agent needs the ownership checks.
 */
export async function resolveHelpers(python: string, checkOwner: boolean): Promise<Helpers> {
  // The interpreter a name or a shim (pyenv) ends up running: asked of it with -I -S, so nothing but the
  // interpreter itself runs (no site, no environment).
  const r = await exec(python, ['-I', '-S', '-c', 'import sys; print(sys.executable); print(sys.version.split()[0])']);
  const [exe = '', pythonVersion = ''] = r.stdout.trim().split('\n');
  if (r.code !== 0 || !path.isAbsolute(exe)) throw new HelperError(`--python ${python}: cannot run it (${(r.stderr || r.stdout).trim()})`);
  if (!checkOwner) return { setpriv: 'setpriv', sh: '/bin/sh', python: exe, pythonVersion };
  return {
    setpriv: await firstRootOwned('setpriv (util-linux)', ['/usr/bin/setpriv', '/bin/setpriv', '/usr/sbin/setpriv']),
    sh: await checkRootOwned('/bin/sh', '/bin/sh'),
    python: await checkRootOwned(`--python ${python}`, exe),
    pythonVersion,
  };
}

/** The command line that runs `command args` as the user (setpriv by its absolute path). */
export function asUser(h: Helpers, u: RunAsUser, command: string, args: string[]): { command: string; args: string[] } {
  return {
    command: h.setpriv,
    args: ['--reuid', String(u.uid), '--regid', String(u.gid), '--clear-groups', '--no-new-privs', '--', command, ...args],
  };
}

/**
 * Checks, as the user, that it can reach what a run needs: the work dir and venv cache (to traverse) and
 * the harness (to read). A private home above them (a default under /root) would fail every run; the
 * agent refuses to start instead, naming the folder.
 */
export async function checkUserReaches(h: Helpers, u: RunAsUser, o: { dirs: string[]; files: string[] }): Promise<void> {
  const script = [...o.dirs.map((d) => `[ -x ${q(d)} ] || { echo ${q(`cannot enter ${d}`)}; exit 1; }`),
    ...o.files.map((f) => `[ -r ${q(f)} ] || { echo ${q(`cannot read ${f}`)}; exit 1; }`)].join('\n');
  const cmd = asUser(h, u, h.sh, ['-c', script]);
  const r = await exec(cmd.command, cmd.args);
  if (r.code !== 0) {
    throw new HelperError(`run uid ${u.uid} (${u.name}): the user ${(r.stdout || r.stderr).trim()}; choose folders it can reach (e.g. --work-dir /var/lib/trainyard/work --venv-dir /var/cache/trainyard/venvs)`);
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
