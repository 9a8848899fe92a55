// Asking a person before something that cannot be undone (`run delete`, `package delete`, `dataset delete`).
// Only on a terminal: a script (stdin or stdout not a TTY) is not asked, and `--yes` skips the question.
import { createInterface } from 'node:readline/promises';

/** True to go on: not a terminal, or the person answered y/yes. */
export async function confirm(question: string, yes: boolean): Promise<boolean> {
  if (yes || !process.stdin.isTTY || !process.stdout.isTTY) return true;
  const rl = createInterface({ input: process.stdin, output: process.stdout });
  try {
    return /^y(es)?$/i.test((await rl.question(`${question} [y/N] `)).trim());
  } finally {
    rl.close();
  }
}
