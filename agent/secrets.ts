// A run's secrets reach train.py's environment, and nowhere else: whatever the run prints goes through
// this mask before it becomes a log line (in memory, in the spill file, at the scheduler), and so does a
// failure reason taken from the run's exception. A multi-line secret (a key file) is masked line by line
// too, since the run's output reaches the agent one line at a time.
import { MIN_MASKED_SECRET } from '../shared/run-env.js';

export const MASK = '***';

export type Redact = (text: string) => string;

export function secretMasker(secrets: Readonly<Record<string, string>>): Redact {
  const needles = new Set<string>();
  for (const v of Object.values(secrets)) {
    for (const piece of [v, ...v.split(/\r?\n/)]) {
      const t = piece.trim();
      if (t.length >= MIN_MASKED_SECRET) needles.add(t);
    }
  }
  if (needles.size === 0) return (text) => text;
  // Longest first, so a secret that contains another is masked whole.
  const list = [...needles].sort((a, b) => b.length - a.length);
  return (text) => {
    let out = text;
    for (const n of list) if (out.includes(n)) out = out.split(n).join(MASK);
    return out;
  };
}
