// A second "host" for partition tests: a network namespace joined to this one by a veth pair, so an agent
// inside it reaches the scheduler, NATS and MinIO only over that link, and cutting the link is a real
// network partition (packets dropped both ways, connections left hanging), not a stopped process.
import { execFileSync } from 'node:child_process';
import type { Test } from 'tap';

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

export interface Netns { name: string; hostIp: string; nsIp: string; cut(): void; heal(): void }

export function createNetns(t: Test): Netns {
  const n = 1 + Math.floor(Math.random() * 250);
  const name = `tyns${process.pid % 10000}${n}`;
  const hostIf = `tyh${process.pid % 10000}${n}`.slice(0, 15);
  const nsIf = `tyn${process.pid % 10000}${n}`.slice(0, 15);
  // A /30 of the test's own, used only between this namespace pair.
  const hostIp = `10.213.${n}.1`;
  const nsIp = `10.213.${n}.2`;
  ip('netns', 'add', name);
  t.teardown(() => {
    try { ip('link', 'del', hostIf); } catch { /* gone with the namespace */ }
    try { ip('netns', 'del', name); } catch { /* already gone */ }
  });
  ip('link', 'add', hostIf, 'type', 'veth', 'peer', 'name', nsIf);
  ip('link', 'set', nsIf, 'netns', name);
  ip('addr', 'add', `${hostIp}/30`, 'dev', hostIf);
  ip('link', 'set', hostIf, 'up');
  ip('netns', 'exec', name, 'ip', 'addr', 'add', `${nsIp}/30`, 'dev', nsIf);
  ip('netns', 'exec', name, 'ip', 'link', 'set', nsIf, 'up');
  ip('netns', 'exec', name, 'ip', 'link', 'set', 'lo', 'up');
  return {
    name, hostIp, nsIp,
    cut: () => ip('link', 'set', hostIf, 'down'),
    heal: () => ip('link', 'set', hostIf, 'up'),
  };
}
