// `trainyard package versions NAME`: every version of a package, oldest first, and where each came from.
import type { SchedulerContext } from '../context.js';
import type { PackageVersion } from '../../shared/proto.js';
import { checkName } from '../../shared/names.js';
import { notFound } from '../../shared/errors.js';
import { versionToProto } from './to-proto.js';

export async function listPackageVersions(ctx: SchedulerContext, packageName: string): Promise<PackageVersion[]> {
  const name = checkName('package', packageName);
  const rows = await ctx.db.selectFrom('package_versions').selectAll().where('package', '=', name).orderBy('major').orderBy('minor').execute();
  if (rows.length === 0) throw notFound(`package "${name}" not found`);
  return rows.map(versionToProto);
}
