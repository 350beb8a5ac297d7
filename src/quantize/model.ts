// `kd quantize` as a library call: a Hugging Face-layout folder's onnx/model.onnx → int8
// onnx/model_quantized.onnx beside it, written only when it agrees with the float model on a check batch.
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from '../data/errors.js';
import { UserError } from '../errors.js';
import { createSession, ort, type SessionOptions } from '../engine/session.js';
import { Rng } from '../engine/rng.js';
import { decodeModel, encodeModel, externalDataFiles, GraphIndex, type ModelProto } from '../teacher/onnx-model.js';
import { TextTokenizer } from '../text/tokenizer.js';
import { tokenFeeds } from '../text/feeds.js';
import { writeFileAtomicSync } from '../util/fs.js';
import { quantizeGraph, type QuantizedGraph, type QuantizeGraphOptions } from './graph.js';
import { checkTexts } from './check-texts.js';

export interface QuantizeOptions extends QuantizeGraphOptions {
  /**
   * Model feeds for texts (a kd student's own featurizer). Default: the folder's tokenizer.json when the
   * model reads input_ids, else synthetic inputs from the graph's input types.
   */
  feeds?: (texts: readonly string[]) => Promise<Record<string, ort.Tensor>>;
  /** Inputs in the check batch (default 64). */
  checkRows?: number;
  /** The least argmax agreement with the float model for the file to be written (default 0.99). */
  minAgreement?: number;
  /** Where the check's ONNX Runtime sessions run. */
  session?: SessionOptions;
}

/** What the check measured: the int8 model against the float one on the same inputs. */
export interface QuantizeCheck {
  /** Inputs compared. */
  rows: number;
  /** Where they came from. */
  inputs: 'student' | 'tokenizer' | 'synthetic';
  /** The output compared (logits when the model has it). */
  output: string;
  /** Fraction of rows whose argmax (over the output's last axis) is the same. */
  agreement: number;
  /** Largest |int8 − fp32| over every output value. */
  maxDiff: number;
  /** Largest |fp32| value, to read maxDiff against. */
  maxAbs: number;
  /** One run of the check batch after a warm-up one, in milliseconds. */
  ms: { fp32: number; int8: number };
}

export interface QuantizeReport {
  /** onnx/model_quantized.onnx. */
  file: string;
  /** Bytes: the float model with its external data, and the int8 file. */
  bytes: { fp32: number; int8: number };
  rewritten: QuantizedGraph['rewritten'];
  weights: QuantizedGraph['weights'];
  check: QuantizeCheck;
}

/** The int8 model disagrees with the float one too often on the check batch; nothing was written. */
export class AgreementError extends UserError {
  constructor(
    file: string,
    readonly check: QuantizeCheck,
    minAgreement: number,
  ) {
    const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
    const agreed = Math.round(check.agreement * check.rows);
    super(
      `${file}: not written: the int8 model picks the float model's class on ${agreed} of ${check.rows} check inputs ` +
        `(${pct(check.agreement)}), ${(100 * (minAgreement - check.agreement)).toFixed(1)} points below the ${pct(minAgreement)} ` +
        `required (largest logit difference ${check.maxDiff.toPrecision(3)}); ship onnx/model.onnx as it is, or pass ` +
        `--min-agreement ${Math.floor(100 * check.agreement) / 100} to write it anyway`,
    );
    this.name = 'AgreementError';
  }
}

/** The first Gather that looks rows up in a constant table with graph input `input`: the table's row count. */
function tableRowsFor(model: ModelProto, index: GraphIndex, input: string): number | null {
  for (const n of model.graph!.node ?? []) {
    if (n.opType !== 'Gather' || n.input?.[1] !== input) continue;
    const dims = index.constants.get(n.input[0]!)?.dims;
    if (dims?.length) return Number(dims[0]);
  }
  return null;
}

/** ONNX element types the synthetic check inputs can be made of. */
const ONNX_TYPES: Record<number, string> = { 1: 'float32', 6: 'int32', 7: 'int64', 9: 'bool' };

/**
 * Feeds from the graph's declared inputs: ids uniform over the table they index (or 0..99), masks of
 * ones, floats standard normal; a symbolic first axis is the batch (`rows`), other symbolic axes 16.
 */
