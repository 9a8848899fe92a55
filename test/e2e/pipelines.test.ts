// Issue 9, pipeline kinds, end to end through the CLI on the real scheduler, agent, MinIO and harness:
// an evaluation scores a version (no new one); a full pipeline runs process_data, train, evaluate and save
// and registers the next version with its score; an evaluation dataset reaches evaluate() untouched by
// process_data; a package without process_data trains on its input; and each way it can go wrong says why.
import t from 'tap';
import { Stack, tempDir, writeTree } from '../helpers/stack.js';

// Stdlib only (no venv to build): "learns" the share of rows labelled yes, and scores by that share.
// evaluate() records the folder it was given, what both names of the test folder say, and the env flags.
const scorer = (o: { processData?: boolean | 'training only'; evaluate?: string } = {}) => `
import json, os
def rows(d):
    out = []
    for root, dirs, files in os.walk(d):
        dirs.sort()
        for f in sorted(files):
            out += [l.strip() for l in open(os.path.join(root, f)) if l.strip()]
    return out
class Main:
    def __init__(self):
        self.p = float(open("model.txt").read()) if os.path.exists("model.txt") else None
${o.processData === false ? '' : `    def process_data(self, d):
        r = rows(d)
        cut = len(r) * 2 // 3
        os.makedirs(os.environ["training_data_directory"], exist_ok=True)
        open(os.path.join(os.environ["training_data_directory"], "train.txt"), "w").write("\\n".join(r[:cut]) + "\\n")
${o.processData === 'training only' ? '' : `        open(os.path.join(os.environ["test_data_directory"], "from_process_data.txt"), "w").write("\\n".join(r[cut:]) + "\\n")
`}        assert os.environ["evaluation_data_directory"] == os.environ["test_data_directory"]
        print("processed", len(r), "rows")
`}    def train(self, d):
        r = rows(d)
        self.p = sum(1 for x in r if x == "yes") / len(r)
        os.makedirs(os.environ["artifacts_directory"], exist_ok=True)
        json.dump({"train_dir": d, "train_files": sorted(os.listdir(d)), "rows": len(r)}, open(os.path.join(os.environ["artifacts_directory"], "train.json"), "w"))
    def evaluate(self, d):
        r = rows(d)
        os.makedirs(os.environ["artifacts_directory"], exist_ok=True)
        json.dump({"eval_dir": d, "eval_is_dir": os.path.isdir(d), "eval_files": sorted(os.listdir(d)),
                   "env_test": os.environ.get("test_data_directory"), "env_eval": os.environ.get("evaluation_data_directory"),
                   "env": {k: os.environ.get(k) for k in ("artifacts_directory", "save_training_data", "save_test_data")}},
                  open(os.path.join(os.environ["artifacts_directory"], "evaluate.json"), "w"))
        ${o.evaluate ?? 'return sum(1 for x in r if x == "yes") / len(r) if r else 0.0'}
    def save(self):
        open("model.txt", "w").write(str(self.p))
`;
const noEvaluate = 'class Main:\n    def train(self, d):\n        pass\n    def save(self):\n        open("model.txt", "w").write("0.5")\n';

