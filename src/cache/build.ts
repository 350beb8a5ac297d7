// Building a cache: run the teacher once over the data, shard by shard. Each shard is written
// to a temporary file and renamed; a rerun after a crash skips finished shards (checked by
// checksum) and ends with the same bytes as an uninterrupted build.
import { OptionError } from '../errors.js';
import { createReadStream, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { defaultBatchTokens, type Teacher } from '../teacher/teacher.js';
import { loadTeacher, type TeacherQuantize } from '../quantize/teacher.js';
import { DatasetReader, type ReadOptions } from '../data/read.js';
import { LABEL_NAMES, type ClassCount } from '../data/labels.js';
import type { Example } from '../data/example.js';
import { saveSafetensors, type NamedTensor } from '../engine/safetensors.js';
import { writeFileAtomicSync } from '../util/fs.js';
import { acquireFolderLock } from '../util/lock.js';
import { hashFile } from './files.js';
import { matrix, principalComponents } from '../engine/linalg.js';
import { Progress } from '../util/progress.js';
import { toolVersion } from '../util/versions.js';
import { encodeShard, NO_LABEL, type EmbeddingDType, type ShardRows } from './format.js';
import {
  assertSameIdentity,
  BLOCK_BYTES,
  CACHE_FORMAT,
  CACHE_VERSION,
  identityOf,
  type CacheManifest,
  type EmbeddingSpec,
  type ShardEntry,
} from './manifest.js';
import type { SessionOptions } from '../engine/session.js';

export interface BuildOptions {
  teacher: string;
  data: string[];
  read: ReadOptions & { classes: ClassCount };
  /**
   * Transfer sets (`kd cache build --transfer`): files read after `data` with `unlabeled: true` (and `transferFormat`
   * when given), so plain text sits in the same cache as labelled files; their rows are cached like any other.
   */
  transfer?: string[];
  transferFormat?: ReadOptions['format'];
  out: string;
  dtype?: EmbeddingDType;
  /** 'full', 'none' or 'pca:K'. */
  embedding?: string;
  /** File whose embeddings the PCA is fitted on (default: the first data file). */
  pcaFit?: string;
  /** At most this many rows of the fit file are used for PCA. */
  pcaRows?: number;
  /** Build part k of n (0-based k), for distributed builds. */
  shard?: { k: number; n: number };
  shardRows?: number;
  batchTokens?: number;
  /** Where its ONNX Runtime sessions run (device, threads, CPU fallback). */
  session?: SessionOptions;
  maxLength?: number;
  /** 'int8': the teacher quantized at load and checked against fp32 (recorded in the manifest; default 'none'). */
  quantize?: TeacherQuantize;
  /** With quantize 'int8': the least argmax agreement with fp32 on the check texts (default 0.99). */
  minAgreement?: number;
  /** With quantize 'int8': recompute in fp32 the texts whose int8 margin is under this (default 'auto'; 0: none). */
  recheckMargin?: number | 'auto';
  log?: (line: string) => void;
  /** For crash tests: exit the process after writing this many shards. */
  stopAfterShards?: number;
}

export function parseEmbeddingMode(spec: string): { mode: EmbeddingSpec['mode']; k: number } {
  if (spec === 'full' || spec === 'none') return { mode: spec, k: 0 };
  const m = /^pca:(\d+)$/.exec(spec);
  if (m && Number(m[1]) > 0) return { mode: 'pca', k: Number(m[1]) };
  throw new OptionError(`'--embedding' must be full, none or pca:K (K > 0), got ${JSON.stringify(spec)}`);
}

export function parseShard(spec: string): { k: number; n: number } {
  const m = /^(\d+)\/(\d+)$/.exec(spec);
  const k = m ? Number(m[1]) : NaN;
  const n = m ? Number(m[2]) : NaN;
  if (!m || n < 1 || k >= n) throw new OptionError(`'--shard' must be k/n with 0 ≤ k < n (e.g. 0/4), got ${JSON.stringify(spec)}`);
  return { k, n };
}

async function fileSha256(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 22 })) h.update(chunk as Buffer);
  return h.digest('hex');
}

