// int8 teacher inference: kd's dynamic int8 quantization applied to a teacher's graph at load (in memory,
// nothing written), after the fp32 optimization, and checked against the fp32 graph on check texts.
import { OptionError, UserError } from '../errors.js';
import { createSession, ort, type SessionOptions } from '../engine/session.js';
import { encodeModel, GraphIndex, intAttr, type ModelProto } from '../teacher/onnx-model.js';
import { lengthBatches, Teacher, type PrecisionCheck, type TeacherGraphTransform, type TeacherOptions } from '../teacher/teacher.js';
import type { TextTokenizer } from '../text/tokenizer.js';
import { tokenFeeds } from '../text/feeds.js';
import { dirname } from 'node:path';
import { checkTexts } from './check-texts.js';
import { quantizeGraph } from './graph.js';
import { compareLogits } from './model.js';

/** Precisions a teacher can run in. */
export const TEACHER_PRECISIONS = ['none', 'int8'] as const;
export type TeacherQuantize = (typeof TEACHER_PRECISIONS)[number];

export interface Int8TeacherOptions {
  /** The least argmax agreement with fp32 on the check texts (default 0.99). */
  minAgreement?: number;
  /** Check texts (default 128; see check-texts.ts). */
  checkRows?: number;
  /**
   * Texts whose int8 logit margin (the top two logits' difference) is under this are recomputed in fp32 (0: none).
   * 'auto' (default): the mean margin change int8 made on the check texts ({@link PrecisionCheck.marginChange}).
   */
  recheckMargin?: number | 'auto';
}

/** The int8 teacher picks another class than the fp32 one too often; it is not used. */
export class TeacherAgreementError extends UserError {
  constructor(
    modelFile: string,
    readonly check: PrecisionCheck,
  ) {
    const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
    super(
      `${modelFile}: --quantize int8 refused: the int8 teacher picks the fp32 teacher's class on ` +
        `${Math.round(check.agreement * check.rows)} of ${check.rows} check texts (${pct(check.agreement)}), below the ` +
        `${pct(check.minAgreement)} required (largest logit difference ${check.maxDiff.toPrecision(3)}); run the teacher in fp32 ` +
        `(drop --quantize), or pass --min-agreement ${Math.floor(100 * check.agreement) / 100} to accept it`,
    );
    this.name = 'TeacherAgreementError';
  }
}

/** The tensor the graph's `embedding` output copies (the classifier's input), or null. */
function embeddingSource(model: ModelProto): string | null {
  const n = (model.graph!.node ?? []).find((x) => x.opType === 'Identity' && x.output?.[0] === 'embedding');
  return n?.input?.[0] ?? null;
}

/**
 * The inputs of every MatMul and Gemm computed from the position the classifier reads (a position-0 Slice the graph
 * optimization inserted, or a Gather of index 0 on the sequence axis): the pre-classifier and, after the optimization,
 * the last layer's query, output and feed-forward. They run on one row per text, so int8 saves little time there and
 * only adds its noise to the logits.
 */
export function positionZeroInputs(model: ModelProto, modelPath: string): string[] {
  const g = model.graph!;
  const index = new GraphIndex(model, modelPath);
  const derived = new Set<string>();
  const inputs = new Set<string>();
  for (const n of g.node ?? []) {
    const ins = n.input ?? [];
    const selects =
      (n.opType === 'Slice' && (n.name ?? '').startsWith('kd_pos0_')) ||
      (n.opType === 'Gather' && intAttr(n, 'axis', 0) === 1 && index.constantInts(ins[1] ?? '')?.join() === '0');
    if (selects || ins.some((t) => derived.has(t))) for (const o of n.output ?? []) derived.add(o);
    if ((n.opType === 'MatMul' || n.opType === 'Gemm') && derived.has(ins[0] ?? '')) inputs.add(ins[0]!);
  }
  return [...inputs];
}

/**
 * Mean over rows of max_j |Δ(x_k − x_j)| between `x` and `q` [rows, C], k the row's argmax in `x`: how far the
 * quantization moved each text's margins.
 *
 * @example
 * ```ts
 * marginChange(Float32Array.of(1, 0, 0, 1), Float32Array.of(0.75, 0, 0, 1.5), 2); // (0.25 + 0.5) / 2 = 0.375
 * ```
 */
