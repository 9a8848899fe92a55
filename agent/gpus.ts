// GPUs as nvidia-smi reports them; an agent without nvidia-smi simply has none.
import { execFile } from 'node:child_process';
import type { Gpu } from '../shared/proto.js';

export async function readGpus(nvidiaSmi: string): Promise<Gpu[]> {
  const out = await new Promise<string | null>((resolve, reject) => {
    execFile(nvidiaSmi, ['--query-gpu=index,uuid,name,memory.total', '--format=csv,noheader,nounits'], { timeout: 15_000 }, (err, stdout, stderr) => {
      if (err && (err as NodeJS.ErrnoException).code === 'ENOENT') resolve(null);
      else if (err) reject(new Error(`${nvidiaSmi} failed: ${stderr.trim() || err.message}`));
      else resolve(stdout);
    });
  });
  if (out === null) return [];
  return parseNvidiaSmi(out);
}

export function parseNvidiaSmi(csv: string): Gpu[] {
  return csv.split('\n').map((l) => l.trim()).filter(Boolean).map((line) => {
    const [index, uuid, name, memory] = line.split(',').map((s) => s.trim());
    const idx = Number(index);
    const mem = Number(memory);
    if (!Number.isInteger(idx) || !uuid || !name || !Number.isFinite(mem)) throw new Error(`cannot parse nvidia-smi line: "${line}"`);
    return { index: idx, uuid, name, memory_mb: Math.round(mem), run_id: '' };
  });
}
