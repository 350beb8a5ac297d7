// A teacher: any Hugging Face-layout ONNX sequence classifier (config.json, tokenizer.json,
// onnx/model.onnx), run for logits and the embedding its classifier reads, batched by length.
import { tokenFeeds } from '../text/feeds.js';
import { ConfigError, FormatError } from '../data/errors.js';
import { UserError } from '../errors.js';
import { closeSync, existsSync, openSync, readFileSync, readSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { createHash } from 'node:crypto';
import { createSession, ort, type Device, type SessionOptions } from '../engine/session.js';
import { TextTokenizer, type Encoding } from '../text/tokenizer.js';
import { decodeModel, encodeModel, externalDataFiles, type ModelProto } from './onnx-model.js';
import { optimizeTeacherGraph } from './optimize.js';
import { findEmbeddingTables } from './embedding-tables.js';
import { exposeTensor, findClassifierHead, headForNamedEmbedding, type ClassifierHead } from './head.js';

export interface TeacherOptions {
  /** Where its ONNX Runtime sessions run (device, threads, CPU fallback). */
  session?: SessionOptions;
  /** Use onnx/model_quantized.onnx instead of onnx/model.onnx. */
  quantized?: boolean;
  /** Name of the tensor to expose as `embedding` when automatic detection fails. */
  embeddingOutput?: string;
  /** Truncate inputs to this many tokens (at most the model's limit). */
  maxLength?: number;
  /** Receives warnings (default: stderr). */
  warn?: (message: string) => void;
  /**
   * Rewrite the graph to compute only what the logits and embedding need (default true); the
   * rewrite is checked against the original on probe batches and dropped if they differ.
   */
  optimize?: boolean;
  /**
   * A further rewrite of the graph, applied after the optimization (kd's int8 quantization at load:
   * `loadTeacher` in quantize/teacher.ts); it checks its own outputs against the graph it was given.
   */
  transform?: TeacherGraphTransform;
}

/** What a {@link TeacherGraphTransform} measured: its outputs against the float graph's on check texts. */
export interface PrecisionCheck {
  /** Texts compared. */
  rows: number;
  /** Fraction whose argmax is the same. */
  agreement: number;
  /** Largest |transformed − fp32| logit. */
  maxDiff: number;
  /** The least agreement accepted. */
  minAgreement: number;
  /**
   * Mean change of each text's logit margins: max over classes j of |Δ(l_k − l_j)|, k the fp32 argmax (absent in
   * checks recorded before the fp32 recheck).
   */
  marginChange?: number;
  /** Texts whose transformed margin (top two logits) is under this are recomputed by the float graph (0: none). */
  recheckMargin?: number;
}

/** A rewrite applied to a teacher's graph at load (its outputs then are `precision`). */
export interface TeacherGraphTransform {
  /** What the outputs become, recorded on the teacher and in a cache's manifest. */
  precision: 'int8';
  /**
   * Rewrites `model` (logits and embedding exposed, optimization done) or throws a UserError when the
   * result disagrees with it; `tokenizer` encodes the check texts.
   */
  apply(model: ModelProto, ctx: { modelFile: string; tokenizer: TextTokenizer; session: SessionOptions }): Promise<TransformedGraph>;
}

export interface TransformedGraph {
  model: ModelProto;
  /** One line for logs, e.g. "int8: 38 MatMul … agreement 100.0% on 128 texts". */
  note: string;
  check: PrecisionCheck;
  /**
   * What identifies the rewrite's outputs beyond `precision` (its recipe and settings), recorded in a cache's identity,
   * e.g. "embedding tables fp32; fp32 recheck auto".
   */
  recipe: string;
}

export interface TeacherConfig {
  modelType: string;
  /** Class names in logit order (from id2label). */
  labels: string[];
  /** Longest input; on a loaded teacher, the smaller of config.json's and the graph's position table. */
  maxPositions: number | null;
  /** Token ids stay below this; on a loaded teacher, the smaller of config.json's and the graph's word table. */
  vocabSize: number | null;
  /** config.json pad_token_id (RoBERTa-style position ids start after it). */
  padTokenId: number | null;
}

export interface PredictOptions {
  /** Upper bound on batch size × padded length (tokens per ONNX Runtime call). */
  batchTokens?: number;
  /** Upper bound on texts per call. */
  maxBatch?: number;
  /** Called after each batch with the number of texts done. */
  onProgress?: (done: number) => void;
}

export interface TeacherBatch {
  /** Positions of these rows in the input order. */
  indices: Int32Array;
  logits: Float32Array;
  embedding: Float32Array;
  tokens: number;
}

export interface TeacherOutputs {
  logits: Float32Array;
  embedding: Float32Array;
  classes: number;
  dim: number;
}

export function readTeacherConfig(dir: string): TeacherConfig {
  const path = join(dir, 'config.json');
  if (!existsSync(path))
    throw new ConfigError(
      `${dir}: no config.json; a teacher folder has config.json, tokenizer.json and onnx/model.onnx (the Hugging Face / Optimum layout)`,
    );
  const cfg = readJsonObject(path, 'the model’s config.json (download or export it again)');
  const fix = 'fix config.json (or export the model again)';
  const id2label = cfg.id2label ?? {};
  if (typeof id2label !== 'object' || id2label === null || Array.isArray(id2label))
    throw new ConfigError(`${path}: field id2label must be an object of class names (e.g. {"0": "NEGATIVE", "1": "POSITIVE"}); ${fix}`);
  const entries = Object.entries(id2label as Record<string, unknown>);
  const badKey = entries.find(([k, v]) => !/^\d+$/.test(k) || typeof v !== 'string');
  if (badKey)
    throw new ConfigError(
      `${path}: field id2label: entry ${JSON.stringify(badKey[0])}: ${JSON.stringify(badKey[1])} is not "<class index>": "<name>"; ${fix}`,
    );
  const labels = entries.sort(([a], [b]) => Number(a) - Number(b)).map(([, v]) => v as string);
  if (labels.length === 0)
    throw new ConfigError(
      `${path}: no id2label; a sequence classifier's config names its classes (e.g. {"0": "NEGATIVE", "1": "POSITIVE"})`,
    );
  const missing = entries.findIndex(([k], i) => Number(k) !== i);
  if (missing >= 0)
    throw new ConfigError(`${path}: field id2label has no class ${missing} (its keys must be 0 … ${labels.length - 1}); ${fix}`);
  const count = (field: string, min: number): number | null => {
    const v = cfg[field];
    if (v === undefined || v === null) return null;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min)
      throw new ConfigError(`${path}: field ${field} must be an integer ≥ ${min}, got ${JSON.stringify(v)}; ${fix}`);
    return v;
  };
  if (cfg.model_type !== undefined && typeof cfg.model_type !== 'string')
    throw new ConfigError(`${path}: field model_type must be a string, got ${JSON.stringify(cfg.model_type)}; ${fix}`);
  return {
    modelType: (cfg.model_type as string | undefined) ?? 'unknown',
    labels,
    maxPositions: count('max_position_embeddings', 1),
    vocabSize: count('vocab_size', 1),
    padTokenId: count('pad_token_id', 0),
  };
}

