// `kd train`: a student trained from cached teacher outputs with one distillation method,
// for one or several seeds; the best checkpoint exported in a layout users can run.
import { ConfigError } from '../data/errors.js';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { CacheReader } from '../cache/reader.js';
import { DatasetReader, type ReadOptions } from '../data/read.js';
import { LABEL_NAMES, type ClassCount } from '../data/labels.js';
import type { Example } from '../data/example.js';
import { getMethod, parseMethodOptions } from '../distill/registry.js';
import type { MethodData } from '../distill/method.js';
import type { ModelDefinition } from '../engine/context.js';
import { adamwTrainer } from '../engine/trainer.js';
import { exportModel, type LossDefinition } from '../engine/train-graph.js';
import { DamagedFileError } from '../engine/safetensors.js';
import { OptionError } from '../errors.js';
import { createHash } from 'node:crypto';
import { ort, type Device } from '../engine/session.js';
import { accuracyReport, argmaxRow, type AccuracyReport } from '../eval/metrics.js';
import { DEFAULT_NGRAM_STUDENT, ngramFeeds, ngramStudent, type NgramStudentConfig } from '../student/ngram.js';
import { DEFAULT_TRANSFORMER_STUDENT, transformerStudent, type TransformerStudentConfig } from '../student/transformer.js';
import { exportStudent, type StudentKind } from '../student/export.js';
import { ngramFeatures } from '../text/ngrams.js';
import { TextTokenizer, type Encoding } from '../text/tokenizer.js';
import { tokenFeeds } from '../text/feeds.js';
import { writeFileAtomicSync } from '../util/fs.js';
import { runVersions } from '../util/versions.js';
import { bucketedBatches, lengthOrder, predictRows, shuffledBatches } from '../engine/batches.js';
import { assertSameRunConfig, checkResumable, refuseSymlinks, runTrainingLoop, type LoopResult } from '../engine/loop.js';

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
  /** false: open the cache without the checksum pass (`--no-verify`). */
  verifyCache?: boolean;
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
  /** The settings it was trained with (see StudentRunConfig); a resumed run must match them. */
  runConfig?: StudentRunConfig;
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
    if (textHashes[r] !== ex.textHash)
      throw new ConfigError(
        `${ex.file}:${ex.line}: id ${ex.id} has text hash ${ex.textHash}, the cache has ${textHashes[r]}: the data changed since the cache was built. Rebuild the cache`,
      );
    rows[i] = r;
  });
  if (missing.length)
    throw new ConfigError(
      `${missing.length} of ${examples.length} ${what} rows are not in the cache ${cache.dir} (first: id ${missing[0]!.id} at ${missing[0]!.file}:${missing[0]!.line}). Build the cache over the same files`,
    );
  return rows;
}

function limitRows<T>(xs: T[], limit: number | undefined): T[] {
  if (limit === undefined || xs.length <= limit) return xs;
  const step = xs.length / limit;
  return Array.from({ length: limit }, (_, i) => xs[Math.floor(i * step)]!);
}

/** sha256 over each example's id, text hash and label: the identity of a split, wherever its files live. */
function splitDigest(examples: readonly Example[]): string {
  const hash = createHash('sha256');
  for (const e of examples) hash.update(`${e.id}\t${e.textHash}\t${e.label}\n`);
  return hash.digest('hex');
}

/**
 * Everything a run's result depends on, resolved (defaults filled in): stored in each checkpoint,
 * in config.json and in result.json; `--resume` with any other value is refused naming the field.
 * Left out, because a resumed run may change them: where it executes (device, threads,
 * allowFallback), verification switches, log, and where the data and cache live (their contents
 * are compared).
 */
export type StudentRunConfig = Record<string, unknown>;

