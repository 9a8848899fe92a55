// Output for people: tables, colours and progress bars when stdout/stderr is a terminal, plain otherwise.
const tty = process.stdout.isTTY && !process.env.NO_COLOR;
const wrap = (code: number) => (s: string) => (tty ? `\x1b[${code}m${s}\x1b[0m` : s);
export const color = { red: wrap(31), green: wrap(32), yellow: wrap(33), blue: wrap(34), dim: wrap(2), bold: wrap(1) };

export function statusColor(status: string): string {
  if (status === 'Successful') return color.green(status);
  if (status === 'Failed' || status === 'Killed') return color.red(status);
  if (status === 'Running' || status === 'Packaging') return color.blue(status);
  return color.yellow(status);
}

const visible = (s: string) => s.replace(/\x1b\[[0-9;]*m/g, '').length;

export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => visible(r[i] ?? ''))));
  const line = (cells: string[]) => cells.map((c, i) => c + ' '.repeat(Math.max(0, widths[i]! - visible(c)))).join('  ').trimEnd();
  return [color.bold(line(headers)), ...rows.map(line)].join('\n');
}

export function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

/** A progress bar on stderr, drawn only on a terminal and at most 10 times a second. */
export function progressBar(label: string, total: number): { update(done: number): void; done(): void } {
  const enabled = process.stderr.isTTY === true;
  // Labels are file names, some chosen by a run's code: never raw to a terminal.
  const shown = safeText(label);
  let last = 0;
  const draw = (done: number) => {
    const frac = total > 0 ? Math.min(1, done / total) : 1;
    const width = 30;
    const fill = Math.round(frac * width);
    process.stderr.write(`\r${shown} [${'#'.repeat(fill)}${'.'.repeat(width - fill)}] ${Math.round(frac * 100)}% ${bytes(done)}/${bytes(total)}`);
  };
  return {
    update(done) {
      if (!enabled) return;
      const now = Date.now();
      if (now - last < 100 && done < total) return;
      last = now;
      draw(done);
    },
    done() { if (enabled) { draw(total); process.stderr.write('\n'); } },
  };
}

/**
 * Text that came from elsewhere (log lines, reasons, names) made safe to print on a terminal: escape
 * sequences (OSC 52 can write the clipboard, others move the cursor or retitle the window) and other
 * control characters are shown as visible escapes instead of being interpreted. Tabs stay.
 */
export function safeText(s: string): string {
  // C0 controls but tab and newline, DEL, and the C1 range (0x9b is a one-byte CSI on some terminals).
  return s.replace(/[\x00-\x08\x0a-\x1f\x7f-\x9f]/g, (c) => (c === '\n' ? '\\n' : `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`));
}
