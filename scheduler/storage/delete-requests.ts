// The client's deletes (DeleteRun, DeletePackage, DeleteDataset): who may, then the three steps of
// storage/deletion.ts. A member deletes its project's things, a reader is refused PERMISSION_DENIED, and
// another project's run, package or dataset is answered exactly as a missing one (auth/policy.ts).
import type { SchedulerContext } from '../context.js';
import type { DeleteResponse } from '../../shared/proto.js';
import { notFound } from '../../shared/errors.js';
import { checkName } from '../../shared/names.js';
import { Actions, authorizeObject } from '../auth/policy.js';
import { describePrincipal, type Principal } from '../auth/principal.js';
import { authorizeRun } from '../runs/read.js';
import { deleteDataset, deletePackage, deleteRun } from './deletion.js';

export async function deleteRunRequest(ctx: SchedulerContext, caller: Principal, id: string): Promise<DeleteResponse> {
  await authorizeRun(ctx, caller, id, Actions.DeleteRun);
  return deleteRun(ctx, id, describePrincipal(caller));
}

export async function deletePackageRequest(ctx: SchedulerContext, caller: Principal, name: string, version: string): Promise<DeleteResponse> {
  const pkg = checkName('package', name);
  const owner = await ctx.db.selectFrom('packages').select('project').where('name', '=', pkg).executeTakeFirst();
  const missing = () => notFound(`package "${pkg}" not found`);
  if (!owner) throw missing();
  authorizeObject(caller, Actions.DeletePackage, owner.project, missing);
  return deletePackage(ctx, pkg, version, describePrincipal(caller));
}

export async function deleteDatasetRequest(ctx: SchedulerContext, caller: Principal, name: string): Promise<DeleteResponse> {
  const ds = checkName('dataset', name);
  const owner = await ctx.db.selectFrom('datasets').select('project').where('name', '=', ds).executeTakeFirst();
  const missing = () => notFound(`dataset "${ds}" not found`);
  if (!owner) throw missing();
  authorizeObject(caller, Actions.DeleteDataset, owner.project, missing);
  return deleteDataset(ctx, ds, describePrincipal(caller));
}
