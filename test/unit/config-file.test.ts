// The daemons' config file (cli/config-file.ts) and the settings layers (shared/settings.ts): precedence
// flag > variable > file > default, in TOML and in YAML; refusals that name the key and the file (and the
// line, for a syntax error); redaction in --print-config.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { readConfigFile, formatConfig } from '../../cli/config-file.js';
import { agentSettings, clientSettings, compileSettings, describeSettings, isSecretSetting, schedulerSettings } from '../../shared/settings.js';
import { root, tempDir } from '../helpers/stack.js';

const dir = tempDir('ty-config-');
const file = (name: string, text: string) => { const p = path.join(dir, name); writeFileSync(p, text); return p; };

// One file per format, the same settings: each is layered the same way.
const layered = {
  's.yaml': 'max-attempts: 5\nmax-zip-entries: 7\nbucket: from-file\nminio-endpoint: http://minio.example:9000\n',
  's.toml': '# /etc/trainyard/scheduler.toml\nmax-attempts = 5\nmax-zip-entries = 7\nbucket = "from-file"\nminio-endpoint = "http://minio.example:9000"\n',
};

for (const [name, text] of Object.entries(layered)) t.test(`precedence: flag > TRAINYARD_* variable > file > default (${name})`, async (t) => {
  const f = readConfigFile(file(name, text), schedulerSettings, 'scheduler');
  const env = { TRAINYARD_MAX_ATTEMPTS: '3', TRAINYARD_BUCKET: 'from-env' };
  const s = compileSettings(schedulerSettings, { bucket: 'from-flag' }, env, f);
  t.equal(s.bucket, 'from-flag', 'the flag wins over the variable and the file');
  t.equal(s.maxAttempts, 3, 'the variable wins over the file');
  t.equal(s.maxZipEntries, 7, 'the file wins over the default (a number in the file taken as an int)');
  t.equal(s.minioEndpoint, 'http://minio.example:9000', 'a string from the file');
  t.equal(s.maxLogLinesPerAttempt, 200000, 'the default where nothing says otherwise');
  const rows = describeSettings(schedulerSettings, { bucket: 'from-flag' }, env, f);
  const row = (flag: string) => rows.find((r) => r.flag === flag);
  t.match(row('bucket'), { value: 'from-flag', source: '--bucket' });
  t.match(row('max-attempts'), { value: '3', source: 'TRAINYARD_MAX_ATTEMPTS' });
  t.match(row('max-zip-entries'), { value: '7', source: f.path });
  t.match(row('max-log-lines'), { value: '200000', source: 'default' });
});

t.test('TOML: labels as a table or a string; .yml is YAML; an empty file sets nothing', async (t) => {
  const agent = readConfigFile(file('a.toml', 'cpus = 8\n\n[labels]\nzone = "a"\nrack = "7"\n'), agentSettings, 'agent');
  t.same(compileSettings(agentSettings, {}, {}, agent).labels, { zone: 'a', rack: '7' }, 'labels as a TOML table');
  t.equal(compileSettings(agentSettings, {}, {}, agent).cpus, 8);
  t.same(compileSettings(agentSettings, {}, {}, readConfigFile(file('l.toml', 'labels = "zone=b"\n'), agentSettings, 'agent')).labels, { zone: 'b' });
  t.equal(compileSettings(agentSettings, {}, {}, readConfigFile(file('y.yml', 'cpus: 6\n'), agentSettings, 'agent')).cpus, 6, '.yml is YAML too');
  t.same(readConfigFile(file('empty.toml', '# nothing\n'), agentSettings, 'agent').values, {}, 'an empty file sets nothing');
});

t.test('agent labels as a mapping or a string; an empty file sets nothing', async (t) => {
  const f = readConfigFile(file('a.yaml', 'labels:\n  zone: a\n  gpu: h100\ncpus: 8\n'), agentSettings, 'agent');
  const s = compileSettings(agentSettings, {}, {}, f);
  t.same(s.labels, { zone: 'a', gpu: 'h100' });
  t.equal(s.cpus, 8);
  t.same(compileSettings(agentSettings, {}, {}, readConfigFile(file('l.yaml', 'labels: zone=b\n'), agentSettings, 'agent')).labels, { zone: 'b' });
  t.same(readConfigFile(file('empty.yaml', '# nothing\n'), agentSettings, 'agent').values, {});
});

