// `trainyard package versions NAME`: every version of a package, oldest first, and where each came from.
import type { SchedulerContext } from '../context.js';
import type { PackageVersion } from '../../shared/proto.js';
import { checkName } from '../../shared/names.js';
import { notFound } from '../../shared/errors.js';
import { versionToProto } from './to-proto.js';
import type { Principal } from '../auth/principal.js';
import { Actions, authorizeObject } from '../auth/policy.js';

export async function listPackageVersions(ctx: SchedulerContext, packageName: string, caller: Principal): Promise<PackageVersion[]> {
  const name = checkName('package', packageName);
  const owner = await ctx.db.selectFrom('packages').select('project').where('name', '=', name).executeTakeFirst();
  const missing = () => notFound(`package "${name}" not found`);
  // No row, no second read: a name taken by another project and one never pushed take the same time.
  if (!owner) throw missing();
  authorizeObject(caller, Actions.ReadPackage, owner.project, missing);
  const rows = await ctx.db.selectFrom('package_versions').selectAll().where('package', '=', name).where('deleting_at', 'is', null).orderBy('major').orderBy('minor').execute();
  if (rows.length === 0) throw missing();
  return rows.map(versionToProto);
}
