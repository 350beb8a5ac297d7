// Opening the files a cache manifest names, which is untrusted input: only regular files inside
// the cache (or, for a merged cache, inside the part folders it joins), sizes checked before any
// read, and checksums computed by streaming so a shard never has to fit in memory.
import { closeSync, constants, fstatSync, lstatSync, openSync, readSync, realpathSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { isAbsolute, join, resolve, sep } from 'node:path';
import { BLOCK_BYTES, CacheMismatchError, identityOf, readManifest, type CacheManifest, type ShardEntry } from './manifest.js';

/** A manifest entry naming a file a cache may not read (outside it, a link, a device, a FIFO…). */
export class UnsafeCachePathError extends CacheMismatchError {
  constructor(message: string) {
    super(message);
    this.name = 'UnsafeCachePathError';
  }
}

/** A folder the manifest may name files in, with the manifest that vouches for them. */
interface CacheRoot {
  real: string;
  /** For a part of a merge: its own manifest (whose entries must match the merged ones). */
  manifest: CacheManifest | null;
  name: string;
}

/** Where a cache's files may live: the cache folder and, for a merge, its part folders. */
export class CacheFileRoots {
  private constructor(
    readonly dir: string,
    /** Entries are relative to the cache folder's real path, as kd cache merge writes them. */
    private readonly base: string,
    private readonly roots: CacheRoot[],
  ) {}

  static of(dir: string, manifest: CacheManifest): CacheFileRoots {
    const base = realpathSync(dir);
    const roots: CacheRoot[] = [{ real: base, manifest: null, name: dir }];
    const where = join(dir, 'manifest.json');
    if (manifest.parts !== undefined && !(Array.isArray(manifest.parts) && manifest.parts.every((p) => typeof p === 'string'))) {
      throw new UnsafeCachePathError(`${where}: 'parts' must be a list of folder names. Rerun kd cache merge to rewrite the manifest`);
    }
    for (const part of manifest.parts ?? []) {
      const partDir = resolve(base, part);
      // A part must itself be a kd cache of the same data and teacher: that is what lets a merged
      // manifest name files outside its folder without naming arbitrary ones.
      let partManifest: CacheManifest;
      try {
        partManifest = readManifest(partDir);
      } catch (e) {
        throw new UnsafeCachePathError(
          `${where}: part ${JSON.stringify(part)} is not a kd cache (${(e as Error).message}). Rerun kd cache merge with the part folders`,
        );
      }
      const same = JSON.stringify(identityOf(partManifest)) === JSON.stringify(identityOf(manifest));
      if (!same)
        throw new UnsafeCachePathError(
          `${where}: part ${JSON.stringify(part)} holds a different cache (teacher, data or settings) than the merge. Rerun kd ` +
            `cache merge with the right parts`,
        );
      roots.push({ real: realpathSync(partDir), manifest: partManifest, name: part });
    }
    return new CacheFileRoots(dir, base, roots);
  }

  /**
   * Opens the file `rel` (a manifest entry, relative to the cache folder) for reading, or returns
   * null when it does not exist. Throws {@link UnsafeCachePathError} naming `field` unless it is a
   * regular file (not a link) inside the cache or a part; opening never blocks (a FIFO is refused).
   */
  open(rel: unknown, field: string, entry?: ShardEntry): { fd: number; path: string; size: number } | null {
    const where = `${join(this.dir, 'manifest.json')}: ${field}`;
    const refuse = (why: string) =>
      new UnsafeCachePathError(
        `${where} ${JSON.stringify(rel)} ${why}; a cache reads only regular files inside its folder (or, for a merge, its ` +
          `parts). Rebuild or re-merge the cache rather than editing its manifest`,
      );
    if (typeof rel !== 'string' || rel === '' || rel.includes('\0')) throw refuse('is not a file name');
    if (isAbsolute(rel)) throw refuse('is an absolute path');
    const lexical = resolve(this.base, rel);
    let real: string;
    try {
      real = realpathSync(lexical);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
    const root = this.roots.find((r) => real === r.real || real.startsWith(r.real + sep));
    if (!root) throw refuse(`resolves to ${real}, outside the cache`);
    if (lstatSync(lexical).isSymbolicLink()) throw refuse('is a symbolic link');
    if (root.manifest && entry) {
      // A merged entry must be the part's own entry for that shard: a part rebuilt after the merge
      // (or a path swapped to another of its files) is caught here, before any read.
      const own = root.manifest.shards.find((s) => s.index === entry.index);
      if (!own || resolve(this.base, root.name, own.path) !== lexical || own.sha256 !== entry.sha256 || own.bytes !== entry.bytes) {
        throw new CacheMismatchError(
          `${where} ${JSON.stringify(rel)} is not shard ${entry.index} of part ${root.name} as that part's manifest lists it ` +
            `(the part was rebuilt or changed after the merge). Rerun kd cache merge`,
        );
      }
    }
    const fd = openSync(real, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    const stat = fstatSync(fd);
    if (!stat.isFile()) {
      closeSync(fd);
      throw refuse('is not a regular file');
    }
    return { fd, path: real, size: stat.size };
  }
}

/** SHA-256 of the first `bytes` bytes of `fd` and of each 1 MiB block, in one streaming pass. */
export function hashOpenFile(fd: number, bytes: number): { sha256: string; blocks: string[] } {
  const whole = createHash('sha256');
  const blocks: string[] = [];
  const buf = Buffer.allocUnsafe(BLOCK_BYTES);
  for (let at = 0; at < bytes; at += BLOCK_BYTES) {
    const want = Math.min(BLOCK_BYTES, bytes - at);
    let got = 0;
    while (got < want) {
      const n = readSync(fd, buf, got, want - got, at + got);
      if (n === 0)
        throw new CacheMismatchError(
          `file ended at offset ${at + got} while hashing (expected ${bytes} bytes): it changed while being read`,
        );
      got += n;
    }
    const block = buf.subarray(0, want);
    whole.update(block);
    blocks.push(createHash('sha256').update(block).digest('hex'));
  }
  return { sha256: whole.digest('hex'), blocks };
}

/** Opens a regular file by path and hashes it by streaming (the build's resume check). */
export function hashFile(path: string): { sha256: string; bytes: number } {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile()) throw new UnsafeCachePathError(`${path} is not a regular file`);
    return { sha256: hashOpenFile(fd, stat.size).sha256, bytes: stat.size };
  } finally {
    closeSync(fd);
  }
}

/** The byte ranges of the blocks whose hash differs from the manifest's, for a checksum error. */
export function damagedBlocks(entry: ShardEntry, actual: string[]): string {
  const bad: string[] = [];
  for (let b = 0; b < Math.max(entry.blocks.length, actual.length); b++) {
    if (entry.blocks[b] !== actual[b]) bad.push(`offsets ${b * BLOCK_BYTES}–${Math.min(entry.bytes, (b + 1) * BLOCK_BYTES) - 1}`);
  }
  return bad.join(', ');
}
