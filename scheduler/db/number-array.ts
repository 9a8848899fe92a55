// A list of numbers as one Postgres array literal ('{1,2.5,NaN}'), for `unnest(${...}::float8[])` with
// hundreds of thousands of elements. node-postgres turns a JS array into a literal by quoting and escaping
// each element, which Postgres then parses as quoted text: measured 5-10x slower than this for 100,000-point
// metric batches (bench/metrics-ingest.ts). Numbers need no quoting: String(x) is the shortest text that
// reads back as the same double (float8in reads it exactly), and NaN, Infinity and -Infinity are spelt as
// float8 spells them.
export function numberArray(xs: readonly number[]): string {
  return `{${xs.join(',')}}`;
}