/** A JSON file that must hold one object; anything else is a FormatError naming the file. */
export function readJsonObject(path: string, what: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    if (!(e instanceof SyntaxError)) throw e;
    throw new FormatError(path, `not valid JSON (${e.message}); it should be ${what}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new FormatError(
      path,
      `holds ${Array.isArray(value) ? 'an array' : JSON.stringify(value)}, not a JSON object; it should be ${what}`,
    );
  return value as Record<string, unknown>;
}

/**
 * config.json's limits checked against the graph's embedding tables: a vocab_size or
 * max_position_embeddings beyond the table would make ONNX Runtime fail mid-run (an index out of
 * range), and a missing max_position_embeddings would truncate at 512 for a 128-position model.
 * The smaller wins; each disagreement is one line of `warnings`.
 */
export function inputLimits(
  config: TeacherConfig,
  model: ModelProto,
  modelFile: string,
): { vocabSize: number | null; maxPositions: number | null; warnings: string[] } {
  const tables = findEmbeddingTables(model, modelFile, config.padTokenId);
  const warnings: string[] = [];
  const smaller = (field: string, fromConfig: number | null, fromGraph: number | null, graphSays: string): number | null => {
    if (fromConfig !== null && fromGraph !== null && fromConfig !== fromGraph)
      warnings.push(`config.json ${field} is ${fromConfig} but the graph's ${graphSays}; using ${Math.min(fromConfig, fromGraph)}`);
    return fromConfig === null ? fromGraph : fromGraph === null ? fromConfig : Math.min(fromConfig, fromGraph);
  };
  const vocabSize = smaller(
    'vocab_size',
    config.vocabSize,
    tables.wordRows,
    `word embedding table '${tables.wordTable}' has ${tables.wordRows} rows`,
  );
  const maxPositions = smaller(
    'max_position_embeddings',
    config.maxPositions,
    tables.maxPositions,
    `position table '${tables.positionTable}' covers ${tables.maxPositions} positions`,
  );
  return { vocabSize, maxPositions, warnings };
}