export async function trainStudent(o: StudentRunOptions): Promise<StudentRunResult> {
  const log = o.log ?? (() => undefined);
  const trainingDir = join(o.out, 'training');
  const resultPath = join(o.out, 'result.json');
  const tokenizerDir = join(o.out, 'tokenizer');
  const modelDir = join(o.out, 'model');
  refuseSymlinks(o.out, trainingDir, resultPath, join(o.out, 'config.json'), tokenizerDir, modelDir);
  const started = existsSync(join(trainingDir, 'last.safetensors')) || existsSync(resultPath);
  if (started && !o.resume)
    throw new OptionError(
      `${o.out} holds a previous run (${existsSync(resultPath) ? 'result.json' : 'training/last.safetensors'}): pass --resume to continue it with the same settings, or choose another --out (or delete that folder) to start anew`,
    );
  const method = getMethod(o.loss);
  const options = parseMethodOptions(o.loss, o.lossOptions);
  const cache = CacheReader.open(o.cache, { verify: o.verifyCache ?? true });
  try {
    method.check?.(options, { embeddingMode: cache.manifest.embedding.mode, hasClassifier: cache.manifest.teacher.classifier.rows > 0 });
    const classes = cache.classes;
    const labels = LABEL_NAMES[o.read.classes];
    cache.assertClasses(labels);
    const train = limitRows((await readSplit(o.train, o.read)).examples, o.limit);
    const dev = (await readSplit(o.dev, o.read)).examples;
    const test = o.test?.length ? (await readSplit(o.test, o.read)).examples : null;
    const rows = joinCache(cache, train, 'training');
    const cached = cache.read(rows);
    cache.assertLabels(train, cached.labels, labels);
    const headSize = method.headSize(options, classes);

    // The student's settings, and for the transformer its vocabulary: part of the run, so a
    // resumed run reads the one saved in the run folder (ids must point at the same rows).
    let studentConfig: NgramStudentConfig | TransformerStudentConfig;
    let studentOptions: Record<string, unknown>;
    let tokenizer: TextTokenizer | null = null;
    let tokenizerSaved = false;
    if (o.student === 'ngram') {
      studentConfig = { ...DEFAULT_NGRAM_STUDENT, ...o.ngram, ngrams: { ...DEFAULT_NGRAM_STUDENT.ngrams, ...o.ngram?.ngrams } };
      studentOptions = { ...studentConfig };
    } else {
      const base = { ...DEFAULT_TRANSFORMER_STUDENT, ...o.transformer };
      const requestedVocab = o.transformer?.vocabSize ?? 8192;
      if (o.resume && started) {
        if (!existsSync(join(tokenizerDir, 'tokenizer.json')))
          throw new DamagedFileError(
            join(tokenizerDir, 'tokenizer.json'),
            'missing: the run has a checkpoint but not the vocabulary it was trained with',
            'Delete the run folder and start the run anew without --resume',
          );
        tokenizer = TextTokenizer.fromFolder(tokenizerDir, { maxLength: base.maxLength });
        tokenizerSaved = true;
      } else {
        tokenizer = o.tokenizer
          ? TextTokenizer.fromFolder(o.tokenizer, { maxLength: base.maxLength })
          : TextTokenizer.trainWordPiece(
              train.map((e) => e.text),
              { vocabSize: requestedVocab, maxLength: base.maxLength },
            );
      }
      studentConfig = { ...base, maxLength: tokenizer.maxLength, vocabSize: tokenizer.vocabSize };
      studentOptions = {
        ...base,
        vocabSize: o.tokenizer ? null : requestedVocab,
        tokenizer: o.tokenizer ? resolve(o.tokenizer) : 'trained',
      };
    }
    if (tokenizer && !tokenizerSaved) {
      mkdirSync(tokenizerDir, { recursive: true });
      tokenizer.save(tokenizerDir);
    }
    const runConfig: StudentRunConfig = {
      student: o.student,
      studentOptions,
      vocabularySha256: tokenizer
        ? createHash('sha256')
            .update(readFileSync(join(tokenizerDir, 'tokenizer.json')))
            .digest('hex')
        : null,
      loss: o.loss,
      lossOptions: options,
      headSize,
      epochs: o.epochs,
      batchSize: o.batchSize,
      lr: o.lr,
      weightDecay: o.weightDecay,
      warmupRatio: o.warmupRatio,
      evalEvery: o.evalEvery,
      patience: o.patience,
      seed: o.seed,
      limit: o.limit ?? null,
      data: {
        read: { ...o.read, labelMap: o.read.labelMap ? Object.fromEntries(o.read.labelMap) : null },
        train: { rows: train.length, sha256: splitDigest(train) },
        dev: { rows: dev.length, sha256: splitDigest(dev) },
        test: test ? { rows: test.length, sha256: splitDigest(test) } : null,
      },
      cache: {
        teacher: cache.manifest.teacher.fingerprint,
        data: cache.manifest.data.files,
        maxLength: cache.manifest.maxLength,
        embedding: cache.manifest.embedding,
        extrasSha256: cache.manifest.extras.sha256,
      },
    };
    // A finished seed is reused only when it was trained with exactly these settings.
    if (o.resume && existsSync(resultPath)) {
      const done = JSON.parse(readFileSync(resultPath, 'utf8')) as StudentRunResult;
      if (done.runConfig === undefined)
        throw new DamagedFileError(
          resultPath,
          'has no run config (written by an older kd), so it cannot be matched to this run',
          'Delete the run folder and train again',
        );
      assertSameRunConfig(done.runConfig, runConfig, resultPath);
      log(`${o.student}/${o.loss} seed ${o.seed}: finished earlier with the same settings (${resultPath})`);
      return done;
    }
    // Before anything else is written: the checkpoint is intact and has these settings.
    if (o.resume) checkResumable(trainingDir, runConfig);

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

    // The student and its inputs.
    let model: ModelDefinition;
    let feedsFor: (examples: Example[], rows: ArrayLike<number>) => Record<string, ort.Tensor>;
    let lengths: number[] = [];
    const featureCache = new Map<Example[], (Int32Array | Encoding)[]>();
    if (o.student === 'ngram') {
      const cfg = studentConfig as NgramStudentConfig;
      model = ngramStudent(cfg, headSize);
      const features = (xs: Example[]) => {
        let f = featureCache.get(xs) as Int32Array[] | undefined;
        if (!f) featureCache.set(xs, (f = xs.map((e) => ngramFeatures(e.text, cfg.ngrams))));
        return f;
      };
      feedsFor = (xs, r) => ngramFeeds(Array.from(r, (i) => features(xs)[i]!));
    } else {
      model = transformerStudent(studentConfig as TransformerStudentConfig, headSize);
      const tok = tokenizer!;
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
    const trainer = await adamwTrainer({
      model: full,
      loss,
      lr: o.lr,
      weightDecay: o.weightDecay,
      warmupRatio: o.warmupRatio,
      totalSteps,
      seed: o.seed,
      ...(o.device ? { device: o.device } : {}),
      ...(o.allowFallback ? { allowFallback: true } : {}),
      ...(o.threads ? { threads: o.threads } : {}),
    });
    mkdirSync(o.out, { recursive: true });
    writeFileAtomicSync(
      join(o.out, 'config.json'),
      `${JSON.stringify({ ...o, log: undefined, read: { ...o.read, labelMap: undefined }, resolved: { student: studentConfig, lossOptions: options, headSize, trainRows: train.length, devRows: dev.length, testRows: test?.length ?? 0, stepsPerCall: trainer.stepsPerCall }, cache: { dir: o.cache, teacher: cache.manifest.teacher.fingerprint, data: cache.manifest.data.files }, runConfig, versions: runVersions() }, null, 2)}\n`,
    );
    const predict = (xs: Example[]): Promise<Float32Array> => {
      const order = lengths.length ? lengthOrder(xs.map((e) => e.text.length)) : Int32Array.from({ length: xs.length }, (_, i) => i);
      return predictRows(
        order,
        classes,
        256,
        async (part) => (await trainer.evaluate(feedsFor(xs, part), ['logits'])).logits!.data as Float32Array,
      );
    };
    const report = (xs: Example[], logits: Float32Array) =>
      accuracyReport(
        xs.map((e) => e.label),
        xs.map((_, i) => argmaxRow(logits, i * classes, classes)),
        classes,
      );
    log(`${o.student} student, loss ${o.loss}, seed ${o.seed}: ${train.length} training rows, ${trainer.store.count()} parameters`);
    const loop = await runTrainingLoop<Int32Array>({
      trainer,
      outDir: trainingDir,
      runConfig,
      epochs: o.epochs,
      seed: o.seed,
      batches: (_e, rng) =>
        o.student === 'transformer' ? bucketedBatches(lengths, o.batchSize, rng) : shuffledBatches(train.length, o.batchSize, rng),
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
      restoreBest: true,
    });
    const devReport = report(dev, await predict(dev));
    const testReport = test ? report(test, await predict(test)) : null;
    exportStudent(modelDir, {
      kind: o.student,
      labels: [...labels],
      onnx: exportModel(full, trainer.store, { outputs: ['logits'], metadata: { producer: 'kd-toolkit student', loss: o.loss } }),
      config: studentConfig,
      tokenizer,
      training: {
        loss: o.loss,
        lossOptions: options,
        seed: o.seed,
        devAccuracy: devReport.accuracy,
        testAccuracy: testReport?.accuracy ?? null,
        cacheTeacher: cache.manifest.teacher.fingerprint,
      },
    });
    const result: StudentRunResult = {
      seed: o.seed,
      loss: o.loss,
      student: o.student,
      dev: devReport,
      test: testReport,
      loop,
      parameters: trainer.store.count(),
      model: modelDir,
      trainRows: train.length,
      runConfig,
    };
    writeFileAtomicSync(resultPath, `${JSON.stringify(result, null, 2)}\n`);
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

/** Seeds go into the host RNG as uint32 (and seed·1000003 + epoch must stay an exact double). */
export const MAX_SEED = 2 ** 32 - 1;

/** Refuses seeds that are not distinct integers in [0, MAX_SEED]: a repeat would train one folder twice. */
export function checkSeeds(seeds: readonly number[]): void {
  if (seeds.length === 0) throw new OptionError("'--seeds' must list at least one seed");
  for (const seed of seeds)
    if (!(Number.isSafeInteger(seed) && seed >= 0 && seed <= MAX_SEED))
      throw new OptionError(`'--seeds': ${seed} is not an integer in [0, ${MAX_SEED}]`);
  const repeated = seeds.find((s, i) => seeds.indexOf(s) !== i);
  if (repeated !== undefined)
    throw new OptionError(`'--seeds' lists ${repeated} twice: each seed is one run (in seed-${repeated}/); list distinct seeds`);
}

/**
 * Runs one student per seed in `<out>/seed-<seed>` and writes `<out>/summary.json`. With
 * `resume`, a finished seed is reused only when it was trained with the same settings.
 */
export async function trainStudentSeeds(
  o: StudentRunOptions,
  seeds: number[],
): Promise<{ runs: StudentRunResult[]; summary: SeedSummary }> {
  checkSeeds(seeds);
  const runs: StudentRunResult[] = [];
  for (const seed of seeds) runs.push(await trainStudent({ ...o, seed, out: join(o.out, `seed-${seed}`) }));
  const summary: SeedSummary = {
    seeds,
    dev: summarize(runs.map((r) => r.dev.accuracy)),
    test: runs.every((r) => r.test) ? summarize(runs.map((r) => r.test!.accuracy)) : null,
  };
  writeFileAtomicSync(
    join(o.out, 'summary.json'),
    `${JSON.stringify({ student: o.student, loss: o.loss, lossOptions: o.lossOptions, summary, runs: runs.map((r) => ({ seed: r.seed, dev: r.dev.accuracy, test: r.test?.accuracy ?? null, steps: r.loop.steps, bestStep: r.loop.bestStep })) }, null, 2)}\n`,
  );
  return { runs, summary };
}
