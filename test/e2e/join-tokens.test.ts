// Issue 19, agents: a join token is good for --uses agents (the CLI's default: one), then refused like a
// revoked one; a join that is refused (a taken name) spends no use; the refusal of a taken name says only
// that it is taken; and an agent passes its join token to nothing it spawns. Real scheduler and agent.
import t from 'tap';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { status } from '@grpc/grpc-js';
import { Stack, root, tempDir } from '../helpers/stack.js';
import { FakeAgent } from '../helpers/fake-agent.js';

const codeOf = (e: unknown) => (e as { code?: number }).code;

t.test('a join token joins as many agents as its --uses, then is refused like a revoked one', async (t) => {
  const s = await Stack.create(t, { agents: [] });
  const holder = await FakeAgent.start(s, 'holder');
  t.teardown(() => holder.close());
  const join = (name: string, token: string) => holder.call<{ credential: string }>('Register', {
    name, hostname: 'h', cpus: 1, memory_mb: 1024, labels: {}, version: 'test', held: [], gpus: [], identity: randomBytes(8).toString('hex'),
  }, { auth: { 'trainyard-agent': name, authorization: `Bearer ${token}` } });

  const once = await s.cliJson(['agents', 'join-token', 'create', '--name', 'rack-1']);
  t.equal(once.info.uses_left, 1, 'the CLI\'s default: one use');
  t.ok((await join('first', once.token)).credential, 'the first agent joins and gets its credential');
  const again = await join('second', once.token).catch((e: unknown) => e);
  t.equal(codeOf(again), status.UNAUTHENTICATED, 'a second agent with the same token is refused: UNAUTHENTICATED, as a revoked token is');
  t.match(String(again), `token ${once.info.id} was used up`, 'saying it was used up');
  t.same(await s.query("SELECT name FROM agents WHERE name IN ('first', 'second') ORDER BY name"), [{ name: 'first' }], 'only the first agent exists');
  const listed = (await s.cliJson<{ id: string; uses_left: number }[]>(['tokens', 'list'])).find((x) => x.id === once.info.id);
  t.equal(listed?.uses_left, 0, 'tokens list shows it used up');

  // A join refused for a taken name spends no use, and learns nothing of the holder.
  const [held] = await s.query("SELECT address, hostname FROM agents WHERE name = 'holder'");
  const two = await s.cliJson(['agents', 'join-token', 'create', '--uses', '2']);
  const clash = await join('holder', two.token).catch((e: unknown) => e);
  t.equal(codeOf(clash), status.ALREADY_EXISTS, 'a taken name: ALREADY_EXISTS');
  t.match(String(clash), 'agent name "holder" is taken', 'saying the name is taken');
  t.match(String(clash), 'trainyard agents remove holder', 'and how an admin frees it');
  t.notMatch(String(clash), held!.address, 'not the holder\'s address');
  t.notMatch(String(clash), /online|last heard|since/, 'nor its state or times');
  await join('third', two.token);
  await join('fourth', two.token);
  t.equal(codeOf(await join('fifth', two.token).catch((e: unknown) => e)), status.UNAUTHENTICATED, '--uses 2: two joins (the refused one spent none), then refused');

  // Bad input: a clear refusal, nothing made.
  const bad = await s.cli(['agents', 'join-token', 'create', '--uses', 'lots']);
  t.not(bad.code, 0, 'a --uses that is not a count is refused');
  t.match(bad.stderr, /--uses: expected how many agents may join with it/);
  t.equal((await s.query("SELECT count(*)::int AS n FROM tokens WHERE role = 'join'"))[0]!.n, 3, 'and no token is made');
  const any = await s.cliJson(['agents', 'join-token', 'create', '--uses', '0']);
  t.equal(any.info.uses_left, -1, '--uses 0: any number until it expires');
});

t.test('an agent passes its join token to nothing it spawns', async (t) => {
  const s = await Stack.create(t, { agents: [] });
  // nvidia-smi is the first thing the agent runs: this one writes the environment it was given.
  const dir = tempDir();
  const seen = path.join(dir, 'env');
  const smi = path.join(dir, 'nvidia-smi');
  writeFileSync(smi, `#!/usr/bin/env bash\nenv > ${JSON.stringify(seen)}\nexec ${JSON.stringify(path.join(root, 'test', 'fixtures', 'bin', 'nvidia-smi'))} "$@"\n`);
  chmodSync(smi, 0o755);
  await s.startAgent('box', { env: { TRAINYARD_NVIDIA_SMI: smi } });
  const env = readFileSync(seen, 'utf8');
  t.match(env, /TRAINYARD_AGENT_NAME=box/, 'the child got the agent\'s environment');
  t.notMatch(env, /TRAINYARD_JOIN_TOKEN/, 'but not the join token');
  t.notOk(env.includes(s.joinToken), 'under any name');
});