export function blockHashes(bytes: Uint8Array): string[] {
  const out: string[] = [];
  for (let s = 0; s < bytes.length; s += BLOCK_BYTES)
    out.push(
      createHash('sha256')
        .update(bytes.subarray(s, s + BLOCK_BYTES))
        .digest('hex'),
    );
  return out;
}

export const shardPath = (index: number) => join('shards', `shard-${String(index).padStart(5, '0')}.kdc`);

interface Progression {
  identity: Record<string, unknown>;
  done: Record<string, ShardEntry>;
}

/** Encodes and writes one shard atomically; returns its manifest entry. */
export function writeShard(out: string, index: number, rows: ShardRows, dtype: EmbeddingDType): ShardEntry {
  const rel = shardPath(index);
  const bytes = encodeShard(rows, dtype);
  writeFileAtomicSync(join(out, rel), bytes);
  return {
    index,
    path: rel,
    rows: rows.ids.length,
    bytes: bytes.length,
    sha256: createHash('sha256').update(bytes).digest('hex'),
    blocks: blockHashes(bytes),
  };
}

type Projection = { mean: Float64Array; components: Float64Array; k: number };
type Log = (line: string) => void;

/** The teacher, loaded under the folder lock (held for the whole build: two builds into one folder would interleave their shards). */
async function lockAndLoadTeacher(o: BuildOptions, log: Log): Promise<{ teacher: Teacher; lock: { release(): void } }> {
  const lock = acquireFolderLock(o.out, 'kd cache build', log);
  try {
    const teacher = await loadTeacher(o.teacher, {
      session: o.session,
      ...(o.maxLength ? { maxLength: o.maxLength } : {}),
      ...(o.quantize ? { quantize: o.quantize } : {}),
      ...(o.minAgreement !== undefined ? { minAgreement: o.minAgreement } : {}),
      ...(o.recheckMargin !== undefined ? { recheckMargin: o.recheckMargin } : {}),
    });
    return { teacher, lock };
  } catch (e) {
    lock.release();
    throw e;
  }
}

/** What the manifest says about the teacher, the embedding and the shard size (the cache's settings). */
function manifestBase(o: BuildOptions, teacher: Teacher, dtype: EmbeddingDType, shardRows: number) {
  const { mode, k: pcaK } = parseEmbeddingMode(o.embedding ?? 'full');
  if (mode === 'pca' && pcaK > teacher.head.cols && teacher.head.cols > 0)
    throw new OptionError(`'--embedding pca:${pcaK}': the teacher's embedding has only ${teacher.head.cols} dimensions`);
  const sourceDim = teacher.head.cols;
  const embedding: EmbeddingSpec = {
    mode,
    dim: mode === 'full' ? sourceDim : mode === 'pca' ? pcaK : 0,
    sourceDim,
    dtype,
    ...(mode === 'pca' ? { pcaFit: { file: o.pcaFit ?? o.data[0]!, rows: 0 } } : {}),
  };
  return {
    teacher: {
      fingerprint: teacher.fingerprint(),
      labels: teacher.labels,
      modelType: teacher.config.modelType,
      classifier: { rows: teacher.head.rows, cols: teacher.head.cols, found: teacher.head.description },
      precision: teacher.precision,
      ...(teacher.precisionCheck ? { int8Check: teacher.precisionCheck } : {}),
      ...(teacher.precision === 'int8' ? { batchTokens: o.batchTokens ?? defaultBatchTokens(teacher.device) } : {}),
      ...(teacher.precisionRecipe ? { int8Recipe: teacher.precisionRecipe } : {}),
    },
    maxLength: teacher.tokenizer.maxLength,
    embedding,
    shardRows,
  };
}

/**
 * The shards already done (progress.json), after checking that the folder's manifest and
 * progress were built with the same teacher, data and settings; removes leftover temporary
 * files and writes the identity first, so a build that stops at any point leaves a folder that
 * refuses a different teacher, data or settings.
 */
