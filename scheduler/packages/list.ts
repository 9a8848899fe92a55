// The console's package list: every package the caller's project owns (an admin's: every package), with
// its number of versions and its newest version and score. One query.
import { sql } from 'kysely';
import type { SchedulerContext } from '../context.js';
import { formatVersion } from '../../shared/versions.js';

export interface PackageSummary {
  name: string; project: string; created_at: string; versions: number; latest: string; latest_score: number | null;
}

export async function listPackages(ctx: SchedulerContext, project: string | null): Promise<PackageSummary[]> {
  const { rows } = await sql<{ name: string; project: string; created_at: Date; versions: number; major: number | null; minor: number | null; score: number | null }>`
    SELECT p.name, p.project, p.created_at,
      (SELECT count(*)::int FROM package_versions v WHERE v.package = p.name AND v.deleting_at IS NULL) AS versions,
      l.major, l.minor, l.score
    FROM packages p
    LEFT JOIN LATERAL (SELECT major, minor, score FROM package_versions v WHERE v.package = p.name AND v.deleting_at IS NULL ORDER BY major DESC, minor DESC LIMIT 1) l ON true
    WHERE ${project === null ? sql`true` : sql`p.project = ${project}`}
    ORDER BY p.name`.execute(ctx.db);
  return rows.map((r) => ({
    name: r.name, project: r.project, created_at: r.created_at.toISOString(), versions: r.versions,
    latest: r.major === null ? '' : formatVersion({ major: r.major, minor: r.minor ?? 0 }), latest_score: r.score,
  }));
}
