// A run's lineage: what a version was made from, exactly. The agent reports what only it knows (the
// manifests of the data it made local, the venv's Python and packages, its GPUs); the scheduler adds the
// rest from the run's row (input version and its SHA-256, the non-secret env and the secrets' names, the
// score, the output version and its SHA-256). Stored on the run and written as _lineage.json beside
// _results.json, whose shape stays AI Center's. `package lineage` walks versions back to the upload.
import { sql, type Selectable } from 'kysely';
import type { SchedulerContext } from '../context.js';
import type { RunsTable } from '../db/database.js';
import type { LineageStep } from '../../shared/proto.js';
import { checkName, formatDatasetRef } from '../../shared/names.js';
import { notFound } from '../../shared/errors.js';
import { formatVersion, parseVersion } from '../../shared/versions.js';
import type { Principal } from '../auth/principal.js';
import { Actions, authorizeObject } from '../auth/policy.js';
import type { MemberRecord } from './members.js';

/** The agent's part, as reported; what does not parse as an object is left out (the run still succeeds). */
export function agentLineage(json: string): Record<string, unknown> {
  if (!json) return {};
  try {
    const v = JSON.parse(json) as unknown;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return {};
    const { data, eval_data: evalData, environment, agent } = v as Record<string, unknown>;
    return { data, eval_data: evalData ?? null, environment, agent };
  } catch {
    return {};
  }
}

export function buildLineage(run: Selectable<RunsTable>, reported: Record<string, unknown>, o: {
  score: number | null; output: { version: string; sha256: string } | null;
  /** A gang's members; null for an ordinary run (no `members` key: its shape is as before). */
  members?: MemberRecord[] | null;
}) {
  const lineage = {
    run_id: run.id,
    pipeline: run.pipeline,
    project: run.project,
    input: { package: run.package, version: formatVersion({ major: run.package_major, minor: run.package_minor }), sha256: run.package_sha256 },
    dataset: formatDatasetRef(run.dataset, run.dataset_sub),
    eval_dataset: run.eval_dataset ? formatDatasetRef(run.eval_dataset, run.eval_dataset_sub) : null,
    data: reported.data ?? null,
    eval_data: reported.eval_data ?? null,
    environment: reported.environment ?? null,
    agent: reported.agent ?? null,
    env: run.env,
    secrets: run.secret_names,
    score: o.score,
    output: o.output,
    // The checkpoint the committing attempt started from (README, "Checkpoints"); null for a fresh start.
    resumed_from: run.resumed_from ?? null,
  };
  return o.members ? { ...lineage, members: o.members } : lineage;
}

/** From a version back to the upload it descends from, newest first; one query (a recursive CTE). */
export async function packageLineage(ctx: SchedulerContext, req: { name: string; version: string }, caller: Principal): Promise<{ package: string; steps: LineageStep[] }> {
  const name = checkName('package', req.name);
  const v = parseVersion(req.version, 'version');
  const owner = await ctx.db.selectFrom('packages').select('project').where('name', '=', name).executeTakeFirst();
  const missing = () => notFound(`package "${name}" not found`);
  if (!owner) throw missing();
  authorizeObject(caller, Actions.ReadPackage, owner.project, missing);
  const { rows } = await sql<{
    major: number; minor: number; sha256: string; source: string; created_at: Date; run_id: string | null; trained_major: number | null; trained_minor: number | null;
    pipeline: string | null; dataset: string | null; dataset_sub: string | null; eval_dataset: string | null; eval_dataset_sub: string | null;
    manifest: string | null; agent: string | null; score: number | null;
  }>`
    WITH RECURSIVE chain AS (
      SELECT v.*, 0 AS depth FROM package_versions v WHERE v.package = ${name} AND v.major = ${v.major} AND v.minor = ${v.minor}
      UNION ALL
      SELECT p.*, c.depth + 1 FROM chain c
      JOIN package_versions p ON p.package = c.package AND p.major = c.trained_major AND p.minor = c.trained_minor
      WHERE c.source = 'run' AND c.depth < 10000)
    SELECT c.major, c.minor, c.sha256, c.source, c.created_at, c.run_id, c.trained_major, c.trained_minor,
      r.pipeline, r.dataset, r.dataset_sub, r.eval_dataset, r.eval_dataset_sub,
      r.lineage -> 'data' ->> 'manifest_sha256' AS manifest, r.last_agent AS agent, coalesce(c.score, r.score) AS score
    FROM chain c LEFT JOIN runs r ON r.id = c.run_id ORDER BY c.depth`.execute(ctx.db);
  if (rows.length === 0) throw notFound(`package "${name}" has no version ${formatVersion(v)}`);
  return {
    package: name,
    steps: rows.map((r) => ({
      version: formatVersion(r), sha256: r.sha256, source: r.source, created_at: r.created_at.toISOString(), run_id: r.run_id ?? '',
      trained_from: r.trained_major !== null ? formatVersion({ major: r.trained_major, minor: r.trained_minor ?? 0 }) : '',
      pipeline: r.pipeline ?? '', dataset: r.dataset ? formatDatasetRef(r.dataset, r.dataset_sub) : '', eval_dataset: r.eval_dataset ? formatDatasetRef(r.eval_dataset, r.eval_dataset_sub) : '',
      data_manifest_sha256: r.manifest ?? '', agent: r.agent ?? '', score: r.score ?? 0, has_score: r.score !== null,
    })),
  };
}
