// Register keeps a name's row for the credential the caller presented (scheduler/agents/register.ts), not
// for whatever the row holds by the time it looks again: a name removed and taken by a new agent between
// the caller's authentication and its registration must not be taken over by the old holder (the row's
// hash, read a second time, would match itself).
import t from 'tap';
import { pino } from 'pino';
import { testDatabase } from '../helpers/stack.js';
import { register } from '../../scheduler/agents/status.js';
import { registerAgent } from '../../scheduler/agents/register.js';
import { RunTransitions } from '../../scheduler/runs/transitions.js';
import { newAgentCredential } from '../../scheduler/auth/secrets.js';

const log = pino({ level: 'silent' });

t.test('Register keeps the name only for the credential presented', async (t) => {
  const { db } = await testDatabase(t);
  const ctx = {
    db, log, runs: new RunTransitions(db), kick: () => {}, agentChanged: () => {},
    settings: { heartbeatIntervalMs: 1000, subjectPrefix: 'test', attemptLeaseBeats: 3 },
  } as unknown as Parameters<typeof registerAgent>[0];
  const req = { name: 'box', hostname: 'h2', version: 'v', cpus: 1, memory_mb: 1, labels: {}, gpus: [], max_runs: 0, identity: '', accept_projects: [], advertise_addr: '', rendezvous_port_lo: 0, rendezvous_port_hi: 0, held: [] };
  const old = newAgentCredential();
  const taken = newAgentCredential(); // the name's holder now: a new agent
  await register({ db, log }, { name: 'box', hostname: 'h', version: 'v', cpus: 1, memoryMb: 1, labels: {}, gpus: [], identitySha256: taken.sha256, address: '10.0.0.1:1', joining: true });
  const stale = { kind: 'agent' as const, agent: 'box', identitySha256: old.sha256 };
  await t.rejects(registerAgent(ctx, req as never, stale, '10.0.0.2:1'), { code: 'UNAUTHENTICATED' }, 'the old holder\'s Register is refused');
  const [row] = await db.selectFrom('agents').select(['identity_sha256', 'hostname']).where('name', '=', 'box').execute();
  t.same(row, { identity_sha256: taken.sha256, hostname: 'h' }, 'and the new holder\'s row is untouched');
  const own = { kind: 'agent' as const, agent: 'box', identitySha256: taken.sha256 };
  t.ok((await registerAgent(ctx, req as never, own, '10.0.0.3:1')).session, 'the holder itself registers again');
});
