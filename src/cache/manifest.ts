// The cache manifest: what was cached, from which teacher and data, and the checksum of
// every shard. Deterministic (no timestamps), so a resumed build ends byte-identical.
import { UserError } from '../errors.js';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { EmbeddingDType } from './format.js';
import type { PrecisionCheck } from '../teacher/teacher.js';

export const CACHE_FORMAT = 'kd-teacher-cache';
export const CACHE_VERSION = 1;
export const BLOCK_BYTES = 1 << 20;

export interface ShardEntry {
  index: number;
  /** Relative to the manifest's folder. */
  path: string;
  rows: number;
  bytes: number;
  sha256: string;
  /** SHA-256 of each 1 MiB block, to locate damage. */
  blocks: string[];
}

export interface EmbeddingSpec {
  mode: 'full' | 'pca' | 'none';
  /** Stored dimension (0 for none). */
  dim: number;
  /** The teacher's embedding dimension. */
  sourceDim: number;
  dtype: EmbeddingDType;
  /** PCA: file the projection was fitted on, rows used. */
  pcaFit?: { file: string; rows: number } | null;
}

export interface CacheManifest {
  format: typeof CACHE_FORMAT;
  version: number;
  tool: { name: string; version: string };
  teacher: {
    fingerprint: Record<string, string>;
    labels: string[];
    modelType: string;
    classifier: { rows: number; cols: number; found: string };
    /** What the logits and embeddings were computed in (absent in caches built before int8 teachers: fp32). */
    precision?: 'fp32' | 'int8';
    /** With precision int8: the int8 teacher against fp32 on the check texts. */
    int8Check?: PrecisionCheck;
    /**
     * With precision int8: how the graph was quantized and the fp32 recheck's setting (absent in caches built before
     * the recheck, whose embedding tables were int8 too; without "products unsaturated" in caches built before kd's
     * sessions carried session.x64quantprecision, whose products saturated on x86-64 CPUs without VNNI). Another
     * recipe is another cache: a build is not resumed over it.
     */
    int8Recipe?: string;
    /**
     * With precision int8: the token budget of the teacher's batches. Dynamic int8 sets each activation's scale over the
     * whole batch, so a text's logits depend on the texts batched with it: shards built with another budget would hold
     * other numbers for the same teacher.
     */
    batchTokens?: number;
  };
  data: {
    files: { path: string; sha256: string; bytes: number }[];
    format: string;
    classes: number;
    labels: string[];
    /** Unique rows cached; of them, with a label and without one (stored as NO_LABEL, see format.ts). */
    rows: number;
    /** Absent in caches built before unlabelled rows were read: then every row is labelled. */
    labeled?: number;
    unlabeled?: number;
    /** With `--transfer`: the last `files` of `files` are transfer sets, read unlabelled in `format` (null: as the rest). */
    transfer?: { files: number; format: string | null };
    duplicatesRemoved: number;
    skippedMalformed: number;
    skippedNeutral: number;
  };
  maxLength: number;
  embedding: EmbeddingSpec;
  shardRows: number;
  shardCount: number;
  /** This build's part of a sharded build, or null for a whole cache. */
  part: { k: number; n: number } | null;
  shards: ShardEntry[];
  /** W, b (and the PCA projection) in safetensors; `bytes` absent in caches built before it was recorded. */
  extras: { path: string; sha256: string; bytes?: number };
  /** A merge: the part folders (relative to this one) its shards live in; absent otherwise. */
  parts?: string[];
}

export class CacheMismatchError extends UserError {
  constructor(message: string) {
    super(message);
    this.name = 'CacheMismatchError';
  }
}

export function readManifest(dir: string): CacheManifest {
  const path = join(dir, 'manifest.json');
  if (!existsSync(path)) {
    const building = existsSync(join(dir, 'progress.json'));
    throw new CacheMismatchError(
      `${dir}: no manifest.json` +
        (building ? ': the build is not finished (rerun the same kd cache build command to resume it)' : ': not a kd cache'),
    );
  }
  let m: CacheManifest;
  try {
    m = JSON.parse(readFileSync(path, 'utf8')) as CacheManifest;
  } catch (e) {
    if (e instanceof SyntaxError) throw new CacheMismatchError(`${path}: not valid JSON (${e.message}). Rebuild the cache`);
    throw e;
  }
  if (m === null || typeof m !== 'object')
    throw new CacheMismatchError(`${path}: not a kd cache manifest (expected a JSON object). Rebuild the cache`);
  if (m.format !== CACHE_FORMAT) throw new CacheMismatchError(`${path}: format '${m.format}', expected '${CACHE_FORMAT}'`);
  if (m.version !== CACHE_VERSION)
    throw new CacheMismatchError(`${path}: cache version ${m.version}; this kd reads version ${CACHE_VERSION}. Rebuild the cache`);
  checkEntries(m, path);
  return m;
}

const isCount = (x: unknown): x is number => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
const isDigest = (x: unknown): x is string => typeof x === 'string' && /^[0-9a-f]{64}$/.test(x);

