// The placer's doorbell messages between schedulers (shared/subjects.ts): what each says is read back,
// its sender is known, and anything else is a plain kick (an older scheduler's, or not ours).
import t from 'tap';
import { kickSender, parseKick } from '../../shared/subjects.js';

const enc = (v: unknown) => new TextEncoder().encode(typeof v === 'string' ? v : JSON.stringify(v));

t.test('each message is read back; anything else is a plain kick', async (t) => {
  t.same(parseKick(enc({ freed: { run: 'r1', lease: 3 }, from: 's' })), { freed: { run: 'r1', lease: 3 } });
  t.same(parseKick(enc({ agent: 'box', from: 's' })), { agent: 'box' });
  t.same(parseKick(enc({ limits: true, from: 's' })), { limits: true }, 'a project\'s caps changed');
  t.equal(parseKick(enc({ limits: 'yes' })), null, 'not the shape: a plain kick');
  t.equal(parseKick(enc({ from: 's' })), null, 'an older scheduler\'s plain kick');
  t.equal(parseKick(enc('not json')), null);
  t.equal(parseKick(enc('null')), null);
  t.equal(parseKick(new Uint8Array()), null);
  t.equal(kickSender(enc({ limits: true, from: 'me' })), 'me');
  t.equal(kickSender(enc('null')), null);
});
