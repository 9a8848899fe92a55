// `trainyard run logs RUN [--follow] [--after ATTEMPT:SEQ] [--json]`. Lines come in (attempt, seq) order;
// the command remembers the last one it printed, so when the stream breaks (the scheduler restarted, or the
// channel failed over to another scheduler) it reconnects and asks for exactly the lines after it: none
// is printed twice and none is skipped.
import { Api, streamOf } from '../client.js';
import { flags, type Parsed } from '../verb.js';
import { color, safeText } from '../format.js';
import { errorMessage, invalid, isRetryableGrpc } from '../../shared/errors.js';
import { retry } from '../../shared/retry.js';
import type { LogLine__Output } from '../../shared/proto.js';

/** How long the command keeps trying to get the stream back without receiving a line. */
const RECONNECT_FOR_MS = 60_000;

function parseAfter(v: string | undefined): { attempt: number; seq: number } {
  if (v === undefined) return { attempt: 0, seq: 0 };
  const m = /^(\d+):(\d+)$/.exec(v);
  if (!m || Number(m[1]) < 1) throw invalid(`--after: expected ATTEMPT:SEQ (as in the --json lines, attempt from 1), got "${v}"`);
  return { attempt: Number(m[1]), seq: Number(m[2]) };
}

function print(l: LogLine__Output, json: boolean): void {
  if (json) console.log(JSON.stringify(l));
  // A line is the run's own output: an escape sequence in it (OSC 52 writes the clipboard) is shown, not obeyed.
  else if (l.stream === 'stderr') console.log(color.red(safeText(l.text)));
  else if (l.stream === 'system') console.log(color.dim(safeText(l.text)));
  else console.log(safeText(l.text));
}

export const runLogsFlags = flags({
  follow: { type: 'boolean', short: 'f', description: 'keep printing lines as they come until the run ends' },
  after: { type: 'string', value: 'ATTEMPT:SEQ', description: 'only the lines after line SEQ of attempt ATTEMPT (as in the --json lines)' },
  json: { type: 'boolean', description: 'one JSON object per line: attempt, seq, stream, text' },
  rank: { type: 'string', value: 'R', description: 'a multi-agent run: only the lines of global rank R (they start "[rank R] ")' },
});

export async function runLogs({ values, positionals }: Parsed<typeof runLogsFlags>, address: string): Promise<number> {
  const id = positionals[0] ?? '';
  if (!id) throw invalid('run logs: give the run id');
  let at = parseAfter(values.after);
  if (values.rank !== undefined && !/^\d{1,4}$/.test(values.rank)) throw invalid(`--rank: expected a rank (0, 1, ...), got "${values.rank}"`);
  // Every line a gang's rank prints starts with its rank (agent/harness/trainyard_gang.py).
  const mine = values.rank === undefined ? null : `[rank ${Number(values.rank)}] `;
  const api = await Api.connect(address);
  let heardAt = Date.now();
  try {
    await retry(async () => {
      const stream = api.client.StreamLogs({ run_id: id, follow: !!values.follow, after_attempt: at.attempt, after_seq: at.seq });
      for await (const l of streamOf(stream)) {
        if (mine === null || l.text.startsWith(mine)) print(l, !!values.json);
        at = { attempt: l.attempt, seq: Number(l.seq) };
        heardAt = Date.now();
      }
    }, {
      retries: Infinity, baseMs: 250, capMs: 5000,
      isRetryable: (err) => isRetryableGrpc(err) && Date.now() - heardAt < RECONNECT_FOR_MS,
      onRetry: (err) => console.error(color.dim(`[trainyard: log stream interrupted (${errorMessage(err)}); resuming after attempt ${at.attempt} line ${at.seq}]`)),
    });
  } finally {
    api.close();
  }
  return 0;
}
