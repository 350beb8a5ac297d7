// Reading a cache without loading it: positioned reads of rows and batches from the shard
// files, so a cache larger than memory trains fine. Also verification, info and merging.
import { OptionError, UserError } from '../errors.js';
import { closeSync, existsSync, readSync, realpathSync, statSync } from 'node:fs';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { acquireFolderLock } from '../util/lock.js';
import type { Example } from '../data/example.js';
import { loadSafetensors } from '../engine/safetensors.js';
import { writeFileAtomicSync } from '../util/fs.js';
import { argmaxRow } from '../util/stats.js';
import { decodeHeader, HALF_TABLE, halvesToFloats, HEADER_BYTES, NO_LABEL, type ShardLayout } from './format.js';
import { CacheFileRoots, damagedBlocks, hashOpenFile } from './files.js';
import { assertSameIdentity, CacheMismatchError, identityOf, readManifest, type CacheManifest, type ShardEntry } from './manifest.js';

export interface CachedRows {
  labels: Int32Array;
  /** [n, classes] */
  logits: Float32Array;
  /** [n, dim], float32, or null when the cache has no embeddings. */
  embedding: Float32Array | null;
}

interface OpenShard {
  entry: ShardEntry;
  fd: number;
  layout: ShardLayout;
  /** Index of its first row in the cache. */
  start: number;
}

/**
 * Random access to cached teacher outputs by row index, by positioned reads of the shard files
 * (a cache larger than memory is fine). Open one with {@link CacheReader.open}; `close()` it.
 *
 * @example
 * ```ts
 * import { CacheReader } from 'kd-toolkit';
 * const cache = CacheReader.open('cache');
 * console.log(cache.rows, cache.classes, cache.dim, cache.keys().ids.slice(0, 2));
 * // 600 2 64 [ '1551113334', '1553980610' ]
 * const { labels, logits, embedding } = cache.read(Int32Array.of(0, 1, 2));
 * console.log(labels, logits.length, embedding?.length);
 * // Int32Array(3) [ 0, 0, 0 ] 6 192
 * cache.close();
 * ```
 */
export class CacheReader {
  private readonly shards: OpenShard[] = [];
  readonly rows: number;
  readonly classes: number;
  readonly dim: number;
  private readonly starts: number[];
  /** The checked location of the classifier file (manifest.extras.path). */
  readonly extrasPath: string;

  private constructor(
    readonly dir: string,
    readonly manifest: CacheManifest,
    verify: boolean,
  ) {
    if (manifest.part) {
      throw new CacheMismatchError(
        `${dir} is part ${manifest.part.k}/${manifest.part.n} of a sharded build; join the parts with kd cache merge before reading`,
      );
    }
    const roots = CacheFileRoots.of(dir, manifest);
    const rebuild =
      `The cache is damaged: rebuild it (delete ${dir} and rerun the kd cache build command that made it); kd ` +
      `cache verify ${dir} lists every damaged file`;
    let start = 0;
    try {
      for (const entry of [...manifest.shards].sort((a, b) => a.index - b.index)) {
        const file = roots.open(entry.path, `shard ${entry.index}`, entry);
        if (!file) throw new CacheMismatchError(`${dir}: shard ${entry.path} is missing. ${rebuild}`);
        // The checksum pass is one sequential read, cheap next to training, so damaged teacher
        // outputs are never trained on.
        const { problem, layout } = inspectShard(file, entry, verify);
        if (problem || !layout) {
          closeSync(file.fd);
          throw new CacheMismatchError(`${join(dir, entry.path)}: ${problem}. ${rebuild}`);
        }
        this.shards.push({ entry, fd: file.fd, layout, start });
        start += entry.rows;
      }
      const extras = roots.open(manifest.extras.path, 'extras');
      if (!extras) throw new CacheMismatchError(`${dir}: ${manifest.extras.path} (the teacher's classifier) is missing. ${rebuild}`);
      const problem = inspectExtras(extras, manifest.extras, verify);
      closeSync(extras.fd);
      if (problem) throw new CacheMismatchError(`${join(dir, manifest.extras.path)}: ${problem}. ${rebuild}`);
      this.extrasPath = extras.path;
    } catch (e) {
      this.close();
      throw e;
    }
    this.rows = start;
    this.starts = this.shards.map((s) => s.start);
    this.classes = manifest.data.labels.length;
    this.dim = manifest.embedding.dim;
  }

