// Retention per project (`projects set P --keep-runs 90d --keep-versions 20`, migrations/024): what the
// leader deletes on each pass, a small batch at a time so a large backlog never holds a long lock or a long
// pass. Ended runs older than keep_runs_seconds (never a live run, nor one a live run or a schedule resumes
// from), and each package's versions beyond its
// newest keep_versions (never the newest, never one a live run uses or a schedule names: the candidates
// leave those out, and the mark of storage/deletion.ts refuses them again). Each goes through the same three
// steps as a delete a member asks for, logged as deleted by "retention of project P".
import { sql } from 'kysely';
import { ErrorCodes, TrainyardError } from '../../shared/errors.js';
import { RunStatus, terminalStatuses } from '../../shared/run-states.js';
import { states } from '../runs/transitions.js';
import { finishRun, finishVersion, markRun, markVersions, resumersOf, type DeletionDeps } from './deletion.js';

const LIVE = states(Object.values(RunStatus).filter((s) => !terminalStatuses.has(s)));
const ENDED = states([...terminalStatuses]);

/** Deletes up to `batch` runs and `batch` versions that their projects' retention no longer keeps; says how many. */
export async function applyRetention(d: DeletionDeps, batch: number): Promise<{ runs: number; versions: number }> {
  const { rows: runs } = await sql<{ id: string; project: string }>`
    SELECT r.id, r.project FROM project_limits l JOIN runs r ON r.project = l.project
    WHERE l.keep_runs_seconds IS NOT NULL AND r.ended_at IS NOT NULL AND r.status IN ${ENDED} AND r.deleting_at IS NULL
      AND r.ended_at < now() - make_interval(secs => l.keep_runs_seconds)
      AND NOT EXISTS (${resumersOf(sql`r.id`)})
    ORDER BY r.ended_at LIMIT ${batch}`.execute(d.db);
  let doneRuns = 0;
  for (const r of runs) {
    if (await skipRefused(() => markRun(d.db, r.id, `retention of project "${r.project}"`))) continue;
    if (await finishRun(d, r.id)) doneRuns++;
  }

  // The newest version of a package ranks 1, and keep_versions is at least 1: never deleted.
  const { rows: versions } = await sql<{ package: string; major: number; minor: number; project: string }>`
    SELECT x.package, x.major, x.minor, x.project FROM (
      SELECT v.package, v.major, v.minor, p.project, l.keep_versions,
             row_number() OVER (PARTITION BY v.package ORDER BY v.major DESC, v.minor DESC) AS rank
      FROM project_limits l JOIN packages p ON p.project = l.project JOIN package_versions v ON v.package = p.name
      WHERE l.keep_versions IS NOT NULL AND v.deleting_at IS NULL) x
    WHERE x.rank > x.keep_versions
      AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.package = x.package AND r.package_major = x.major AND r.package_minor = x.minor AND r.status IN ${LIVE})
      AND NOT EXISTS (SELECT 1 FROM schedules s WHERE s.state <> 'done' AND s.request->>'package' = x.package AND s.request->>'version' = x.major || '.' || x.minor)
    ORDER BY x.package, x.major, x.minor LIMIT ${batch}`.execute(d.db);
  let doneVersions = 0;
  for (const v of versions) {
    if (await skipRefused(() => markVersions(d.db, v.package, `${v.major}.${v.minor}`, `retention of project "${v.project}"`))) continue;
    if (await finishVersion(d, v.package, v.major, v.minor)) doneVersions++;
  }
  return { runs: doneRuns, versions: doneVersions };
}

/** True when the mark was refused (the thing came to be needed, or went, since it was picked): skipped. */
async function skipRefused(mark: () => Promise<unknown>): Promise<boolean> {
  try {
    await mark();
    return false;
  } catch (err) {
    if (err instanceof TrainyardError && (err.code === ErrorCodes.FailedPrecondition || err.code === ErrorCodes.NotFound)) return true;
    throw err;
  }
}
