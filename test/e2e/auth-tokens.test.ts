// Issue 8, identities and tokens: the bootstrap admin token, tokens create/list/revoke, and every way a
// call without a valid token is refused (UNAUTHENTICATED; the CLI exits 1 and says how to get a token),
// and the admin-only verbs refused to everyone else (PERMISSION_DENIED). Real scheduler, real Postgres.
import t from 'tap';
import { createHash } from 'node:crypto';
import { statSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { Stack } from '../helpers/stack.js';
import { ErrorCodes, TrainyardError } from '../../shared/errors.js';

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

t.test('bootstrap, create, list, revoke, expire; no token; non-admins', async (t) => {
  const s = await Stack.create(t, { agents: [] });
  const admin = s.adminToken;

  // Bootstrap: the first scheduler on an empty database wrote an admin token, 0600 in a 0700 folder.
  t.match(admin, /^tyt_[a-z0-9]{12}_[A-Za-z0-9_-]{43}$/, 'the token file holds a token');
  t.equal(statSync(s.tokenFile).mode & 0o777, 0o600, 'the token file is 0600');
  t.equal(statSync(path.dirname(s.tokenFile)).mode & 0o777, 0o700, 'its folder is 0700');
  const log = s.logOf('scheduler1');
  t.match(log, s.tokenFile, 'the log names the token file');
  // A token is tyt_ + a 12-character id + _ + its secret (base64url, which may itself hold '_'): slice(17) is the secret.
  t.notOk(log.includes(admin.slice(17)), 'the log never holds the token (nor its secret)');
  // A second scheduler on the same database makes no second admin token.
  await s.startScheduler();
  t.equal((await s.query("SELECT count(*)::int AS n FROM tokens WHERE role = 'admin'"))[0]!.n, 1, 'one admin token however many schedulers start');
  t.equal(s.adminToken, admin, 'and the file is left alone');

  // tokens create: printed once, --json too.
  const member = await s.cli(['tokens', 'create', '--project', 'alpha', '--role', 'member', '--name', 'ci']);
  t.equal(member.code, 0, `tokens create exits 0 ${member.stderr}`);
  const memberToken = member.stdout.trim();
  t.match(memberToken, /^tyt_[a-z0-9]{12}_/, 'prints the token');
  const reader = await s.cliJson(['tokens', 'create', '--project', 'alpha', '--role', 'reader']);
  t.match(reader.info, { project: 'alpha', role: 'reader', revoked_at: '' }, '--json gives its info');
  const readerToken = String(reader.token);

  // tokens list never shows a secret.
  const list = await s.cli(['tokens', 'list', '--json']);
  t.equal(list.code, 0);
  for (const tok of [admin, memberToken, readerToken]) t.notOk(list.stdout.includes(tok.slice(17)), 'no secret in tokens list');
  const listed = JSON.parse(list.stdout) as { id: string; role: string; project: string; name: string; last_used_at: string }[];
  t.same(listed.map((x) => x.role).sort(), ['admin', 'join', 'member', 'reader'], 'every token is listed (the stack made a join token)');
  t.ok(listed.find((x) => x.role === 'admin')!.last_used_at, 'last use is recorded');
  const table = await s.cli(['tokens', 'list']);
  t.match(table.stdout, /ID\s+NAME\s+PROJECT\s+ROLE/, 'a table on a terminal');

  // Only hashes in the database.
  const rows = await s.query('SELECT * FROM tokens');
  const dump = JSON.stringify(rows);
  for (const tok of [admin, memberToken, readerToken]) {
    t.notOk(dump.includes(tok.slice(17)), 'no secret in the tokens table');
    t.ok(rows.some((r) => r.secret_sha256 === sha256(tok)), 'its SHA-256 is');
  }

  // No token, a malformed one, an unknown one: UNAUTHENTICATED, exit 1, and how to get one.
  const none = await s.cli(['run', 'list', '--token-file', path.join(s.dir, 'nothing-here')]);
  t.equal(none.code, 1, 'no token: exit 1');
  t.match(none.stderr, /no token/, 'says there is no token');
  t.match(none.stderr, /trainyard tokens create/, 'and how to get one');
  const noneJson = await s.cli(['run', 'list', '--json', '--token-file', path.join(s.dir, 'nothing-here')]);
  t.equal(JSON.parse(noneJson.stderr).error.code, 'UNAUTHENTICATED', '--json: the code is UNAUTHENTICATED');
  const bad = await s.cli(['run', 'list', '--token', 'tyt_aaaaaaaaaaaa_' + 'a'.repeat(43)]);
  t.equal(bad.code, 1);
  t.match(bad.stderr, /not known/, 'an unknown token is refused');
  const forged = await s.cli(['run', 'list', '--token', `${admin.slice(0, 17)}${'b'.repeat(43)}`]);
  t.match(forged.stderr, /not known/, 'a real id with another secret is refused');
  const raw = await s.api('').listRuns({}).catch((e: unknown) => e);
  t.ok(raw instanceof TrainyardError && raw.code === ErrorCodes.Unauthenticated, 'on the wire: UNAUTHENTICATED');
  const viaEnv = await s.cli(['run', 'list', '--token', memberToken]);
  t.equal(viaEnv.code, 0, 'a member token works');
  const join = await s.cli(['run', 'list', '--token', s.joinToken]);
  t.match(join.stderr, /join token; it cannot make client calls/, 'a join token is no client token');

  // Revoked: refused from the next call on.
  const memberId = memberToken.split('_')[1]!;
  const revoked = await s.cli(['tokens', 'revoke', memberId]);
  t.equal(revoked.code, 0, 'tokens revoke exits 0');
  const after = await s.cli(['run', 'list', '--token', memberToken]);
  t.equal(after.code, 1, 'a revoked token: exit 1');
  t.match(after.stderr, /was revoked/, 'says it was revoked');
  t.match((await s.cliJson(['tokens', 'list'])).find((x: { id: string }) => x.id === memberId), { revoked_at: /\d{4}-/ }, 'the list shows when');
  t.equal((await s.cli(['tokens', 'revoke', 'nosuchtoken1'])).code, 1, 'revoking an unknown id: exit 1');

  // Expired.
  const short = (await s.cli(['tokens', 'create', '--project', 'alpha', '--role', 'member', '--expires', '1s'])).stdout.trim();
  await new Promise((r) => setTimeout(r, 1500));
  const expired = await s.cli(['run', 'list', '--token', short]);
  t.equal(expired.code, 1, 'an expired token: exit 1');
  t.match(expired.stderr, /expired at/, 'says it expired');

  // Admin-only verbs, refused to a member and a reader with PERMISSION_DENIED.
  const m2 = (await s.cli(['tokens', 'create', '--project', 'alpha', '--role', 'member'])).stdout.trim();
  for (const [who, tok] of [['member', m2], ['reader', readerToken]] as const) {
    for (const args of [
      ['tokens', 'create', '--project', 'alpha', '--role', 'admin'], ['tokens', 'list'], ['tokens', 'revoke', memberId],
      ['agents', 'join-token', 'create'], ['agents'], ['agents', 'drain', 'box'], ['agents', 'remove', 'box'], ['agents', 'remove', 'box', '--force'], ['projects', 'set', 'alpha', '--max-runs', '9'],
      ['projects', 'set', 'alpha', '--max-priority', '100'], ['doctor'],
    ]) {
      const r = await s.cli([...args, '--json', '--token', tok]);
      t.equal(r.code, 1, `${who}: ${args.join(' ')} exits 1`);
      t.equal(JSON.parse(r.stderr || '{}').error?.code, 'PERMISSION_DENIED', `${who}: ${args.join(' ')} is PERMISSION_DENIED`);
    }
  }
  t.same(await s.query("SELECT count(*)::int AS n FROM tokens WHERE role = 'admin'"), [{ n: 1 }], 'no admin token was made by a non-admin');
  t.same(await s.query('SELECT * FROM project_limits'), [], 'no cap was set');
  t.same(await s.query("SELECT kind FROM events WHERE kind IN ('agent.draining', 'agent.lost', 'agent.removed')"), [], 'no agent was drained, revoked or removed');

  // Every verb answers --help.
  for (const args of [['tokens', '--help'], ['tokens', 'create', '--help'], ['tokens', 'list', '--help'], ['tokens', 'revoke', '--help'], ['agents', 'join-token', 'create', '--help']]) {
    const r = await s.cli(args);
    t.equal(r.code, 0, `${args.join(' ')} exits 0`);
    t.match(r.stdout, /admin only/, `${args.join(' ')} prints help`);
  }
  const usage = await s.cli(['tokens', 'create', '--project', 'alpha', '--role', 'owner']);
  t.equal(usage.code, 2, 'a bad role is a usage error (exit 2)');
  const badExpiry = await s.cli(['tokens', 'create', '--project', 'alpha', '--role', 'member', '--expires', '30x']);
  t.equal(badExpiry.code, 2, 'so is a bad --expires');

  // --expires in days; the token from TRAINYARD_TOKEN, which --token overrides.
  const made = Date.now();
  const month = (await s.cli(['tokens', 'create', '--project', 'alpha', '--role', 'reader', '--name', 'monthly', '--expires', '30d'])).stdout.trim();
  const monthly = (await s.cliJson<{ name: string; expires_at: string }[]>(['tokens', 'list'])).find((x) => x.name === 'monthly');
  const inMs = new Date(String(monthly?.expires_at)).getTime() - made;
  t.ok(Math.abs(inMs - 30 * 86_400_000) < 120_000, `--expires 30d: it expires 30 days from now (${String(monthly?.expires_at)})`);
  const bin = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'trainyard.js');
  const withEnv = (extra: string[], env: Record<string, string>) => spawnSync(process.execPath, [bin, ...extra, '--scheduler', s.schedulerAddress, '--json'], { env: s.env({ TRAINYARD_TOKEN_FILE: path.join(s.dir, 'no-such-token'), ...env }), encoding: 'utf8' });
  const fromEnv = withEnv(['run', 'list'], { TRAINYARD_TOKEN: month });
  t.equal(fromEnv.status, 0, `TRAINYARD_TOKEN is the CLI's token (${fromEnv.stderr})`);
  const readerSubmit = withEnv(['run', 'train', '--package', 'p', '--dataset', 'd'], { TRAINYARD_TOKEN: month });
  t.equal(JSON.parse(readerSubmit.stderr || '{}').error?.code, 'PERMISSION_DENIED', 'as that reader: submitting is refused');
  const overridden = withEnv(['run', 'list', '--token', 'ty_not_a_real_token'], { TRAINYARD_TOKEN: month });
  t.equal(overridden.status, 1, '--token wins over TRAINYARD_TOKEN');
  t.equal(JSON.parse(overridden.stderr || '{}').error?.code, 'UNAUTHENTICATED');
});
