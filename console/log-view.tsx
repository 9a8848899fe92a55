// A run's log, following while it runs: lines arrive in batches over one stream (GET /api/runs/ID/logs)
// and are kept in a plain array; only the rows in view (plus a margin) are in the DOM, each a fixed-height
// row placed by its index, so 100k lines cost what 60 do. Re-rendering is at most once per animation
// frame, however many batches came in it. While the view is at the bottom it stays there (follow).
import { useEffect, useRef, useState } from 'preact/hooks';
import { follow } from './api.js';
import type { LogLine } from './types.js';

const ROW_PX = 18;
const OVERSCAN = 20;

export function LogView({ runId }: { runId: string }) {
  const lines = useRef<LogLine[]>([]);
  const box = useRef<HTMLDivElement>(null);
  const stick = useRef(true);
  /** The scroll position the last scroll event (or the view's own move to the bottom) left. */
  const lastTop = useRef(0);
  const frame = useRef(0);
  const [, setVersion] = useState(0);
  const [scrollTop, setScrollTop] = useState(0);
  const [height, setHeight] = useState(480);
  const [state, setState] = useState<'following' | 'complete' | string>('following');

  const paint = () => {
    if (frame.current) return;
    frame.current = requestAnimationFrame(() => { frame.current = 0; setVersion((v) => v + 1); });
  };

  useEffect(() => {
    lines.current = [];
    stick.current = true;
    setState('following');
    const ac = new AbortController();
    const url = (after: string) => `/api/runs/${encodeURIComponent(runId)}/logs${after ? `?after=${encodeURIComponent(after)}` : ''}`;
    void follow(url, (e) => {
      if (e.event !== 'lines') return;
      const batch = (e.data as { lines: LogLine[] }).lines;
      for (const l of batch) lines.current.push(l);
      paint();
    }, ac.signal, (err) => setState(`reconnecting: ${err instanceof Error ? err.message : String(err)}`)).then(() => { if (!ac.signal.aborted) setState('complete'); });
    return () => { ac.abort(); cancelAnimationFrame(frame.current); frame.current = 0; };
  }, [runId]);

  // After each paint: keep the bottom in view while following.
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    if (el.clientHeight !== height) setHeight(el.clientHeight);
    if (stick.current && el.scrollTop !== el.scrollHeight - el.clientHeight) {
      el.scrollTop = el.scrollHeight;
      lastTop.current = el.scrollTop;
      setScrollTop(el.scrollTop);
    }
  });

  const onScroll = () => {
    const el = box.current!;
    // A scroll event also comes after the view's own move to the bottom, and by then more lines may have
    // made the log longer, so "not at the bottom" alone does not mean the reader left it: only a move up
    // stops following; reaching the bottom resumes it.
    if (el.scrollTop + el.clientHeight >= el.scrollHeight - ROW_PX) stick.current = true;
    else if (el.scrollTop < lastTop.current) stick.current = false;
    lastTop.current = el.scrollTop;
    setScrollTop(el.scrollTop);
  };

  const all = lines.current;
  const first = Math.max(0, Math.floor(scrollTop / ROW_PX) - OVERSCAN);
  const last = Math.min(all.length, Math.ceil((scrollTop + height) / ROW_PX) + OVERSCAN);
  const rows = [];
  for (let i = first; i < last; i++) {
    const [attempt, seq, stream, text] = all[i]!;
    rows.push(
      <div key={i} class={`log-line log-${stream}`} style={{ top: `${i * ROW_PX}px` }} data-seq={`${attempt}:${seq}`}>
        <span class="log-n">{seq}</span>{text}
      </div>,
    );
  }
  return (
    <div class="log-wrap">
      <div class="log-bar">
        <span data-testid="log-count">{all.length} lines</span>
        <span data-testid="log-state">{state}</span>
        <button type="button" onClick={() => { stick.current = true; paint(); }}>Follow</button>
      </div>
      <div class="log" ref={box} onScroll={onScroll} data-testid="log">
        <div class="log-space" style={{ height: `${all.length * ROW_PX}px` }}>{rows}</div>
      </div>
    </div>
  );
}
