// The three pipeline kinds, with AI Center's names (what _results.json says in parameters.pipeline), and
// what each one does with its inputs and outputs. One list, used by submit, the agent, the harness's
// arguments, _results.json and the CHECK in migrations/010_pipelines.sql.
import { invalid } from './errors.js';

export const Pipeline = {
  Train: 'TRAIN_ONLY',
  Evaluate: 'EVALUATE_ONLY',
  Full: 'FULL_TRAINING',
} as const;
export type Pipeline = (typeof Pipeline)[keyof typeof Pipeline];
export const pipelines: readonly Pipeline[] = Object.values(Pipeline);

/** The words the CLI uses (`trainyard run train|evaluate|full`). */
const shortNames: Record<string, Pipeline> = { train: Pipeline.Train, evaluate: Pipeline.Evaluate, full: Pipeline.Full };

/** The CLI's word for a pipeline (`run train|evaluate|full`); an unknown name is given back as it is. */
export function pipelineWord(p: string): string {
  return Object.entries(shortNames).find(([, v]) => v === p)?.[0] ?? p;
}

/** A pipeline named either way ('' is training, as before pipelines had kinds). */
export function parsePipeline(v: string | undefined): Pipeline {
  if (!v) return Pipeline.Train;
  const p = shortNames[v.toLowerCase()] ?? (pipelines as readonly string[]).find((x) => x === v.toUpperCase());
  if (!p) throw invalid(`pipeline "${v}" is not one of ${pipelines.join(', ')} (or train, evaluate, full)`);
  return p as Pipeline;
}

/** Whether the pipeline makes a new package version (and so uploads package.zip). */
export const makesVersion = (p: Pipeline) => p !== Pipeline.Evaluate;
/** Whether it calls Main.evaluate() and so needs one. */
export const evaluates = (p: Pipeline) => p !== Pipeline.Train;

/** The words `run get` shows for the harness's phases. */
export const phaseWords: Record<string, string> = {
  process_data: 'processing data', train: 'training', evaluate: 'evaluating', save: 'saving',
};