t.test('refusals name the key and the file', async (t) => {
  const refused = (name: string, text: string, specs = schedulerSettings, daemon = 'scheduler') => {
    try { compileSettings(specs, {}, {}, readConfigFile(file(name, text), specs, daemon)); } catch (err) { return (err as Error & { code?: string }); }
    throw new Error(`${name} was accepted`);
  };
  const typo = refused('typo.yaml', 'minio-endpont: http://x:9000\n');
  t.match(typo.message, `${path.join(dir, 'typo.yaml')}: unknown key "minio-endpont"`, 'names the file and the key');
  t.match(typo.message, 'did you mean "minio-endpoint"?', 'and the nearest setting');
  t.equal(typo.code, 'INVALID_ARGUMENT', 'a usage error');
  t.match(refused('agentkey.yaml', 'run-as-user: nobody\n').message, /unknown key "run-as-user": not a setting of trainyard scheduler/, 'an agent setting is not a scheduler key');
  t.match(refused('variable.yaml', 'TRAINYARD_BUCKET: b\n').message, /unknown key "TRAINYARD_BUCKET"/, 'keys are flag names, not variables');
  t.match(refused('nested.yaml', 'config: other.yaml\n').message, /unknown key "config".*cannot name another/, 'a config file cannot name another');
  t.match(refused('list.yaml', 'bucket: [a, b]\n').message, /list\.yaml: "bucket" must be a string, got a list/);
  t.match(refused('null.yaml', 'bucket:\n').message, /"bucket" must be a string, got nothing/);
  t.match(refused('notint.yaml', 'max-attempts: many\n').message, /notint\.yaml: max-attempts: expected a non-negative integer, got "many"/, 'a bad value names the file and key');
  t.match(refused('top.yaml', '- a\n- b\n').message, /expected a mapping of settings/);
  t.match(refused('broken.yaml', 'bucket: b\nlabels: [\n').message, /broken\.yaml: not valid YAML at line 3, column 1: Flow sequence/, 'a YAML syntax error names the line');
  const toml = refused('broken.toml', 'bucket = "b"\nmax-attempts = 3\nnats-url = nats://x:4222\n');
  t.match(toml.message, `${path.join(dir, 'broken.toml')}: not valid TOML at line 3, column 12: invalid value`, 'a TOML syntax error names the file and the line');
  t.equal(toml.code, 'INVALID_ARGUMENT');
  t.match(refused('tomlkey.toml', 'minio-endpont = "http://x:9000"\n').message, /tomlkey\.toml: unknown key "minio-endpont".*did you mean "minio-endpoint"/, 'TOML keys are checked the same way');
  t.match(refused('date.toml', 'bucket = 1979-05-27\n').message, /date\.toml: "bucket" must be a string, got a date/);
  t.match(refused('array.toml', 'bucket = ["a"]\n').message, /array\.toml: "bucket" must be a string, got a list/);
  for (const name of ['settings.json', 'settings.conf', 'settings']) {
    t.match(refused(name, 'bucket: b\n').message, `${path.join(dir, name)}: a config file is TOML (.toml) or YAML (.yaml, .yml)`, `${name} is refused by its extension`);
  }
  t.throws(() => readConfigFile(path.join(dir, 'missing.yaml'), schedulerSettings, 'scheduler'), /--config .*missing\.yaml: cannot read it \(ENOENT\)/);
});

