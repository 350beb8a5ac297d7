// File helpers: atomic writes (temp file + rename) so a crash never leaves a half-written output.
import { closeSync, fsyncSync, openSync, renameSync, writeSync, mkdirSync, rmSync } from 'node:fs';
import { open, rename, mkdir } from 'node:fs/promises';
import { dirname, join, basename } from 'node:path';

function tempPathFor(path: string): string {
  return join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${Date.now().toString(36)}`);
}

/** Writes `data` to `path` atomically: readers see the old file or the new one, never a part. */
export function writeFileAtomicSync(path: string, data: string | Uint8Array): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = tempPathFor(path);
  const fd = openSync(tmp, 'w');
  try {
    writeSync(fd, typeof data === 'string' ? Buffer.from(data, 'utf8') : data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}

/**
 * A streaming writer whose output appears at `path` only after `commit()`; until then it
 * lives in a temporary file beside it, removed by `abort()`.
 */
export class AtomicFileWriter {
  private constructor(
    readonly path: string,
    private readonly tmp: string,
    private readonly handle: import('node:fs/promises').FileHandle,
  ) {}

  private pending: Buffer[] = [];
  private pendingBytes = 0;
  bytesWritten = 0;

  static async create(path: string): Promise<AtomicFileWriter> {
    await mkdir(dirname(path), { recursive: true });
    const tmp = tempPathFor(path);
    const handle = await open(tmp, 'w');
    return new AtomicFileWriter(path, tmp, handle);
  }

  /** Buffers and writes in large blocks; await it to apply back-pressure. */
  async write(data: string | Uint8Array): Promise<void> {
    const buf = typeof data === 'string' ? Buffer.from(data, 'utf8') : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    this.pending.push(buf);
    this.pendingBytes += buf.length;
    this.bytesWritten += buf.length;
    if (this.pendingBytes >= 1 << 20) await this.flush();
  }

  private async flush(): Promise<void> {
    if (this.pendingBytes === 0) return;
    const block = Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    await this.handle.write(block);
  }

  async commit(): Promise<void> {
    await this.flush();
    await this.handle.sync();
    await this.handle.close();
    await rename(this.tmp, this.path);
  }

  async abort(): Promise<void> {
    await this.handle.close().catch(() => undefined);
    rmSync(this.tmp, { force: true });
  }
}
