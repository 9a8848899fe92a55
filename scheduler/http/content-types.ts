// How the console serves a run's output file: a Content-Type by extension from a short list, and whether
// the browser may show it inline. Anything else is application/octet-stream and always an attachment, so
// an HTML or SVG file a run wrote can never run script in the console's origin.
const previewable: Readonly<Record<string, string>> = {
  png: 'image/png', jpg: 'image/jpeg', jpeg: 'image/jpeg', gif: 'image/gif', webp: 'image/webp',
  pdf: 'application/pdf',
  txt: 'text/plain; charset=utf-8', log: 'text/plain; charset=utf-8', md: 'text/plain; charset=utf-8',
  csv: 'text/csv; charset=utf-8', json: 'application/json; charset=utf-8',
};

export function outputContentType(path: string): { type: string; inline: boolean } {
  const ext = /\.([A-Za-z0-9]+)$/.exec(path)?.[1]?.toLowerCase() ?? '';
  const type = previewable[ext];
  return type ? { type, inline: true } : { type: 'application/octet-stream', inline: false };
}

/** `filename*=` (RFC 6266/5987) for the file's last segment: any name, safely quoted. */
export function attachmentDisposition(path: string): string {
  const name = path.slice(path.lastIndexOf('/') + 1);
  const ascii = name.replace(/[^\x20-\x7e]|["\\]/g, '_');
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(name)}`;
}