function syntheticFeeds(model: ModelProto, modelPath: string, rows: number): Record<string, ort.Tensor> {
  const index = new GraphIndex(model, modelPath);
  const rng = new Rng(18);
  const feeds: Record<string, ort.Tensor> = {};
  for (const input of model.graph!.input ?? []) {
    if (index.constants.has(input.name!)) continue;
    const t = input.type?.tensorType;
    const dims = (t?.shape?.dim ?? []).map((d, k) => (d.dimValue ? Number(d.dimValue) : k === 0 ? rows : 16));
    const n = dims.reduce((a, b) => a * b, 1);
    const name = input.name!;
    const limit = tableRowsFor(model, index, name) ?? 100;
    const value = (): number => (/mask/i.test(name) ? 1 : /type/i.test(name) ? 0 : rng.int(limit));
    const type = ONNX_TYPES[Number(t?.elemType ?? 1)];
    if (type === 'int64')
      feeds[name] = new ort.Tensor(
        'int64',
        BigInt64Array.from({ length: n }, () => BigInt(value())),
        dims,
      );
    else if (type === 'int32') feeds[name] = new ort.Tensor('int32', Int32Array.from({ length: n }, value), dims);
    else if (type === 'bool')
      feeds[name] = new ort.Tensor(
        'bool',
        Uint8Array.from({ length: n }, () => 1),
        dims,
      );
    else if (type === 'float32')
      feeds[name] = new ort.Tensor(
        'float32',
        Float32Array.from({ length: n }, () => rng.normal()),
        dims,
      );
    else
      throw new ConfigError(`${modelPath}: input '${name}' has element type ${t?.elemType}; kd quantize cannot make check inputs for it`);
  }
  return feeds;
}

/** The check batch: the caller's featurizer, the folder's tokenizer, or synthetic inputs. */
async function checkFeeds(
  dir: string,
  model: ModelProto,
  modelPath: string,
  opts: QuantizeOptions,
  rows: number,
): Promise<{ feeds: Record<string, ort.Tensor>; inputs: QuantizeCheck['inputs'] }> {
  if (opts.feeds) return { feeds: await opts.feeds(checkTexts(rows)), inputs: 'student' };
  const inputNames = new Set((model.graph!.input ?? []).map((i) => i.name!));
  if (inputNames.has('input_ids') && existsSync(join(dir, 'tokenizer.json'))) {
    const tok = TextTokenizer.fromFolder(dir, { maxLength: 128 });
    const index = new GraphIndex(model, modelPath);
    const tableRows = tableRowsFor(model, index, 'input_ids');
    if (tableRows !== null) tok.limitVocabulary(tableRows);
    const batch = tok.pad(await tok.encode(checkTexts(rows)));
    const feeds = tokenFeeds(batch, inputNames.has('token_type_ids'));
    // An int64 input beyond the standard three (position_ids, …) gets zeros of the batch's shape.
    for (const name of inputNames)
      if (!(name in feeds) && !index.constants.has(name))
        feeds[name] = new ort.Tensor('int64', new BigInt64Array(batch.size * batch.length), [batch.size, batch.length]);
    return { feeds, inputs: 'tokenizer' };
  }
  return { feeds: syntheticFeeds(model, modelPath, rows), inputs: 'synthetic' };
}

/** Runs once to warm up, then once timed. */
async function timedRun(session: ort.InferenceSession, feeds: Record<string, ort.Tensor>, output: string) {
  await session.run(feeds, [output]);
  const t0 = performance.now();
  const result = (await session.run(feeds, [output]))[output]!;
  return { tensor: result, ms: performance.now() - t0 };
}

/** Argmax agreement of two [rows, classes] logit arrays, the largest difference and the largest |x|. */
export interface LogitComparison {
  rows: number;
  /** Rows whose argmax is the same (NaN in `y` never agrees). */
  agreed: number;
  agreement: number;
  maxDiff: number;
  maxAbs: number;
}

/**
 * Compares `y` (int8) with `x` (fp32), both row-major [rows, classes].
 *
 * @example
 * ```ts
 * compareLogits(Float32Array.of(1, 0, 0, 1), Float32Array.of(0.9, 0, 0.6, 0.5), 2);
 * // { rows: 2, agreed: 1, agreement: 0.5, maxDiff: 0.6, maxAbs: 1 }   (maxDiff rounded)
 * ```
 */
export function compareLogits(x: Float32Array, y: Float32Array, classes: number): LogitComparison {
  if (x.length !== y.length || x.length % classes !== 0)
    throw new RangeError(`'x' and 'y' must both be [rows, ${classes}], got ${x.length} and ${y.length} values`);
  const rows = x.length / classes;
  let agreed = 0;
  let maxDiff = 0;
  let maxAbs = 0;
  for (let r = 0; r < rows; r++) {
    let ka = 0;
    let kb = 0;
    for (let c = 0; c < classes; c++) {
      const i = r * classes + c;
      if (x[i]! > x[r * classes + ka]!) ka = c;
      if (y[i]! > y[r * classes + kb]!) kb = c;
      const d = Math.abs(x[i]! - y[i]!);
      // NaN in the int8 output is the worst difference there is.
      maxDiff = Number.isNaN(d) ? Infinity : Math.max(maxDiff, d);
      maxAbs = Math.max(maxAbs, Math.abs(x[i]!));
    }
    if (ka === kb && !Number.isNaN(y[r * classes + kb]!)) agreed += 1;
  }
  return { rows, agreed, agreement: rows ? agreed / rows : 1, maxDiff, maxAbs };
}