  /**
   * Opens a cache, checking every file the manifest names (inside the cache, regular, the right
   * size) and, unless `verify` is false, every checksum.
   *
   * @param dir - The cache folder (`kd cache build --out`).
   * @param opts - `teacherFingerprint`: refuse a cache of another teacher; `verify: false`: skip the checksum pass.
   * @returns The open reader.
   * @throws {CacheMismatchError} No manifest, a part of a sharded build, a missing or damaged file, another teacher.
   * @throws {UnsafeCachePathError} The manifest names a file outside the cache (or a link out of it).
   *
   * @example
   * ```ts
   * CacheReader.open('nope');
   * // CacheMismatchError: nope: no manifest.json: not a kd cache
   * ```
   */
  static open(dir: string, opts: { teacherFingerprint?: Record<string, string>; verify?: boolean } = {}): CacheReader {
    const manifest = readManifest(dir);
    if (opts.teacherFingerprint) {
      assertSameIdentity(
        {
          model: manifest.teacher.fingerprint.model,
          tokenizer: manifest.teacher.fingerprint.tokenizer,
          config: manifest.teacher.fingerprint.config,
        },
        opts.teacherFingerprint,
        `the cache at ${dir}`,
        'Rebuild the cache with this teacher.',
      );
    }
    return new CacheReader(dir, manifest, opts.verify ?? true);
  }

  /** Throws, naming both label sets, the cache's data files and the fix, unless `labelNames` are the cache's classes. */
  assertClasses(labelNames: readonly string[]): void {
    const cached = this.manifest.data.labels;
    if (JSON.stringify(cached) === JSON.stringify(labelNames)) return;
    throw new CacheMismatchError(
      `the cache ${this.dir} holds ${cached.length} classes (${cached.join(', ')}), built with --classes ${cached.length} from ` +
        `${this.builtFrom()}; this run reads ${labelNames.length} (${labelNames.join(', ')}). Pass --classes ${cached.length} ` +
        `(and the --label-map the cache was built with), or rebuild the cache with --classes ${labelNames.length}`,
    );
  }

  /**
   * Throws at the first example whose label (an index into `labelNames`) differs from the cached
   * row's, naming both labels, the file and line, how many rows differ, and the fix.
   */
  assertLabels(examples: readonly Example[], cachedLabels: Int32Array, labelNames: readonly string[]): void {
    let first = -1;
    let differ = 0;
    examples.forEach((ex, i) => {
      if (cachedLabels[i] === (ex.label ?? NO_LABEL)) return;
      differ += 1;
      if (first < 0) first = i;
    });
    if (first < 0) return;
    const ex = examples[first]!;
    const name = (names: readonly string[], k: number | null) =>
      k === null || k === NO_LABEL ? 'unlabelled' : `'${names[k] ?? '?'}' (class ${k})`;
    throw new CacheMismatchError(
      `${ex.file}:${ex.line}: id ${ex.id} is labelled ${name(labelNames, ex.label)} here but ` +
        `${name(this.manifest.data.labels, cachedLabels[first]!)} in the cache ${this.dir} (built from ${this.builtFrom()}); ` +
        `${differ} of ${examples.length} rows differ. Read the data as the cache build did (the same --label-map and ` +
        `--classes), or rebuild the cache over these files`,
    );
  }

  private builtFrom(): string {
    return this.manifest.data.files.map((f) => f.path).join(', ') || 'no files';
  }