export function marginChange(x: Float32Array, q: Float32Array, C: number): number {
  const rows = x.length / C;
  let sum = 0;
  for (let r = 0; r < rows; r++) {
    let k = 0;
    for (let c = 1; c < C; c++) if (x[r * C + c]! > x[r * C + k]!) k = c;
    let worst = 0;
    for (let j = 0; j < C; j++) {
      const d = Math.abs(x[r * C + k]! - x[r * C + j]! - (q[r * C + k]! - q[r * C + j]!));
      worst = Number.isNaN(d) ? Infinity : Math.max(worst, d);
    }
    sum += worst;
  }
  return rows ? sum / rows : 0;
}

/** Logits of `model` on the check texts, batched by length (2,048 tokens a batch). */
async function checkLogits(session: ort.InferenceSession, tokenizer: TextTokenizer, texts: string[]): Promise<Float32Array[]> {
  const encodings = await tokenizer.encode(texts);
  const withTypes = session.inputNames.includes('token_type_ids');
  const out: Float32Array[] = [];
  for (const positions of lengthBatches(
    encodings.map((e) => e.ids.length),
    2048,
    256,
  )) {
    const feeds = tokenFeeds(tokenizer.pad(Array.from(positions, (p) => encodings[p]!)), withTypes);
    out.push((await session.run(feeds, ['logits'])).logits!.data as Float32Array);
  }
  return out;
}

/**
 * The int8 rewrite of a teacher's graph for {@link Teacher.load}'s `transform`: every MatMul/Gemm with a constant
 * weight but the classifier's (so the cached logits stay W · embedding + b for the fp32 W and b found on the float
 * graph) and those on the position-0 path ({@link positionZeroInputs}), and the large embedding tables, become int8
 * (see quantizeGraph; weights per column); the embedding tables stay fp32 (their int8 rows add a third of the logits'
 * noise and save no time). Then both graphs run on `checkRows` check texts, and a TeacherAgreementError is thrown when
 * their argmax agrees on less than `minAgreement` of them. The teacher recomputes in fp32 the texts whose int8 margin is
 * under `recheckMargin` (see {@link Int8TeacherOptions.recheckMargin}).
 *
 * @throws {RangeError} `minAgreement` outside [0, 1], `checkRows` not a positive integer or `recheckMargin` negative.
 */
export function int8TeacherTransform(opts: Int8TeacherOptions = {}): TeacherGraphTransform {
  const minAgreement = opts.minAgreement ?? 0.99;
  if (!(minAgreement >= 0 && minAgreement <= 1)) throw new RangeError(`'minAgreement' must be in [0, 1], got ${minAgreement}`);
  const rows = opts.checkRows ?? 128;
  if (!Number.isInteger(rows) || rows < 1) throw new RangeError(`'checkRows' must be a positive integer, got ${rows}`);
  const recheck = opts.recheckMargin ?? 'auto';
  if (recheck !== 'auto' && !(recheck >= 0 && Number.isFinite(recheck)))
    throw new RangeError(`'recheckMargin' must be 'auto' or a non-negative number, got ${recheck}`);
  return {
    precision: 'int8',
    async apply(model, { modelFile, tokenizer, session }: { modelFile: string; tokenizer: TextTokenizer; session: SessionOptions }) {
      const head = embeddingSource(model);
      const floatInputs = new Set([...(head ? [head] : []), ...positionZeroInputs(model, modelFile)]);
      const q = quantizeGraph(model, modelFile, { floatInputs: [...floatInputs], minEmbeddingElements: Infinity, attention: true });
      const constants = new GraphIndex(model, modelFile).constants;
      const keptFloat = (model.graph!.node ?? []).filter(
        (n) => (n.opType === 'MatMul' || n.opType === 'Gemm') && floatInputs.has(n.input?.[0] ?? '') && constants.has(n.input?.[1] ?? ''),
      ).length;
      const texts = checkTexts(rows);
      const open = (m: ModelProto) => createSession(encodeModel(m), { ...session, externalDataDir: dirname(modelFile) });
      const fp32 = await open(model);
      let reference: Float32Array[];
      try {
        reference = await checkLogits(fp32.session, tokenizer, texts);
      } finally {
        await fp32.session.release();
      }
      const int8 = await open(q.model);
      let quantized: Float32Array[];
      try {
        quantized = await checkLogits(int8.session, tokenizer, texts);
      } finally {
        await int8.session.release();
      }
      const concat = (parts: Float32Array[]) => {
        const all = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
        parts.reduce((at, p) => (all.set(p, at), at + p.length), 0);
        return all;
      };
      const [x, y] = [concat(reference), concat(quantized)];
      const c = compareLogits(x, y, x.length / rows);
      const moved = marginChange(x, y, x.length / rows);
      const recheckMargin = recheck === 'auto' ? moved : recheck;
      const check: PrecisionCheck = {
        rows,
        agreement: c.agreement,
        maxDiff: c.maxDiff,
        minAgreement,
        marginChange: moved,
        recheckMargin,
      };
      if (c.agreement < minAgreement) throw new TeacherAgreementError(modelFile, check);
      const { MatMul, Gemm } = q.rewritten;
      const attention = q.attentionBlocks;
      return {
        model: q.model,
        check,
        // QAttention changes the outputs (its own attention kernel), so a cache made without it is not reused; nor one made
        // before kd's sessions kept u8×s8 products from saturating (session.x64quantprecision where they do, see
        // session.ts), whose int8 logits on an x86-64 CPU without VNNI are other numbers. Exact products give the same
        // bits with the entry or with VNNI, so the recipe does not say which.
        recipe:
          `int8 MatMul/Gemm${attention ? ', attention QAttention' : ''}, products unsaturated (x64quantprecision), ` +
          `embedding tables fp32; fp32 recheck ${recheck}`,
        note:
          `int8: ${MatMul} MatMul, ${Gemm} Gemm${attention ? `, ${attention} attention blocks (QAttention)` : ''} quantized ` +
          `(${keptFloat} MatMul/Gemm of the classifier and the position-0 ` +
          `path and the embedding tables kept fp32), agreement with fp32 ${(100 * c.agreement).toFixed(1)}% on ${rows} ` +
          `check texts (largest logit difference ${c.maxDiff.toPrecision(3)}, mean margin change ${moved.toPrecision(3)}); ` +
          (recheckMargin > 0 ? `texts with an int8 margin under ${recheckMargin.toPrecision(3)} recomputed in fp32` : 'no fp32 recheck'),
      };
    },
  };
}

