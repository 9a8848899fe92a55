// The kinds of the ML log (`trainyard events`): one closed list, mirrored by the CHECK on events.kind
// (migrations/008_events_and_schedules.sql, as 029 leaves it; test/e2e/events.test.ts compares the two).
// A kind is `<what>.<happened>`; `--kind run` selects every `run.*` kind.
export const EventKind = {
  PackagePushed: 'package.pushed',
  /** A push the project was allowed to make, refused for what it held (the reason is the detail). */
  PackageRefused: 'package.refused',
  DatasetPushed: 'dataset.pushed',
  // Copied from run_events by a trigger (migrations/008), in the statement of the transition itself.
  RunSubmitted: 'run.submitted',
  RunWaiting: 'run.waiting',
  RunPlaced: 'run.placed',
  RunPackaging: 'run.packaging',
  RunStarted: 'run.started',
  RunKillRequested: 'run.kill_requested',
  RunSucceeded: 'run.succeeded',
  RunFailed: 'run.failed',
  RunKilled: 'run.killed',
  /** A lower-priority run's attempt is stopped to make room for another run (scheduler/placement/preemption.ts). */
  RunPreempted: 'run.preempted',
  /** A run status that has no kind of its own yet. */
  RunChanged: 'run.changed',
  ScheduleCreated: 'schedule.created',
  SchedulePaused: 'schedule.paused',
  ScheduleResumed: 'schedule.resumed',
  ScheduleDeleted: 'schedule.deleted',
  ScheduleFired: 'schedule.fired',
  /** Firings that passed while no scheduler ran; the catch-up fired once for all of them. */
  ScheduleMissed: 'schedule.missed',
  /** A firing refused by submit (its package or dataset is gone, ...): no run; the schedule goes on. */
  ScheduleFailed: 'schedule.failed',
  // Fleet events: no project, seen by admins only.
  AgentJoined: 'agent.joined',
  AgentLost: 'agent.lost',
  AgentDraining: 'agent.draining',
  AgentDrained: 'agent.drained',
  /** An admin forgot an agent that was gone (`trainyard agents remove`): its name is free again. */
  AgentRemoved: 'agent.removed',
  // Issue 21: written in the transaction that deletes the row, once its objects are gone (migrations/024).
  /** A run and everything under its prefixes (`run delete`, or the project's retention). */
  RunDeleted: 'run.deleted',
  /** A package version (`package delete`, or the project's retention). */
  PackageDeleted: 'package.deleted',
  /** A dataset and its files (`dataset delete`). */
  DatasetDeleted: 'dataset.deleted',
} as const;
export type EventKind = (typeof EventKind)[keyof typeof EventKind];
export const eventKinds: readonly EventKind[] = Object.values(EventKind);

/** The prefixes `--kind` accepts besides the kinds themselves ("run" for every run.* kind). */
export const eventKindGroups: readonly string[] = [...new Set(eventKinds.map((k) => k.slice(0, k.indexOf('.'))))];
