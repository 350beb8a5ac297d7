// `kd eval`: a student (or any teacher folder) on labelled data: accuracy with an interval,
// macro-F1, NLL, calibration, agreement with the teacher (from a cache), the deviation
// diagnostic, gradient variance, size and speed.
import { ConfigError, requireLabel, type LabelNeed } from '../data/errors.js';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { DatasetReader, type ReadOptions } from '../data/read.js';
import { LABEL_NAMES, type ClassCount } from '../data/labels.js';
import type { LabelledExample } from '../data/example.js';
import { CacheReader } from '../cache/reader.js';
import { Student } from '../student/runtime.js';
import { Teacher } from '../teacher/teacher.js';
import { decodeModel } from '../teacher/onnx-model.js';
import type { SessionOptions } from '../engine/session.js';
import { accuracyReport, argmaxRow, type AccuracyReport } from './metrics.js';
import { softmaxRows } from '../util/stats.js';
import { calibration, deviationSlope, gradientVariance, type DeviationFit, type ReliabilityBin } from './diagnostics.js';

export interface EvalReport extends AccuracyReport {
  model: string;
  kind: string;
  data: string[];
  labels: string[];
  nll: number;
  ece: number;
  reliability: ReliabilityBin[];
  confidenceHistogram: number[];
  teacher: {
    agreement: number;
    accuracy: number;
    confidenceHistogram: number[];
    deviation: DeviationFit;
    gradientVariance: { lambdaStar: number; variance: Record<string, number> };
  } | null;
  size: { parameters: number; onnxBytes: number };
  latency: { batch1MsMedian: number; batchedTextsPerSecond: number; device: string };
}

interface Classifier {
  kind: string;
  labels: string[];
  onnxPath: string;
  /** The device the session runs on (CPU after an allowed fallback), reported with the latency. */
  device: string;
  logits(texts: readonly string[]): Promise<Float32Array>;
  dispose(): Promise<void>;
}

async function loadClassifier(dir: string, placement: SessionOptions): Promise<Classifier> {
  if (existsSync(join(dir, 'kd-student.json'))) {
    const s = await Student.load(dir, placement);
    return {
      kind: `student:${s.card.kind}`,
      labels: s.labels,
      onnxPath: join(dir, 'onnx', 'model.onnx'),
      device: s.device,
      logits: (t) => s.logits(t),
      dispose: () => s.dispose(),
    };
  }
  const t = await Teacher.load(dir, { session: placement, warn: () => undefined });
  return {
    kind: `teacher:${t.config.modelType}`,
    labels: t.labels,
    onnxPath: t.modelFile,
    device: t.device,
    logits: async (texts) => (await t.predict(texts)).logits,
    dispose: () => t.dispose(),
  };
}

function parameterCount(onnxPath: string): number {
  const model = decodeModel(onnxPath);
  return (model.graph?.initializer ?? []).reduce((s, t) => s + (t.dims ?? []).reduce((a: number, d) => a * Number(d), 1), 0);
}

/**
 * Evaluates a student (a folder with kd-student.json) or any teacher folder on labelled data
 * (`kd eval`): accuracy with a Wilson interval, macro-F1, NLL, calibration, size and latency;
 * with `cache`, agreement with the teacher, the deviation diagnostic and gradient variance.
 *
 * @param o - Model folder, data files, read options (`classes`), optional cache (and `verifyCache`), device,
 *   fallback, row limit, seed.
 * @returns The report (`kd eval --json` prints the same object).
 * @throws {ConfigError} The model folder cannot be loaded, or none of the rows is in `cache`.
 * @throws {FormatError} ONNX Runtime cannot load the model, or a data file is not its format.
 * @throws {CacheMismatchError} The cache is damaged, or its classes or labels are not the data's.
 * @throws {DeviceError} `device` is not available and `allowFallback` is not set.
 *
 * @example
 * ```ts
 * import { evaluateModel } from 'kd-toolkit';
 * const ev = await evaluateModel({ model: 'run/model', data: ['split/test.jsonl'], read: { classes: 2 }, cache: 'cache' });
 * console.log(ev.kind, ev.n, ev.accuracy, ev.macroF1, ev.nll, ev.teacher?.agreement, ev.size);
 * // student:ngram 90 0.5222222222222223 0.34306569343065696 0.6927753313516775 1 { parameters: 1048613, onnxBytes: 4195338 }
 * await evaluateModel({ model: 'run/model', data: ['split/test.jsonl'], read: { classes: 2 }, device: 'cuda' });
 * // DeviceError: --device cuda: the CUDA execution provider is not installed in onnxruntime-node. On a machine with CUDA 12 and
 * // cuDNN 9 run `ONNXRUNTIME_NODE_INSTALL=cuda12 node node_modules/onnxruntime-node/script/install.js`. Use --device cpu, or
 * // pass --allow-cpu-fallback to run on CPU with a warning
 * ```
 */
