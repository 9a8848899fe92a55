// --stall-timeout per rank (agent/rank-activity.ts): in a gang one silent rank is enough, even while
// another rank of the same agent prints; an ordinary run is one rank, whatever its lines say.
import t from 'tap';
import { RankActivity, memberRanks } from '../../agent/rank-activity.js';

t.test('a member\'s ranks: node rank K of P processes runs K x P .. K x P + P - 1', async (t) => {
  t.same(memberRanks(null), [], 'an ordinary run: none');
  t.same(memberRanks({ nodeRank: 0, procs: 2 }), [0, 1]);
  t.same(memberRanks({ nodeRank: 1, procs: 2 }), [2, 3]);
  t.same(memberRanks({ nodeRank: 3, procs: 1 }), [3]);
});

t.test('a rank silent while its neighbour prints stalls; each rank\'s own line or mark keeps it alive', async (t) => {
  const a = new RankActivity([2, 3]);
  a.reset(0);
  for (let at = 1000; at <= 6000; at += 1000) a.line('[rank 2] step', at);
  t.same(a.silent(5000, 6000), { rank: 3, forMs: 6000 }, 'rank 3 said nothing for 6 s although rank 2 printed');
  a.line('[rank 3] step', 6000);
  t.equal(a.silent(5000, 6000), undefined, 'a line of its own ends it');
  a.rank(2, 12000);
  t.same(a.silent(5000, 12000), { rank: 3, forMs: 6000 }, 'a progress mark of rank 2 is rank 2\'s alone');
  a.rank(null, 12000);
  t.equal(a.silent(5000, 12000), undefined, 'an unnamed mark (or a checkpoint) counts for every rank');
  a.line('a subprocess writing to the descriptor itself', 20000);
  t.equal(a.silent(5000, 20000), undefined, 'a line without a rank prefix counts for every rank (it cannot be told apart)');
  a.line('[rank 7] not ours', 30000);
  t.equal(a.silent(5000, 30000), undefined, 'nor can a prefix naming a rank the member does not run');
  a.line('[rank 2] step', 40000);
  t.same(a.silent(5000, 40000), { rank: 3, forMs: 10000 }, 'the rank silent longest is the one named');
});

t.test('an ordinary run: any line counts, and no rank is named', async (t) => {
  const a = new RankActivity([]);
  a.reset(0);
  t.equal(a.silent(3000, 2999), undefined);
  t.same(a.silent(3000, 3000), { rank: null, forMs: 3000 });
  a.line('[rank 5] looks like a gang line', 3000);
  t.equal(a.silent(3000, 3000), undefined, 'its lines are not read for ranks');
});