t.test('secrets are redacted wherever they come from', async (t) => {
  const f = readConfigFile(file('sec.yaml', 'nats-password: from-file-pw\ndatabase-url: postgres://u:dbpw@db:5432/trainyard\n'), schedulerSettings, 'scheduler');
  const rows = describeSettings(schedulerSettings, { 'minio-secret-key': 'flag-secret' }, { TRAINYARD_NATS_URL: 'nats://a:natspw@n1:4222,nats://n2:4222' }, f);
  const text = formatConfig(rows, 'scheduler');
  for (const secret of ['from-file-pw', 'dbpw', 'flag-secret', 'natspw']) t.notMatch(text, secret, `${secret} does not appear`);
  t.match(text, /^nats-password: +<redacted> +# from .*sec\.yaml, redacted$/m);
  t.match(text, /^minio-secret-key: +<redacted> +# from --minio-secret-key, redacted$/m);
  t.match(text, /^database-url: +postgres:\/\/u:REDACTED@db:5432\/trainyard +# from .*sec\.yaml, redacted$/m, 'a URL keeps all but its password');
  t.match(text, /^nats-url: +nats:\/\/a:REDACTED@n1:4222,nats:\/\/n2:4222 +# from TRAINYARD_NATS_URL, redacted$/m);
  t.match(text, /^max-attempts: +2 +# default$/m, 'ints print as numbers');
  t.match(text, /^nats-user: +"" +# default$/m, 'an empty value prints as ""');
  const agentText = formatConfig(describeSettings(agentSettings, {}, { TRAINYARD_JOIN_TOKEN: 'tyt_join_secret' }), 'agent');
  t.match(agentText, /^join-token: +<redacted> +# from TRAINYARD_JOIN_TOKEN, redacted$/m);
  t.notMatch(agentText, 'tyt_join_secret');
  // Every setting whose flag names a password, a secret or a token is declared secret, except those
  // that only name a file holding one, or count something per token.
  const notSecret = new Set(['token-file', 'max-streams-per-token']);
  for (const s of Object.values({ ...schedulerSettings, ...agentSettings, ...clientSettings })) {
    if (/password|secret|token/.test(s.flag) && !notSecret.has(s.flag)) t.ok(isSecretSetting(s), `--${s.flag} is declared secret`);
    if (notSecret.has(s.flag)) t.notOk(isSecretSetting(s), `--${s.flag} is shown`);
  }
});

t.test('trainyard scheduler|agent --print-config, a real process', async (t) => {
  const bin = path.join(root, 'bin', 'trainyard.js');
  const cfg = file('print.yaml', 'max-attempts: 5\nbucket: from-file\nminio-secret-key: file-secret\n');
  const run = (args: string[], env: Record<string, string> = {}) =>
    spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', env: { PATH: process.env.PATH, HOME: dir, ...env } });
  const r = run(['scheduler', '--config', cfg, '--print-config', '--listen', '0.0.0.0:1'], { TRAINYARD_BUCKET: 'from-env' });
  t.equal(r.status, 0, `exit 0 ${r.stderr}`);
  t.match(r.stdout, /^listen: +0\.0\.0\.0:1 +# from --listen$/m);
  t.match(r.stdout, /^bucket: +from-env +# from TRAINYARD_BUCKET$/m);
  t.match(r.stdout, new RegExp(`^max-attempts: +5 +# from ${cfg.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}$`, 'm'));
  t.match(r.stdout, /^config: +.*print\.yaml +# from --config$/m);
  t.notMatch(r.stdout, 'file-secret');
  // The variable names the file too.
  const viaEnv = run(['agent', '--print-config'], { TRAINYARD_CONFIG: file('agent.yaml', 'name: gpu-07\n') });
  t.equal(viaEnv.status, 0, viaEnv.stderr);
  t.match(viaEnv.stdout, /^name: +gpu-07 +# from .*agent\.yaml$/m, 'TRAINYARD_CONFIG is read');
  const bad = run(['agent', '--config', file('bad.yaml', 'nmae: x\n'), '--print-config']);
  t.equal(bad.status, 2, 'an unknown key: exit 2');
  t.match(bad.stderr, /bad\.yaml: unknown key "nmae".*did you mean "name"/);

  // The same from a TOML file: its values sit under the variables and flags, and its secrets are redacted.
  const toml = file('print.toml', 'max-attempts = 4\nbucket = "from-file"\nminio-secret-key = "toml-secret"\nnats-password = "toml-nats-pw"\n');
  const fromToml = run(['scheduler', '--config', toml, '--print-config', '--max-attempts', '6'], { TRAINYARD_BUCKET: 'from-env' });
  t.equal(fromToml.status, 0, `exit 0 ${fromToml.stderr}`);
  t.match(fromToml.stdout, /^max-attempts: +6 +# from --max-attempts$/m, 'the flag wins over the TOML file');
  t.match(fromToml.stdout, /^bucket: +from-env +# from TRAINYARD_BUCKET$/m, 'the variable wins over the TOML file');
  t.match(fromToml.stdout, /^minio-secret-key: +<redacted> +# from .*print\.toml, redacted$/m);
  t.match(fromToml.stdout, /^nats-password: +<redacted> +# from .*print\.toml, redacted$/m);
  for (const secret of ['toml-secret', 'toml-nats-pw']) t.notMatch(fromToml.stdout, secret, `${secret} does not appear`);
  const viaEnvToml = run(['scheduler', '--print-config'], { TRAINYARD_CONFIG: file('s.toml', 'max-zip-entries = 9\n') });
  t.match(viaEnvToml.stdout, /^max-zip-entries: +9 +# from .*s\.toml$/m, 'TRAINYARD_CONFIG may name a TOML file');
  const badToml = run(['scheduler', '--config', file('syntax.toml', 'bucket = "b\n'), '--print-config']);
  t.equal(badToml.status, 2, 'a TOML syntax error: exit 2');
  t.match(badToml.stderr, /syntax\.toml: not valid TOML at line 1/);
  const badExt = run(['scheduler', '--config', file('scheduler.ini', 'bucket = "b"\n'), '--print-config']);
  t.equal(badExt.status, 2, 'an unknown extension: exit 2');
  t.match(badExt.stderr, /scheduler\.ini: a config file is TOML \(\.toml\) or YAML \(\.yaml, \.yml\)/);
});

// Issue 20 #7: TRAINYARD_MAX_ATTEMPTS=0 was accepted, and the invariant sweep then failed healthy queued
// runs ("attempts spent: 0 of 0"). A value below what a setting can mean is refused at start, naming it.
t.test('settings refuse values below their minimum', async (t) => {
  t.throws(() => compileSettings(schedulerSettings, {}, { TRAINYARD_MAX_ATTEMPTS: '0' }), /TRAINYARD_MAX_ATTEMPTS: must be at least 1, got 0/);
  t.throws(() => compileSettings(schedulerSettings, { 'heartbeat-interval-ms': '0' }, {}), /--heartbeat-interval-ms: must be at least 1, got 0/);
  t.throws(() => compileSettings(schedulerSettings, {}, { TRAINYARD_ATTEMPT_LEASE_BEATS: '0' }), /must be at least 1/);
  // MinIO's STS refuses a lifetime past 365 days (InvalidParameterValue): every claim would fail its run.
  t.throws(() => compileSettings(schedulerSettings, { 'storage-credential-seconds': '31536001' }, {}), /--storage-credential-seconds: must be at most 31536000, got 31536001/);
  t.equal(compileSettings(schedulerSettings, { 'storage-credential-seconds': '31536000' }, {}).storageCredentialSeconds, 31_536_000, 'MinIO\'s longest is taken');
  t.equal(compileSettings(schedulerSettings, {}, { TRAINYARD_MAX_ATTEMPTS: '1' }).maxAttempts, 1, '1 is fine');
  t.throws(() => compileSettings(schedulerSettings, { 'gang-reserve-after': '-1' }, {}), /--gang-reserve-after: expected a non-negative integer, got "-1"/, 'a negative --gang-reserve-after is refused');
  t.equal(compileSettings(schedulerSettings, { 'gang-reserve-after': '0' }, {}).gangReserveAfterS, 0, '0: reserve at once');
  t.equal(compileSettings(schedulerSettings, {}, {}).gangReserveAfterS, 300, 'the documented default, 5 minutes');
  const r = spawnSync(process.execPath, [path.join(root, 'bin', 'trainyard.js'), 'scheduler', '--max-attempts', '0'], { encoding: 'utf8', timeout: 30_000 });
  t.equal(r.status, 2, 'the scheduler does not start');
  t.match(r.stderr, /--max-attempts: must be at least 1, got 0/);
});

t.test('--on-stop: drain (the default) or detach; anything else is refused, exit 2, before the agent touches anything', async (t) => {
  t.equal(compileSettings(agentSettings, {}, {}).onStop, 'drain', 'the documented default');
  t.equal(compileSettings(agentSettings, {}, { TRAINYARD_ON_STOP: 'detach' }).onStop, 'detach');
  const bin = path.join(root, 'bin', 'trainyard.js');
  const work = path.join(dir, 'on-stop-work');
  for (const [args, env] of [[['--on-stop', 'restart'], {}], [[], { TRAINYARD_ON_STOP: 'Detach' }]] as const) {
    const r = spawnSync(process.execPath, [bin, 'agent', '--work-dir', work, ...args], { encoding: 'utf8', timeout: 30_000, env: { PATH: process.env.PATH, HOME: dir, ...env } });
    t.equal(r.status, 2, `${JSON.stringify({ ...env, args })}: the agent does not start`);
    t.match(r.stderr, /--on-stop "(restart|Detach)": expected drain or detach/);
  }
  t.notOk(existsSync(work), 'no work dir made');
});
