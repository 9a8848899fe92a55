// Who may do what: every authorization decision in one place. Handlers and modules ask
// `authorize(principal, action, project)` about a project the caller named itself (`run train --project Q`,
// `events --project Q`): the answer is nothing, or a PERMISSION_DENIED naming that project (or the role)
// that was missing, which tells the caller nothing it did not say. About an object the caller named by id
// or name (a run, package, dataset, schedule), they ask `authorizeObject`: an object of a project the
// caller may not read is answered exactly as a missing one (NOT_FOUND, the same message), so a denial
// reveals neither that it exists nor whose it is (issue 19).
//
//   admin   everything, on every project, and the fleet (tokens, join tokens, caps, drain, agents, doctor)
//   member  its project's packages, datasets, runs and schedules: push, submit, schedule, read, follow,
//           download, kill, delete; its project's events and webhooks
//   reader  reads its project's packages, datasets, runs, schedules and events (not its webhooks)
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
  /** `run delete`, `package delete`, `dataset delete` (issue 21): members of the project, never readers. */
  DeleteRun: 'delete runs of',
  DeletePackage: 'delete packages of',
  DeleteDataset: 'delete datasets of',
  /** Create, pause, resume, delete and run-now. */
  ManageSchedule: 'manage schedules of',
  /** Its webhooks: create, list, delete, test, deliveries. Not for readers: a hook's URL may hold a capability. Fleet-wide hooks need Admin. */
  ManageWebhooks: 'manage webhooks of',
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

/**
 * `action` on an object of `project` that the caller named. If the caller may not read that project at
 * all, `missing()` is thrown: the very error a missing object gets. A caller who may read it but not do
 * `action` (a reader's kill) is refused PERMISSION_DENIED: its own project, so nothing is revealed.
 */
export function authorizeObject(p: Principal, action: Action, project: string, missing: () => TrainyardError): void {
  if (!allowed(p, Actions.ReadProject, project)) throw missing();
  authorize(p, action, project);
}

/**
 * `action` (a push) on the package or dataset `name`, which belongs to `project`. Those names are global
 * (the first push claims one), so a name another project holds cannot be answered as missing; it is
 * refused as taken, ALREADY_EXISTS, without saying by whom.
 */
export function authorizeName(p: Principal, action: Action, project: string, kind: 'package' | 'dataset', name: string): void {
  if (p.kind === 'user' && !allowed(p, Actions.ReadProject, project)) {
    throw new TrainyardError(ErrorCodes.AlreadyExists, `${kind} name "${name}" is taken by another project: push under another name`);
  }
  authorize(p, action, project);
}

/** The projects whose things `p` sees in lists: null means all of them (admin). */
export function visibleProject(p: Principal): string | null {
  if (p.kind === 'user' && p.role === 'admin') return null;
  if (p.kind === 'user') return p.project;
  return '\u0000none'; // no project has this name: an agent sees nothing
}
