// What operators copy must be right: the systemd units parse (systemd-analyze verify, where there is one)
// and have the keys a two-stage shutdown and a drain need; every TRAINYARD_* variable in the example env
// files, docker-compose.yml and the Dockerfile is a real setting of the daemon that gets it. The example
// package has what every pipeline kind calls.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { agentSettings, schedulerSettings, type SettingSpec } from '../../shared/settings.js';
import { root, tempDir } from '../helpers/stack.js';

const systemd = path.join(root, 'examples', 'systemd');
const variablesOf = (specs: Record<string, SettingSpec>) => new Set(Object.values(specs).map((s) => s.env));
const daemons = { scheduler: variablesOf(schedulerSettings), agent: variablesOf(agentSettings) };

/** A unit file's sections, each key with every value it was given (systemd allows repeats). */
function parseUnit(text: string): Map<string, Map<string, string[]>> {
  const sections = new Map<string, Map<string, string[]>>();
  let current: Map<string, string[]> | null = null;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#') || line.startsWith(';')) continue;
    const section = /^\[(\w+)\]$/.exec(line);
    if (section) { current = new Map(); sections.set(section[1]!, current); continue; }
    const kv = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (!kv || !current) throw new Error(`not a unit file line: ${line}`);
    current.set(kv[1]!, [...(current.get(kv[1]!) ?? []), kv[2]!]);
  }
  return sections;
}

/** KEY=VALUE lines of an env file (comments and blank lines skipped). */
function parseEnvFile(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (!line.trim() || line.trim().startsWith('#')) continue;
    const m = /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(line);
    if (!m) throw new Error(`not an env file line: ${line}`);
    out.set(m[1]!, m[2]!);
  }
  return out;
}

/** "660", "11min", "10min 30s" → seconds. */
function seconds(span: string): number {
  let total = 0;
  for (const [, n, unit] of span.matchAll(/(\d+)\s*(min|s)?/g)) total += Number(n) * (unit === 'min' ? 60 : 1);
  return total;
}

for (const daemon of ['scheduler', 'agent'] as const) {
  t.test(`trainyard-${daemon}.service and ${daemon}.env`, async (t) => {
    const unitText = readFileSync(path.join(systemd, `trainyard-${daemon}.service`), 'utf8');
    const unit = parseUnit(unitText);
    const service = unit.get('Service');
    t.ok(service, '[Service] section');
    const one = (key: string) => service?.get(key)?.at(-1);
    t.equal(one('Restart'), 'on-failure');
    // The agent's runs outlive it (its supervised runs are taken over at its next start): systemd must never kill them.
    t.equal(one('KillMode'), daemon === 'agent' ? 'process' : 'mixed', 'SIGTERM to the daemon alone');
    t.equal(one('EnvironmentFile'), `/etc/trainyard/${daemon}.env`);
    t.match(one('ExecStart'), new RegExp(`bin/trainyard\\.js ${daemon}$`), 'starts the daemon');
    t.same(unit.get('Install')?.get('WantedBy'), ['multi-user.target']);

    const env = parseEnvFile(readFileSync(path.join(systemd, `${daemon}.env`), 'utf8'));
    t.ok(env.size > 0, `${daemon}.env sets variables`);
    for (const name of env.keys()) {
      if (name.startsWith('TRAINYARD_')) t.ok(daemons[daemon].has(name), `${daemon}.env: ${name} is a setting of the ${daemon}`);
    }

    if (daemon === 'scheduler') {
      t.ok(one('User') && one('User') !== 'root', `the scheduler runs unprivileged (User=${one('User')})`);
    } else {
      t.ok(env.get('TRAINYARD_RUN_UIDS'), 'agent.env sets --run-uids');
      t.equal(one('User') ?? 'root', 'root', 'so the agent runs as root');
      t.equal(one('Delegate'), 'yes', 'the agent may make cgroups under its own');
      const drainMs = Number(env.get('TRAINYARD_DRAIN_TIMEOUT_MS') ?? agentSettings.drainTimeoutMs.default());
      const graceMs = Number(env.get('TRAINYARD_KILL_GRACE_MS') ?? agentSettings.killGraceMs.default());
      const stopS = seconds(one('TimeoutStopSec') ?? '0');
      t.ok(stopS * 1000 > drainMs + graceMs + 3000, `TimeoutStopSec ${stopS} s outlasts the drain (${drainMs} ms) + kill grace (${graceMs} ms) + 3 s of last reports`);
    }

    const verify = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' });
    if (verify.error) { t.comment('systemd-analyze not found: parsed by the test only'); return; }
    // A copy whose ExecStart names this node and this checkout, so verify's executable check means something here.
    const dir = tempDir('ty-units-');
    mkdirSync(dir, { recursive: true });
    const copy = path.join(dir, `trainyard-${daemon}.service`);
    writeFileSync(copy, unitText.replace(/^ExecStart=\S+ \S+/m, `ExecStart=${process.execPath} ${path.join(root, 'bin', 'trainyard.js')}`));
    const r = spawnSync('systemd-analyze', ['verify', copy], { encoding: 'utf8' });
    t.equal(r.status, 0, `systemd-analyze verify: exit 0 ${r.stderr}`);
    // verify only warns (exit 0) about a key or value it cannot parse: any line about our file is a failure.
    t.same(r.stderr.split('\n').filter((l) => l.includes(`trainyard-${daemon}.service`)), [], 'and says nothing about the unit');
  });
}

