// NATS subjects. NATS is the doorbell between processes; what a message means is always re-read from
// Postgres, so a lost message delays work but never loses it.
export function subjects(prefix: string) {
  return {
    /** Wake the placer: a run was queued (empty message), or what a KickMessage says changed. */
    kick: `${prefix}.kick`,
    /** A run's status or logs changed (watchers re-read it). */
    run: (runId: string) => `${prefix}.run.${runId}`,
    /** Scheduler → agent: a doorbell naming a placed run (JSON Doorbell); the agent claims it over gRPC. */
    dispatch: (agent: string) => `${prefix}.agent.${agent}.dispatch`,
    /** Scheduler → agent: a doorbell saying a kill or a drain is waiting; the agent asks over gRPC (a heartbeat). */
    control: (agent: string) => `${prefix}.agent.${agent}.control`,
  };
}
export type Subjects = ReturnType<typeof subjects>;

export type ControlMessage =
  | { type: 'kill'; runId: string; lease: number }
  | { type: 'drain' };

/**
 * What changed, for the leader's model of the fleet (scheduler/placement/fleet-cache.ts): an attempt gave
 * its capacity back, or an agent's registration or status changed. Sent after the change committed; a lost
 * one only delays placement (the leader reads the fleet again when runs are left waiting).
 */
export type KickMessage =
  | { freed: { run: string; lease: number } }
  | { agent: string }
  // A project's caps or rules changed (`projects set`): the placer reads them again (it keeps them a while).
  | { limits: true };

/** Which scheduler rang a kick (its `from`), or null: its own echo is ignored, it told its placer directly. */
export function kickSender(data: Uint8Array): string | null {
  if (data.length === 0) return null;
  try {
    const from = (JSON.parse(new TextDecoder().decode(data)) as Record<string, unknown>).from;
    return typeof from === 'string' ? from : null;
  } catch {
    return null;
  }
}

/** A kick's message, or null for an empty or unknown one (a plain kick). */
export function parseKick(data: Uint8Array): KickMessage | null {
  if (data.length === 0) return null;
  try {
    const m = JSON.parse(new TextDecoder().decode(data)) as Record<string, unknown>;
    const f = m.freed as Record<string, unknown> | undefined;
    if (f && typeof f.run === 'string' && typeof f.lease === 'number') return { freed: { run: f.run, lease: f.lease } };
    if (typeof m.agent === 'string') return { agent: m.agent };
    if (m.limits === true) return { limits: true };
  } catch {
    // not ours: a plain kick
  }
  return null;
}
