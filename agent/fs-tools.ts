// find(1) and du(1), for the passes over a venv tree that a walk from Node does at ten times the CPU (one
// lstat an entry through libuv's thread pool): the venv's seal (agent/venv-seal.ts) and the venv cache's
// measurement (agent/venv-cache-cap.ts), issue 21. Named by absolute path, and, for a root agent, used
// only when root's alone with every folder above them (root executes them: agent/run-as.ts). null when
// there is none such: the callers then walk from Node, as before.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { checkRootOwned } from './run-as.js';

const found = new Map<string, Promise<string | null>>();

/** The program `name` (find or du) from /usr/bin or /bin, or null. */
export function fsTool(name: 'find' | 'du'): Promise<string | null> {
  let p = found.get(name);
  if (!p) {
    p = (async () => {
      const at = [`/usr/bin/${name}`, `/bin/${name}`].find((c) => existsSync(c));
      if (!at) return null;
      return process.getuid?.() === 0 ? checkRootOwned(name, at).catch(() => null) : at;
    })();
    found.set(name, p);
  }
  return p;
}

/** What `program args` prints, with an empty environment; null when it cannot run or exits non-zero. */
export function toolOutput(program: string, args: string[]): Promise<Buffer | null> {
  return new Promise((resolve) => {
    const child = spawn(program, args, { stdio: ['ignore', 'pipe', 'ignore'], env: {} });
    const chunks: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => chunks.push(c));
    child.on('error', () => resolve(null));
    child.on('close', (code) => resolve(code === 0 ? Buffer.concat(chunks) : null));
  });
}