/** The spin (µs) of a recheck teacher's two sessions: long enough for the gaps inside a run, short against a turn. */
const TURN_SPIN_MICROS = 1000;

/**
 * Tokens per batch when none is given. On CPU small batches win (measured on the default
 * teachers: 2,048 tokens ran 1.3× faster than 8,192, the activations stay in cache); a GPU
 * wants large ones.
 */
export function defaultBatchTokens(device: Device): number {
  return device === 'cpu' ? 2048 : 16384;
}

/** Groups positions into batches of similar length under a token budget (longest first). */
export function lengthBatches(lengths: ArrayLike<number>, batchTokens: number, maxBatch: number): Int32Array[] {
  const order = Int32Array.from({ length: lengths.length }, (_, i) => i).sort((a, b) => lengths[b]! - lengths[a]! || a - b);
  const batches: Int32Array[] = [];
  let start = 0;
  while (start < order.length) {
    const longest = lengths[order[start]!]!;
    const size = Math.max(1, Math.min(maxBatch, Math.floor(batchTokens / Math.max(1, longest))));
    batches.push(order.slice(start, start + size));
    start += size;
  }
  return batches;
}

/**
 * A teacher: a Hugging Face-layout ONNX sequence classifier (config.json, tokenizer.json,
 * onnx/model.onnx) loaded into ONNX Runtime, its graph edited to also output the embedding its
 * classifier reads. Create one with {@link Teacher.load}; release it with `dispose()`.
 *
 * @example
 * ```ts
 * import { Teacher } from 'kd-toolkit';
 * const teacher = await Teacher.load('../shared/fixtures/hf/tiny-random-bert');
 * console.log(teacher.config);
 * // { modelType: 'bert', labels: [ 'NEGATIVE', 'POSITIVE' ], maxPositions: 128, vocabSize: 56, padTokenId: null }
 * console.log(teacher.optimization);
 * // graph optimized: 42 nodes compute position 0 only, 15 removed
 * await teacher.dispose();
 * ```
 */
