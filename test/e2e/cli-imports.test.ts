// Client verbs must not load the daemons' dependencies (pg, kysely, nats): they slow every command down
// and a user's laptop has no use for them. cli/main.ts imports the daemon commands only for `scheduler`
// and `agent`; this records every module a real `trainyard` process resolves and checks the list.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { freePort, root, tempDir } from '../helpers/stack.js';

const hooks = pathToFileURL(path.join(root, 'test', 'helpers', 'record-imports.mjs')).href;
const register = `data:text/javascript,import{register}from"node:module";register(${JSON.stringify(hooks)})`;
const daemonOnly = ['pg', 'kysely', 'nats'];
/** Loaded by no client verb either: the MinIO client alone took 0.18 s of every verb's start (a push stores parts by plain HTTP). */
const notForClients = [...daemonOnly, 'minio'];

/** Runs `trainyard ARGS` with the recording hooks; returns its exit status and the packages it loaded. */
function loadedPackages(args: string[], timeoutMs = 30_000): { status: number | null; stderr: string; packages: Set<string>; modules: number } {
  const record = path.join(tempDir('ty-imports-'), 'modules.txt');
  const r = spawnSync(process.execPath, ['--import', register, path.join(root, 'bin', 'trainyard.js'), ...args], {
    encoding: 'utf8', env: { ...process.env, NO_COLOR: '1', TRAINYARD_RECORD_IMPORTS: record }, timeout: timeoutMs,
  });
  let urls: string[] = [];
  try { urls = readFileSync(record, 'utf8').split('\n').filter(Boolean); } catch { /* nothing recorded */ }
  const packages = new Set<string>();
  for (const url of urls) {
    // The package is the path segment(s) after the last node_modules/ (two for a scoped one).
    const m = /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url.slice(url.lastIndexOf('/node_modules/')));
    if (m) packages.add(m[1]!);
    else if (!url.startsWith('file:') && !url.startsWith('node:') && !url.startsWith('data:')) packages.add(url);
  }
  return { status: r.status, stderr: r.stderr, packages, modules: urls.length };
}

t.test('client verbs load no daemon dependencies', async (t) => {
  const port = await freePort();
  const verbs = [
    ['--help'],
    ['run', 'list', '--scheduler', `127.0.0.1:${port}`],
    ['dataset', 'push', tempDir('ty-imports-push-'), '--name', 'x', '--scheduler', `127.0.0.1:${port}`],
  ];
  for (const args of verbs) {
    const r = loadedPackages(args);
    t.comment(`trainyard ${args.join(' ')} loads: ${[...r.packages].sort().join(' ')}`);
    t.ok(r.modules > 10, `trainyard ${args.join(' ')}: the hooks saw the program's modules (${r.modules})`);
    t.ok(r.packages.has('@grpc/grpc-js') || args[0] === '--help', `trainyard ${args.join(' ')}: the recorder sees packages`);
    t.same(notForClients.filter((p) => r.packages.has(p)), [], `trainyard ${args.join(' ')} loads none of ${notForClients.join(', ')}`);
  }
});

t.test('the daemon verbs do load them (the recorder is not blind)', async (t) => {
  const help = loadedPackages(['scheduler', '--help']);
  t.equal(help.status, 0, help.stderr);
  t.same(daemonOnly.filter((p) => help.packages.has(p)), [], '`scheduler --help` loads none of them either');
  // A scheduler pointed at a closed port imports its module graph, then fails (in about 3 s on this
  // machine); the timeout only bounds a hang. A 5 s one cut it short under load, before it loaded anything.
  const port = await freePort();
  const daemon = loadedPackages(['scheduler', '--listen', '127.0.0.1:0', '--database-url', `postgres://x:x@127.0.0.1:${port}/x`,
    '--nats-url', `nats://127.0.0.1:${port}`]);
  t.same(daemonOnly.filter((p) => daemon.packages.has(p)), daemonOnly, 'the scheduler loads pg, kysely and nats');
});