  private shardOf(row: number): OpenShard {
    if (!(row >= 0 && row < this.rows)) throw new RangeError(`row ${row} is outside the cache (0..${this.rows - 1})`);
    let lo = 0;
    let hi = this.starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.starts[mid]! <= row) lo = mid;
      else hi = mid - 1;
    }
    return this.shards[lo]!;
  }

  /**
   * Labels, logits and embeddings of `rows` (any order), by positioned reads.
   *
   * @param rows - Row indices in [0, rows).
   * @returns `labels` [n], `logits` [n, classes] and `embedding` [n, dim] (null when the cache has none), as float32.
   * @throws {RangeError} A row outside the cache (a bug in the caller, not in the data).
   *
   * @example
   * ```ts
   * const { logits } = cache.read([0]);
   * // Float32Array(2) [ -0.0067, -0.1267 ]   (tiny-random-bert, rounded)
   * ```
   */
  read(rows: ArrayLike<number>): CachedRows {
    const n = rows.length;
    const C = this.classes;
    const D = this.dim;
    const labels = new Int32Array(n);
    const logits = new Float32Array(n * C);
    const embedding = D > 0 ? new Float32Array(n * D) : null;
    const half = this.manifest.embedding.dtype === 'float16';
    const scratch = Buffer.alloc(Math.max(C * 4, D * (half ? 2 : 4), 4));
    for (let i = 0; i < n; i++) {
      const s = this.shardOf(rows[i]!);
      const r = rows[i]! - s.start;
      const L = s.layout;
      readSync(s.fd, scratch, 0, 4, L.offsets.labels + 4 * r);
      labels[i] = scratch.readInt32LE(0);
      readSync(s.fd, scratch, 0, C * 4, L.offsets.logits + C * 4 * r);
      for (let c = 0; c < C; c++) logits[i * C + c] = scratch.readFloatLE(4 * c);
      if (embedding) {
        const width = half ? 2 : 4;
        readSync(s.fd, scratch, 0, D * width, L.offsets.embedding + D * width * r);
        if (half) for (let d = 0; d < D; d++) embedding[i * D + d] = HALF_TABLE[scratch.readUInt16LE(2 * d)]!;
        else for (let d = 0; d < D; d++) embedding[i * D + d] = scratch.readFloatLE(4 * d);
      }
    }
    return { labels, logits, embedding };
  }

  /** Every row's id and text hash, in row order (to join the cache to its dataset). */
  keys(): { ids: string[]; textHashes: string[] } {
    const ids: string[] = [];
    const textHashes: string[] = [];
    for (const s of this.shards) {
      const L = s.layout;
      const offsets = Buffer.alloc(L.lengths.idOffsets);
      readSync(s.fd, offsets, 0, offsets.length, L.offsets.idOffsets);
      const bytes = Buffer.alloc(L.lengths.idBytes);
      readSync(s.fd, bytes, 0, bytes.length, L.offsets.idBytes);
      const hashes = Buffer.alloc(L.lengths.textHashes);
      readSync(s.fd, hashes, 0, hashes.length, L.offsets.textHashes);
      for (let r = 0; r < L.rows; r++) {
        ids.push(bytes.toString('utf8', offsets.readUInt32LE(4 * r), offsets.readUInt32LE(4 * r + 4)));
        textHashes.push(
          hashes
            .readBigUInt64LE(8 * r)
            .toString(16)
            .padStart(16, '0'),
        );
      }
    }
    return { ids, textHashes };
  }

  /**
   * Reads each shard's sections whole, in order: the fast path for sequential scans. The
   * arrays are reused from one shard to the next (fresh memory costs more than the read):
   * copy what must outlive the iteration.
   */
  *sequential(opts: { decode?: boolean } = {}): Generator<CachedRows & { start: number; embeddingHalf: Uint16Array | null }> {
    const half = this.manifest.embedding.dtype === 'float16';
    const decode = opts.decode ?? true;
    const most = Math.max(0, ...this.shards.map((s) => s.layout.rows));
    const embeddingBuffer = new Float32Array(decode || !half ? most * this.dim : 0);
    const rawBuffer = half ? new Uint16Array(most * this.dim) : null;
    for (const s of this.shards) {
      const L = s.layout;
      const labels = new Int32Array(L.rows);
      readSync(s.fd, new Uint8Array(labels.buffer), 0, L.lengths.labels, L.offsets.labels);
      const logits = new Float32Array(L.rows * L.classes);
      readSync(s.fd, new Uint8Array(logits.buffer), 0, L.lengths.logits, L.offsets.logits);
      let embedding: Float32Array | null = null;
      let embeddingHalf: Uint16Array | null = null;
      if (L.dim > 0) {
        embedding = embeddingBuffer.subarray(0, L.rows * L.dim);
        if (rawBuffer) {
          embeddingHalf = rawBuffer.subarray(0, L.rows * L.dim);
          readSync(s.fd, new Uint8Array(embeddingHalf.buffer, 0, L.lengths.embedding), 0, L.lengths.embedding, L.offsets.embedding);
          if (decode) halvesToFloats(embeddingHalf, embedding);
          else embedding = null;
        } else {
          readSync(s.fd, new Uint8Array(embedding.buffer, 0, L.lengths.embedding), 0, L.lengths.embedding, L.offsets.embedding);
        }
      }
      yield { start: s.start, labels, logits, embedding, embeddingHalf };
    }
  }

  /** Raw embedding bytes of a shard (float16 or float32), for throughput measurements. */
  readShardEmbeddingBytes(k: number, into: Uint8Array): number {
    const s = this.shards[k]!;
    return readSync(s.fd, into, 0, Math.min(into.length, s.layout.lengths.embedding), s.layout.offsets.embedding);
  }

  get shardCount(): number {
    return this.shards.length;
  }

  /** W [C, D], b [C] of the teacher's classifier, and the PCA projection if any. */
  extras(): { weight: Float32Array | null; bias: Float32Array | null; pca: { mean: Float32Array; components: Float32Array } | null } {
    const { tensors } = loadSafetensors(this.extrasPath);
    const get = (name: string) => (tensors.get(name)?.data as Float32Array | undefined) ?? null;
    const mean = get('pca.mean');
    const components = get('pca.components');
    return { weight: get('classifier.weight'), bias: get('classifier.bias'), pca: mean && components ? { mean, components } : null };
  }

  close(): void {
    for (const s of this.shards) closeSync(s.fd);
    this.shards.length = 0;
  }
}

