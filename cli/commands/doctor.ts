// `trainyard doctor [--repair] [--json]`: asks the scheduler to check the invariants now (impossible
// states, scheduler/invariants.ts) and prints what is wrong, and what the placer's continuous sweep has
// recorded so far. Exit 0 when nothing is wrong now (with --repair: nothing is left unrepaired), 1 when
// something is, so scripts and monitoring can run it.
import { Api, unaryCall } from '../client.js';
import { flags, verb, type Parsed } from '../verb.js';
import { color, safeText, table } from '../format.js';
import type { DoctorRequest, DoctorReport__Output } from '../../shared/proto.js';
import { invalid } from '../../shared/errors.js';

const DOCTOR_DETAILS = `Checks the scheduler's invariants now: a GPU lease whose run does not hold it, a run placed on an agent
not heard from past the loss deadline, a kill left on a queued run, a run past its attempts, a run
Running without an agent, ... Prints each violation found (kind, run, agent, detail, repaired) and the
totals by kind that the placing scheduler's continuous sweep has recorded.

With --storage it checks the bucket against the rows instead: objects under packages/, datasets/ or runs/
that no row points at (orphan_object), rows whose objects are gone (missing_object: a version's zip, a
dataset with no file, a run's recorded output) and deletes left unfinished (unfinished_delete). --repair
then removes orphans older than --grace (an upload in flight is younger), deletes the rows whose objects are
gone (unless a live run or a schedule needs them), drops a run's missing outputs from its record and
finishes the deletes.

For doctor itself: exit 0 when no violation is found (with --repair: none is left unrepaired), 1 otherwise.`;

const doctorFlags = flags({
  repair: { type: 'boolean', description: 'repair what is safe to repair (as the sweep does); without it, only look' },
  storage: { type: 'boolean', description: 'check the bucket against the rows: orphan objects, rows whose objects are gone, unfinished deletes' },
  grace: { type: 'string', value: 'AGE', default: '1h', description: 'with --storage --repair: orphan objects younger than this are kept (an upload may be in flight); 45s, 30m, 1h, 2d' },
  json: { type: 'boolean', description: 'print the DoctorReport as JSON (with --storage: its list of storage findings)' },
});

/** --grace: 45s, 30m, 1h, 2d in seconds. */
function graceFlag(v: unknown): number {
  const m = /^(\d+)([smhd])$/.exec(String(v ?? '1h'));
  if (!m) throw invalid(`--grace: expected an age such as 45s, 30m, 1h or 2d, got "${String(v)}"`);
  return Number(m[1]) * { s: 1, m: 60, h: 3600, d: 86_400 }[m[2] as 's' | 'm' | 'h' | 'd'];
}

async function storageDoctor(values: Parsed<typeof doctorFlags>['values'], address: string): Promise<number> {
  const grace = graceFlag(values.grace);
  const api = await Api.connect(address);
  let report: DoctorReport__Output;
  try {
    // Lists the whole bucket: longer than the usual call.
    report = await unaryCall<DoctorRequest, DoctorReport__Output>(api.client, api.client.Doctor as never, { repair: !!values.repair, storage: true, storage_grace_seconds: grace }, 600_000);
  } finally {
    api.close();
  }
  const bad = report.storage.filter((f) => !f.repaired).length;
  if (values.json) console.log(JSON.stringify(report.storage, null, 2));
  else if (report.storage.length === 0) console.log(color.green('The bucket and the rows agree.'));
  else {
    console.log(table(['KIND', 'KEY', 'ROW', 'DETAIL', 'REPAIRED'], report.storage.map((f) => [
      color.red(safeText(f.kind)), safeText(f.key), safeText(f.row) || '-', safeText(f.detail), f.repaired ? color.green('yes') : 'no',
    ])));
    if (bad) console.error(`${color.red('error')}: ${bad} finding${bad === 1 ? '' : 's'}${values.repair ? ' left unrepaired' : ' (run `trainyard doctor --storage --repair` to repair them)'}`);
  }
  return bad ? 1 : 0;
}

async function doctor({ values }: Parsed<typeof doctorFlags>, address: string): Promise<number> {
  if (values.storage) return storageDoctor(values, address);
  if (values.grace !== undefined) throw invalid('--grace is for doctor --storage --repair (the age under which orphan objects are kept)');
  const api = await Api.connect(address);
  let report: DoctorReport__Output;
  try {
    // A check reads every placed run and lease: give it longer than the usual call.
    report = await unaryCall<DoctorRequest, DoctorReport__Output>(api.client, api.client.Doctor as never, { repair: !!values.repair }, 120_000);
  } finally {
    api.close();
  }
  const bad = report.current.filter((v) => !v.repaired).length;
  if (values.json) {
    console.log(JSON.stringify(report, null, 2));
    return bad ? 1 : 0;
  }
  if (report.current.length === 0) console.log(color.green('No invariant violations now.'));
  else {
    console.log(table(['KIND', 'RUN', 'AGENT', 'DETAIL', 'REPAIRED'], report.current.map((v) => [
      color.red(safeText(v.kind)), safeText(v.run_id) || '-', safeText(v.agent) || '-', safeText(v.detail), v.repaired ? color.green('yes') : 'no',
    ])));
  }
  console.log('');
  if (report.recorded_by_kind.length === 0) console.log(`Recorded by the sweep: ${report.recorded_total}`);
  else {
    console.log(`Recorded by the sweep: ${report.recorded_total} in all`);
    console.log(table(['KIND', 'COUNT'], report.recorded_by_kind.map((k) => [safeText(k.kind), String(k.count)])));
  }
  if (bad) console.error(`${color.red('error')}: ${bad} violation${bad === 1 ? '' : 's'} now${values.repair ? ' left unrepaired' : ' (run `trainyard doctor --repair` to repair what is safe)'}`);
  return bad ? 1 : 0;
}

export const doctorVerbs = [
  verb({
    path: ['doctor'], section: 'Operators', summary: 'impossible states now, and what the sweep recorded (exit 1 if any); --storage: bucket against rows',
    flags: doctorFlags, run: doctor, details: DOCTOR_DETAILS, examples: ['trainyard doctor', 'trainyard doctor --repair --json', 'trainyard doctor --storage --repair --grace 2h'],
  }),
];
