// An exclusive lock on an output folder for the length of a command: a lock file created with
// O_EXCL holding the owner's pid, so two processes never write one cache (or run) at once.
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, statSync, writeSync, constants } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { UserError } from '../errors.js';

export const LOCK_FILE = '.kd-lock';

/** Another live process holds the folder. */
export class LockHeldError extends UserError {
  constructor(message: string) {
    super(message);
    this.name = 'LockHeldError';
  }
}

export interface FolderLock {
  /** The lock file. */
  readonly path: string;
  /** Removes the lock file (idempotent); also done when the process exits. */
  release(): void;
}

interface LockOwner {
  pid: number;
  host: string;
  command: string;
}

/** The lock's owner; null when unreadable (its owner died between creating and writing it); 'gone' when there is no lock. */
function ownerOf(path: string): LockOwner | null | 'gone' {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 'gone';
    throw e;
  }
  try {
    const o = JSON.parse(text) as Partial<LockOwner>;
    return typeof o.pid === 'number' && Number.isInteger(o.pid) && o.pid > 0
      ? { pid: o.pid, host: String(o.host ?? ''), command: String(o.command ?? '') }
      : null;
  } catch {
    return null;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: the pid exists but belongs to another user.
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Creates `path` with O_EXCL holding our pid; false if it already exists. */
function tryCreate(path: string, owner: LockOwner): boolean {
  let fd: number;
  try {
    fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o644);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  }
  try {
    writeSync(fd, `${JSON.stringify(owner)}\n`);
  } finally {
    closeSync(fd);
  }
  return true;
}

function mtimeMs(path: string): number {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return 0;
  }
}

/** Blocks the thread for `ms` (a lock wait is short and the callers are synchronous). */
function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * Takes the lock on folder `dir` (created if needed) for `what` (e.g. "kd cache build"), or throws
 * a {@link LockHeldError} naming the pid and the lock file. A lock left by a dead process on this
 * host is taken over, with a line to `log`.
 *
 * ```ts
 * const lock = acquireFolderLock(out, 'kd cache build', log);
 * try { ... } finally { lock.release(); }
 * ```
 */
export function acquireFolderLock(dir: string, what: string, log: (line: string) => void = () => undefined): FolderLock {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, LOCK_FILE);
  // Only the holder of this second file may remove a stale lock: without it, two processes that
  // both saw the same dead owner could each delete the lock and one would delete the other's.
  const takeover = `${path}.takeover`;
  const me: LockOwner = { pid: process.pid, host: hostname(), command: what };
  const giveUpAt = Date.now() + 5000;
  while (!tryCreate(path, me)) {
    const owner = ownerOf(path);
    if (owner === 'gone') continue; // released between our create and our read
    if (owner === null && Date.now() - mtimeMs(path) < 2000) {
      sleepSync(20); // just created, its pid not written yet
      continue;
    }
    if (owner && (owner.host !== me.host || isAlive(owner.pid))) {
      const where = owner.host === me.host ? '' : ` on ${owner.host}`;
      throw new LockHeldError(
        `${dir} is in use by ${owner.command || 'another kd process'} (pid ${owner.pid}${where}; lock file ${path}). Wait for ` +
          `it to finish or use another folder; if no such process is running, delete ${path}`,
      );
    }
    if (Date.now() > giveUpAt)
      throw new LockHeldError(
        `${dir}: could not take over the stale lock ${path} (${takeover} stays held); delete both files if no kd process is using ${dir}`,
      );
    if (!tryCreate(takeover, me)) {
      // Another process is taking over right now (milliseconds), or died doing so.
      const rival = ownerOf(takeover);
      if (rival !== 'gone' && (!rival || !isAlive(rival.pid))) rmSync(takeover, { force: true });
      else sleepSync(20);
      continue;
    }
    try {
      // Still the same dead owner (not a fresh lock a rival took meanwhile)?
      const now = ownerOf(path);
      if (now !== 'gone' && JSON.stringify(now) === JSON.stringify(owner)) {
        rmSync(path, { force: true });
        log(
          `${what}: took over the stale lock ${path}` +
            (owner
              ? ` of pid ${owner.pid} (${owner.command || 'kd'}), which is no longer running`
              : ' (unreadable: its owner died while writing it)'),
        );
      }
    } finally {
      rmSync(takeover, { force: true });
    }
  }
  let held = true;
  const release = (): void => {
    if (!held) return;
    held = false;
    process.removeListener('exit', release);
    // Only our own lock: never one a later owner took over after we were presumed dead.
    const owner = ownerOf(path);
    if (owner !== 'gone' && owner?.pid === process.pid) rmSync(path, { force: true });
  };
  process.on('exit', release);
  return { path, release };
}