export class Teacher {
  private constructor(
    readonly dir: string,
    readonly config: TeacherConfig,
    readonly tokenizer: TextTokenizer,
    readonly head: ClassifierHead,
    readonly session: ort.InferenceSession,
    readonly device: Device,
    readonly modelFile: string,
    /** Files holding the model's external data (`model.onnx_data`), part of what it computes. */
    readonly externalDataFiles: readonly string[],
    private readonly usesTokenTypes: boolean,
    /** What the graph optimization did, or why it did nothing. */
    readonly optimization: string,
    /** What the outputs are computed in: 'fp32', or 'int8' after kd's quantization at load. */
    readonly precision: 'fp32' | 'int8' = 'fp32',
    /** The int8 graph against the float one (null in fp32). */
    readonly precisionCheck: PrecisionCheck | null = null,
    /** With precision int8: the rewrite's recipe and settings (see {@link TransformedGraph.recipe}). */
    readonly precisionRecipe: string | null = null,
    /** The float graph's session for the texts whose transformed margin is under `margin` (null: none recomputed). */
    private readonly recheck: { session: ort.InferenceSession; margin: number } | null = null,
  ) {}

  /** Texts recomputed by the float graph so far (near ties of the int8 graph; see {@link PrecisionCheck.recheckMargin}). */
  recomputedRows = 0;

