// The CLI as people use it: every verb and group in the registry answers --help (and `help VERB`, and -h)
// with its flags, defaults and an example; typos get the nearest verb or flag; usage errors exit 2; the
// bash and zsh completion scripts are valid and the bash one completes what it should. No scheduler needed.
import t from 'tap';
import { execFile, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { root, tempDir } from '../helpers/stack.js';
import { commands } from '../../cli/registry.js';
import { isVerb } from '../../cli/verb.js';
import { globalFlags } from '../../cli/help.js';

const trainyard = (...args: string[]) =>
  spawnSync(process.execPath, [path.join(root, 'bin', 'trainyard.js'), ...args], { encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } });

/** The same, without blocking: several at once keep a hundred help screens from taking minutes. */
const trainyardAsync = (...args: string[]) => new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
  execFile(process.execPath, [path.join(root, 'bin', 'trainyard.js'), ...args], { encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } },
    (err, stdout, stderr) => resolve({ status: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }));
});

/** Runs `fn` over `items`, `width` at a time, keeping the order of the results. */
async function pooled<T, R>(items: readonly T[], width: number, fn: (x: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < items.length) { const i = next++; out[i] = await fn(items[i]!); }
  }));
  return out;
}

t.test('the registry: every verb is documented', async (t) => {
  t.ok(commands.length > 20, `the registry lists the verbs (${commands.length})`);
  const paths = commands.map((c) => c.path.join(' '));
  t.same(paths.filter((p, i) => paths.indexOf(p) !== i), [], 'no verb is declared twice');
  for (const c of commands) {
    const name = c.path.join(' ');
    t.ok(c.summary.length > 10, `${name}: has a summary`);
    // A sub-verb's parent exists, so `trainyard PARENT --help` lists it.
    if (c.path.length > 1) t.ok(paths.includes(c.path.slice(0, -1).join(' ')), `${name}: its parent is declared`);
    else t.ok(c.section, `${name}: top-level entries say where --help lists them`);
    if (!isVerb(c)) continue;
    t.ok(c.examples.every((e) => e.includes(`trainyard ${name}`)), `${name}: each example uses the verb`);
    for (const [flag, f] of Object.entries(c.flags)) t.ok(f.description.length > 3, `${name} --${flag}: has a description`);
  }
});

t.test('every verb and group answers --help, -h and `help VERB`: exit 0, each flag and an example', async (t) => {
  const answers = await pooled(commands, 4, async (c) => ({
    r: await trainyardAsync(...c.path, '--help'), via: await trainyardAsync('help', ...c.path), short: await trainyardAsync(...c.path, '-h'),
  }));
  for (const [i, c] of commands.entries()) {
    const name = c.path.join(' ');
    const { r, via, short } = answers[i]!;
    t.equal(r.status, 0, `${name} --help exits 0 ${r.stderr}`);
    t.match(r.stdout, `trainyard ${name} — ${c.summary}`, `${name} --help: names the verb and what it does`);
    t.equal(via.status, 0, `help ${name} exits 0`);
    t.equal(via.stdout, r.stdout, `help ${name} prints the same as ${name} --help`);
    if (!isVerb(c)) {
      for (const sub of commands.filter((x) => x.path.length === c.path.length + 1 && c.path.every((p, i) => x.path[i] === p))) {
        t.match(r.stdout, `trainyard ${sub.path.join(' ')}`, `${name} --help lists ${sub.path.join(' ')}`);
      }
      continue;
    }
    for (const flag of Object.keys(c.flags)) t.match(r.stdout, new RegExp(`--${flag}\\b`), `${name} --help mentions --${flag}`);
    for (const [flag, f] of Object.entries(c.flags)) if (f.default) t.match(r.stdout, `default: ${f.default}`, `${name} --help gives the default of --${flag}`);
    t.match(r.stdout, c.examples[0], `${name} --help shows an example`);
    if ((c.kind ?? 'client') === 'client') for (const flag of Object.keys(globalFlags)) t.match(r.stdout, `--${flag}`, `${name} --help mentions the global --${flag}`);
    t.equal(short.status, 0, `${name} -h exits 0`);
    t.equal(short.stdout, r.stdout, `${name} -h is --help`);
  }
});