/** Why `kd eval` (and `kd teacher eval`) refuse unlabelled rows, and where those go instead. */
export const EVAL_NEEDS_LABELS: LabelNeed = {
  needs: 'kd eval',
  why: 'accuracy is measured against gold labels',
  instead: 'unlabelled rows (--format text, or --unlabeled) are teacher inputs for kd cache build --data',
};

export async function evaluateModel(o: {
  model: string;
  data: string[];
  read: ReadOptions & { classes: ClassCount };
  cache?: string;
  verifyCache?: boolean;
  /** Where its ONNX Runtime sessions run (device, threads, CPU fallback). */
  session?: SessionOptions;
  limit?: number;
  seed?: number;
}): Promise<EvalReport> {
  const examples: LabelledExample[] = [];
  for await (const ex of new DatasetReader(o.data, { ...o.read, progress: false })) {
    examples.push(requireLabel(ex, EVAL_NEEDS_LABELS));
    if (o.limit !== undefined && examples.length >= o.limit) break;
  }
  const labels = [...LABEL_NAMES[o.read.classes]];
  const C = labels.length;
  const clf = await loadClassifier(o.model, { device: o.session?.device, allowFallback: o.session?.allowFallback });
  try {
    const lower = clf.labels.map((l) => l.toLowerCase());
    const map = labels.map((l, i) => (lower.includes(l) ? lower.indexOf(l) : i));
    const texts = examples.map((e) => e.text);
    // One untimed batch first, so the timed pass is the steady state (compiled code, ONNX Runtime's first-run
    // allocations done) for teachers and students alike.
    await clf.logits(texts.slice(0, 256));
    const t0 = performance.now();
    const raw = await clf.logits(texts);
    const batchedTextsPerSecond = texts.length / ((performance.now() - t0) / 1000);
    const K = clf.labels.length;
    const logits = new Float32Array(examples.length * C);
    for (let i = 0; i < examples.length; i++) for (let c = 0; c < C; c++) logits[i * C + c] = raw[i * K + map[c]!]!;
    const gold = examples.map((e) => e.label);
    const predicted = examples.map((_, i) => argmaxRow(logits, i * C, C));
    const acc = accuracyReport(gold, predicted, C);
    const probs = softmaxRows(logits, examples.length, C);
    const cal = calibration(probs, gold, C);
    const single: number[] = [];
    for (const t of texts.slice(0, 100)) {
      const s0 = performance.now();
      await clf.logits([t]);
      single.push(performance.now() - s0);
    }
    single.sort((a, b) => a - b);
    let teacher: EvalReport['teacher'] = null;
    if (o.cache) {
      const cache = CacheReader.open(o.cache, { verify: o.verifyCache ?? true });
      try {
        cache.assertClasses(labels);
        const { ids, textHashes } = cache.keys();
        const rowOf = new Map(ids.map((id, r) => [id, r] as const));
        const present = examples
          .map((e, i) => ({ i, r: rowOf.get(e.id) }))
          .filter((x) => x.r !== undefined && textHashes[x.r] === examples[x.i]!.textHash) as { i: number; r: number }[];
        if (present.length === 0) throw new ConfigError(`none of the ${examples.length} rows is in the cache ${o.cache}`);
        const t = cache.read(Int32Array.from(present, (x) => x.r));
        cache.assertLabels(
          present.map((x) => examples[x.i]!),
          t.labels,
          labels,
        );
        const tp = softmaxRows(t.logits, present.length, C);
        const sp = new Float64Array(present.length * C);
        present.forEach((x, k) => sp.set(probs.subarray(x.i * C, (x.i + 1) * C), k * C));
        const g = present.map((x) => gold[x.i]!);
        let agree = 0;
        let right = 0;
        present.forEach((x, k) => {
          const tk = argmaxRow(t.logits, k * C, C);
          if (tk === predicted[x.i]) agree += 1;
          if (tk === gold[x.i]) right += 1;
        });
        teacher = {
          agreement: agree / present.length,
          accuracy: right / present.length,
          confidenceHistogram: calibration(tp, g, C).histogram,
          deviation: deviationSlope(tp, sp, present.length, C, o.seed ?? 13),
          gradientVariance: gradientVariance(sp, tp, g, C, [0, 0.5, 1]),
        };
      } finally {
        cache.close();
      }
    }
    return {
      model: o.model,
      kind: clf.kind,
      data: o.data,
      labels,
      ...acc,
      nll: cal.nll,
      ece: cal.ece,
      reliability: cal.bins,
      confidenceHistogram: cal.histogram,
      teacher,
      size: { parameters: parameterCount(clf.onnxPath), onnxBytes: statSync(clf.onnxPath).size },
      latency: { batch1MsMedian: single[Math.floor(single.length / 2)] ?? NaN, batchedTextsPerSecond, device: clf.device },
    };
  } finally {
    await clf.dispose();
  }
}