function openProgression(out: string, identity: Record<string, unknown>): Progression {
  mkdirSync(join(out, 'shards'), { recursive: true });
  // Leftovers of a killed run: temporary files are never part of the cache.
  for (const dir of [out, join(out, 'shards')])
    for (const f of readdirSync(dir)) if (f.includes('.tmp-')) rmSync(join(dir, f), { force: true });
  const progressPath = join(out, 'progress.json');
  const manifestPath = join(out, 'manifest.json');
  const fix = `Use another --out, or delete ${out} to rebuild.`;
  if (existsSync(manifestPath)) {
    const existing = JSON.parse(readFileSync(manifestPath, 'utf8')) as CacheManifest;
    assertSameIdentity(identityOf(existing), identity, `the cache at ${out}`, fix);
  }
  let progression: Progression = { identity, done: {} };
  if (existsSync(progressPath)) {
    progression = JSON.parse(readFileSync(progressPath, 'utf8')) as Progression;
    assertSameIdentity(progression.identity, identity, `the unfinished cache at ${out}`, fix);
  }
  writeFileAtomicSync(progressPath, JSON.stringify(progression));
  return progression;
}

const EXTRAS_PATH = 'classifier.safetensors';

/** Writes classifier.safetensors (W, b and the PCA projection, once); returns the projection when the embedding is PCA. */
async function writeExtras(o: BuildOptions, teacher: Teacher, embedding: EmbeddingSpec, log: Log): Promise<Projection | null> {
  const extras = new Map<string, NamedTensor>();
  if (teacher.head.weight) {
    extras.set('classifier.weight', { dtype: 'float32', shape: [teacher.head.rows, teacher.head.cols], data: teacher.head.weight });
    extras.set('classifier.bias', { dtype: 'float32', shape: [teacher.head.rows], data: teacher.head.bias! });
  }
  let projection: Projection | null = null;
  if (embedding.mode === 'pca') {
    const pcaK = embedding.dim;
    const sourceDim = embedding.sourceDim;
    const fitFile = o.pcaFit ?? o.data[0]!;
    const fit = await fitProjection(teacher, fitFile, o.read, pcaK, o.pcaRows ?? 20000, o.batchTokens);
    embedding.pcaFit = { file: fitFile, rows: fit.rows };
    projection = { mean: fit.mean, components: fit.components, k: pcaK };
    extras.set('pca.mean', { dtype: 'float32', shape: [sourceDim], data: Float32Array.from(fit.mean) });
    extras.set('pca.components', { dtype: 'float32', shape: [pcaK, sourceDim], data: Float32Array.from(fit.componentsRowMajor) });
    extras.set('pca.variances', { dtype: 'float32', shape: [pcaK], data: Float32Array.from(fit.variances) });
    log(
      `PCA: ${pcaK} of ${sourceDim} dimensions fitted on ${fit.rows} rows of ${fitFile} (` +
        `${(100 * fit.explained).toFixed(1)}% of the variance)`,
    );
  }
  saveSafetensors(join(o.out, EXTRAS_PATH), extras, { format: 'kd-cache-extras' });
  return projection;
}

/** Runs the teacher on one shard's examples and writes it (unless a finished copy is on disk); returns whether it wrote. */
async function buildShard(
  o: BuildOptions,
  teacher: Teacher,
  progression: Progression,
  index: number,
  examples: Example[],
  embedding: EmbeddingSpec,
  projection: Projection | null,
): Promise<boolean> {
  const abs = join(o.out, shardPath(index));
  const recorded = progression.done[String(index)];
  if (recorded && existsSync(abs) && statSync(abs).size === recorded.bytes && hashFile(abs).sha256 === recorded.sha256) return false;
  const out = await teacher.predict(
    examples.map((e) => e.text),
    { ...(o.batchTokens ? { batchTokens: o.batchTokens } : {}) },
  );
  let emb: Float32Array | null = null;
  if (embedding.mode === 'full') emb = out.embedding;
  else if (projection) emb = project(out.embedding, out.dim, projection);
  progression.done[String(index)] = writeShard(
    o.out,
    index,
    {
      ids: examples.map((e) => e.id),
      textHashes: examples.map((e) => e.textHash),
      labels: Int32Array.from(examples, (e) => e.label ?? NO_LABEL),
      logits: out.logits,
      classes: out.classes,
      embedding: emb,
      dim: embedding.dim,
    },
    o.dtype ?? 'float16',
  );
  writeFileAtomicSync(join(o.out, 'progress.json'), JSON.stringify(progression));
  return true;
}

