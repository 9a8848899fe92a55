// Who may do what: every authorization decision in one place. Handlers and modules ask
// `authorize(principal, action, project)`; the answer is nothing, or a PERMISSION_DENIED naming the project
// (or the role) that was missing.
//
//   admin   everything, on every project, and the fleet (tokens, join tokens, caps, drain, agents, doctor)
//   member  its project's packages, datasets, runs and schedules: push, submit, schedule, read, follow,
//           download, kill; its project's events
//   reader  reads its project's packages, datasets, runs, schedules and events
//   agents  nothing on the client API
import { ErrorCodes, TrainyardError } from '../../shared/errors.js';
import { describePrincipal, type Principal } from './principal.js';

export const Actions = {
  ReadRun: 'read runs of',
  SubmitRun: 'submit runs to',
  KillRun: 'kill runs of',
  ReadPackage: 'read packages of',
  PushPackage: 'push packages to',
  ReadDataset: 'read datasets of',
  PushDataset: 'push datasets to',
  ReadSchedule: 'read schedules of',
  /** Create, pause, resume, delete and run-now. */
  ManageSchedule: 'manage schedules of',
  /** Its events (`trainyard events`); fleet (agent) events need Admin. */
  ReadProject: 'read',
  /** Fleet administration: tokens, join tokens, caps, drain, agents, doctor. The project is irrelevant. */
  Admin: 'administer',
} as const;
export type Action = (typeof Actions)[keyof typeof Actions];

const readOnly: ReadonlySet<Action> = new Set([Actions.ReadRun, Actions.ReadPackage, Actions.ReadDataset, Actions.ReadSchedule, Actions.ReadProject]);

const denied = (message: string) => new TrainyardError(ErrorCodes.PermissionDenied, message);

/** Whether `p` may do `action` on `project`, without throwing (for filters). */
export function allowed(p: Principal, action: Action, project: string): boolean {
  if (p.kind !== 'user') return false;
  if (p.role === 'admin') return true;
  if (action === Actions.Admin || project !== p.project) return false;
  return p.role === 'member' || readOnly.has(action);
}

export function authorize(p: Principal, action: Action, project = ''): void {
  if (allowed(p, action, project)) return;
  const who = describePrincipal(p);
  if (action === Actions.Admin) throw denied(`${who} may not do this: it needs an admin token`);
  if (p.kind === 'user' && p.project === project) throw denied(`${who} may not ${action} project "${project}": a ${p.role} token only reads`);
  throw denied(`${who} may not ${action} project "${project}"`);
}

/** The projects whose things `p` sees in lists: null means all of them (admin). */
export function visibleProject(p: Principal): string | null {
  if (p.kind === 'user' && p.role === 'admin') return null;
  if (p.kind === 'user') return p.project;
  return '\u0000none'; // no project has this name: an agent sees nothing
}