export interface VerifyProblem {
  shard: string;
  problem: string;
}

/**
 * Checks every shard's size, checksum and header against the manifest; names what is wrong and
 * where. A manifest naming a file outside the cache (or a link, device or FIFO) is refused with
 * an {@link UnsafeCachePathError} before anything is read.
 */
export function verifyCache(dir: string): { ok: boolean; shards: number; rows: number; problems: VerifyProblem[] } {
  const manifest = readManifest(dir);
  const roots = CacheFileRoots.of(dir, manifest);
  const problems: VerifyProblem[] = [];
  let rows = 0;
  const extras = roots.open(manifest.extras.path, 'extras');
  if (!extras) problems.push({ shard: manifest.extras.path, problem: 'missing' });
  else {
    const problem = inspectExtras(extras, manifest.extras, true);
    closeSync(extras.fd);
    if (problem) problems.push({ shard: manifest.extras.path, problem });
  }
  for (const entry of manifest.shards) {
    const file = roots.open(entry.path, `shard ${entry.index}`, entry);
    if (!file) {
      problems.push({ shard: entry.path, problem: 'missing' });
      continue;
    }
    try {
      const { problem, layout } = inspectShard(file, entry, true);
      if (problem) problems.push({ shard: entry.path, problem });
      else rows += layout!.rows;
    } finally {
      closeSync(file.fd);
    }
  }
  const expected = manifest.part ? manifest.shards.reduce((s, e) => s + e.rows, 0) : manifest.data.rows;
  if (problems.length === 0 && rows !== expected)
    problems.push({ shard: 'manifest.json', problem: `shards hold ${rows} rows, the manifest says ${expected}` });
  return { ok: problems.length === 0, shards: manifest.shards.length, rows, problems };
}

