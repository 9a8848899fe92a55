// A schedule's states, one closed list, mirrored by the CHECK on schedules.state (migrations/008).
//
//   create ──▶ active ──pause──▶ paused ──resume──▶ active
//                │ (a one-shot, --at, once it fired)
//                └──────────▶ done
//   delete removes a schedule in any state; its runs keep its name.
export const ScheduleState = {
  /** Fires when due. */
  Active: 'active',
  /** Fires nothing; resume computes the next firing from then on (a pause misses nothing). */
  Paused: 'paused',
  /** A one-shot that has fired. */
  Done: 'done',
} as const;
export type ScheduleState = (typeof ScheduleState)[keyof typeof ScheduleState];
export const scheduleStates: readonly ScheduleState[] = Object.values(ScheduleState);