export interface LoadTeacherOptions extends TeacherOptions, Int8TeacherOptions {
  /** 'int8': quantize at load and check against fp32 (default 'none': fp32 as exported). */
  quantize?: TeacherQuantize;
}

/**
 * {@link Teacher.load} with `quantize: 'int8'` handled: the float graph's classifier is found and the graph optimized
 * in fp32 (checked against the original), then quantized in memory and checked (see {@link int8TeacherTransform}).
 *
 * @throws {OptionError} `quantize: 'int8'` with `quantized: true` (model_quantized.onnx is int8 already).
 * @throws {TeacherAgreementError} The int8 graph agrees with fp32 on less than `minAgreement` of the check texts.
 *
 * @example
 * ```ts
 * const teacher = await loadTeacher('../shared/fixtures/hf/tiny-random-bert', { quantize: 'int8' });
 * console.log(teacher.precision, teacher.precisionCheck);
 * // int8 { rows: 128, agreement: 1, maxDiff: 0.0025…, minAgreement: 0.99, marginChange: 0.0010…, recheckMargin: 0.0010… }
 * ```
 */
export async function loadTeacher(dir: string, opts: LoadTeacherOptions = {}): Promise<Teacher> {
  const { quantize = 'none', minAgreement, checkRows, recheckMargin, ...teacherOpts } = opts;
  if (!TEACHER_PRECISIONS.includes(quantize))
    throw new OptionError(`'--quantize' must be one of ${TEACHER_PRECISIONS.join(', ')}, got ${JSON.stringify(quantize)}`);
  if (quantize === 'none') {
    for (const [flag, v] of [
      ['min-agreement', minAgreement],
      ['recheck-margin', recheckMargin],
    ] as const)
      if (v !== undefined) throw new OptionError(`'--${flag}' applies to --quantize int8 only; add --quantize int8 or drop it`);
    return Teacher.load(dir, teacherOpts);
  }
  if (teacherOpts.quantized)
    throw new OptionError(
      `'--quantize int8' quantizes onnx/model.onnx at load, and --quantized runs onnx/model_quantized.onnx (int8 already): ` +
        'pass one of them',
    );
  const transform = int8TeacherTransform({
    ...(minAgreement !== undefined ? { minAgreement } : {}),
    ...(checkRows !== undefined ? { checkRows } : {}),
    ...(recheckMargin !== undefined ? { recheckMargin } : {}),
  });
  return Teacher.load(dir, { ...teacherOpts, transform });
}