/**
 * What is wrong with an open shard file against its manifest entry (null: nothing) and its
 * layout. The size is checked first: a file larger than the manifest says is never read.
 */
function inspectShard(
  file: { fd: number; size: number },
  entry: ShardEntry,
  checksum: boolean,
): { problem: string | null; layout: ShardLayout | null } {
  if (file.size !== entry.bytes) return { problem: sizeProblem(file.size, entry.bytes), layout: null };
  if (checksum) {
    const actual = hashOpenFile(file.fd, entry.bytes);
    if (actual.sha256 !== entry.sha256)
      return { problem: `altered: checksum differs; damaged block(s) at ${damagedBlocks(entry, actual.blocks)}`, layout: null };
  }
  const head = Buffer.alloc(HEADER_BYTES);
  const got = readSync(file.fd, head, 0, HEADER_BYTES, 0);
  let layout: ShardLayout;
  try {
    layout = decodeHeader(head.subarray(0, got), file.size, entry.path);
  } catch (e) {
    if (e instanceof UserError) return { problem: e.message, layout: null };
    throw e;
  }
  if (layout.rows !== entry.rows) return { problem: `header says ${layout.rows} rows, the manifest ${entry.rows}`, layout };
  return { problem: null, layout };
}

/** What is wrong with the open classifier file against the manifest (null: nothing). */
function inspectExtras(file: { fd: number; size: number }, entry: CacheManifest['extras'], checksum: boolean): string | null {
  if (entry.bytes !== undefined && file.size !== entry.bytes) return sizeProblem(file.size, entry.bytes);
  if (checksum && hashOpenFile(file.fd, file.size).sha256 !== entry.sha256) return 'checksum differs from the manifest';
  return null;
}

function sizeProblem(actual: number, expected: number): string {
  return actual < expected
    ? `truncated at offset ${actual} (expected ${expected} bytes)`
    : `has ${actual - expected} extra bytes after offset ${expected}`;
}

/** `path` with every symbolic link resolved, also when its last components do not exist yet. */
function canonicalPath(path: string): string {
  try {
    return realpathSync(path);
  } catch (e) {
    const parent = dirname(resolve(path));
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT' || parent === resolve(path)) throw e;
    return join(canonicalPath(parent), basename(resolve(path)));
  }
}

