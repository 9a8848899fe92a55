// Turning a child's byte streams into log lines.
import { MAX_LOG_LINE_CHARS } from '../shared/log-lines.js';

/** One numbered line of an attempt's output, as shipped (a proto LogLine with the fields always set). */
export interface ShippedLine {
  seq: number;
  stream: 'stdout' | 'stderr' | 'system';
  text: string;
  at: string;
}

/** The longest line shipped as one record (the scheduler's cap too); longer ones are cut into several. */
export const MAX_LINE = MAX_LOG_LINE_CHARS;

/** Splits a byte stream into lines, decoding UTF-8 leniently (binary bytes become U+FFFD, not errors). */
export function lineSplitter(onLine: (text: string) => void): { write(chunk: Buffer): void; end(): void } {
  const decoder = new TextDecoder('utf-8', { fatal: false });
  let rest = '';
  return {
    write(chunk) {
      rest += decoder.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = rest.indexOf('\n')) >= 0) {
        onLine(rest.slice(0, nl).replace(/\r$/, ''));
        rest = rest.slice(nl + 1);
      }
      // A pathological line without newlines is cut so memory stays bounded.
      while (rest.length > MAX_LINE * 4) { onLine(rest.slice(0, MAX_LINE)); rest = rest.slice(MAX_LINE); }
    },
    end() {
      rest += decoder.decode();
      if (rest.length) onLine(rest);
      rest = '';
    },
  };
}
