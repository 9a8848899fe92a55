// NATS subjects. NATS is the doorbell between processes; what a message means is always re-read from
// Postgres, so a lost message delays work but never loses it.
export function subjects(prefix: string) {
  return {
    /** Wake the placer: a run was queued or capacity was freed. */
    kick: `${prefix}.kick`,
    /** A run's status or logs changed (watchers re-read it). */
    run: (runId: string) => `${prefix}.run.${runId}`,
    /** Scheduler → agent: a doorbell naming a placed run (JSON Doorbell); the agent claims it over gRPC. */
    dispatch: (agent: string) => `${prefix}.agent.${agent}.dispatch`,
    /** Scheduler → agent: kill an attempt, or drain. */
    control: (agent: string) => `${prefix}.agent.${agent}.control`,
  };
}
export type Subjects = ReturnType<typeof subjects>;

export type ControlMessage =
  | { type: 'kill'; runId: string; lease: number }
  | { type: 'drain' };
