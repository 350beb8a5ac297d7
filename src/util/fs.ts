// File helpers: atomic writes (temp file + rename) so a crash never leaves a half-written output,
// and write failures that say which path could not be created or written, and why.
import { closeSync, fsyncSync, openSync, renameSync, writeSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { open, rename } from 'node:fs/promises';
import { dirname, join, basename } from 'node:path';
import { UserError } from '../errors.js';

/** An output that cannot be created or written: names the path and the reason. */
export class OutputPathError extends UserError {
  constructor(
    readonly path: string,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = 'OutputPathError';
  }
}

function isDirectory(path: string): boolean | null {
  try {
    return statSync(path).isDirectory();
  } catch {
    return null;
  }
}

/** Why `path` could not be made or written, from the system's error code and what exists around it. */
function reasonFor(path: string, e: NodeJS.ErrnoException): string {
  switch (e.code) {
    case 'EROFS':
      return 'the file system is read-only';
    case 'EACCES':
      return `permission denied (${dirname(path)} is not writable by this user)`;
    case 'EPERM':
      return `the operation is not permitted in ${dirname(path)}`;
    case 'ENOSPC':
      return 'no space left on the device';
    case 'EDQUOT':
      return 'the disk quota is exceeded';
    case 'EEXIST':
    case 'ENOTDIR':
      if (isDirectory(path) === false) return `${path} exists and is a file, not a folder`;
      if (isDirectory(dirname(path)) === false) return `${dirname(path)} is a file, not a folder`;
      break;
    case 'EISDIR':
      return `${path} is a folder, not a file`;
    case 'ENOENT':
      // mkdir reports ENOENT when the parent exists but takes no new entries (/proc, some
      // virtual or read-only mounts), which reads as "missing" though nothing is.
      if (isDirectory(dirname(path))) return `${dirname(path)} does not accept new files or folders (a virtual or read-only file system)`;
      break;
  }
  return e.message;
}

function outputError(verb: string, path: string, e: unknown): unknown {
  if (e instanceof UserError || !(e instanceof Error) || typeof (e as NodeJS.ErrnoException).code !== 'string') return e;
  return new OutputPathError(
    path,
    `cannot ${verb} ${path}: ${reasonFor(path, e as NodeJS.ErrnoException)}. Choose an output path in a writable folder`,
    { cause: e },
  );
}

/**
 * Creates `dir` and its missing parents, one level at a time: Node's recursive mkdir loops
 * forever under /proc and reports a parent's failure as ENOENT, so each level's own error
 * is caught and explained here.
 */
export function ensureFolder(dir: string): void {
  const missing: string[] = [];
  let at = dir;
  for (;;) {
    const isDir = isDirectory(at);
    if (isDir) break;
    if (isDir === false)
      throw new OutputPathError(
        dir,
        `cannot create folder ${dir}: ${at} exists and is a file, not a folder. Choose an output path in a writable folder`,
      );
    missing.push(at);
    const parent = dirname(at);
    if (parent === at) break;
    at = parent;
  }
  for (const folder of missing.reverse()) {
    try {
      mkdirSync(folder);
    } catch (e) {
      // Another process may have made it in between.
      if ((e as NodeJS.ErrnoException).code === 'EEXIST' && isDirectory(folder)) continue;
      throw outputError('create folder', folder, e);
    }
  }
}

function tempPathFor(path: string): string {
  return join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${Date.now().toString(36)}`);
}

/** Writes `data` to `path` atomically: readers see the old file or the new one, never a part. */
export function writeFileAtomicSync(path: string, data: string | Uint8Array): void {
  ensureFolder(dirname(path));
  const tmp = tempPathFor(path);
  let fd: number;
  try {
    fd = openSync(tmp, 'w');
  } catch (e) {
    throw outputError('write', path, e);
  }
  try {
    writeSync(fd, typeof data === 'string' ? Buffer.from(data, 'utf8') : data);
    fsyncSync(fd);
    closeSync(fd);
    renameSync(tmp, path);
  } catch (e) {
    try {
      closeSync(fd);
    } catch {
      // already closed
    }
    rmSync(tmp, { force: true });
    throw outputError('write', path, e);
  }
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
    ensureFolder(dirname(path));
    const tmp = tempPathFor(path);
    const handle = await open(tmp, 'w').catch((e: unknown) => {
      throw outputError('write', path, e);
    });
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
    await this.handle.write(block).catch((e: unknown) => {
      throw outputError('write', this.path, e);
    });
  }

  async commit(): Promise<void> {
    await this.flush();
    try {
      await this.handle.sync();
      await this.handle.close();
      await rename(this.tmp, this.path);
    } catch (e) {
      throw outputError('write', this.path, e);
    }
  }

  async abort(): Promise<void> {
    await this.handle.close().catch(() => undefined);
    rmSync(this.tmp, { force: true });
  }
}
