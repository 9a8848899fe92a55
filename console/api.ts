// Talking to the scheduler's /api/: every request carries the token as `authorization: Bearer …` (never in
// a URL or a cookie). The token lives in sessionStorage: it is gone when the tab closes.
const TOKEN_KEY = 'trainyard.token';

export const token = {
  get: (): string => sessionStorage.getItem(TOKEN_KEY) ?? '',
  set: (t: string): void => sessionStorage.setItem(TOKEN_KEY, t),
  clear: (): void => sessionStorage.removeItem(TOKEN_KEY),
};

export class ApiError extends Error {
  constructor(readonly status: number, message: string, readonly code = '') { super(message); }
}

const headers = (): HeadersInit => ({ authorization: `Bearer ${token.get()}` });

async function failure(res: Response): Promise<ApiError> {
  const body = await res.json().catch(() => ({})) as { error?: string; code?: string };
  return new ApiError(res.status, body.error ?? `${res.status} ${res.statusText}`, body.code ?? '');
}

export async function api<T>(path: string, init: { method?: string; signal?: AbortSignal } = {}): Promise<T> {
  const res = await fetch(path, { method: init.method ?? 'GET', headers: headers(), signal: init.signal ?? null });
  if (!res.ok) throw await failure(res);
  return await res.json() as T;
}

/** A file's bytes as a Blob of the given type (the browser never gets a storage URL or key). */
export async function fetchBlob(path: string, type: string, signal?: AbortSignal): Promise<Blob> {
  const res = await fetch(path, { headers: headers(), signal: signal ?? null });
  if (!res.ok) throw await failure(res);
  return new Blob([await res.arrayBuffer()], { type });
}

export interface StreamEvent { event: string; data: unknown; id: string }

/**
 * Reads a Server-Sent Events response with fetch (EventSource cannot send a header) and calls `on` for
 * each event, until the stream ends (`event: end`; resolves) or fails (rejects). `url(lastId)` makes the
 * URL, so a caller can resume after the last event id it saw when it reconnects.
 */
export async function readStream(url: string, on: (e: StreamEvent) => void, signal: AbortSignal): Promise<'end'> {
  const res = await fetch(url, { headers: { ...headers(), accept: 'text/event-stream' }, signal });
  if (!res.ok || !res.body) throw await failure(res);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new ApiError(0, 'the stream closed before its end');
    buf += value;
    let cut: number;
    while ((cut = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      const e: StreamEvent = { event: 'message', data: null, id: '' };
      let data = '';
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) continue;
        const i = line.indexOf(':');
        const field = i < 0 ? line : line.slice(0, i);
        const v = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
        if (field === 'event') e.event = v;
        else if (field === 'id') e.id = v;
        else if (field === 'data') data += v;
      }
      if (!data) continue;
      e.data = JSON.parse(data) as unknown;
      if (e.event === 'end') { await reader.cancel().catch(() => {}); return 'end'; }
      if (e.event === 'error') {
        const body = e.data as { error?: string; code?: string };
        // The token was revoked or expired while the stream was open: a 401, as the next request would get.
        throw new ApiError(body.code === 'UNAUTHENTICATED' ? 401 : 0, body.error ?? 'stream error', body.code ?? '');
      }
      on(e);
    }
  }
}

/** Follows a stream, reconnecting (after a pause) when it drops, until it ends or the signal fires. */
export async function follow(url: (lastId: string) => string, on: (e: StreamEvent) => void, signal: AbortSignal, onError: (err: unknown) => void): Promise<void> {
  let lastId = '';
  while (!signal.aborted) {
    try {
      await readStream(url(lastId), (e) => { if (e.id) lastId = e.id; on(e); }, signal);
      return;
    } catch (err) {
      if (signal.aborted) return;
      onError(err);
      if (err instanceof ApiError && err.status >= 400 && err.status < 500) return;
      await new Promise((r) => setTimeout(r, 2000));
    }
  }
}
