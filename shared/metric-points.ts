// A run's metric points as the agent ships them (proto MetricRecord.points_json) and the scheduler reads
// them: a JSON array of [name, step or null, value, unix seconds]. A name starting with "=" is a summary
// (trainyard.summary); "sys/..." names are the agent's own samples. JSON has no NaN or infinities, so those
// values travel as the strings "NaN", "Infinity" and "-Infinity" (a diverging loss is worth seeing).
import { invalid } from './errors.js';

export interface MetricPoint { name: string; step: number | null; value: number; t: number; summary: boolean }

/** The longest metric name kept; a longer one is refused. */
export const MAX_METRIC_NAME = 200;
/** Points per record the agent sends (a record stays well under a log line's size). */
export const POINTS_PER_RECORD = 2000;

const SPECIAL: Record<string, number> = { NaN: NaN, Infinity: Infinity, '-Infinity': -Infinity };

/** The value as JSON carries it. */
export function encodeValue(v: number): number | string {
  return Number.isFinite(v) ? v : String(v);
}

function decodeValue(v: unknown): number | null {
  if (typeof v === 'number') return v;
  if (typeof v === 'string' && v in SPECIAL) return SPECIAL[v]!;
  return null;
}

/** Whether a name may name a series: ASCII letters, digits and _ . - / : @ (nothing a CSV or a terminal trips on). */
export function validMetricName(name: unknown): name is string {
  if (typeof name !== 'string') return false;
  if (goodNames.has(name)) return true;
  const ok = name.length > 0 && name.length <= MAX_METRIC_NAME && /^[\w.\-/:@]+$/u.test(name);
  // Checked once per name: a batch holds 100,000s of points under a handful of names.
  if (ok && goodNames.size < 10_000) goodNames.add(name);
  return ok;
}
const goodNames = new Set<string>();

/** One point as train.py (through the agent) gave it, checked; null when it is not a point. */
export function toMetricPoint(x: unknown): MetricPoint | null {
  if (!Array.isArray(x) || x.length !== 4) return null;
  const [rawName, step, rawValue, t] = x as unknown[];
  if (typeof rawName !== 'string') return null;
  const summary = rawName.startsWith('=');
  const name = summary ? rawName.slice(1) : rawName;
  if (!validMetricName(name)) return null;
  if (step !== null && !(Number.isSafeInteger(step) && (step as number) >= 0)) return null;
  const value = decodeValue(rawValue);
  if (value === null || typeof t !== 'number' || !Number.isFinite(t)) return null;
  return { name, step: summary ? null : step as number | null, value, t, summary };
}

/** A record's points; a record that is not a JSON array of points is refused whole (INVALID_ARGUMENT). */
export function parseMetricRecord(json: string): MetricPoint[] {
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch {
    throw invalid('a metric record is not JSON');
  }
  if (!Array.isArray(raw)) throw invalid('a metric record must be a JSON array of points');
  return raw.map((x, i) => {
    const p = toMetricPoint(x);
    if (!p) throw invalid(`metric point ${i} of a record is not [name, step or null, value, unix seconds]: ${JSON.stringify(x).slice(0, 200)}`);
    return p;
  });
}
