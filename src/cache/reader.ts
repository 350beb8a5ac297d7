// Reading a cache without loading it: positioned reads of rows and batches from the shard
// files, so a cache larger than memory trains fine. Also verification, info and merging.
import { OptionError } from '../errors.js';
import { closeSync, existsSync, fstatSync, openSync, readSync, statSync, readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { dirname, join, relative, resolve } from 'node:path';
import { loadSafetensors } from '../engine/safetensors.js';
import { writeFileAtomicSync } from '../util/fs.js';
import { argmaxRow } from '../util/stats.js';
import { decodeHeader, HALF_TABLE, halvesToFloats, HEADER_BYTES, type ShardLayout } from './format.js';
import { assertSameIdentity, BLOCK_BYTES, CacheMismatchError, identityOf, readManifest, type CacheManifest, type ShardEntry } from './manifest.js';

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
 * Random access to cached teacher outputs by row index.
 *
 * ```ts
 * const cache = CacheReader.open('cache/s140');
 * const { logits, embedding } = cache.read(Int32Array.of(5, 17, 3));
 * ```
 */
export class CacheReader {
  private readonly shards: OpenShard[] = [];
  readonly rows: number;
  readonly classes: number;
  readonly dim: number;
  private readonly starts: number[];

  private constructor(
    readonly dir: string,
    readonly manifest: CacheManifest,
  ) {
    if (manifest.part) {
      throw new CacheMismatchError(`${dir} is part ${manifest.part.k}/${manifest.part.n} of a sharded build; join the parts with kd cache merge before reading`);
    }
    let start = 0;
    for (const entry of [...manifest.shards].sort((a, b) => a.index - b.index)) {
      const path = resolve(dir, entry.path);
      if (!existsSync(path)) throw new CacheMismatchError(`${dir}: shard ${entry.path} is missing`);
      const fd = openSync(path, 'r');
      const size = fstatSync(fd).size;
      const head = Buffer.alloc(HEADER_BYTES);
      readSync(fd, head, 0, HEADER_BYTES, 0);
      const layout = decodeHeader(head, size, entry.path);
      if (layout.rows !== entry.rows) throw new CacheMismatchError(`${entry.path}: header says ${layout.rows} rows, the manifest ${entry.rows}`);
      this.shards.push({ entry, fd, layout, start });
      start += entry.rows;
    }
    this.rows = start;
    this.starts = this.shards.map((s) => s.start);
    this.classes = manifest.data.labels.length;
    this.dim = manifest.embedding.dim;
  }

  static open(dir: string, opts: { teacherFingerprint?: Record<string, string> } = {}): CacheReader {
    const manifest = readManifest(dir);
    if (opts.teacherFingerprint) {
      assertSameIdentity(
        { model: manifest.teacher.fingerprint.model, tokenizer: manifest.teacher.fingerprint.tokenizer, config: manifest.teacher.fingerprint.config },
        opts.teacherFingerprint,
        `the cache at ${dir}`,
        'Rebuild the cache with this teacher.',
      );
    }
    return new CacheReader(dir, manifest);
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

  /** Labels, logits and embeddings of `rows` (any order), by positioned reads. */
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
        textHashes.push(hashes.readBigUInt64LE(8 * r).toString(16).padStart(16, '0'));
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
    const { tensors } = loadSafetensors(join(this.dir, this.manifest.extras.path));
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

/** Checks every shard's size, checksum and header against the manifest; names what is wrong and where. */
export function verifyCache(dir: string): { ok: boolean; shards: number; rows: number; problems: VerifyProblem[] } {
  const manifest = readManifest(dir);
  const problems: VerifyProblem[] = [];
  let rows = 0;
  const extrasPath = join(dir, manifest.extras.path);
  if (!existsSync(extrasPath)) problems.push({ shard: manifest.extras.path, problem: 'missing' });
  else if (createHash('sha256').update(readFileSync(extrasPath)).digest('hex') !== manifest.extras.sha256) problems.push({ shard: manifest.extras.path, problem: 'checksum differs from the manifest' });
  for (const entry of manifest.shards) {
    const path = resolve(dir, entry.path);
    if (!existsSync(path)) {
      problems.push({ shard: entry.path, problem: 'missing' });
      continue;
    }
    const bytes = readFileSync(path);
    if (bytes.length !== entry.bytes) {
      problems.push({ shard: entry.path, problem: bytes.length < entry.bytes ? `truncated at offset ${bytes.length} (expected ${entry.bytes} bytes)` : `has ${bytes.length - entry.bytes} extra bytes after offset ${entry.bytes}` });
      continue;
    }
    if (createHash('sha256').update(bytes).digest('hex') !== entry.sha256) {
      const bad: string[] = [];
      for (let b = 0; b < entry.blocks.length; b++) {
        const start = b * BLOCK_BYTES;
        if (createHash('sha256').update(bytes.subarray(start, start + BLOCK_BYTES)).digest('hex') !== entry.blocks[b]) bad.push(`offsets ${start}–${Math.min(bytes.length, start + BLOCK_BYTES) - 1}`);
      }
      problems.push({ shard: entry.path, problem: `altered: checksum differs; damaged block(s) at ${bad.join(', ')}` });
      continue;
    }
    try {
      const layout = decodeHeader(bytes.subarray(0, HEADER_BYTES), bytes.length, entry.path);
      if (layout.rows !== entry.rows) problems.push({ shard: entry.path, problem: `header says ${layout.rows} rows, the manifest ${entry.rows}` });
      rows += layout.rows;
    } catch (e) {
      problems.push({ shard: entry.path, problem: (e as Error).message });
    }
  }
  const expected = manifest.part ? manifest.shards.reduce((s, e) => s + e.rows, 0) : manifest.data.rows;
  if (problems.length === 0 && rows !== expected) problems.push({ shard: 'manifest.json', problem: `shards hold ${rows} rows, the manifest says ${expected}` });
  return { ok: problems.length === 0, shards: manifest.shards.length, rows, problems };
}

/** Joins the parts of a sharded build into one cache at `out` without copying shard data. */
export function mergeCaches(out: string, parts: string[]): CacheManifest {
  if (parts.length === 0) throw new OptionError('kd cache merge needs at least one part');
  const manifests = parts.map((p) => readManifest(p));
  const first = manifests[0]!;
  manifests.forEach((m, i) => assertSameIdentity(identityOf(m), identityOf(first), `part ${parts[i]}`, 'Merge only parts built by the same command with different --shard.'));
  const n = first.part?.n ?? 1;
  const byIndex = new Map<number, { entry: ShardEntry; dir: string }>();
  manifests.forEach((m, i) => {
    if (m.part && m.part.n !== n) throw new CacheMismatchError(`part ${parts[i]} is k/${m.part.n}, others are k/${n}`);
    for (const e of m.shards) {
      if (byIndex.has(e.index)) throw new CacheMismatchError(`shard ${e.index} appears in two parts (${byIndex.get(e.index)!.dir} and ${parts[i]})`);
      byIndex.set(e.index, { entry: e, dir: parts[i]! });
    }
  });
  const missing = Array.from({ length: first.shardCount }, (_, i) => i).filter((i) => !byIndex.has(i));
  if (missing.length) throw new CacheMismatchError(`the parts lack shard(s) ${missing.slice(0, 10).join(', ')}${missing.length > 10 ? ', …' : ''} of ${first.shardCount}: a part is missing or unfinished`);
  const shards = [...byIndex.values()]
    .sort((a, b) => a.entry.index - b.entry.index)
    .map(({ entry, dir }) => ({ ...entry, path: relative(resolve(out), resolve(dir, entry.path)) }));
  const extrasDir = parts[0]!;
  const merged: CacheManifest = { ...first, part: null, shards, extras: { ...first.extras, path: relative(resolve(out), resolve(extrasDir, first.extras.path)) } };
  writeFileAtomicSync(join(out, 'manifest.json'), `${JSON.stringify(merged, null, 2)}\n`);
  return merged;
}

/** Counts, dims, size on disk and the teacher's accuracy on the cached rows. */
export function cacheInfo(dir: string): Record<string, unknown> {
  const reader = CacheReader.open(dir);
  try {
    const m = reader.manifest;
    let right = 0;
    const C = reader.classes;
    const counts = new Array<number>(C).fill(0);
    for (const part of reader.sequential()) {
      part.labels.forEach((y, i) => {
        counts[y]! += 1;
        if (argmaxRow(part.logits, i * C, C) === y) right += 1;
      });
    }
    const bytes = m.shards.reduce((s, e) => s + e.bytes, 0) + statSync(join(dir, 'manifest.json')).size + statSync(resolve(dir, m.extras.path)).size;
    return {
      dir,
      rows: reader.rows,
      shards: m.shards.length,
      classes: C,
      labels: Object.fromEntries(m.data.labels.map((l, i) => [l, counts[i]])),
      embedding: m.embedding,
      sizeOnDiskBytes: bytes,
      teacherAccuracy: right / Math.max(1, reader.rows),
      teacher: m.teacher,
      maxLength: m.maxLength,
      data: { files: m.data.files.map((f) => f.path), rows: m.data.rows, duplicatesRemoved: m.data.duplicatesRemoved },
      manifestDir: dirname(join(dir, 'manifest.json')),
    };
  } finally {
    reader.close();
  }
}
