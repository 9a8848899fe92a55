// `trainyard run delete RUN`, `package delete NAME [VERSION]`, `dataset delete NAME` (issue 21): the rows
// and their objects in the bucket, refused while still needed. Asks first on a terminal (--yes skips it).
import { unaryCall, withApi, type Api } from '../client.js';
import { jsonFlag } from '../args.js';
import { flags, verb, type Parsed } from '../verb.js';
import { bytes, color, safeText } from '../format.js';
import { confirm } from '../confirm.js';
import { invalid } from '../../shared/errors.js';
import type * as P from '../../shared/proto.js';

const deleteFlags = flags({
  yes: { type: 'boolean', description: 'do not ask for confirmation on a terminal' },
  json: jsonFlag,
});

const DETAILS = `Removes the rows and the objects in the bucket, in an order that never leaves a row pointing at a
missing object: the rows are marked deleting (no list or submit sees them from then on), the objects are
removed, then the rows go and the ML log gets a *.deleted event. A delete interrupted half way is finished
by the placing scheduler. Refused (exit 1, nothing changed) while the thing is still needed: a run that
has not ended; a version a live run or a schedule names; a dataset a live run reads or a schedule names.
Members of the project may delete; readers may not. On a terminal it asks first (--yes skips that).`;

type Call = (api: Api) => Promise<P.DeleteResponse__Output>;

async function run(what: string, values: { yes?: boolean | undefined; json?: boolean | undefined }, address: string, call: Call): Promise<number> {
  // Only --yes skips the question: --json says how to print, not that the person agreed.
  if (!(await confirm(`Delete ${what} and its objects in the bucket? This cannot be undone.`, !!values.yes))) {
    console.error('not deleted');
    return 1;
  }
  const res = await withApi(address, call);
  if (values.json) console.log(JSON.stringify(res, null, 2));
  else {
    const versions = res.versions.length ? ` (version${res.versions.length === 1 ? '' : 's'} ${res.versions.join(', ')})` : '';
    console.log(`${color.green('✓')} deleted ${safeText(what)}${safeText(versions)}: ${res.objects_removed} object${Number(res.objects_removed) === 1 ? '' : 's'}, ${bytes(Number(res.bytes_removed))} removed`);
  }
  return 0;
}

/** A delete lists and removes objects before it answers: longer than the usual call. */
const rpc = <Req, Res>(api: Api, m: unknown, req: Req) => unaryCall<Req, Res>(api.client, m as never, req, 120_000);

async function deleteRun({ values, positionals }: Parsed<typeof deleteFlags>, address: string): Promise<number> {
  const id = positionals[0];
  if (!id) throw invalid('run delete: give the run id');
  return run(`run ${id}`, values, address, (api) => rpc<P.DeleteRunRequest, P.DeleteResponse__Output>(api, api.client.DeleteRun, { id }));
}

async function deletePackage({ values, positionals }: Parsed<typeof deleteFlags>, address: string): Promise<number> {
  const [name, version = ''] = positionals;
  if (!name) throw invalid('package delete: give the package name (and a version, or every version goes)');
  if (version && !/^\d+\.\d+$/.test(version)) throw invalid(`package delete: "${version}" is not a version MAJOR.MINOR`);
  return run(version ? `package ${name} ${version}` : `package ${name} (every version)`, values, address,
    (api) => rpc<P.DeletePackageRequest, P.DeleteResponse__Output>(api, api.client.DeletePackage, { name, version }));
}

async function deleteDataset({ values, positionals }: Parsed<typeof deleteFlags>, address: string): Promise<number> {
  const name = positionals[0];
  if (!name) throw invalid('dataset delete: give the dataset name');
  if (name.includes('/')) throw invalid(`dataset delete: "${name}" is a subfolder; a whole dataset is deleted, by its name`);
  return run(`dataset ${name}`, values, address, (api) => rpc<P.DeleteDatasetRequest, P.DeleteResponse__Output>(api, api.client.DeleteDataset, { name }));
}

export const runDeleteVerb = verb({
  path: ['run', 'delete'], summary: 'delete an ended run: its rows, logs and every object under runs/RUN/',
  args: [{ name: 'RUN', description: 'the run id' }], flags: deleteFlags, run: deleteRun, details: DETAILS,
  examples: ['trainyard run delete run_qubv5a2mo2syxd', 'trainyard run delete run_qubv5a2mo2syxd --yes --json'],
});
export const packageDeleteVerb = verb({
  path: ['package', 'delete'], summary: 'delete a package version (or every version) and its zip in the bucket',
  args: [{ name: 'NAME', description: 'the package' }, { name: 'VERSION', description: 'MAJOR.MINOR (default: every version)', optional: true }],
  flags: deleteFlags, run: deletePackage, details: DETAILS,
  examples: ['trainyard package delete my-package 1.2', 'trainyard package delete my-package --yes'],
});
export const datasetDeleteVerb = verb({
  path: ['dataset', 'delete'], summary: 'delete a dataset: its row and every file under datasets/NAME/',
  args: [{ name: 'NAME', description: 'the dataset' }], flags: deleteFlags, run: deleteDataset, details: DETAILS,
  examples: ['trainyard dataset delete my-data', 'trainyard dataset delete my-data --yes --json'],
});