/**
 * One streaming pass: unique examples in read order, cut into shards of shardRows; this build
 * writes shard i when i mod n = k. Memory holds one shard of text at a time.
 */
async function buildShards(
  o: BuildOptions,
  teacher: Teacher,
  progression: Progression,
  embedding: EmbeddingSpec,
  projection: Projection | null,
  shardRows: number,
) {
  const isMine = (i: number) => !o.shard || i % o.shard.n === o.shard.k;
  const progress = new Progress('cache', { unit: 'rows' });
  const reader = new DatasetReader(o.data, { ...o.read, progress: false });
  const transferReader = o.transfer?.length
    ? new DatasetReader(o.transfer, {
        ...o.read,
        unlabeled: true,
        progress: false,
        ...(o.transferFormat ? { format: o.transferFormat } : {}),
      })
    : null;
  const seen = new Set<string>();
  let duplicates = 0;
  let rows = 0;
  let unlabeled = 0;
  let shardCount = 0;
  let written = 0;
  const mine: number[] = [];
  let chunk: Example[] = [];
  const flush = async (): Promise<void> => {
    const index = shardCount++;
    const current = chunk;
    chunk = [];
    if (!isMine(index)) return;
    mine.push(index);
    if (!(await buildShard(o, teacher, progression, index, current, embedding, projection))) return;
    written += 1;
    if (o.stopAfterShards !== undefined && written >= o.stopAfterShards) process.exit(75);
  };
  for await (const ex of transferReader ? chain(reader, transferReader) : reader) {
    if (seen.has(ex.id)) {
      duplicates += 1;
      continue;
    }
    seen.add(ex.id);
    chunk.push(ex);
    rows += 1;
    if (ex.label === null) unlabeled += 1;
    if (chunk.length === shardRows) {
      await flush();
      progress.update(rows);
    }
  }
  if (chunk.length > 0) await flush();
  progress.finish();
  const summary = reader.summary;
  if (transferReader) {
    summary.skipped.malformed += transferReader.summary.skipped.malformed;
    summary.skipped.neutral += transferReader.summary.skipped.neutral;
  }
  return { rows, unlabeled, duplicates, shardCount, mine, summary };
}

/** The rows of `a`, then those of `b`. */
async function* chain<T>(a: AsyncIterable<T>, b: AsyncIterable<T>): AsyncGenerator<T> {
  yield* a;
  yield* b;
}

/**
 * Builds (or resumes) a cache: runs the teacher once over the data files and writes its logits
 * and embeddings in shards, each written atomically; a rerun skips the shards already done.
 *
 * @param o - Teacher folder, data files, read options (`classes`), output folder, embedding mode
 *   ('full', 'none', 'pca:K'), dtype, shard size, device.
 * @returns The cache's manifest (also written to `<out>/manifest.json`).
 * @throws {OptionError} A malformed `embedding`, `shard` or `shardRows`, or PCA wider than the embedding.
 * @throws {CacheMismatchError} `out` holds a cache built with another teacher, data or settings.
 * @throws {LockHeldError} Another build is writing into `out`.
 * @throws {ConfigError} The teacher cannot be loaded (see {@link Teacher.load}), or the data and options do not fit.
 * @throws {DataError} A malformed row under `read.strict`.
 *
 * @example
 * ```ts
 * import { buildCache } from 'kd-toolkit';
 * const manifest = await buildCache({
 *   teacher: '../shared/fixtures/hf/tiny-random-bert',
 *   data: ['split/train.jsonl', 'split/dev.jsonl', 'split/test.jsonl'], // 600 rows
 *   read: { classes: 2 },
 *   out: 'cache',
 * });
 * console.log(manifest.shards.length, manifest.data.labels, manifest.embedding);
 * // 1 [ 'negative', 'positive' ] { mode: 'full', dim: 64, sourceDim: 64, dtype: 'float16' }
 * ```
 */