t.test('docker-compose.yml and the Dockerfile set only real settings', async (t) => {
  const compose = parse(readFileSync(path.join(root, 'docker-compose.yml'), 'utf8'), { merge: true }) as {
    services: Record<string, { command?: string[]; environment?: Record<string, unknown> | string[] }>;
  };
  const seen = { scheduler: 0, agent: 0 };
  for (const [name, svc] of Object.entries(compose.services)) {
    const env = Array.isArray(svc.environment)
      ? Object.fromEntries(svc.environment.map((e) => [e.split('=')[0]!, e.slice(e.indexOf('=') + 1)]))
      : svc.environment ?? {};
    const names = Object.keys(env).filter((k) => k.startsWith('TRAINYARD_'));
    const daemon = svc.command?.[0];
    if (daemon !== 'scheduler' && daemon !== 'agent') {
      t.same(names, [], `${name} is not a Trainyard daemon and sets no TRAINYARD_* variable`);
      continue;
    }
    seen[daemon]++;
    t.ok(names.length > 0, `${name} (${daemon}) sets TRAINYARD_* variables (merged from the anchors too)`);
    for (const v of names) t.ok(daemons[daemon].has(v), `${name}: ${v} is a setting of the ${daemon}`);
  }
  t.same(seen, { scheduler: 1, agent: 1 }, 'one scheduler and one agent service');

  // The image's ENV applies to both daemons: each variable must be a setting of one of them.
  const dockerfile = readFileSync(path.join(root, 'Dockerfile'), 'utf8').replace(/\\\n/g, ' ');
  const envs = [...dockerfile.matchAll(/^ENV\s+(.*)$/gm)].flatMap((m) => [...m[1]!.matchAll(/(TRAINYARD_\w+)=/g)].map((x) => x[1]!));
  t.ok(envs.length > 0, 'the Dockerfile sets TRAINYARD_* variables');
  for (const v of envs) t.ok(daemons.scheduler.has(v) || daemons.agent.has(v), `Dockerfile: ${v} is a setting`);
});

// Issue 9: examples/ has a package for every pipeline kind (process_data, train, evaluate, save) that learns
// something real. Read statically with Python's ast (no scikit-learn needed): Main's methods, their
// positional parameters, that evaluate() returns a value (the score), and the pinned requirements.
const PY_METHODS = `import ast, json, sys
tree = ast.parse(open(sys.argv[1]).read(), sys.argv[1])
main = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Main")
out = {}
for f in main.body:
    if isinstance(f, ast.FunctionDef):
        returns = any(isinstance(r, ast.Return) and r.value is not None for r in ast.walk(f))
        out[f.name] = {"params": [a.arg for a in f.args.args], "returns": returns}
print(json.dumps(out))`;

