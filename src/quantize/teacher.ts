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
 * (see quantizeGraph; weights per column); then both graphs run on `checkRows` check
 * texts, and a TeacherAgreementError is thrown when their argmax agrees on less than `minAgreement` of them.
 *
 * @throws {RangeError} `minAgreement` outside [0, 1] or `checkRows` not a positive integer.
 */
export function int8TeacherTransform(opts: Int8TeacherOptions = {}): TeacherGraphTransform {
  const minAgreement = opts.minAgreement ?? 0.99;
  if (!(minAgreement >= 0 && minAgreement <= 1)) throw new RangeError(`'minAgreement' must be in [0, 1], got ${minAgreement}`);
  const rows = opts.checkRows ?? 128;
  if (!Number.isInteger(rows) || rows < 1) throw new RangeError(`'checkRows' must be a positive integer, got ${rows}`);
  return {
    precision: 'int8',
    async apply(model, { modelFile, tokenizer, session }: { modelFile: string; tokenizer: TextTokenizer; session: SessionOptions }) {
      const head = embeddingSource(model);
      const floatInputs = new Set([...(head ? [head] : []), ...positionZeroInputs(model, modelFile)]);
      const q = quantizeGraph(model, modelFile, { floatInputs: [...floatInputs] });
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
      const x = concat(reference);
      const c = compareLogits(x, concat(quantized), x.length / rows);
      const check: PrecisionCheck = { rows, agreement: c.agreement, maxDiff: c.maxDiff, minAgreement };
      if (c.agreement < minAgreement) throw new TeacherAgreementError(modelFile, check);
      const { MatMul, Gemm, Gather } = q.rewritten;
      return {
        model: q.model,
        check,
        note:
          `int8: ${MatMul} MatMul, ${Gemm} Gemm, ${Gather} embedding Gather quantized (${keptFloat} MatMul/Gemm of the ` +
          `classifier and the position-0 path kept fp32), agreement with fp32 ` +
          `${(100 * c.agreement).toFixed(1)}% on ${rows} check texts (largest logit difference ${c.maxDiff.toPrecision(3)})`,
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
 * // int8 { rows: 128, agreement: 1, maxDiff: 0.0031…, minAgreement: 0.99 }
 * ```
 */
export async function loadTeacher(dir: string, opts: LoadTeacherOptions = {}): Promise<Teacher> {
  const { quantize = 'none', minAgreement, checkRows, ...teacherOpts } = opts;
  if (!TEACHER_PRECISIONS.includes(quantize))
    throw new OptionError(`'--quantize' must be one of ${TEACHER_PRECISIONS.join(', ')}, got ${JSON.stringify(quantize)}`);
  if (quantize === 'none') {
    if (minAgreement !== undefined)
      throw new OptionError(`'--min-agreement' applies to --quantize int8 only; add --quantize int8 or drop it`);
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
  });
  return Teacher.load(dir, { ...teacherOpts, transform });
}