t.test('evaluation and full pipelines', async (t) => {
  const s = await Stack.create(t);
  const push = (name: string, src: string) => s.cliJson(['package', 'push', writeTree(tempDir(), { 'train.py': src }), '--name', name]);
  await push('sc', scorer());
  await s.cliJson(['dataset', 'push', writeTree(tempDir(), { 'all/a.txt': 'yes\nyes\nno\n', 'all/b.txt': 'yes\nno\nno\n', 'holdout/h.txt': 'yes\nyes\nyes\nno\n' }), '--name', 'd']);
  const finish = async (id: string) => s.waitForStatus(id, ['Successful', 'Failed', 'Killed'], 180_000);
  const results = (id: string, attempt = 1) => s.objectText(`runs/${id}/attempt-${attempt}/_results.json`).then((x) => JSON.parse(x));
  const artifact = (id: string, name: string) => s.objectText(`runs/${id}/attempt-1/artifacts/${name}`).then((x) => JSON.parse(x));
  // Both of AI Center's names for the test folder, as evaluate() saw them: each must be the folder it got.
  const testFolderNames = (ev: { env_test: string | null; env_eval: string | null }) => ({ test_data_directory: ev.env_test, evaluation_data_directory: ev.env_eval });
  const bothAre = (dir: string) => ({ test_data_directory: dir, evaluation_data_directory: dir });

  await t.test('run evaluate: the score, no new version, the test data copy', async (t) => {
    const r = await s.cliJson(['run', 'evaluate', '--package', 'sc', '--version', '1.0', '--dataset', 'd/holdout', '--env', 'save_test_data=true', '--wait']);
    t.equal(r.status, 'Successful', `succeeds (${r.failure_reason})`);
    t.equal(r.pipeline, 'EVALUATE_ONLY');
    t.ok(r.has_score, 'has a score');
    t.ok(r.score === 0.75, `the score is evaluate()'s number: 0.75 (got ${r.score})`);
    t.equal(r.output_version, '', 'no new version');
    t.same((await s.cliJson(['package', 'versions', 'sc'])).map((v: { version: string }) => v.version), ['1.0'], 'the package still has only 1.0');
    t.same(r.phases.map((p: { name: string }) => p.name), ['evaluate'], 'one phase: evaluating');
    const ev = await artifact(r.id, 'evaluate.json');
    t.strictSame(testFolderNames(ev), bothAre(ev.eval_dir), 'test_data_directory and evaluation_data_directory both name the folder evaluate() got');
    t.strictSame(ev.eval_files, ['h.txt'], 'the dataset made local');
    t.strictSame(ev.env, { artifacts_directory: 'artifacts', save_training_data: null, save_test_data: 'true' },
      'an evaluation\'s env: artifacts_directory (its artifacts uploaded: this file) and save_test_data, and no save_training_data');
    const res = await results(r.id);
    t.same(Object.keys(res.parameters.inputs).sort(), ['gpu', 'package', 'test_data', 'version']);
    t.equal(res.parameters.pipeline, 'EVALUATE_ONLY');
    t.equal(res.parameters.inputs.test_data, 'datasets/d/holdout/');
    t.strictSame(res.run_summary.outputs, { test_data: `runs/${r.id}/attempt-1/test_data/`, artifacts_data: `runs/${r.id}/attempt-1/artifacts/`, score: 0.75 });
    t.same(await s.objects(`runs/${r.id}/attempt-1/test_data/`), [`runs/${r.id}/attempt-1/test_data/h.txt`], 'save_test_data uploaded the evaluation data');
    t.same(await s.objects(`runs/${r.id}/attempt-1/package.zip`), [], 'and no package zip');
    const shown = await s.cli(['run', 'get', r.id]);
    t.match(shown.stdout, /score\s+0\.75/, 'run get shows the score');
    t.match(shown.stdout, /phase\s+evaluating/, 'and the phase');
    const events = await s.cliJson(['events', '--kind', 'run.succeeded']);
    t.equal(events.find((e: { subject: string }) => e.subject === r.id)?.data?.score, 0.75, 'the ML log\'s run.succeeded event carries the score');

    const plain = await s.cliJson(['run', 'evaluate', '--package', 'sc', '--version', '1.0', '--dataset', 'd/holdout', '--wait']);
    t.equal(plain.status, 'Successful', `an evaluation with no env set succeeds (${plain.failure_reason})`);
    t.strictSame((await artifact(plain.id, 'evaluate.json')).env, { artifacts_directory: 'artifacts', save_training_data: null, save_test_data: 'false' },
      'its defaults: artifacts_directory=artifacts, save_test_data=false');
    t.strictSame(await s.objects(`runs/${plain.id}/attempt-1/test_data/`), [], 'so no copy of the evaluation data is uploaded');
    t.strictSame((await results(plain.id)).run_summary.outputs, { test_data: null, artifacts_data: `runs/${plain.id}/attempt-1/artifacts/`, score: 0.75 }, 'and outputs.test_data is null');
  });

  await t.test('run full without an evaluation dataset: process_data splits, a new version with its score', async (t) => {
    const r = await s.cliJson(['run', 'full', '--package', 'sc', '--dataset', 'd/all', '--env', 'save_training_data=true', '--env', 'save_test_data=true', '--wait']);
    t.equal(r.status, 'Successful', `succeeds (${r.failure_reason})`);
    t.equal(r.pipeline, 'FULL_TRAINING');
    t.same(r.phases.map((p: { name: string }) => p.name), ['process_data', 'train', 'evaluate', 'save'], 'four phases, in order');
    t.ok(r.phases.every((p: { started_at: number; ended_at: number }) => p.ended_at >= p.started_at && p.started_at > 0), 'each with its times');
    const train = await artifact(r.id, 'train.json');
    t.same(train.train_files, ['train.txt'], 'train() got the training folder process_data wrote');
    const ev = await artifact(r.id, 'evaluate.json');
    t.same(ev.eval_files, ['from_process_data.txt'], 'evaluate() got the test folder process_data wrote');
    t.strictSame(testFolderNames(ev), bothAre(ev.eval_dir), 'test_data_directory and evaluation_data_directory both name the folder evaluate() got');
    t.strictSame(ev.env, { artifacts_directory: 'artifacts', save_training_data: 'true', save_test_data: 'true' }, 'a full pipeline\'s env flags');
    t.ok(r.score === 0, `the score: the held-out rows are "no, no" → 0 (got ${r.score})`);
    t.equal(r.output_version, '1.1', 'the next minor version');
    const [made] = await s.query("SELECT object_key, sha256 FROM package_versions WHERE package = 'sc' AND run_id = $1", [r.id]);
    t.equal(r.output_object_key, `packages/sc/${made!.sha256}/package.zip`, 'run get says where its zip is: the registered copy');
    t.equal(made!.object_key, r.output_object_key, 'the one the version points at');
    const versions = await s.cliJson(['package', 'versions', 'sc']);
    const v = versions.find((x: { version: string }) => x.version === '1.1');
    t.ok(v?.has_score && v.score === 0, 'the version carries the score');
    const res = await results(r.id);
    t.equal(res.parameters.pipeline, 'FULL_TRAINING');
    t.strictSame(res.parameters.inputs, { package: 'sc', version: '1.0', train_data: 'datasets/d/all/', test_data: null, gpu: 'False' });
    t.strictSame(res.run_summary.outputs, {
      train_data: `runs/${r.id}/attempt-1/train_data/`, test_data: `runs/${r.id}/attempt-1/test_data/`,
      artifacts_data: `runs/${r.id}/attempt-1/artifacts/`, package: 'sc', version: '1.1', score: 0,
    }, 'outputs key by key; package is the name');
    t.same(await s.objects(`runs/${r.id}/attempt-1/train_data/`), [`runs/${r.id}/attempt-1/train_data/train.txt`], 'the training data saved is process_data\'s');
    const table = await s.cli(['package', 'versions', 'sc']);
    t.match(table.stdout, /SCORE/, 'package versions has a score column');
  });

  await t.test('run full with an evaluation dataset: evaluate() gets it, process_data cannot overwrite it', async (t) => {
    const r = await s.cliJson(['run', 'full', '--package', 'sc', '--version', '1.0', '--dataset', 'd/all', '--eval-dataset', 'd/holdout', '--wait']);
    t.equal(r.status, 'Successful', `succeeds (${r.failure_reason})`);
    t.equal(r.eval_dataset, 'd/holdout');
    const ev = await artifact(r.id, 'evaluate.json');
    t.same(ev.eval_files, ['h.txt'], 'evaluate() saw the evaluation dataset and nothing process_data wrote');
    t.strictSame(testFolderNames(ev), bothAre(ev.eval_dir), 'and both names of the test folder are that folder again, not process_data\'s scratch folder');
    t.strictSame(ev.env, { artifacts_directory: 'artifacts', save_training_data: 'false', save_test_data: 'false' }, 'a full pipeline\'s defaults');
    t.ok(r.score === 0.75, `scored on it (got ${r.score})`);
    t.strictSame((await results(r.id)).parameters.inputs, { package: 'sc', version: '1.0', train_data: 'datasets/d/all/', test_data: 'datasets/d/holdout/', gpu: 'False' },
      'inputs.test_data is the evaluation dataset');
  });

  await t.test('a package without process_data trains on its input', async (t) => {
    await push('plain', scorer({ processData: false }));
    const r = await s.cliJson(['run', 'full', '--package', 'plain', '--dataset', 'd/all', '--wait']);
    t.equal(r.status, 'Successful', `succeeds (${r.failure_reason})`);
    t.same(r.phases.map((p: { name: string }) => p.name), ['train', 'evaluate', 'save']);
    t.same((await artifact(r.id, 'train.json')).train_files, ['a.txt', 'b.txt'], 'train() got the input data');
    const ev = await artifact(r.id, 'evaluate.json');
    t.ok(ev.eval_is_dir, 'evaluate() got a test folder that exists');
    t.strictSame(ev.eval_files, [], 'and is empty');
    t.strictSame(testFolderNames(ev), bothAre(ev.eval_dir), 'both names of the test folder are that folder');
  });

  await t.test('a process_data that writes nothing into the test folder: evaluate() gets it empty', async (t) => {
    await push('trainonly', scorer({ processData: 'training only' }));
    const r = await s.cliJson(['run', 'full', '--package', 'trainonly', '--dataset', 'd/all', '--wait']);
    t.equal(r.status, 'Successful', `succeeds (${r.failure_reason})`);
    t.same(r.phases.map((p: { name: string }) => p.name), ['process_data', 'train', 'evaluate', 'save'], 'process_data ran');
    t.same((await artifact(r.id, 'train.json')).train_files, ['train.txt'], 'and wrote the training folder');
    const ev = await artifact(r.id, 'evaluate.json');
    t.ok(ev.eval_is_dir, 'evaluate() got a test folder that exists');
    t.strictSame(ev.eval_files, [], 'and is empty');
    t.strictSame(testFolderNames(ev), bothAre(ev.eval_dir), 'both names of the test folder are that folder');
    t.ok(r.score === 0, `the score of no rows (got ${r.score})`);
  });

  await t.test('lineage: recorded, the same for the same inputs, walked back, diffed', async (t) => {
    await push('lin', scorer({ processData: false }));
    const a = await s.cliJson(['run', 'train', '--package', 'lin', '--version', '1.0', '--dataset', 'd/all', '--env', 'LR=0.1', '--wait']);
    const b = await s.cliJson(['run', 'train', '--package', 'lin', '--version', '1.0', '--dataset', 'd/all', '--env', 'LR=0.1', '--secret', 'TOKEN=hidden-value-1234', '--wait']);
    t.equal(a.status, 'Successful');
    t.equal(b.status, 'Successful');
    const la = a.lineage;
    const versions = await s.cliJson(['package', 'versions', 'lin']);
    const sha = (v: string) => versions.find((x: { version: string }) => x.version === v)?.sha256;
    t.same(la.input, { package: 'lin', version: '1.0', sha256: sha('1.0') }, 'the input version and its sha256');
    t.same(la.output, { version: a.output_version, sha256: sha(a.output_version) }, 'the output version and its sha256');
    t.same(la.data.manifest.map((f: { path: string }) => f.path), ['a.txt', 'b.txt'], 'a manifest of every file made local');
    t.ok(la.data.manifest.every((f: { size: number; sha256: string }) => f.size > 0 && /^[0-9a-f]{64}$/.test(f.sha256)), 'each with its size and sha256');
    t.match(la.data.manifest_sha256, /^[0-9a-f]{64}$/);
    t.equal(b.lineage.data.manifest_sha256, la.data.manifest_sha256, 'two runs of one version on the same data: the same manifest hash');
    t.match(la.environment.python, /^3\.\d+/, 'the venv\'s Python version');
    t.same(la.environment.packages, [], 'and its packages (pip freeze): none, as the package has no requirements.txt');
    t.equal(la.agent.name, 'agent1', 'the agent');
    t.equal(la.env.LR, '0.1', 'the env');
    t.same(b.lineage.secrets, ['TOKEN'], 'secrets by name only');
    t.notMatch(JSON.stringify(b.lineage), 'hidden-value-1234', 'never a secret\'s value');
    t.same(JSON.parse(await s.objectText(`runs/${a.id}/attempt-1/_lineage.json`)), la, '_lineage.json beside _results.json is the same document');

    const same = await s.cliJson(['run', 'diff', a.id, b.id]);
    t.same(same.differences.map((d: { what: string }) => d.what), [], 'run diff of two runs with the same inputs: nothing differs');
    const c = await s.cliJson(['run', 'train', '--package', 'lin', '--version', '1.0', '--dataset', 'd/holdout', '--env', 'LR=0.5', '--env', 'EXTRA=1', '--wait']);
    const diff = await s.cliJson(['run', 'diff', a.id, c.id]);
    const what = diff.differences.map((d: { what: string }) => d.what);
    t.ok(what.includes('dataset') && what.includes('data (manifest sha256)') && what.includes('env'), `run diff names what differed: ${what.join(', ')}`);
    t.notOk(what.includes('code (input version sha256)'), 'and not what did not (the code)');
    const data = diff.differences.find((d: { what: string }) => d.what === 'data (manifest sha256)');
    t.same(data.detail, ['- a.txt', '- b.txt', '+ h.txt'], 'which files');
    t.same(diff.differences.find((d: { what: string }) => d.what === 'env').detail, ['+ EXTRA=1', '~ LR: 0.1 → 0.5'], 'which variables');
    const human = await s.cli(['run', 'diff', a.id, c.id]);
    t.match(human.stdout, /data \(manifest sha256\)/, 'for people too');

    // 1.0 (upload) → a's version → a full run on top of it.
    const d2 = await s.cliJson(['run', 'full', '--package', 'lin', '--version', a.output_version, '--dataset', 'd/all', '--eval-dataset', 'd/holdout', '--wait']);
    t.equal(d2.status, 'Successful');
    t.ok(d2.score === 0.75 && d2.lineage.score === d2.score, `a full run's lineage has its score (${d2.lineage.score}, run ${d2.score})`);
    t.strictSame(JSON.parse(await s.objectText(`runs/${d2.id}/attempt-1/_lineage.json`)).score, 0.75, 'in _lineage.json too, a number');
    t.equal(d2.lineage.eval_dataset, 'd/holdout', 'and its evaluation dataset');
    t.same(d2.lineage.eval_data.manifest.map((f: { path: string }) => f.path), ['h.txt'], 'with the manifest of the evaluation data made local');
    t.match(d2.lineage.eval_data.manifest_sha256, /^[0-9a-f]{64}$/);
    const chain = await s.cliJson(['package', 'lineage', 'lin', d2.output_version]);
    t.same(chain.steps.map((x: { version: string; source: string }) => [x.version, x.source]), [[d2.output_version, 'run'], [a.output_version, 'run'], ['1.0', 'upload']], 'package lineage walks back to the upload');
    t.same(chain.steps.map((x: { run_id: string }) => x.run_id), [d2.id, a.id, ''], 'run by run');
    t.equal(chain.steps[0].pipeline, 'FULL_TRAINING');
    t.equal(chain.steps[1].data_manifest_sha256, la.data.manifest_sha256, 'each with its data manifest');
    const text = await s.cli(['package', 'lineage', 'lin', d2.output_version]);
    t.match(text.stdout, /← uploaded/, 'for people too');
    const notThere = await s.cli(['package', 'lineage', 'lin', '9.9']);
    t.equal(notThere.code, 1);
    t.match(notThere.stderr, /package "lin" has no version 9\.9/);
  });

  await t.test('what goes wrong says why', async (t) => {
    await push('words', scorer({ evaluate: 'return "high"' }));
    const words = await s.cliJson(['run', 'evaluate', '--package', 'words', '--version', '1.0', '--dataset', 'd/holdout']);
    t.equal((await finish(words.id)).failure_reason, 'evaluate() returned \'high\' (a str), not a number', 'a non-numeric score');
    await push('yes', scorer({ evaluate: 'return True' }));
    const yes = await finish((await s.cliJson(['run', 'full', '--package', 'yes', '--dataset', 'd/all'])).id);
    t.equal(yes.status, 'Failed');
    t.equal(yes.failure_reason, 'evaluate() returned True (a bool), not a number', 'True: a bool is not a score, and the reason says what came back');
    t.same(await s.objects(`runs/${yes.id}/attempt-1/package.zip`), [], 'and no version is made');
    await push('nan', scorer({ evaluate: 'return float("nan")' }));
    const nan = await s.cliJson(['run', 'full', '--package', 'nan', '--dataset', 'd/all']);
    t.match((await finish(nan.id)).failure_reason, /evaluate\(\) returned nan, not a finite number/, 'NaN');
    t.same(await s.objects(`runs/${nan.id}/attempt-1/package.zip`), [], 'and no version is made');
    await push('raises', scorer({ evaluate: 'raise ValueError("labels missing")' }));
    const raises = await s.cliJson(['run', 'evaluate', '--package', 'raises', '--version', '1.0', '--dataset', 'd/holdout']);
    const raised = await finish(raises.id);
    t.equal(raised.status, 'Failed');
    t.equal(raised.failure_reason, 'ValueError: labels missing', 'evaluate raising: its exception');
    await push('badproc', scorer().replace('r = rows(d)\n        cut', 'raise RuntimeError("cannot split")\n        cut'));
    const bad = await s.cliJson(['run', 'full', '--package', 'badproc', '--dataset', 'd/all']);
    const badEnd = await finish(bad.id);
    t.equal(badEnd.failure_reason, 'RuntimeError: cannot split', 'process_data raising: its exception');
    const got = await s.cliJson(['run', 'get', bad.id]);
    t.same(got.phases.map((p: { name: string; ended_at: number }) => [p.name, p.ended_at]), [['process_data', 0]], 'the phases say it died processing data');

    const missing = await s.cli(['run', 'full', '--package', 'sc', '--dataset', 'd/all', '--eval-dataset', 'nope']);
    t.equal(missing.code, 1);
    t.match(missing.stderr, /eval_dataset: dataset "nope" not found/, 'an evaluation dataset that does not exist: refused naming it');
    const missingSub = await s.cli(['run', 'full', '--package', 'sc', '--dataset', 'd/all', '--eval-dataset', 'd/nothing']);
    t.match(missingSub.stderr, /eval_dataset: dataset "d" has no subfolder "nothing"/, 'nor a subfolder that does not');
    await push('noeval', noEvaluate);
    for (const verb of ['evaluate', 'full']) {
      const r = await s.cli(['run', verb, '--package', 'noeval', '--version', '1.0', '--dataset', 'd/all']);
      t.equal(r.code, 1, `run ${verb} of a package without evaluate: refused`);
      t.match(r.stderr, /class Main has no evaluate\(self, evaluation_directory\)/, 'saying why');
    }
    const noVersion = await s.cli(['run', 'evaluate', '--package', 'sc', '--dataset', 'd/all']);
    t.equal(noVersion.code, 2, 'run evaluate without --version: a usage error');
    const trainWithEval = await s.cli(['run', 'train', '--package', 'sc', '--dataset', 'd/all', '--eval-dataset', 'd/holdout']);
    t.equal(trainWithEval.code, 2, 'run train --eval-dataset: a usage error');
    const reserved = await s.cli(['run', 'full', '--package', 'sc', '--dataset', 'd/all', '--env', 'test_data_directory=/etc']);
    t.match(reserved.stderr, /test_data_directory is set by the agent/, 'the data folders are the agent\'s to set');
    const runs = await s.query("SELECT count(*)::int AS n FROM runs WHERE package IN ('noeval') OR eval_dataset = 'nope'");
    t.equal(runs[0]!.n, 0, 'no refused submit left a run');
  });
});
