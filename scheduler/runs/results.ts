// _results.json, in AI Center's shapes: the one module that writes all three (test/unit/results.test.ts
// checks each key by key). Locations are key prefixes in the bucket; outputs.package is the package's
// NAME, as AI Center's template has it (the new zip's location is in `package versions` and `run get`).
import { outputNames } from '../../shared/storage.js';
import { wantsTestData, wantsTrainingData } from '../../shared/run-env.js';
import { Pipeline } from '../../shared/pipelines.js';
import type { MemberRecord } from './members.js';

export interface ResultsInput {
  pipeline: Pipeline;
  package: string;
  /** The version the run used (trained or evaluated). */
  version: string;
  /** The input dataset's prefix: train_data for training and full pipelines, test_data for an evaluation. */
  dataPrefix: string;
  /** A full pipeline's evaluation dataset prefix, if it had one. */
  evalDataPrefix: string | null;
  gpus: number;
  env: Record<string, string>;
  outputPrefix: string;
  startAt: number;
  endAt: number;
  /** The new version (training and full pipelines). */
  outputVersion: string;
  savedTrainingData: boolean;
  savedTestData: boolean;
  score: number | null;
  /** A gang run's members (scheduler/runs/members.ts), recorded as `members`; null (left out) for an ordinary run. */
  members?: MemberRecord[] | null;
}

export function buildResults(i: ResultsInput) {
  const results = resultsShape(i);
  // Beside AI Center's keys, for gangs only: a reader of the single-agent shape sees nothing new.
  return i.members ? { ...results, members: i.members } : results;
}

function resultsShape(i: ResultsInput) {
  const round = (n: number) => Math.round(n * 1000) / 1000;
  const trainOut = i.savedTrainingData && wantsTrainingData(i.env) ? i.outputPrefix + outputNames.trainData : null;
  const testOut = i.savedTestData && wantsTestData(i.env) ? i.outputPrefix + outputNames.testData : null;
  const artifacts = i.outputPrefix + outputNames.artifacts;
  const gpu = i.gpus > 0 ? 'True' : 'False';
  const summary = (outputs: Record<string, unknown>) => ({
    execution_time: round(Math.max(0, i.endAt - i.startAt)),
    start_at: Math.floor(i.startAt),
    end_at: Math.floor(i.endAt),
    outputs,
  });
  switch (i.pipeline) {
    case Pipeline.Train:
      return {
        parameters: { pipeline: i.pipeline, inputs: { package: i.package, version: i.version, train_data: i.dataPrefix, gpu }, env: i.env },
        run_summary: summary({ train_data: trainOut, artifacts_data: artifacts, package: i.package, version: i.outputVersion }),
      };
    case Pipeline.Evaluate:
      return {
        parameters: { pipeline: i.pipeline, inputs: { package: i.package, version: i.version, test_data: i.dataPrefix, gpu }, env: i.env },
        run_summary: summary({ test_data: testOut, artifacts_data: artifacts, score: i.score }),
      };
    case Pipeline.Full:
      return {
        parameters: {
          pipeline: i.pipeline,
          inputs: { package: i.package, version: i.version, train_data: i.dataPrefix, test_data: i.evalDataPrefix, gpu },
          env: i.env,
        },
        run_summary: summary({
          train_data: trainOut, test_data: testOut, artifacts_data: artifacts, package: i.package, version: i.outputVersion, score: i.score,
        }),
      };
    default:
      return i.pipeline satisfies never;
  }
}
