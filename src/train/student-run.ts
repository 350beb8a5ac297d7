// `kd train`: a student trained from cached teacher outputs with one distillation method,
// for one or several seeds; the best checkpoint exported in a layout users can run.
import { ConfigError } from '../data/errors.js';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CacheReader } from '../cache/reader.js';
import { DatasetReader, type ReadOptions } from '../data/read.js';
import { LABEL_NAMES, type ClassCount } from '../data/labels.js';
import type { Example } from '../data/example.js';
import { getMethod, parseMethodOptions } from '../distill/registry.js';
import type { MethodData } from '../distill/method.js';
import type { ModelDefinition } from '../engine/context.js';
import { exportModel, Trainer, type LossDefinition } from '../engine/train-step.js';
import { loadSafetensors } from '../engine/safetensors.js';
import { ort, type Device } from '../engine/session.js';
import { accuracyReport, argmaxRow, type AccuracyReport } from './metrics.js';
import { DEFAULT_NGRAM_STUDENT, ngramFeeds, ngramStudent, type NgramStudentConfig } from '../student/ngram.js';
import { DEFAULT_TRANSFORMER_STUDENT, transformerStudent, type TransformerStudentConfig } from '../student/transformer.js';
import { exportStudent, type StudentKind } from '../student/export.js';
import { ngramFeatures } from '../text/ngrams.js';
import { TextTokenizer, type Encoding } from '../text/tokenizer.js';
import { tokenFeeds } from '../teacher/teacher.js';
import { writeFileAtomicSync } from '../util/fs.js';
import { runVersions } from '../util/versions.js';
import { bucketedBatches, shuffledBatches } from '../engine/batches.js';
import { runTrainingLoop, type LoopResult } from '../engine/loop.js';

export interface StudentRunOptions {
  cache: string;
  train: string[];
  dev: string[];
  test?: string[];
  read: ReadOptions & { classes: ClassCount };
  student: StudentKind;
  ngram?: Partial<NgramStudentConfig>;
  transformer?: Partial<Omit<TransformerStudentConfig, 'vocabSize'>> & { vocabSize?: number };
  /** A folder holding the tokenizer.json the transformer student uses (e.g. the teacher's); default: its own vocabulary. */
  tokenizer?: string;
  loss: string;
  lossOptions: Record<string, unknown>;
  epochs: number;
  batchSize: number;
  lr: number;
  weightDecay: number;
  warmupRatio: number;
  evalEvery: number;
  patience: number;
  seed: number;
  out: string;
  resume?: boolean;
  limit?: number;
  device?: Device;
  allowFallback?: boolean;
  threads?: number;
  log?: (line: string) => void;
}

export interface StudentRunResult {
  seed: number;
  loss: string;
  student: StudentKind;
  dev: AccuracyReport;
  test: AccuracyReport | null;
  loop: LoopResult;
  parameters: number;
  model: string;
  trainRows: number;
}

interface Split {
  examples: Example[];
}

async function readSplit(files: string[], read: ReadOptions): Promise<Split> {
  const examples: Example[] = [];
  const seen = new Set<string>();
  for await (const ex of new DatasetReader(files, { ...read, progress: false })) {
    if (seen.has(ex.id)) continue;
    seen.add(ex.id);
    examples.push(ex);
  }
  return { examples };
}

/** Rows of the cache for `examples`, by id, with the text hash checked. */
function joinCache(cache: CacheReader, examples: Example[], what: string): Int32Array {
  const { ids, textHashes } = cache.keys();
  const rowOf = new Map<string, number>();
  ids.forEach((id, r) => rowOf.set(id, r));
  const rows = new Int32Array(examples.length);
  const missing: Example[] = [];
  examples.forEach((ex, i) => {
    const r = rowOf.get(ex.id);
    if (r === undefined) {
      missing.push(ex);
      return;
    }
    if (textHashes[r] !== ex.textHash) throw new ConfigError(`${ex.file}:${ex.line}: id ${ex.id} has text hash ${ex.textHash}, the cache has ${textHashes[r]}: the data changed since the cache was built. Rebuild the cache`);
    rows[i] = r;
  });
  if (missing.length) throw new ConfigError(`${missing.length} of ${examples.length} ${what} rows are not in the cache ${cache.dir} (first: id ${missing[0]!.id} at ${missing[0]!.file}:${missing[0]!.line}). Build the cache over the same files`);
  return rows;
}