export async function buildCache(o: BuildOptions): Promise<CacheManifest> {
  const log = o.log ?? (() => undefined);
  const dtype = o.dtype ?? 'float16';
  parseEmbeddingMode(o.embedding ?? 'full');
  const shardRows = o.shardRows ?? 4096;
  if (!(shardRows >= 1)) throw new OptionError(`'--shard-rows' must be at least 1, got ${shardRows}`);
  const labels = LABEL_NAMES[o.read.classes];
  const { teacher, lock } = await lockAndLoadTeacher(o, log);
  log(`teacher ${o.teacher}: ${teacher.optimization}`);
  try {
    const inputs = [...o.data, ...(o.transfer ?? [])];
    const files = await Promise.all(inputs.map(async (path) => ({ path, sha256: await fileSha256(path), bytes: statSync(path).size })));
    const base = manifestBase(o, teacher, dtype, shardRows);
    // Which files are transfer sets, and their format, change how rows are read: part of the cache's identity.
    const transfer = o.transfer?.length ? { transfer: { files: o.transfer.length, format: o.transferFormat ?? null } } : {};
    const identity = identityOf({ ...base, data: { files, classes: o.read.classes, ...transfer } as CacheManifest['data'] });
    const progression = openProgression(o.out, identity);
    const projection = await writeExtras(o, teacher, base.embedding, log);
    const built = await buildShards(o, teacher, progression, base.embedding, projection, shardRows);
    if (teacher.precisionCheck?.recheckMargin)
      log(
        `int8: ${teacher.recomputedRows} text(s) this run with a margin under ${teacher.precisionCheck.recheckMargin.toPrecision(3)} ` +
          'recomputed in fp32',
      );
    const manifest: CacheManifest = {
      format: CACHE_FORMAT,
      version: CACHE_VERSION,
      tool: { name: 'kd-toolkit', version: toolVersion },
      ...base,
      data: {
        files,
        format: built.summary.format,
        classes: o.read.classes,
        labels: [...labels],
        rows: built.rows,
        labeled: built.rows - built.unlabeled,
        unlabeled: built.unlabeled,
        ...transfer,
        duplicatesRemoved: built.duplicates,
        skippedMalformed: built.summary.skipped.malformed,
        skippedNeutral: built.summary.skipped.neutral,
      },
      shardCount: built.shardCount,
      part: o.shard ?? null,
      shards: built.mine.map((i) => progression.done[String(i)]!),
      extras: { path: EXTRAS_PATH, ...hashFile(join(o.out, EXTRAS_PATH)) },
    };
    writeFileAtomicSync(join(o.out, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
    rmSync(join(o.out, 'progress.json'), { force: true });
    return manifest;
  } finally {
    await teacher.dispose();
    lock.release();
  }
}

function project(emb: Float32Array, dim: number, p: { mean: Float64Array; components: Float64Array; k: number }): Float32Array {
  const n = emb.length / dim;
  const out = new Float32Array(n * p.k);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < p.k; j++) {
      let s = 0;
      for (let d = 0; d < dim; d++) s += (emb[i * dim + d]! - p.mean[d]!) * p.components[d * p.k + j]!;
      out[i * p.k + j] = s;
    }
  }
  return out;
}

async function fitProjection(teacher: Teacher, file: string, read: ReadOptions, k: number, maxRows: number, batchTokens?: number) {
  const texts: string[] = [];
  for await (const ex of new DatasetReader([file], { ...read, progress: false })) {
    texts.push(ex.text);
    if (texts.length >= maxRows) break;
  }
  const out = await teacher.predict(texts, batchTokens ? { batchTokens } : {});
  const all = principalComponents(matrix(texts.length, out.dim, out.embedding), out.dim);
  const total = all.variances.reduce((a, b) => a + b, 0);
  const components = new Float64Array(out.dim * k);
  const rowMajor = new Float64Array(k * out.dim);
  for (let d = 0; d < out.dim; d++)
    for (let j = 0; j < k; j++) {
      const v = all.components.data[d * out.dim + j]!;
      components[d * k + j] = v;
      rowMajor[j * out.dim + d] = v;
    }
  const variances = all.variances.slice(0, k);
  return {
    rows: texts.length,
    mean: all.mean,
    components,
    componentsRowMajor: rowMajor,
    variances,
    explained: variances.reduce((a, b) => a + b, 0) / total,
  };
}