/** Joins the parts of a sharded build into one cache at `out` without copying shard data. */
export function mergeCaches(out: string, parts: string[]): CacheManifest {
  if (parts.length === 0) throw new OptionError('kd cache merge needs at least one part');
  const manifests = parts.map((p) => readManifest(p));
  // Compared by real path, so another spelling or a symbolic link of a part is caught too.
  const outReal = canonicalPath(out);
  const partReals = parts.map((p) => realpathSync(p));
  const same = partReals.findIndex((p) => p === outReal);
  if (same >= 0)
    throw new OptionError(
      `'--out' ${out} is the part ${parts[same]} (both are ${outReal}): the merged manifest would replace that part's own. Give ` +
        `a new folder, e.g. --out ${join(dirname(outReal), 'merged')}`,
    );
  if (existsSync(join(out, 'shards')) || existsSync(join(out, 'progress.json')))
    throw new OptionError(
      `'--out' ${out} holds a cache of its own (a shards folder or an unfinished build): the merged manifest would orphan it. ` +
        `Give a new folder`,
    );
  const first = manifests[0]!;
  manifests.forEach((m, i) =>
    assertSameIdentity(
      identityOf(m),
      identityOf(first),
      `part ${parts[i]}`,
      'Merge only parts built by the same command with different --shard.',
    ),
  );
  const n = first.part?.n ?? 1;
  const byIndex = new Map<number, { entry: ShardEntry; part: number }>();
  manifests.forEach((m, i) => {
    if (m.part && m.part.n !== n) throw new CacheMismatchError(`part ${parts[i]} is k/${m.part.n}, others are k/${n}`);
    for (const e of m.shards) {
      if (byIndex.has(e.index))
        throw new CacheMismatchError(`shard ${e.index} appears in two parts (${parts[byIndex.get(e.index)!.part]} and ${parts[i]})`);
      byIndex.set(e.index, { entry: e, part: i });
    }
  });
  const missing = Array.from({ length: first.shardCount }, (_, i) => i).filter((i) => !byIndex.has(i));
  if (missing.length)
    throw new CacheMismatchError(
      `the parts lack shard(s) ${missing.slice(0, 10).join(', ')}${missing.length > 10 ? ', …' : ''} of ${first.shardCount}: a ` +
        `part is missing or unfinished`,
    );
  const lock = acquireFolderLock(out, 'kd cache merge');
  try {
    // Relative to the real paths, as the reader resolves them (see CacheFileRoots).
    const fromOut = (part: number, path: string) => relative(outReal, resolve(partReals[part]!, path));
    const shards = [...byIndex.values()]
      .sort((a, b) => a.entry.index - b.entry.index)
      .map(({ entry, part }) => ({ ...entry, path: fromOut(part, entry.path) }));
    const merged: CacheManifest = {
      ...first,
      part: null,
      shards,
      extras: { ...first.extras, path: fromOut(0, first.extras.path) },
      parts: partReals.map((p) => relative(outReal, p)),
    };
    writeFileAtomicSync(join(out, 'manifest.json'), `${JSON.stringify(merged, null, 2)}\n`);
    return merged;
  } finally {
    lock.release();
  }
}

/** Counts, dims, size on disk and the teacher's accuracy on the cached rows. */
export function cacheInfo(dir: string): Record<string, unknown> {
  // Paths and sizes are checked; the checksum pass is kd cache verify's job, not info's.
  const reader = CacheReader.open(dir, { verify: false });
  try {
    const m = reader.manifest;
    let right = 0;
    let unlabeled = 0;
    const C = reader.classes;
    const counts = new Array<number>(C).fill(0);
    for (const part of reader.sequential()) {
      part.labels.forEach((y, i) => {
        if (y === NO_LABEL) {
          unlabeled += 1;
          return;
        }
        counts[y]! += 1;
        if (argmaxRow(part.logits, i * C, C) === y) right += 1;
      });
    }
    const bytes = m.shards.reduce((s, e) => s + e.bytes, 0) + statSync(join(dir, 'manifest.json')).size + statSync(reader.extrasPath).size;
    return {
      dir,
      rows: reader.rows,
      shards: m.shards.length,
      classes: C,
      labels: Object.fromEntries(m.data.labels.map((l, i) => [l, counts[i]])),
      unlabeled,
      embedding: m.embedding,
      sizeOnDiskBytes: bytes,
      // On the labelled rows only (all of them, in a cache without unlabelled rows); null when there are none.
      teacherAccuracy: unlabeled > 0 && unlabeled === reader.rows ? null : right / Math.max(1, reader.rows - unlabeled),
      teacher: m.teacher,
      maxLength: m.maxLength,
      data: { files: m.data.files.map((f) => f.path), rows: m.data.rows, duplicatesRemoved: m.data.duplicatesRemoved },
      manifestDir: dirname(join(dir, 'manifest.json')),
    };
  } finally {
    reader.close();
  }
}