  /**
   * Loads a teacher folder and edits its graph to also output `embedding`.
   *
   * @param dir - The teacher folder: config.json (with id2label), tokenizer.json, onnx/model.onnx.
   * @param opts - Device, threads, quantized model, embedding tensor name, max length, warnings sink, graph optimization.
   * @returns The loaded teacher, its session open on `teacher.device` (CPU after an allowed fallback).
   * @throws {ConfigError} The folder lacks a file, config.json is malformed, or the classifier and labels disagree.
   * @throws {FormatError} ONNX Runtime cannot load the model file.
   * @throws {HeadNotFoundError} No classifier head is found and `embeddingOutput` does not name one.
   * @throws {DeviceError} `device` is not available and `allowFallback` is not set.
   *
   * @example
   * ```ts
   * const teacher = await Teacher.load('../shared/fixtures/hf/tiny-random-bert');
   * const { logits, embedding } = await teacher.predict(['what a great day']);
   * await Teacher.load('models/nope');
   * // ConfigError: models/nope: no config.json; a teacher folder has config.json, tokenizer.json and onnx/model.onnx
   * // (the Hugging Face / Optimum layout)
   * ```
   */
  static async load(dir: string, opts: TeacherOptions = {}): Promise<Teacher> {
    const warn = opts.warn ?? ((m: string) => process.stderr.write(`${m}\n`));
    const declared = readTeacherConfig(dir);
    const modelFile = join(dir, 'onnx', opts.quantized ? 'model_quantized.onnx' : 'model.onnx');
    if (!existsSync(modelFile)) throw new ConfigError(`${dir}: no ${opts.quantized ? 'onnx/model_quantized.onnx' : 'onnx/model.onnx'}`);
    const model = decodeModel(modelFile);
    const outputs = (model.graph?.output ?? []).map((o) => o.name!);
    const logitsName = outputs.includes('logits') ? 'logits' : outputs[0]!;
    const limits = inputLimits(declared, model, modelFile);
    if (limits.warnings.length) warn(`warning: ${dir}: ${limits.warnings.join('; ')}`);
    const config: TeacherConfig = { ...declared, vocabSize: limits.vocabSize, maxPositions: limits.maxPositions };
    const head = opts.embeddingOutput
      ? headForNamedEmbedding(model, modelFile, opts.embeddingOutput, logitsName)
      : findClassifierHead(model, modelFile, logitsName);
    if (head.weight && head.rows !== config.labels.length) {
      throw new ConfigError(`${dir}: the classifier has ${head.rows} outputs but config.json names ${config.labels.length} labels`);
    }
    const logitsType = (model.graph!.output!.find((o) => o.name === logitsName)?.type?.tensorType?.elemType as number | undefined) ?? 1;
    exposeTensor(model, head.embeddingTensor, 'embedding', logitsType);
    if (logitsName !== 'logits') exposeTensor(model, logitsName, 'logits', logitsType);
    const maxLength = Math.min(opts.maxLength ?? Infinity, config.maxPositions ?? Infinity);
    const tokenizer = TextTokenizer.fromFolder(dir, Number.isFinite(maxLength) ? { maxLength } : {});
    if (config.vocabSize !== null) {
      const beyond = tokenizer.limitVocabulary(config.vocabSize);
      if (beyond.length)
        warn(
          `warning: ${dir}: tokenizer.json has ${beyond.length} token(s) with ids at or above ` +
            `${config.vocabSize === declared.vocabSize ? 'config.json vocab_size' : 'the word embedding table size'} ` +
            `${config.vocabSize} (${beyond.slice(0, 5).join(', ')}); they are encoded as ${tokenizer.specials.unk}`,
        );
    }
    const sessionOpts: SessionOptions = { ...opts.session };
    const optimized =
      opts.optimize === false
        ? null
        : await optimizeTeacherGraph(model, modelFile, {
            session: sessionOpts,
            vocabSize: config.vocabSize ?? tokenizer.vocabSize,
            outputs: ['logits', 'embedding'],
          });
    const transformed = opts.transform
      ? await opts.transform.apply(optimized?.model ?? model, { modelFile, tokenizer, session: sessionOpts })
      : null;
    const margin = transformed?.check.recheckMargin ?? 0;
    // With the recheck, the int8 and float sessions take turns: after a run, a session's idle thread spins for tens of
    // milliseconds on the core the other one needs (measured: the float run after an int8 run took 1.3-1.6x as long).
    const turns: SessionOptions = transformed && margin > 0 ? { spinMicros: TURN_SPIN_MICROS } : {};
    let handle: Awaited<ReturnType<typeof createSession>>;
    try {
      // From bytes (the graph was edited in memory), so ONNX Runtime must be told where the
      // model's external data is, or it reads `model.onnx_data` from the current directory.
      handle = await createSession(encodeModel(transformed?.model ?? optimized?.model ?? model), {
        ...sessionOpts,
        ...turns,
        externalDataDir: dirname(modelFile),
      });
    } catch (e) {
      if (e instanceof UserError) throw e;
      throw new FormatError(
        modelFile,
        `ONNX Runtime could not load the model (${(e as Error).message.split('\n')[0]}); re-export the model (or download it again)`,
      );
    }
    const { session, device } = handle;
    let recheck: { session: ort.InferenceSession; margin: number } | null = null;
    if (transformed && margin > 0) {
      try {
        const float = await createSession(encodeModel(optimized?.model ?? model), {
          ...sessionOpts,
          ...turns,
          externalDataDir: dirname(modelFile),
        });
        recheck = { session: float.session, margin };
      } catch (e) {
        await session.release();
        throw e;
      }
    }
    const missing = ['input_ids', 'attention_mask'].filter((n) => !session.inputNames.includes(n));
    if (missing.length) throw new ConfigError(`${modelFile}: inputs ${session.inputNames.join(', ')} lack ${missing.join(', ')}`);
    return new Teacher(
      dir,
      config,
      tokenizer,
      head,
      session,
      device,
      modelFile,
      externalDataFiles(model, modelFile),
      session.inputNames.includes('token_type_ids'),
      (optimized?.note ?? 'graph not optimized (optimize: false)') + (transformed ? `; ${transformed.note}` : ''),
      transformed ? opts.transform!.precision : 'fp32',
      transformed?.check ?? null,
      transformed?.recipe ?? null,
      recheck,
    );
  }

  get labels(): string[] {
    return this.config.labels;
  }

  /**
   * SHA-256 over config.json, tokenizer.json and the model: what a cache is keyed by. The
   * model's hash covers its external data too (an export over 2 GB keeps its weights in
   * model.onnx_data, so new weights leave model.onnx unchanged); for a model without external
   * data it is the hash of model.onnx alone, as before.
   */
  fingerprint(): Record<string, string> {
    const h = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');
    const model = createHash('sha256');
    hashFileInto(model, this.modelFile);
    for (const file of this.externalDataFiles) hashFileInto(model.update(`\0${basename(file)}\0`), file);
    return { model: model.digest('hex'), tokenizer: h(join(this.dir, 'tokenizer.json')), config: h(join(this.dir, 'config.json')) };
  }

