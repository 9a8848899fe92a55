// Small pieces every page uses: a sortable table, a loader hook, status badges, links, errors.
import { useEffect, useState, useCallback } from 'preact/hooks';
import type { ComponentChildren } from 'preact';
import { api, ApiError } from './api.js';

export interface Column<T> {
  label: string;
  /** What the column sorts by; none: not sortable. */
  sort?: (row: T) => string | number;
  cell: (row: T) => ComponentChildren;
}

export interface TableProps<T> { rows: T[]; columns: Column<T>[]; rowKey: (row: T) => string; initialSort?: { col: number; desc: boolean }; testid?: string; empty?: string }

export function Table<T>(p: TableProps<T>) {
  const [sort, setSort] = useState(p.initialSort ?? null);
  let rows = p.rows;
  const by = sort ? p.columns[sort.col]?.sort : undefined;
  if (sort && by) {
    rows = [...rows].sort((a, b) => {
      const x = by(a);
      const y = by(b);
      const c = typeof x === 'number' && typeof y === 'number' ? x - y : String(x).localeCompare(String(y), undefined, { numeric: true });
      return sort.desc ? -c : c;
    });
  }
  return (
    <table class="grid" data-testid={p.testid}>
      <thead><tr>{p.columns.map((c, i) => (
        <th key={c.label} class={c.sort ? 'sortable' : ''} aria-sort={sort?.col === i ? (sort.desc ? 'descending' : 'ascending') : undefined}
          onClick={c.sort ? () => setSort((s) => (s?.col === i ? { col: i, desc: !s.desc } : { col: i, desc: false })) : undefined}>
          {c.label}{sort?.col === i ? (sort.desc ? ' ▼' : ' ▲') : ''}
        </th>))}</tr></thead>
      <tbody>
        {rows.length === 0 ? <tr><td colSpan={p.columns.length} class="empty">{p.empty ?? 'Nothing here.'}</td></tr>
          : rows.map((r) => <tr key={p.rowKey(r)}>{p.columns.map((c) => <td key={c.label}>{c.cell(r)}</td>)}</tr>)}
      </tbody>
    </table>
  );
}

export interface Loaded<T> { data: T | null; error: ApiError | Error | null; reload: () => void }

/** Loads with `load` now (and every `everyMs`, for live lists), again when `key` changes. */
export function useLoad<T>(load: (signal: AbortSignal) => Promise<T>, key: string, everyMs = 0): Loaded<T> {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<Error | null>(null);
  const [n, setN] = useState(0);
  const reload = useCallback(() => setN((x) => x + 1), []);
  useEffect(() => {
    const ac = new AbortController();
    let timer: number | undefined;
    const once = () => {
      load(ac.signal).then((d) => { setData(d); setError(null); }, (e: unknown) => { if (!ac.signal.aborted) setError(e instanceof Error ? e : new Error(String(e))); })
        .finally(() => { if (everyMs && !ac.signal.aborted) timer = window.setTimeout(once, everyMs); });
    };
    once();
    return () => { ac.abort(); window.clearTimeout(timer); };
  }, [key, n]);
  return { data, error, reload };
}

export function ErrorBox({ error }: { error: Error | null }) {
  if (!error) return null;
  return <p class="error" role="alert" data-testid="error">{error.message}</p>;
}

export function Status({ status }: { status: string }) {
  return <span class={`status status-${status.split(' ')[0]!.toLowerCase()}`} data-testid="status">{status}</span>;
}

export function Link(p: { to: string; children: ComponentChildren; testid?: string }) {
  return <a href={`#${p.to}`} data-testid={p.testid}>{p.children}</a>;
}

export const runLink = (id: string) => <Link to={`/runs/${encodeURIComponent(id)}`}>{id}</Link>;

export function Page(p: { title: string; children: ComponentChildren; actions?: ComponentChildren }) {
  return <section class="page"><header class="page-head"><h1>{p.title}</h1>{p.actions}</header>{p.children}</section>;
}

/**
 * A page that is one list: GET `url` (again every `everyMs`, for live lists), `rows` picks the list from
 * the answer, shown as a sortable table; `children` (filters) go above it.
 */
export function ListPage<R, T>(p: { title: string; url: string; everyMs?: number; rows: (answer: R) => T[]; children?: ComponentChildren } & Omit<TableProps<T>, 'rows'>) {
  const list = useLoad((signal) => api<R>(p.url, { signal }), p.url, p.everyMs ?? 0);
  return (
    <Page title={p.title}>
      {p.children}
      <ErrorBox error={list.error} />
      {list.data ? <Table rows={p.rows(list.data)} columns={p.columns} rowKey={p.rowKey} initialSort={p.initialSort} testid={p.testid} empty={p.empty} /> : null}
    </Page>
  );
}