function limitRows<T>(xs: T[], limit: number | undefined): T[] {
  if (limit === undefined || xs.length <= limit) return xs;
  const step = xs.length / limit;
  return Array.from({ length: limit }, (_, i) => xs[Math.floor(i * step)]!);
}

export async function trainStudent(o: StudentRunOptions): Promise<StudentRunResult> {
  const log = o.log ?? (() => undefined);
  const method = getMethod(o.loss);
  const options = parseMethodOptions(o.loss, o.lossOptions);
  const cache = CacheReader.open(o.cache);
  try {
    method.check?.(options, { embeddingMode: cache.manifest.embedding.mode, hasClassifier: cache.manifest.teacher.classifier.rows > 0 });
    const classes = cache.classes;
    const labels = LABEL_NAMES[o.read.classes];
    if (labels.length !== classes) throw new ConfigError(`the cache has ${classes} classes, --classes ${o.read.classes} asks for ${labels.length}`);
    const train = limitRows((await readSplit(o.train, o.read)).examples, o.limit);
    const dev = (await readSplit(o.dev, o.read)).examples;
    const test = o.test?.length ? (await readSplit(o.test, o.read)).examples : null;
    const rows = joinCache(cache, train, 'training');
    const cached = cache.read(rows);
    cached.labels.forEach((y, i) => {
      if (y !== train[i]!.label) throw new ConfigError(`${train[i]!.file}:${train[i]!.line}: label ${train[i]!.label} differs from the cache's ${y} for id ${train[i]!.id}`);
    });
    const extras = cache.extras();
    const data: MethodData = {
      classes,
      teacherLogits: cached.logits,
      embedding: cached.embedding,
      dim: cache.dim,
      weight: extras.weight,
      bias: extras.bias,
      pca: extras.pca,
      labels: cached.labels,
      seed: o.seed,
    };
    const prepared = method.prepare(options, data);
    const headSize = method.headSize(options, classes);

    // The student and its inputs.
    let model: ModelDefinition;
    let feedsFor: (examples: Example[], rows: ArrayLike<number>) => Record<string, ort.Tensor>;
    let lengths: number[] = [];
    let tokenizer: TextTokenizer | null = null;
    let studentConfig: NgramStudentConfig | TransformerStudentConfig;
    const featureCache = new Map<Example[], (Int32Array | Encoding)[]>();
    if (o.student === 'ngram') {
      const cfg: NgramStudentConfig = { ...DEFAULT_NGRAM_STUDENT, ...o.ngram, ngrams: { ...DEFAULT_NGRAM_STUDENT.ngrams, ...o.ngram?.ngrams } };
      studentConfig = cfg;
      model = ngramStudent(cfg, headSize);
      const features = (xs: Example[]) => {
        let f = featureCache.get(xs) as Int32Array[] | undefined;
        if (!f) featureCache.set(xs, (f = xs.map((e) => ngramFeatures(e.text, cfg.ngrams))));
        return f;
      };
      feedsFor = (xs, r) => ngramFeeds(Array.from(r, (i) => features(xs)[i]!));
    } else {
      const base = { ...DEFAULT_TRANSFORMER_STUDENT, ...o.transformer };
      tokenizer = o.tokenizer ? TextTokenizer.fromFolder(o.tokenizer, { maxLength: base.maxLength }) : TextTokenizer.trainWordPiece(train.map((e) => e.text), { vocabSize: o.transformer?.vocabSize ?? 8192, maxLength: base.maxLength });
      const cfg: TransformerStudentConfig = { ...base, maxLength: tokenizer.maxLength, vocabSize: tokenizer.vocabSize };
      studentConfig = cfg;
      model = transformerStudent(cfg, headSize);
      const tok = tokenizer;
      const encoded = new Map<Example[], Encoding[]>();
      for (const xs of [train, dev, ...(test ? [test] : [])]) encoded.set(xs, await tok.encode(xs.map((e) => e.text)));
      lengths = encoded.get(train)!.map((e) => e.ids.length);
      feedsFor = (xs, r) => {
        return tokenFeeds(tok.pad(Array.from(r, (i) => encoded.get(xs)![i]!)));
      };
    }
    const full: ModelDefinition = {
      inputs: model.inputs,
      forward: (ctx, inputs) => {
        const out = model.forward(ctx, inputs);
        return { ...out, logits: method.classLogits(options, out.head!, classes) };
      },
    };
    const loss: LossDefinition = {
      inputs: { labels: { dtype: 'int64', shape: ['batch_size'] }, ...method.inputs(options, classes) },
      build: (outputs, inputs) => {
        const { loss: value, terms } = method.loss(options, outputs.head!, inputs.labels!, inputs, classes);
        return { loss: value, metrics: terms };
      },
    };
    const batchesPerEpoch = Math.ceil(train.length / o.batchSize);
    const totalSteps = batchesPerEpoch * o.epochs;
    const trainer = await Trainer.create({
      model: full,
      loss,
      optimizer: { kind: 'adamw', lr: o.lr, weightDecay: o.weightDecay, clipNorm: 1 },
      schedule: { kind: 'linear', warmupSteps: Math.max(1, Math.round(o.warmupRatio * totalSteps)), totalSteps },
      stepsPerCall: 'auto',
      seed: o.seed,
      ...(o.device ? { device: o.device } : {}),
      ...(o.allowFallback ? { allowFallback: true } : {}),
      ...(o.threads ? { threads: o.threads } : {}),
    });
    mkdirSync(o.out, { recursive: true });
    writeFileAtomicSync(
      join(o.out, 'config.json'),
      `${JSON.stringify({ ...o, log: undefined, read: { ...o.read, labelMap: undefined }, resolved: { student: studentConfig, lossOptions: options, headSize, trainRows: train.length, devRows: dev.length, testRows: test?.length ?? 0, stepsPerCall: trainer.stepsPerCall }, cache: { dir: o.cache, teacher: cache.manifest.teacher.fingerprint, data: cache.manifest.data.files }, versions: runVersions() }, null, 2)}\n`,
    );
    const predict = async (xs: Example[]): Promise<Float32Array> => {
      const order = Int32Array.from({ length: xs.length }, (_, i) => i);
      if (lengths.length) order.sort((a, b) => xs[a]!.text.length - xs[b]!.text.length);
      const out = new Float32Array(xs.length * classes);
      for (let s = 0; s < order.length; s += 256) {
        const part = order.subarray(s, s + 256);
        const logits = (await trainer.evaluate(feedsFor(xs, part), ['logits'])).logits!.data as Float32Array;
        part.forEach((r, k) => out.set(logits.subarray(k * classes, (k + 1) * classes), r * classes));
      }
      return out;
    };
    const report = (xs: Example[], logits: Float32Array) => accuracyReport(xs.map((e) => e.label), xs.map((_, i) => argmaxRow(logits, i * classes, classes)), classes);
    log(`${o.student} student, loss ${o.loss}, seed ${o.seed}: ${train.length} training rows, ${trainer.store.count()} parameters`);
    const loop = await runTrainingLoop<Int32Array>({
      trainer,
      outDir: join(o.out, 'training'),
      epochs: o.epochs,
      seed: o.seed,
      batches: (_e, rng) => (o.student === 'transformer' ? bucketedBatches(lengths, o.batchSize, rng) : shuffledBatches(train.length, o.batchSize, rng)),
      feed: (r) => {
        const progress = trainer.stepCount / totalSteps;
        const epoch = 1 + trainer.stepCount / batchesPerEpoch;
        const labelFeed = new ort.Tensor('int64', BigInt64Array.from(Array.from(r, (i) => BigInt(train[i]!.label))), [r.length]);
        return { ...feedsFor(train, r), labels: labelFeed, ...method.feeds(options, prepared, data, r, { progress, epoch }) };
      },
      evaluate: async () => ({ score: report(dev, await predict(dev)).accuracy }),
      ...(o.evalEvery ? { evalEvery: o.evalEvery } : {}),
      patience: o.patience,
      ...(o.resume ? { resume: true } : {}),
      label: `${o.student}/${o.loss} seed ${o.seed}`,
      log,
    });
    const best = loadSafetensors(join(o.out, 'training', 'best.safetensors'));
    for (const [name, t] of best.tensors) trainer.store.get(name).set(t.data as Float32Array);
    const devReport = report(dev, await predict(dev));
    const testReport = test ? report(test, await predict(test)) : null;
    const modelDir = join(o.out, 'model');
    exportStudent(modelDir, {
      kind: o.student,
      labels: [...labels],
      onnx: exportModel(full, trainer.store, { outputs: ['logits'], metadata: { producer: 'kd-toolkit student', loss: o.loss } }),
      config: studentConfig,
      tokenizer,
      training: { loss: o.loss, lossOptions: options, seed: o.seed, devAccuracy: devReport.accuracy, testAccuracy: testReport?.accuracy ?? null, cacheTeacher: cache.manifest.teacher.fingerprint },
    });
    const result: StudentRunResult = { seed: o.seed, loss: o.loss, student: o.student, dev: devReport, test: testReport, loop, parameters: trainer.store.count(), model: modelDir, trainRows: train.length };
    writeFileAtomicSync(join(o.out, 'result.json'), `${JSON.stringify(result, null, 2)}\n`);
    await trainer.dispose();
    return result;
  } finally {
    cache.close();
  }
}