  /** Runs one padded batch of encodings (on `session`: the teacher's own by default). */
  async runEncoded(
    encodings: readonly Encoding[],
    session: ort.InferenceSession = this.session,
  ): Promise<{ logits: Float32Array; embedding: Float32Array; dim: number }> {
    const out = await session.run(tokenFeeds(this.tokenizer.pad(encodings), this.usesTokenTypes), ['logits', 'embedding']);
    const embedding = toFloat32(out.embedding!);
    return { logits: toFloat32(out.logits!), embedding, dim: embedding.length / encodings.length };
  }

  /**
   * The recheck: the held batches' near-tie rows run again by the float graph, sorted by length and batched as the
   * teacher batches (so a few near ties of each batch make full batches, not one small run per batch), their logits
   * and embeddings replaced in place.
   */
  private async recompute(held: readonly HeldBatch[], batchTokens: number, maxBatch: number): Promise<void> {
    const rows = held.flatMap((h) => h.near.map((r, i) => ({ h, r, encoding: h.encodings[i]! })));
    const C = this.labels.length;
    for (const positions of lengthBatches(
      rows.map((x) => x.encoding.ids.length),
      batchTokens,
      maxBatch,
    )) {
      const part = Array.from(positions, (p) => rows[p]!);
      const again = await this.runEncoded(
        part.map((x) => x.encoding),
        this.recheck!.session,
      );
      part.forEach(({ h, r }, i) => {
        const dim = h.batch.embedding.length / h.batch.indices.length;
        h.batch.logits.set(again.logits.subarray(i * C, (i + 1) * C), r * C);
        h.batch.embedding.set(again.embedding.subarray(i * dim, (i + 1) * dim), r * dim);
      });
      this.recomputedRows += part.length;
    }
  }

  /**
   * Streams batches in length order (rows of similar length together, so little padding);
   * `indices` maps rows back to input positions. Tokenization of the next chunk overlaps
   * inference of the current one. With an int8 teacher's fp32 recheck, a batch with near ties
   * comes once they are recomputed (batched with later batches' near ties), so batches may come
   * out of order.
   */
  async *stream(texts: readonly string[], opts: PredictOptions = {}): AsyncGenerator<TeacherBatch> {
    const batchTokens = opts.batchTokens ?? defaultBatchTokens(this.device);
    const maxBatch = opts.maxBatch ?? 256;
    const chunk = 8192;
    const C = this.labels.length;
    let held: HeldBatch[] = [];
    let heldTokens = 0;
    const release = async (): Promise<TeacherBatch[]> => {
      if (!held.length) return [];
      const out = held;
      [held, heldTokens] = [[], 0];
      await this.recompute(out, batchTokens, maxBatch);
      return out.map((h) => h.batch);
    };
    let done = 0;
    let next = this.tokenizer.encode(texts.slice(0, chunk));
    for (let start = 0; start < texts.length; start += chunk) {
      const encodings = await next;
      if (start + chunk < texts.length) next = this.tokenizer.encode(texts.slice(start + chunk, start + 2 * chunk));
      for (const positions of lengthBatches(
        encodings.map((e) => e.ids.length),
        batchTokens,
        maxBatch,
      )) {
        const part = Array.from(positions, (p) => encodings[p]!);
        const { logits, embedding } = await this.runEncoded(part);
        done += part.length;
        opts.onProgress?.(done);
        const batch: TeacherBatch = {
          indices: Int32Array.from(positions, (p) => p + start),
          logits,
          embedding,
          tokens: part.reduce((s, e) => s + e.ids.length, 0),
        };
        const near = this.recheck && C >= 2 ? nearTies(logits, C, this.recheck.margin) : [];
        if (!near.length) {
          yield batch;
          continue;
        }
        // A batch with near ties waits until its rows and others' fill a batch for the float graph.
        const nearEncodings = near.map((r) => part[r]!);
        held.push({ batch, near, encodings: nearEncodings });
        heldTokens += nearEncodings.reduce((s, e) => s + e.ids.length, 0);
        if (heldTokens >= batchTokens || held.length >= 64) yield* await release();
      }
    }
    yield* await release();
  }

