// The agent's credential: issued by the scheduler at the agent's first Register (made with a join token)
// and kept in its work dir (`<work dir>/identity`, mode 0600), the same across restarts; every AgentLink
// call presents it. The scheduler stores only its SHA-256, so only this file lets an agent act under its
// name. (An identity file from before credentials existed is that agent's credential: the scheduler holds
// its hash already.)
import { readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';

const fileOf = (workDir: string) => path.join(workDir, 'identity');

/** The kept credential, or null when this agent has none yet (it must join with a join token). */
export async function loadCredential(workDir: string): Promise<string | null> {
  try {
    const existing = (await readFile(fileOf(workDir), 'utf8')).trim();
    return existing || null;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    return null;
  }
}

/** Keeps a newly issued credential (written whole, then renamed: a crash leaves the old file or the new). */
export async function saveCredential(workDir: string, credential: string): Promise<void> {
  const tmp = `${fileOf(workDir)}.${process.pid}.tmp`;
  await writeFile(tmp, `${credential}\n`, { mode: 0o600 });
  await rename(tmp, fileOf(workDir));
}
