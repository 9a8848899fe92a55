// PushPackage: the streamed zip is buffered to a temporary file (a zip is read from its end, so it must be
// whole before it can be checked), bounded by the configured size, then checked and registered by push.ts.
// The temporary folder is removed whatever happens.
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { once } from 'node:events';
import os from 'node:os';
import path from 'node:path';
import type { SchedulerContext } from '../context.js';
import type { PackageVersion, PushPackageChunk__Output } from '../../shared/proto.js';
import { ErrorCodes, TrainyardError, invalid, invalidPackage } from '../../shared/errors.js';
import { EventKind } from '../../shared/event-kinds.js';
import { recordEvents } from '../events/record.js';
import { pushProject, registerUploadedPackage } from './push.js';
import type { Principal } from '../auth/principal.js';
import { QuotaExceeded, checkStorage } from '../storage/quota.js';

/**
 * A push the caller was allowed to make (its project is known) but that was refused for what it held
 * (bad zip, no train.py, too large, over the project's storage quota, ...) is logged as package.refused
 * with the reason. Refusals of the
 * caller itself (no permission) are not: they would let any token write into another project's log.
 */
export async function receivePackage(ctx: SchedulerContext, chunks: AsyncIterable<PushPackageChunk__Output>, caller: Principal): Promise<PackageVersion> {
  const target: { name: string; project: string } = { name: '', project: '' };
  try {
    return await receive(ctx, chunks, caller, target);
  } catch (err) {
    const refusal = err instanceof QuotaExceeded || (err instanceof TrainyardError && (err.code === ErrorCodes.InvalidPackage || err.code === ErrorCodes.InvalidArgument));
    if (target.project && refusal) {
      await recordEvents(ctx.db, [{ kind: EventKind.PackageRefused, project: target.project, subject: target.name, detail: err.message, data: { code: err.code, reason: err.message } }])
        .catch((e: unknown) => ctx.log.warn({ err: String(e), package: target.name }, 'could not log a refused push'));
    }
    throw err;
  }
}

async function receive(ctx: SchedulerContext, chunks: AsyncIterable<PushPackageChunk__Output>, caller: Principal, target: { name: string; project: string }): Promise<PackageVersion> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'trainyard-push-'));
  try {
    const file = path.join(dir, 'package.zip');
    const out = createWriteStream(file);
    const closed = once(out, 'close');
    let header: { name: string; description: string; announced: number } | null = null;
    try {
      let bytes = 0;
      for await (const chunk of chunks) {
        if (chunk.part === 'header') {
          if (header) throw invalid('package push: the header must come once, first');
          header = { name: chunk.header!.name, description: chunk.header!.description, announced: Number(chunk.header!.size_bytes) };
          if (!Number.isSafeInteger(header.announced) || header.announced < 0) throw invalid(`package push: size_bytes ${String(chunk.header!.size_bytes)} is not a number of bytes`);
          target.project = await pushProject(ctx, caller, header.name); // refused before a byte is buffered
          target.name = header.name;
          // Over the project's storage quota: refused on the size announced, before a byte is buffered.
          if (header.announced > 0) await checkStorage(ctx.db, target.project, header.announced, `package "${header.name}"`);
        } else if (chunk.part === 'data') {
          if (!header) throw invalid('package push: the first message must be the header');
          bytes += chunk.data!.length;
          if (bytes > ctx.settings.maxPackageBytes) throw invalidPackage(`package zip is larger than ${ctx.settings.maxPackageBytes} bytes (the configured limit)`);
          if (header.announced > 0 && bytes > header.announced) throw invalid(`package push: more bytes than the ${header.announced} announced`);
          if (!out.write(chunk.data)) await once(out, 'drain');
        }
      }
      out.end();
    } finally {
      // On an error the file is abandoned; either way the descriptor is closed before the folder goes.
      if (!out.writableEnded) out.destroy();
      await closed.catch(() => {});
    }
    if (out.errored) throw out.errored;
    if (!header) throw invalid('package push: no header received');
    return await registerUploadedPackage(ctx, { name: header.name, description: header.description, file, caller });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
