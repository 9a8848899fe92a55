// What stops an agent without stopping its runs (issue 22; README, "Runs outlive their agent"): --on-stop
// says what SIGTERM does, and SIGUSR2 detaches whatever it says. Draining lets the runs finish (or hands
// them back at --drain-timeout-ms) and tells the scheduler the agent leaves; detaching leaves at once and
// tells it nothing, so it sees a restart: the runs stay Running on their attempt and lease, under their
// supervisors (agent/reattach.ts), until the agent restarted with the same --name and --work-dir takes
// them over (or, if none comes back, the scheduler's agent-loss timeout requeues them).
//
// Each attempt is one of four cases when the agent detaches (Attempt.onDetach):
// - leave: its run started under a supervisor and is written down for the next agent (a run still
//   training, or one that ended and is uploading its outputs with its GPUs given back: the next agent
//   uploads and reports it, as after kill -9). What was read of its spool is shipped (bounded), the
//   acknowledged position written down; the rest the next agent reads from the spool.
// - hand back: its run has not started (the package, venv or data were being made ready): nothing could
//   be taken over, so it is handed back now, as a drain's deadline would, and placed again.
// - finish: its end is being reported: the report is let finish (bounded, like a forced stop's).
// - drain: its run started without a supervisor (the agent has no cgroups: nothing would tell a restarted
//   agent whether it still lives). Detaching would orphan it, so the agent refuses to detach, says so,
//   and drains instead: nothing is killed that the operator meant to keep.
import { ErrorCodes, TrainyardError } from '../shared/errors.js';

export type OnStop = 'drain' | 'detach';
export type OnDetach = 'leave' | 'hand back' | 'finish' | 'drain';

/** `--on-stop`: drain or detach. */
export function parseOnStop(text: string): OnStop {
  if (text === 'drain' || text === 'detach') return text;
  throw new TrainyardError(ErrorCodes.InvalidArgument, `--on-stop "${text}": expected drain or detach`);
}