t.test('examples/packages/iris-classifier: a Main for every pipeline kind', async (t) => {
  const pkg = path.join(root, 'examples', 'packages', 'iris-classifier');
  const r = spawnSync('python3', ['-c', PY_METHODS, path.join(pkg, 'train.py')], { encoding: 'utf8' });
  t.equal(r.status, 0, `train.py parses and has class Main ${r.stderr}`);
  const methods = JSON.parse(r.stdout) as Record<string, { params: string[]; returns: boolean }>;
  const arity = (name: string) => methods[name]?.params.length;
  t.equal(arity('process_data'), 2, 'process_data(self, input_directory)');
  t.equal(arity('train'), 2, 'train(self, training_directory)');
  t.equal(arity('evaluate'), 2, 'evaluate(self, evaluation_directory)');
  t.equal(arity('save'), 1, 'save(self)');
  t.ok(methods.evaluate?.returns, 'evaluate() returns a value: the score');
  const reqs = readFileSync(path.join(pkg, 'requirements.txt'), 'utf8').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  t.ok(reqs.some((l) => /^scikit-learn==\d/.test(l)), `it learns with a pinned scikit-learn (${reqs.join(', ')})`);
});

// Issue 22: the example that resumes. Run here as the harness would run it, with a thread standing in for
// the agent (it takes each commit marker away, as the agent does once the checkpoint is uploaded): a first
// run stops after 3 epochs, a second one over the same checkpoint_directory goes on from epoch 4.
const PY_RESUME = String.raw`
import json, os, sys, threading, time
pkg, harness, ckpt_dir, data = sys.argv[1:5]
sys.path[:0] = [pkg, harness]
os.environ["checkpoint_directory"] = ckpt_dir
os.environ["EPOCH_SECONDS"] = "0"
stop = False
def agent():
    while not stop:
        m = os.path.join(ckpt_dir, ".trainyard-commit")
        if os.path.exists(m):
            os.remove(m)
        time.sleep(0.01)
threading.Thread(target=agent, daemon=True).start()
import train
os.environ["EPOCHS"] = "3"
train.Main().train(data)
os.environ["EPOCHS"] = "5"
os.environ["resumed_from"] = json.dumps({"run": "run_x", "attempt": 1})
m = train.Main()
m.train(data)
stop = True
print("TOTAL %d" % m.total)
`;

t.test('examples/packages/resumable-counter: resumes from its checkpoint', async (t) => {
  const pkg = path.join(root, 'examples', 'packages', 'resumable-counter');
  const dir = tempDir('ty-resumable-');
  const ckpt = path.join(dir, 'ckpt');
  const data = path.join(dir, 'data');
  mkdirSync(ckpt);
  mkdirSync(data);
  writeFileSync(path.join(data, 'a.csv'), '1\n');
  const r = spawnSync('python3', ['-c', PY_RESUME, pkg, path.join(root, 'agent', 'harness'), ckpt, data], { encoding: 'utf8', timeout: 60_000 });
  t.equal(r.status, 0, `it runs ${r.stderr}`);
  const lines = r.stdout.split('\n');
  t.same(lines.filter((l) => l.startsWith('epoch ')).map((l) => Number(l.split(' ')[1])), [1, 2, 3, 4, 5], 'epochs 1-3, then 4-5 after the restart');
  t.ok(lines.some((l) => l.startsWith('resuming at epoch 3')), 'the second run found the first one\'s checkpoint');
  t.ok(lines.includes('TOTAL 15'), 'and its state');
});

