// The webhook delivery log's retention (scheduler/webhooks/retention.ts) on a real database: finished
// deliveries (delivered, failed) older than the retention go with their tries, in batches of the given
// size; recent ones and pending ones (still owed to a receiver) stay; 0 keeps everything.
import t from 'tap';
import { sql } from 'kysely';
import { testDatabase } from '../helpers/stack.js';
import { pruneWebhookDeliveries } from '../../scheduler/webhooks/retention.js';

t.test('finished deliveries older than the retention are pruned in batches; pending and recent ones stay', async (t) => {
  const { db } = await testDatabase(t);
  await sql`INSERT INTO webhooks (id, name, project, url, events, format, secret)
    VALUES ('wh_1', 'h', 'p', 'https://hooks.example/x', '{run.failed}', 'json', 'sixteen-chars-secret')`.execute(db);
  // Five old delivered, two old failed, one old pending (a receiver still owed it), two recent delivered.
  const rows: [string, string, number][] = [
    ...[1, 2, 3, 4, 5].map((i): [string, string, number] => [`old-ok-${i}`, 'delivered', 40 + i]),
    ['old-failed-1', 'failed', 31], ['old-failed-2', 'failed', 60],
    ['old-pending', 'pending', 45],
    ['new-ok-1', 'delivered', 29], ['new-ok-2', 'delivered', 0],
  ];
  for (const [id, state, days] of rows) {
    await sql`INSERT INTO webhook_deliveries (id, webhook_id, kind, subject, state, created_at)
      VALUES (${id}, 'wh_1', 'run.failed', 'run_x', ${state}, now() - make_interval(days => ${days}))`.execute(db);
    await sql`INSERT INTO webhook_attempts (delivery_id, attempt, status, duration_ms) VALUES (${id}, 1, 200, 5)`.execute(db);
  }
  const left = async () => (await sql<{ id: string }>`SELECT id FROM webhook_deliveries ORDER BY id`.execute(db)).rows.map((r) => r.id);

  t.equal(await pruneWebhookDeliveries(db, 0, 2), 0, 'retention 0 keeps everything');
  t.equal((await left()).length, rows.length);

  t.equal(await pruneWebhookDeliveries(db, 30, 2), 7, 'the seven finished deliveries older than 30 days, two a statement');
  t.same(await left(), ['new-ok-1', 'new-ok-2', 'old-pending'], 'recent and pending deliveries stay');
  const tries = (await sql<{ delivery_id: string }>`SELECT delivery_id FROM webhook_attempts ORDER BY delivery_id`.execute(db)).rows.map((r) => r.delivery_id);
  t.same(tries, ['new-ok-1', 'new-ok-2', 'old-pending'], 'the pruned deliveries\' tries went with them');
  t.equal(await pruneWebhookDeliveries(db, 30, 2), 0, 'a second pass finds nothing');
});