/** Two-sided 95% t quantiles for n − 1 degrees of freedom. */
const T95 = [NaN, 12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228];

export interface SeedSummary {
  seeds: number[];
  dev: { mean: number; std: number; ci95: [number, number] };
  test: { mean: number; std: number; ci95: [number, number] } | null;
}

export function summarize(values: number[]): { mean: number; std: number; ci95: [number, number] } {
  const n = values.length;
  const mean = values.reduce((a, b) => a + b, 0) / n;
  const std = n > 1 ? Math.sqrt(values.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1)) : 0;
  const t = n > 1 ? (T95[n - 1] ?? 1.96) : 0;
  const half = n > 1 ? (t * std) / Math.sqrt(n) : 0;
  return { mean, std, ci95: [mean - half, mean + half] };
}

/** Runs one student per seed in `<out>/seed-<seed>` and writes `<out>/summary.json`. */
export async function trainStudentSeeds(o: StudentRunOptions, seeds: number[]): Promise<{ runs: StudentRunResult[]; summary: SeedSummary }> {
  const runs: StudentRunResult[] = [];
  for (const seed of seeds) {
    const dir = join(o.out, `seed-${seed}`);
    const done = join(dir, 'result.json');
    if (o.resume && existsSync(done)) {
      runs.push(JSON.parse(readFileSync(done, 'utf8')) as StudentRunResult);
      continue;
    }
    runs.push(await trainStudent({ ...o, seed, out: dir }));
  }
  const summary: SeedSummary = {
    seeds,
    dev: summarize(runs.map((r) => r.dev.accuracy)),
    test: runs.every((r) => r.test) ? summarize(runs.map((r) => r.test!.accuracy)) : null,
  };
  writeFileAtomicSync(join(o.out, 'summary.json'), `${JSON.stringify({ student: o.student, loss: o.loss, lossOptions: o.lossOptions, summary, runs: runs.map((r) => ({ seed: r.seed, dev: r.dev.accuracy, test: r.test?.accuracy ?? null, steps: r.loop.steps, bestStep: r.loop.bestStep })) }, null, 2)}\n`);
  return { runs, summary };
}