// Issue 19, single box: the compose file has the NATS users `npm run services` makes (anonymous clients
// refused; the scheduler's user for the scheduler, the agent's for the agent, each with the password the
// NATS container gets), and no credential has a default: each is a required variable (`${X:?...}`) that
// examples/compose/make-env.sh writes, random, to a 0600 .env.
t.test('docker-compose.yml: NATS users, and every password required and made by make-env.sh', async (t) => {
  const text = readFileSync(path.join(root, 'docker-compose.yml'), 'utf8');
  const compose = parse(text, { merge: true }) as {
    services: Record<string, { command?: string[]; volumes?: string[]; environment?: Record<string, string> }>;
  };
  const { nats, scheduler, agent } = compose.services;
  const conf = nats?.volumes?.find((v) => v.startsWith('./examples/compose/nats.conf:'));
  t.ok(conf && nats?.command?.includes(conf.split(':')[1]!), 'nats-server runs with examples/compose/nats.conf');
  const natsConf = readFileSync(path.join(root, 'examples', 'compose', 'nats.conf'), 'utf8');
  t.match(natsConf, /authorization\s*\{\s*users\s*=/, 'nats.conf has users');
  t.notMatch(natsConf, /no_auth_user/, 'and no user for anonymous clients');
  for (const [daemon, svc, user, variable] of [['scheduler', scheduler, 'trainyard-scheduler', 'NATS_SCHEDULER_PASSWORD'], ['agent', agent, 'trainyard-agent', 'NATS_AGENT_PASSWORD']] as const) {
    t.match(natsConf, new RegExp(`user: "${user}", password: \\$${variable}`), `nats.conf: ${user}'s password is $${variable}`);
    t.equal(svc?.environment?.TRAINYARD_NATS_USER, user, `the ${daemon} connects as ${user}`);
    t.equal(svc?.environment?.TRAINYARD_NATS_PASSWORD, nats?.environment?.[variable], `with the password the NATS container gets as ${variable}`);
  }

  t.notMatch(text, /minioadmin|trainyard:trainyard@|dev-password|dev-secret/, 'no well-known default credential anywhere in the file');
  const required = new Set<string>();
  for (const [name, svc] of Object.entries(compose.services)) {
    for (const [key, value] of Object.entries(svc.environment ?? {})) {
      const v = String(value);
      // Credentials: passwords, secret keys and URLs (the join token is the operator's to give, later).
      if (!/PASSWORD|SECRET|_URL$/.test(key)) continue;
      for (const m of v.matchAll(/\$\{(\w+)(:?[-?+])?[^}]*\}/g)) {
        t.equal(m[2], ':?', `${name}: ${key} uses \${${m[1]}} with no default (${v})`);
        required.add(m[1]!);
      }
      if (/PASSWORD|SECRET/.test(key)) t.match(v, /^\$\{\w+:\?[^}]*\}$/, `${name}: ${key} is a required variable`);
      if (key === 'TRAINYARD_DATABASE_URL') t.match(v, /^postgres:\/\/trainyard:\$\{\w+:\?[^}]*\}@/, `${name}: the database password is a required variable`);
    }
  }
  t.ok(required.size >= 5, `the passwords are variables (${[...required].join(', ')})`);

  // make-env.sh writes every one of them, random and 0600, and keeps an existing .env.
  const dir = tempDir('ty-compose-env-');
  const run = () => spawnSync('bash', [path.join(root, 'examples', 'compose', 'make-env.sh'), dir], { encoding: 'utf8' });
  t.equal(run().status, 0, 'make-env.sh runs');
  const envFile = path.join(dir, '.env');
  t.equal((statSync(envFile).mode & 0o777).toString(8), '600', '.env is mode 0600');
  const env = parseEnvFile(readFileSync(envFile, 'utf8'));
  for (const name of required) t.match(env.get(name) ?? '', /^[0-9a-f]{48}$/, `.env sets ${name}, random`);
  const before = readFileSync(envFile, 'utf8');
  t.equal(run().status, 0, 'a second run succeeds');
  t.equal(readFileSync(envFile, 'utf8'), before, 'and keeps the passwords (volumes were made with them)');
  t.match(readFileSync(path.join(root, '.dockerignore'), 'utf8'), /^\.env$/m, '.env stays out of the image');
});
