import { outputNames } from '../../shared/storage.js';
import { wantsTrainingData } from '../../shared/run-env.js';

/** The _results.json document, in exactly AI Center's shape. Locations are key prefixes in the bucket. */
export function buildResults(input: {
  package: string; version: string; trainDataPrefix: string; gpus: number; env: Record<string, string>;
  outputPrefix: string; startAt: number; endAt: number; outputVersion: string; savedTrainingData: boolean;
}) {
  const round = (n: number) => Math.round(n * 1000) / 1000;
  return {
    parameters: {
      pipeline: 'TRAIN_ONLY',
      inputs: {
        package: input.package,
        version: input.version,
        train_data: input.trainDataPrefix,
        gpu: input.gpus > 0 ? 'True' : 'False',
      },
      env: input.env,
    },
    run_summary: {
      execution_time: round(Math.max(0, input.endAt - input.startAt)),
      start_at: Math.floor(input.startAt),
      end_at: Math.floor(input.endAt),
      outputs: {
        train_data: input.savedTrainingData && wantsTrainingData(input.env) ? input.outputPrefix + outputNames.trainData : null,
        artifacts_data: input.outputPrefix + outputNames.artifacts,
        package: input.outputPrefix + outputNames.package,
        version: input.outputVersion,
      },
    },
  };
}