/** The fields a reader acts on, checked before any is used: a hand-edited manifest fails here with the entry named. */
function checkEntries(m: CacheManifest, path: string): void {
  const fail = (field: string, why: string) =>
    new CacheMismatchError(`${path}: ${field} ${why}. Rebuild the cache (or rerun kd cache merge) rather than editing its manifest`);
  const isObject = (x: unknown): x is Record<string, unknown> => x !== null && typeof x === 'object' && !Array.isArray(x);
  if (!isObject(m.teacher) || !isObject(m.teacher.fingerprint) || !isObject(m.teacher.classifier))
    throw fail('teacher', 'must be { fingerprint, labels, modelType, classifier }');
  if (
    !isObject(m.data) ||
    !Array.isArray(m.data.files) ||
    !Array.isArray(m.data.labels) ||
    !m.data.labels.every((l) => typeof l === 'string') ||
    !isCount(m.data.rows)
  )
    throw fail('data', 'must be { files, labels, rows, ... }');
  if (!m.data.files.every((f) => isObject(f) && typeof f.path === 'string')) throw fail('data.files', 'must list { path, sha256, bytes }');
  if (!isObject(m.embedding) || !isCount(m.embedding.dim) || !['float16', 'float32'].includes(m.embedding.dtype))
    throw fail('embedding', 'must be { mode, dim, sourceDim, dtype: float16 | float32 }');
  if (m.part !== null && !(isObject(m.part) && isCount(m.part.k) && isCount(m.part.n) && m.part.k < m.part.n))
    throw fail('part', 'must be null or { k, n } with k < n');
  if (!isCount(m.shardCount)) throw fail('shardCount', `must be a non-negative integer, got ${JSON.stringify(m.shardCount)}`);
  if (!Array.isArray(m.shards)) throw fail('shards', 'is not a list');
  m.shards.forEach((e, i) => {
    const at = `shards[${i}]`;
    if (e === null || typeof e !== 'object') throw fail(at, 'is not an object');
    if (!isCount(e.index)) throw fail(`${at}.index`, `must be a non-negative integer, got ${JSON.stringify(e.index)}`);
    if (typeof e.path !== 'string') throw fail(`${at}.path`, `must be a file name, got ${JSON.stringify(e.path)}`);
    if (!isCount(e.rows)) throw fail(`${at}.rows`, `must be a non-negative integer, got ${JSON.stringify(e.rows)}`);
    if (!isCount(e.bytes)) throw fail(`${at}.bytes`, `must be a non-negative integer, got ${JSON.stringify(e.bytes)}`);
    if (!isDigest(e.sha256)) throw fail(`${at}.sha256`, 'must be 64 hex digits');
    if (!Array.isArray(e.blocks) || e.blocks.length !== Math.ceil(e.bytes / BLOCK_BYTES) || !e.blocks.every(isDigest))
      throw fail(`${at}.blocks`, `must list the SHA-256 of each of its ${Math.ceil(e.bytes / BLOCK_BYTES)} 1 MiB block(s)`);
  });
  if (m.extras === null || typeof m.extras !== 'object' || typeof m.extras.path !== 'string' || !isDigest(m.extras.sha256))
    throw fail('extras', 'must be { path, sha256 }');
  if (m.extras.bytes !== undefined && !isCount(m.extras.bytes))
    throw fail('extras.bytes', `must be a non-negative integer, got ${JSON.stringify(m.extras.bytes)}`);
}

/** The fields that identify what a cache holds; two caches (or a cache and a rerun) must agree on all. */
export function identityOf(m: Pick<CacheManifest, 'teacher' | 'data' | 'maxLength' | 'embedding' | 'shardRows'>): Record<string, unknown> {
  return {
    'teacher.fingerprint.model': m.teacher.fingerprint.model,
    'teacher.fingerprint.tokenizer': m.teacher.fingerprint.tokenizer,
    'teacher.fingerprint.config': m.teacher.fingerprint.config,
    'teacher.precision': m.teacher.precision ?? 'fp32',
    'teacher.batchTokens': m.teacher.batchTokens ?? null,
    // Only where recorded, so that fp32 builds begun before the field resume.
    ...(m.teacher.int8Recipe ? { 'teacher.int8Recipe': m.teacher.int8Recipe } : {}),
    'data.files': m.data.files.map((f) => f.sha256).join(','),
    'data.classes': m.data.classes,
    maxLength: m.maxLength,
    'embedding.mode': m.embedding.mode,
    'embedding.dim': m.embedding.dim,
    'embedding.dtype': m.embedding.dtype,
    shardRows: m.shardRows,
  };
}

/** Throws naming the first field that differs, e.g. "teacher.fingerprint.tokenizer differs". */
export function assertSameIdentity(existing: Record<string, unknown>, wanted: Record<string, unknown>, where: string, fix: string): void {
  for (const [field, value] of Object.entries(wanted)) {
    if (JSON.stringify(existing[field]) !== JSON.stringify(value)) {
      throw new CacheMismatchError(
        `${where} was built with a different ${field.split('.')[0]}: ${field} is ${JSON.stringify(existing[field])}, this run ` +
          `has ${JSON.stringify(value)}. ${fix}`,
      );
    }
  }
}
