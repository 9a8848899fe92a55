// What an attempt leaves in the bucket and where, under its own prefix (README, "MinIO layout"):
//   <prefix>artifacts/...   what the code wrote to $artifacts_directory
//   <prefix>train_data/...  a copy of the input data, when save_training_data=true
//   <prefix>package.zip     the new package version: the package folder after save(), never the venv
//                           (outside it), the data (outside it), the artifacts folder or __pycache__
// `_results.json` is the scheduler's to write, when the run commits.
import path from 'node:path';
import { outputNames } from '../shared/storage.js';
import { wantsTestData, wantsTrainingData } from '../shared/run-env.js';

export interface OutputPlan {
  /** Where the code writes its artifacts (absolute; may be inside or outside the package folder). */
  artifactsDir: string;
  /** The same, relative to the package folder ('/'-separated; '' is the folder itself); null: outside it. */
  artifactsRel: string | null;
  /** Whether the training data is uploaded too (training and full pipelines). */
  saveTrainingData: boolean;
  /** Whether the test data is uploaded too (evaluation and full pipelines). */
  saveTestData: boolean;
  keys: { artifacts: string; trainData: string; testData: string; package: string };
  /** For zipDir over the package folder: the '/'-separated relative paths left out of package.zip. */
  packageExcludes: (rel: string) => boolean;
}

export function planOutputs(pkgDir: string, outputPrefix: string, env: Record<string, string>): OutputPlan {
  const artifactsRel = path.normalize(env.artifacts_directory ?? 'artifacts');
  const artifactsDir = path.resolve(pkgDir, artifactsRel);
  const insidePkg = path.relative(pkgDir, artifactsDir);
  // Artifacts inside the package folder are uploaded on their own, not again inside the package; a folder
  // outside it (or the package folder itself) excludes nothing.
  const artifactsExcluded = !insidePkg.startsWith('..') && insidePkg !== '' ? insidePkg.split(path.sep).join('/') : null;
  return {
    artifactsDir,
    artifactsRel: insidePkg.startsWith('..') || path.isAbsolute(insidePkg) ? null : insidePkg.split(path.sep).join('/'),
    saveTrainingData: wantsTrainingData(env),
    saveTestData: wantsTestData(env),
    keys: {
      artifacts: outputPrefix + outputNames.artifacts,
      trainData: outputPrefix + outputNames.trainData,
      testData: outputPrefix + outputNames.testData,
      package: outputPrefix + outputNames.package,
    },
    packageExcludes: (rel) => rel === '__pycache__' || rel.endsWith('/__pycache__') || rel === artifactsExcluded,
  };
}