t.test('the verbs the issue named, and the program\'s own help', async (t) => {
  for (const args of [['run', 'train', '--help'], ['run', '--help']]) {
    const r = trainyard(...args);
    t.equal(r.status, 0, `${args.join(' ')} exits 0`);
    t.notMatch(r.stderr, /Unknown option/, `${args.join(' ')}: no "Unknown option"`);
  }
  t.match(trainyard('run', 'train', '--help').stdout, /--gpus N\s+GPUs, 0 to 8 \(default: 0\)/, 'run train --help: a flag, its value and its default');
  t.match(trainyard('run', 'train', '--help').stdout, /--stall-timeout SECONDS\s+no log line, checkpoint or progress mark .*\(default: off\)/, 'run train --help: --stall-timeout (issue 22)');
  t.match(trainyard('run', 'train', '--help').stdout, /--checkpoint-interval SECONDS\|off\s+upload checkpoint_directory .*\(default: 600\)/, 'run train --help: --checkpoint-interval (issue 22)');
  const agentHelp = trainyard('agent', '--help').stdout;
  t.match(agentHelp, /--run-disk-mb VALUE\s+disk one run may fill .*"disk limit".*\(env TRAINYARD_RUN_DISK_MB; default: 0\)/, 'agent --help: --run-disk-mb (issue 19)');
  t.match(agentHelp, /--max-output-mb VALUE\s+most one run may upload .*"output limit".*\(env TRAINYARD_MAX_OUTPUT_MB; default: 0\)/, 'agent --help: --max-output-mb (issue 19)');
  const hooks = trainyard('webhooks', 'create', '--help').stdout;
  t.match(hooks, /--url URL\s+http\(s\) URL to POST to/, 'webhooks create --help: --url (issue 23)');
  t.match(hooks, /--events KIND,\.\.\.\s+event kinds to send/, 'webhooks create --help: --events (issue 23)');
  t.match(hooks, /--format json\|slack\s+.*\(default: json\)/, 'webhooks create --help: --format (issue 23)');
  t.match(trainyard('webhooks', 'deliveries', '--help').stdout, /--limit N\s+the latest N deliveries/, 'webhooks deliveries --help: --limit (issue 23)');
  t.match(trainyard('projects', 'usage', '--help').stdout, /--since 30d\|RFC3339\s+count from then.*\(default: 30d\)/, 'projects usage --help: --since (issue 23)');
  const schedulerHelp = trainyard('scheduler', '--help').stdout;
  for (const flag of ['webhook-allow-hosts', 'webhook-timeout-ms', 'webhook-backoff-ms', 'webhook-retry-minutes', 'webhook-log-retention-days']) {
    t.match(schedulerHelp, new RegExp(`--${flag} VALUE\\s+.*\\(env TRAINYARD_${flag.toUpperCase().replaceAll('-', '_')}[;)]`), `scheduler --help: --${flag} (issue 23)`);
  }
  t.match(agentHelp, /--log-spill-mb VALUE\s+a run's log lines kept on disk .*\(env TRAINYARD_LOG_SPILL_MB; default: 1024\)/, 'agent --help: --log-spill-mb (issue 21)');
  t.match(agentHelp, /--max-pending-uploads VALUE\s+finished runs that may upload .*\(env TRAINYARD_MAX_PENDING_UPLOADS; default: 2\)/, 'agent --help: --max-pending-uploads (issue 22)');
  for (const args of [['--help'], ['-h'], ['help'], []]) {
    const r = trainyard(...args);
    t.equal(r.status, 0, `trainyard ${args.join(' ')} exits 0`);
    for (const c of commands.filter(isVerb)) t.match(r.stdout, `trainyard ${c.path.join(' ')}`, `trainyard ${args.join(' ')} lists ${c.path.join(' ')}`);
    t.match(r.stdout, /2 on a usage error/, 'it documents the exit statuses');
  }
});

t.test('typos and usage errors: the nearest verb or flag, exit 2', async (t) => {
  const rn = trainyard('rn');
  t.equal(rn.status, 2, 'rn: exit 2');
  t.match(rn.stderr, /unknown command "rn" \(did you mean "run"\?\)/);
  const sub = trainyard('run', 'trian', '--package', 'p');
  t.equal(sub.status, 2, 'run trian: exit 2');
  t.match(sub.stderr, /unknown command "run trian" \(did you mean "run train"\?\)/);
  const drain = trainyard('agents', 'dran', 'box1');
  t.equal(drain.status, 2);
  t.match(drain.stderr, /did you mean "agents drain"\?/, 'a verb with sub-verbs of its own suggests them');
  const flag = trainyard('run', 'train', '--pakage', 'p', '--dataset', 'd');
  t.equal(flag.status, 2, 'an unknown flag: exit 2');
  t.match(flag.stderr, /unknown flag --pakage for "trainyard run train" \(did you mean --package\?\)/);
  const json = trainyard('run', 'list', '--jsn', '--scheduler', '127.0.0.1:1');
  t.equal(json.status, 2);
  t.match(json.stderr, /unknown flag --jsn .*did you mean --json\?/, 'after the global flags are taken out');
  const far = trainyard('frobnicate');
  t.equal(far.status, 2);
  t.notMatch(far.stderr, /did you mean/, 'nothing is suggested when nothing is near');
  const group = trainyard('run');
  t.equal(group.status, 2, 'a group without its verb: exit 2');
  t.match(group.stderr, /trainyard run train/, '... and its sub-verbs on stderr');
  const extra = trainyard('doctor', 'now');
  t.equal(extra.status, 2);
  t.match(extra.stderr, /trainyard doctor takes no arguments, got "now"/);
  const missing = trainyard('tokens', 'create', '--role', 'member');
  t.equal(missing.status, 2);
  t.match(missing.stderr, /missing --project/, 'a required flag is checked before any call');
  const value = trainyard('run', 'logs', 'r1', '--after');
  t.equal(value.status, 2, 'a flag without its value: exit 2');
  t.match(value.stderr, /--after/);
});

// Each of these was taken, or answered only after trying the scheduler (at an address where none listens,
// so a check made after connecting would say "cannot reach" and exit 1 instead).
t.test('bad values and missing arguments are refused before any call: exit 2, saying what is wrong', async (t) => {
  const none = ['--scheduler', '127.0.0.1:1'];
  const cases: [string[], RegExp][] = [
    [['run', 'train', '--package', 'p', '--dataset', 'd', '--priority', 'abc', ...none], /--priority: expected a whole number from -2147483648 to 2147483647, got "abc"/],
    [['run', 'train', '--package', 'p', '--dataset', 'd', '--priority', '1.5', ...none], /--priority: expected a whole number/],
    [['run', 'train', '--package', 'p', '--dataset', 'd', '--priority', '3000000000', ...none], /--priority: expected a whole number/],
    [['run', 'list', '--limit', '5000', ...none], /--limit: expected an integer from 0 to 1000, got "5000"/],
    [['projects', 'set', 'vision', '--keep-runs', '9x', ...none], /--keep-runs: expected an age/],
    [['projects', 'set', 'vision', ...none], /projects set: give --max-runs/],
    [['webhooks', 'create', 'w', '--url', 'http://x', '--events', 'run.failed', '--secret', 'plain', ...none], /--secret: give it as @FILE/],
    [['webhooks', 'deliveries', 'w', '--limit', '5000', ...none], /--limit "5000": expected a whole number from 1 to 1000/],
    [['schedules', 'get', ...none], /trainyard schedules get: missing NAME/],
    [['webhooks', 'test', ...none], /trainyard webhooks test: missing NAME/],
    [['package', 'lineage', 'p', ...none], /trainyard package lineage: missing VERSION/],
    [['run', 'list', '--scheduler'], /--scheduler: give the address/],
    [['run', 'list', '--scheduler', '--json'], /--scheduler: give the address/],
    [['run', 'list', '--scheduler='], /--scheduler: give the address/],
    [['doctor', '--grace', '45s', ...none], /--grace is for doctor --storage --repair/],
  ];
  const results = await pooled(cases, 4, ([args]) => trainyardAsync(...args));
  for (const [i, [args, want]] of cases.entries()) {
    const r = results[i]!;
    t.equal(r.status, 2, `${args.join(' ')}: exit 2`);
    t.match(r.stderr, want, `${args.join(' ')}: ${r.stderr.trim()}`);
    t.notMatch(r.stderr, /cannot reach|UNAVAILABLE/, 'without trying the scheduler');
  }
  // The daemons' values are checked with the settings (so --print-config refuses them too): no stack trace.
  for (const [args, want] of [
    [['agent', '--log-level', 'verbose', '--print-config'], /--log-level: expected one of fatal, error, warn, info, debug, trace, silent, got "verbose"|expected one of fatal/],
    [['agent', '--installer', 'conda', '--print-config'], /expected one of uv, pip, got "conda"/],
    [['scheduler', '--log-level', 'loud', '--print-config'], /expected one of fatal/],
  ] as [string[], RegExp][]) {
    const r = await trainyardAsync(...args);
    t.equal(r.status, 2, `${args.join(' ')}: exit 2`);
    t.match(r.stderr, want, r.stderr.trim());
    t.notMatch(r.stderr, /\n\s+at /, 'no stack trace');
  }
  // `--` and what follows it come after the verb's own flags, as they must be written.
  const usage = trainyard('schedules', 'create', '--help').stdout;
  t.match(usage, /\[--json\] -- run VERB FLAGS/, 'schedules create --help: the -- part last');
});

t.test('completion: the scripts are valid, and bash completes verbs, sub-verbs and flags', async (t) => {
  const dir = tempDir('ty-completion-');
  const bash = trainyard('completion', 'bash');
  t.equal(bash.status, 0);
  const bashFile = path.join(dir, 'trainyard.bash');
  writeFileSync(bashFile, bash.stdout);
  const n = spawnSync('bash', ['-n', bashFile], { encoding: 'utf8' });
  t.equal(n.status, 0, `bash -n accepts it ${n.stderr}`);
  /** What the completion function offers for the words typed so far (the last one being completed). */
  const complete = (...words: string[]) => {
    const script = `source ${JSON.stringify(bashFile)}
COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}
_trainyard; printf '%s\\n' "\${COMPREPLY[@]}"; complete -p trainyard`;
    const r = spawnSync('bash', ['-c', script], { encoding: 'utf8' });
    t.equal(r.status, 0, `completing "${words.join(' ')}" ran ${r.stderr}`);
    const lines = r.stdout.split('\n').filter(Boolean);
    t.match(lines.at(-1), /complete .*-F _trainyard trainyard/, 'the script registers the function for trainyard');
    return lines.slice(0, -1);
  };
  t.same(complete('trainyard', 'ru'), ['run'], 'trainyard ru<TAB> → run');
  t.same(complete('trainyard', 'run', 'tr'), ['train'], 'trainyard run tr<TAB> → train');
  t.same(complete('trainyard', 'run', 'train', '--pa'), ['--package'], 'trainyard run train --pa<TAB> → --package');
  t.same(complete('trainyard', 'run', 'train', '--package', 'p', '--da'), ['--dataset'], 'after a flag and its value');
  t.same(complete('trainyard', 'run', 'outputs', '--to', ''), [], 'a flag\'s value: nothing offered (bash completes files)');
  t.same(complete('trainyard', 'agents', 'join-token', ''), ['create'], 'three words deep');
  // Issue 19: a project's agents, exclusivity and storage quota; an agent's accepted projects.
  t.same(complete('trainyard', 'projects', 'set', 'p', '--ag'), ['--agents'], 'projects set --ag<TAB> → --agents');
  t.same(complete('trainyard', 'projects', 'set', 'p', '--ex'), ['--exclusive'], 'projects set --ex<TAB> → --exclusive');
  t.same(complete('trainyard', 'projects', 'set', 'p', '--max-s'), ['--max-storage-gb'], 'projects set --max-s<TAB> → --max-storage-gb');
  // Issue 22: which projects' runs may be preempted; the scheduler's --min-runtime.
  t.same(complete('trainyard', 'projects', 'set', 'p', '--pre'), ['--preemptible'], 'projects set --pre<TAB> → --preemptible');
  t.same(complete('trainyard', 'scheduler', '--min-r'), ['--min-runtime'], 'scheduler --min-r<TAB> → --min-runtime');
  t.same(complete('trainyard', 'agent', '--accept'), ['--accept-projects'], 'agent --accept<TAB> → --accept-projects');
  t.same(complete('trainyard', 'agent', '--run-d'), ['--run-disk-mb'], 'an agent setting: --run-disk-mb');
  t.same(complete('trainyard', 'agent', '--max-o'), ['--max-output-mb'], 'and --max-output-mb');
  t.same(complete('trainyard', 'agent', '--log-s'), ['--log-spill-mb'], 'and --log-spill-mb (issue 21)');
  t.same(complete('trainyard', 'agent', '--max-p'), ['--max-pending-uploads'], 'and --max-pending-uploads (issue 22)');
  t.same(complete('trainyard', 'agents', 'join-token', 'create', '--us'), ['--uses'], 'join-token create --us<TAB> → --uses');
  // Issue 22: checkpoints and stalls, on every run verb.
  t.same(complete('trainyard', 'run', 'train', '--resume'), ['--resume-from'], 'run train --resume<TAB> → --resume-from');
  t.same(complete('trainyard', 'run', 'full', '--stall'), ['--stall-timeout'], 'run full --stall<TAB> → --stall-timeout');
  t.same(complete('trainyard', 'run', 'evaluate', '--checkpoint'), ['--checkpoint-interval'], 'run evaluate --checkpoint<TAB> → --checkpoint-interval');
  t.same(complete('trainyard', 'run', 'train', '--keep'), ['--keep-checkpoints'], 'run train --keep<TAB> → --keep-checkpoints');
  // Issue 24: multi-agent (gang) runs, on train and full; the agent's rendezvous settings; logs of one rank.
  t.same(complete('trainyard', 'run', 'train', '--agen'), ['--agents'], 'run train --agen<TAB> → --agents');
  t.same(complete('trainyard', 'run', 'full', '--procs'), ['--procs-per-agent'], 'run full --procs<TAB> → --procs-per-agent');
  t.same(complete('trainyard', 'run', 'train', '--gpus-'), ['--gpus-per-agent'], 'run train --gpus-<TAB> → --gpus-per-agent');
  t.same(complete('trainyard', 'run', 'evaluate', '--agen'), [], 'an evaluation makes no gang');
  t.same(complete('trainyard', 'agent', '--adv'), ['--advertise-addr'], 'agent --adv<TAB> → --advertise-addr');
  t.same(complete('trainyard', 'agent', '--rendez'), ['--rendezvous-ports'], 'agent --rendez<TAB> → --rendezvous-ports');
  t.same(complete('trainyard', 'run', 'logs', 'r1', '--ra'), ['--rank'], 'run logs --ra<TAB> → --rank');
  // Issue 23: run metrics and the scheduler's point cap.
  t.same(complete('trainyard', 'run', 'me'), ['metrics'], 'run me<TAB> → metrics');
  t.same(complete('trainyard', 'run', 'metrics', 'r1', '--c'), ['--csv'], 'run metrics --c<TAB> → --csv');
  t.same(complete('trainyard', 'scheduler', '--max-m'), ['--max-metric-points'], 'scheduler --max-m<TAB> → --max-metric-points');
  t.same(complete('trainyard', 'agent', '--sys'), ['--sys-sample-seconds'], 'agent --sys<TAB> → --sys-sample-seconds');
  // Issue 21: deletes, retention, doctor --storage.
  t.same(complete('trainyard', 'run', 'del'), ['delete'], 'run del<TAB> → delete');
  t.same(complete('trainyard', 'package', 'de'), ['delete'], 'package de<TAB> → delete');
  t.same(complete('trainyard', 'dataset', 'de'), ['delete'], 'dataset de<TAB> → delete');
  t.same(complete('trainyard', 'run', 'delete', 'r1', '--y'), ['--yes'], 'run delete --y<TAB> → --yes');
  t.same(complete('trainyard', 'projects', 'set', 'p', '--keep-r'), ['--keep-runs'], 'projects set --keep-r<TAB> → --keep-runs');
  t.same(complete('trainyard', 'projects', 'set', 'p', '--keep-v'), ['--keep-versions'], 'projects set --keep-v<TAB> → --keep-versions');
  t.same(complete('trainyard', 'doctor', '--st'), ['--storage'], 'doctor --st<TAB> → --storage');
  t.same(complete('trainyard', 'doctor', '--gr'), ['--grace'], 'doctor --gr<TAB> → --grace');
  t.same(complete('trainyard', 'scheduler', '--storage-j'), ['--storage-janitor-interval-s'], 'a scheduler setting: --storage-janitor-interval-s');
  t.same(complete('trainyard', '').sort(), commands.filter((c) => c.path.length === 1).map((c) => c.path[0]).sort(), 'every top-level verb');
  t.same(complete('trainyard', 'completion', ''), ['bash', 'zsh']);

  const zsh = trainyard('completion', 'zsh');
  t.equal(zsh.status, 0);
  const zshFile = path.join(dir, '_trainyard');
  writeFileSync(zshFile, zsh.stdout);
  const hasZsh = spawnSync('zsh', ['--version']).status === 0;
  t.ok(hasZsh, 'zsh is installed (scripts/test.sh installs it)');
  if (!hasZsh) return;
  const zn = spawnSync('zsh', ['-n', zshFile], { encoding: 'utf8' });
  t.equal(zn.status, 0, `zsh -n accepts it ${zn.stderr}`);
  const loaded = spawnSync('zsh', ['-f', '-c', `autoload -U compinit && compinit -u -D && source ${JSON.stringify(zshFile)} && print -r -- "$_comps[trainyard]"`], { encoding: 'utf8' });
  t.equal(loaded.stdout.trim(), '_trainyard', `sourced after compinit, it registers _trainyard for trainyard ${loaded.stderr}`);
});
