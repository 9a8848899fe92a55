// A run's outputs as a tree (artifacts, the data copy, the package, _results.json, _lineage.json), each
// file with a download, and an inline preview of images, PDFs, text, CSV and JSON. Bytes come through the
// scheduler with the token in a header, into a Blob: the browser never gets a storage URL or key. Previews
// are made only for the types below (an SVG or HTML file is download-only, so it can never run script in
// the console's origin), and downloads are typed application/octet-stream for the same reason.
import { useEffect, useState } from 'preact/hooks';
import { api, fetchBlob } from './api.js';
import { bytes } from './format.js';
import type { OutputFile } from './types.js';
import { ErrorBox, useLoad } from './ui.js';

type Kind = 'image' | 'pdf' | 'text' | 'csv' | 'json';
const previewTypes: Record<string, [Kind, string]> = {
  png: ['image', 'image/png'], jpg: ['image', 'image/jpeg'], jpeg: ['image', 'image/jpeg'], gif: ['image', 'image/gif'], webp: ['image', 'image/webp'],
  pdf: ['pdf', 'application/pdf'],
  txt: ['text', 'text/plain'], log: ['text', 'text/plain'], md: ['text', 'text/plain'],
  csv: ['csv', 'text/plain'], json: ['json', 'text/plain'],
};
const TEXT_PREVIEW_CHARS = 256 * 1024;
const CSV_PREVIEW_ROWS = 200;

const previewOf = (path: string) => previewTypes[/\.([A-Za-z0-9]+)$/.exec(path)?.[1]?.toLowerCase() ?? ''];
const fileUrl = (runId: string, path: string, download = false) =>
  `/api/runs/${encodeURIComponent(runId)}/file?path=${encodeURIComponent(path)}${download ? '&download=1' : ''}`;

async function download(runId: string, path: string): Promise<void> {
  const blob = await fetchBlob(fileUrl(runId, path, true), 'application/octet-stream');
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = path.slice(path.lastIndexOf('/') + 1);
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/** A simple CSV split (quoted fields with "" escapes), enough to preview a table. */
function parseCsv(text: string, maxRows: number): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length && rows.length < maxRows; i++) {
    const ch = text[i]!;
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') { field += '"'; i++; } else if (ch === '"') quoted = false; else field += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') { row.push(field); field = ''; } else if (ch === '\n') { row.push(field.replace(/\r$/, '')); rows.push(row); row = []; field = ''; } else field += ch;
  }
  if ((field || row.length) && rows.length < maxRows) { row.push(field); rows.push(row); }
  return rows;
}

function Preview({ runId, path }: { runId: string; path: string }) {
  const [state, setState] = useState<{ url?: string; text?: string; error?: Error }>({});
  const p = previewOf(path);
  useEffect(() => {
    if (!p) return;
    const ac = new AbortController();
    let url = '';
    fetchBlob(fileUrl(runId, path), p[1], ac.signal).then(async (blob) => {
      if (p[0] === 'image' || p[0] === 'pdf') { url = URL.createObjectURL(blob); setState({ url }); return; }
      const text = (await blob.text()).slice(0, TEXT_PREVIEW_CHARS);
      if (p[0] === 'json') {
        try { setState({ text: JSON.stringify(JSON.parse(text), null, 2) }); } catch { setState({ text }); }
      } else setState({ text });
    }, (e: unknown) => { if (!ac.signal.aborted) setState({ error: e instanceof Error ? e : new Error(String(e)) }); });
    return () => { ac.abort(); if (url) URL.revokeObjectURL(url); };
  }, [runId, path]);
  if (!p) return <p class="muted">No preview for this type; download it.</p>;
  if (state.error) return <ErrorBox error={state.error} />;
  if (p[0] === 'image' && state.url) return <img class="preview-image" src={state.url} alt={path} data-testid="preview-image" />;
  if (p[0] === 'pdf' && state.url) return <embed class="preview-pdf" type="application/pdf" src={state.url} data-testid="preview-pdf" />;
  if (p[0] === 'csv' && state.text !== undefined) {
    const rows = parseCsv(state.text, CSV_PREVIEW_ROWS);
    return (
      <table class="grid csv" data-testid="preview-csv">
        <thead><tr>{(rows[0] ?? []).map((h, i) => <th key={i}>{h}</th>)}</tr></thead>
        <tbody>{rows.slice(1).map((r, i) => <tr key={i}>{r.map((c, j) => <td key={j}>{c}</td>)}</tr>)}</tbody>
      </table>
    );
  }
  if (state.text !== undefined) return <pre class="preview-text" data-testid="preview-text">{state.text}</pre>;
  return <p class="muted">Loading…</p>;
}

const sections: [string, string][] = [['artifacts/', 'Artifacts'], ['train_data/', 'Data copy (training)'], ['test_data/', 'Data copy (test)'], ['', 'Run outputs']];

export function Artifacts({ runId, version }: { runId: string; version: string }) {
  const files = useLoad((signal) => api<{ files: OutputFile[] }>(`/api/runs/${encodeURIComponent(runId)}/files`, { signal }), `${runId}|${version}`);
  const [open, setOpen] = useState<string | null>(null);
  const [error, setError] = useState<Error | null>(null);
  if (files.error) return <ErrorBox error={files.error} />;
  if (!files.data) return <p class="muted">Loading…</p>;
  if (files.data.files.length === 0) return <p class="muted">No outputs yet.</p>;
  const taken = new Set<string>();
  return (
    <div class="artifacts" data-testid="artifacts">
      <ErrorBox error={error} />
      {sections.map(([prefix, title]) => {
        const here = files.data!.files.filter((f) => !taken.has(f.path) && f.path.startsWith(prefix));
        for (const f of here) taken.add(f.path);
        if (here.length === 0) return null;
        return (
          <div key={title} class="tree-section">
            <h3>{title}</h3>
            <ul class="tree">
              {here.map((f) => {
                const rel = f.path.slice(prefix.length);
                const depth = rel.split('/').length - 1;
                return (
                  <li key={f.path} style={{ paddingLeft: `${depth * 16}px` }} data-path={f.path}>
                    <span class="file-name">{rel}</span> <span class="muted">{bytes(f.size_bytes)}</span>
                    {previewOf(f.path) ? <button type="button" onClick={() => setOpen((o) => (o === f.path ? null : f.path))}>{open === f.path ? 'Hide' : 'Preview'}</button> : null}
                    <button type="button" onClick={() => { setError(null); download(runId, f.path).catch((e: unknown) => setError(e instanceof Error ? e : new Error(String(e)))); }}>Download</button>
                    {open === f.path ? <div class="preview"><Preview runId={runId} path={f.path} /></div> : null}
                  </li>
                );
              })}
            </ul>
          </div>
        );
      })}
    </div>
  );
}