  /**
   * Logits and embeddings for `texts`, in input order (run in length-sorted batches).
   *
   * @param texts - The texts to classify.
   * @param opts - Batch limits (`batchTokens`, `maxBatch`) and a progress callback.
   * @returns `logits` [n, classes] and `embedding` [n, dim], row-major, with `classes` and `dim`.
   *
   * @example
   * ```ts
   * const out = await teacher.predict(['what a great day', 'worst film ever']);
   * console.log(out.classes, out.dim, out.logits);
   * // 2 64 Float32Array(4) [ 0.0806, -0.1623, 0.0067, -0.1762 ]   (tiny-random-bert, rounded)
   * ```
   */
  async predict(texts: readonly string[], opts: PredictOptions = {}): Promise<TeacherOutputs> {
    const classes = this.labels.length;
    const logits = new Float32Array(texts.length * classes);
    let embedding = new Float32Array(0);
    let dim = 0;
    for await (const b of this.stream(texts, opts)) {
      if (dim === 0) {
        dim = b.embedding.length / b.indices.length;
        embedding = new Float32Array(texts.length * dim);
      }
      b.indices.forEach((pos, r) => {
        logits.set(b.logits.subarray(r * classes, (r + 1) * classes), pos * classes);
        embedding.set(b.embedding.subarray(r * dim, (r + 1) * dim), pos * dim);
      });
    }
    return { logits, embedding, classes, dim };
  }

  async dispose(): Promise<void> {
    await this.session.release();
    await this.recheck?.session.release();
  }
}

/**
 * Rows of `logits` [rows, C] whose top two logits differ by less than `margin` (NaN logits count as a near tie).
 *
 * @example
 * ```ts
 * nearTies(Float32Array.of(0.5, 0.51, 2, -1, 0, 0), 2, 0.05); // [0, 2]
 * ```
 */
export function nearTies(logits: Float32Array, C: number, margin: number): number[] {
  const rows: number[] = [];
  for (let r = 0; r * C < logits.length; r++) {
    let first = -Infinity;
    let second = -Infinity;
    let nan = false;
    for (let c = 0; c < C; c++) {
      const x = logits[r * C + c]!;
      if (Number.isNaN(x)) nan = true;
      else if (x > first) [first, second] = [x, first];
      else if (x > second) second = x;
    }
    if (nan || !(first - second >= margin)) rows.push(r);
  }
  return rows;
}

/** A batch of the int8 graph waiting for its near ties (rows `near`, their `encodings`) to be recomputed. */
interface HeldBatch {
  batch: TeacherBatch;
  near: number[];
  encodings: Encoding[];
}

/** Streams a file into `hash` in chunks (external data can be larger than a Buffer may be). */
function hashFileInto(hash: ReturnType<typeof createHash>, file: string): void {
  const fd = openSync(file, 'r');
  try {
    const chunk = Buffer.alloc(1 << 24);
    for (let n = readSync(fd, chunk); n > 0; n = readSync(fd, chunk)) hash.update(chunk.subarray(0, n));
  } finally {
    closeSync(fd);
  }
}

function toFloat32(t: ort.Tensor): Float32Array {
  if (t.type === 'float32') return t.data as Float32Array;
  if (t.type === 'float64') return Float32Array.from(t.data as Float64Array);
  throw new Error(`teacher output has type ${t.type}; expected float32`);
}