/** Compares the int8 model with the float one on `feeds`. */
async function compareModels(
  fp32: string,
  int8: Uint8Array,
  feeds: Record<string, ort.Tensor>,
  output: string,
  session: SessionOptions,
): Promise<Omit<QuantizeCheck, 'inputs'>> {
  const a = await createSession(fp32, session);
  const b = await createSession(int8, session);
  try {
    const ra = await timedRun(a.session, feeds, output);
    const rb = await timedRun(b.session, feeds, output);
    const classes = Number(ra.tensor.dims.at(-1) ?? 1);
    const c = compareLogits(ra.tensor.data as Float32Array, rb.tensor.data as Float32Array, classes);
    return { output, ...c, ms: { fp32: ra.ms, int8: rb.ms } };
  } finally {
    await a.session.release();
    await b.session.release();
  }
}

/**
 * Quantizes `dir/onnx/model.onnx` to int8 (see {@link quantizeGraph}: the form onnxruntime's
 * `quantize_dynamic` writes, which transformers.js loads with its default `dtype: 'q8'`), runs both
 * models on a check batch, and writes `dir/onnx/model_quantized.onnx` when the int8 model's argmax
 * agrees with the float model's on at least `minAgreement` of it. model.onnx is left as it is.
 *
 * @param dir - A Hugging Face-layout folder (onnx/model.onnx; tokenizer.json makes the check use real texts).
 * @param opts - Weight scales, embedding threshold, check feeds and size, required agreement, session.
 * @returns The file written, sizes, what was rewritten and what the check measured.
 * @throws {ConfigError} The folder has no onnx/model.onnx.
 * @throws {AlreadyQuantizedError} model.onnx has quantized ops already.
 * @throws {NothingToQuantizeError} No MatMul, Gemm or embedding Gather can be quantized (the message lists the ops).
 * @throws {AgreementError} Agreement below `minAgreement` (the message says by how much); nothing is written.
 *
 * @example
 * ```ts
 * import { quantizeModel } from 'kd-toolkit';
 * // A writable copy of ../shared/fixtures/hf/tiny-random-bert (a PyTorch export, opset 14):
 * const r = await quantizeModel('models/tiny-random-bert');
 * console.log(r.file, r.bytes, r.rewritten, r.check.agreement, r.check.maxDiff);
 * // models/tiny-random-bert/onnx/model_quantized.onnx { fp32: 489303, int8: 199028 } { MatMul: 12, Gemm: 2, Gather: 0 } 1 0.0092
 * //   (maxDiff rounded)
 * ```
 */
export async function quantizeModel(dir: string, opts: QuantizeOptions = {}): Promise<QuantizeReport> {
  const modelPath = join(dir, 'onnx', 'model.onnx');
  if (!existsSync(modelPath))
    throw new ConfigError(
      `${dir}: no onnx/model.onnx (kd quantize reads a Hugging Face-layout folder: config.json, tokenizer.json, onnx/model.onnx)`,
    );
  const rows = opts.checkRows ?? 64;
  if (!Number.isInteger(rows) || rows < 1) throw new RangeError(`'checkRows' must be a positive integer, got ${rows}`);
  const minAgreement = opts.minAgreement ?? 0.99;
  if (!(minAgreement >= 0 && minAgreement <= 1)) throw new RangeError(`'minAgreement' must be in [0, 1], got ${minAgreement}`);
  const model = decodeModel(modelPath);
  const q = quantizeGraph(model, modelPath, opts);
  const bytes = encodeModel(q.model);
  const outputs = (model.graph!.output ?? []).map((o) => o.name!);
  const output = outputs.includes('logits') ? 'logits' : outputs[0]!;
  const { feeds, inputs } = await checkFeeds(dir, model, modelPath, opts, rows);
  const check: QuantizeCheck = { ...(await compareModels(modelPath, bytes, feeds, output, opts.session ?? {})), inputs };
  const file = join(dir, 'onnx', 'model_quantized.onnx');
  if (check.agreement < minAgreement) throw new AgreementError(file, check, minAgreement);
  writeFileAtomicSync(file, bytes);
  const fp32 = [modelPath, ...externalDataFiles(model, modelPath)].reduce((s, f) => s + statSync(f).size, 0);
  return { file, bytes: { fp32, int8: bytes.length }, rewritten: q.rewritten, weights: q.weights, check };
}
