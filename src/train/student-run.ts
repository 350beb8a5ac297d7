// `kd train`: a student trained from cached teacher outputs with one distillation method,
// for one or several seeds; the best checkpoint exported in a layout users can run.
import { ConfigError, requireLabel, type LabelNeed } from '../data/errors.js';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CacheReader } from '../cache/reader.js';
import { DatasetReader, type ReadOptions } from '../data/read.js';
import { LABEL_NAMES, type ClassCount } from '../data/labels.js';
import type { Example, LabelledExample } from '../data/example.js';
import { getMethod, parseMethodOptions } from '../distill/registry.js';
import type { DistillMethod, MethodData, StepSchedule } from '../distill/method.js';
import type { ModelDefinition } from '../engine/context.js';
import { exportModel, type LossDefinition } from '../engine/train-graph.js';
import { adamwTrainer, adamwTrainerOptions, type StepTrainer } from '../engine/trainer.js';
import { BagTrainer, type BagModelSpec } from '../engine/bag-trainer.js';
import { DamagedFileError } from '../engine/safetensors.js';
import { lengthOrder, predictRows } from '../engine/batches.js';
import { OptionError } from '../errors.js';
import { createHash } from 'node:crypto';
import { ort, type SessionOptions } from '../engine/session.js';
import { accuracyReport, argmaxRow, type AccuracyReport } from '../eval/metrics.js';
import { batchMean, maskedMean } from '../engine/losses.js';
import { hostMean, labelsOf, maskedHostMean, type HostLoss } from '../engine/host-losses.js';
import * as op from '../engine/ops.js';
import { NO_LABEL } from '../cache/format.js';
import { scalarFeed } from '../distill/method.js';
import type { InputSpecs } from '../engine/context.js';
import { exportStudent, type StudentKind } from '../student/export.js';
import { getStudent, resolveStudentSettings } from '../student/registry.js';
import type { Featurizer, StudentDefinition, StudentSetup } from '../student/student.js';
import type { Rng } from '../engine/rng.js';
import { writeFileAtomicSync } from '../util/fs.js';
import { runVersions } from '../util/versions.js';
import { acquireFolderLock } from '../util/lock.js';
import { assertSameRunConfig, checkResumable, refuseSymlinks, runTrainingLoop, type LoopResult } from '../engine/loop.js';

export interface StudentRunOptions {
  cache: string;
  train: string[];
  dev: string[];
  test?: string[];
  read: ReadOptions & { classes: ClassCount };
  /**
   * Transfer sets: rows the student learns from with the teacher's targets alone (gold labels, if any, unused); they
   * must be in the cache. Read with `read` and `unlabeled: true`, in `transferFormat` when given.
   */
  transfer?: string[];
  transferFormat?: ReadOptions['format'];
  /** Fraction of each batch that is transfer rows, in (0, 1); default n_transfer / (n_train + n_transfer). */
  transferRatio?: number;
  /** A student in src/student/registry.ts (ngram, transformer). */
  student: StudentKind;
  /** The student's architecture settings by key (e.g. { dim: 32, buckets: 262144 }); missing ones take its defaults. */
  settings?: Record<string, number | undefined>;
  /** A folder holding the tokenizer.json a tokenized student uses (e.g. the teacher's); default: its own vocabulary. */
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
  /** Where its ONNX Runtime sessions run (device, threads, CPU fallback). */
  session?: SessionOptions;
  /** false: export without onnx/model_quantized.onnx (`--no-quantize`). */
  quantize?: boolean;
  /**
   * Which trainer runs the steps (`--trainer`): `host`, the JavaScript trainer of bag-of-rows students
   * (src/engine/bag-trainer.ts: the n-gram student without dropout, on CPU); `ort`, the ONNX Runtime step; `auto`
   * (default), host where it applies. Both take the same steps within float rounding and share the checkpoint format.
   */
  trainer?: TrainerKind;
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
  /** Transfer rows it learnt from (0 without --transfer). */
  transferRows?: number;
  /** The settings it was trained with (see StudentRunConfig); a resumed run must match them. */
  runConfig?: StudentRunConfig;
}

interface Split {
  examples: LabelledExample[];
}

/** Why each data option of `kd train` refuses unlabelled rows, and what to do instead. */
const NEEDS_LABELS: Record<'train' | 'dev' | 'test', LabelNeed> = {
  train: {
    needs: 'kd train --train',
    why: 'the student learns from gold labels there',
    instead: "unlabelled rows the student should learn from with the teacher's targets alone go in --transfer",
  },
  dev: { needs: 'kd train --dev', why: 'early stopping measures accuracy', instead: 'hold out labelled rows for dev' },
  test: { needs: 'kd train --test', why: 'the test measures accuracy', instead: 'hold out labelled rows for test' },
};

async function readSplit(files: string[], read: ReadOptions, role: 'train' | 'dev' | 'test'): Promise<Split> {
  const examples: LabelledExample[] = [];
  const seen = new Set<string>();
  for await (const ex of new DatasetReader(files, { ...read, progress: false })) {
    if (seen.has(ex.id)) continue;
    seen.add(ex.id);
    examples.push(requireLabel(ex, NEEDS_LABELS[role]));
  }
  return { examples };
}

/** Rows of the cache for `examples`, by id, with the text hash checked. */
function joinCache(cache: CacheReader, examples: Example[], what: 'training' | 'transfer'): Int32Array {
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
        `${ex.file}:${ex.line}: id ${ex.id} has text hash ${ex.textHash}, the cache has ${textHashes[r]}: the data changed ` +
          `since the cache was built. Rebuild the cache`,
      );
    rows[i] = r;
  });
  if (missing.length)
    throw new ConfigError(
      `${missing[0]!.file}:${missing[0]!.line}: ${missing.length} of ${examples.length} ${what} rows are not in the cache ` +
        `${cache.dir} (first: id ${missing[0]!.id}). ` +
        (what === 'transfer'
          ? `The teacher labels transfer rows in the cache build: rebuild the cache with ${missing[0]!.file} among its --transfer ` +
            'files (kd cache build --transfer, with the same --transfer-format)'
          : 'Build the cache over the same files'),
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
 * Left out, because a resumed run may change them: where it executes (`session`:
 * device, threads, allowFallback), verification switches, log, and where the data and cache live (their contents
 * are compared).
 */
export type StudentRunConfig = Record<string, unknown>;

/** Where a run writes: <out>/training (checkpoints), result.json, config.json, tokenizer/, model/. */
function runPaths(out: string) {
  return {
    trainingDir: join(out, 'training'),
    resultPath: join(out, 'result.json'),
    configPath: join(out, 'config.json'),
    tokenizerDir: join(out, 'tokenizer'),
    modelDir: join(out, 'model'),
  };
}
type RunPaths = ReturnType<typeof runPaths>;

/** Refuses links in the run folder and a started run without --resume; returns whether the run has started. */
function checkRunFolder(o: StudentRunOptions, p: RunPaths): boolean {
  refuseSymlinks(o.out, p.trainingDir, p.resultPath, p.configPath, p.tokenizerDir, p.modelDir);
  const started = existsSync(join(p.trainingDir, 'last.safetensors')) || existsSync(p.resultPath);
  if (started && !o.resume)
    throw new OptionError(
      `${o.out} holds a previous run (${existsSync(p.resultPath) ? 'result.json' : 'training/last.safetensors'}): ` +
        'pass --resume to continue it with the same settings, or choose another --out (or delete that folder) to start anew',
    );
  return started;
}

/**
 * The transfer rows of `files` (labels read but never used), first occurrence of each id; a row that is also a
 * training row is left out (it is learnt from with its label already), one that is a dev or test row is refused.
 */
async function readTransfer(o: StudentRunOptions, train: readonly Example[], held: readonly Example[]): Promise<Example[]> {
  const read: ReadOptions = { ...o.read, unlabeled: true, progress: false, ...(o.transferFormat ? { format: o.transferFormat } : {}) };
  const trainIds = new Set(train.map((e) => e.id));
  const heldIds = new Set(held.map((e) => e.id));
  const seen = new Set<string>();
  const out: Example[] = [];
  for await (const ex of new DatasetReader(o.transfer!, read)) {
    if (heldIds.has(ex.id))
      throw new ConfigError(
        `${ex.file}:${ex.line}: transfer row ${ex.id} is also a dev or test row: the student would learn the teacher's answer ` +
          'on a row it is measured on. Leave the dev and test rows out of --transfer',
      );
    if (seen.has(ex.id) || trainIds.has(ex.id)) continue;
    seen.add(ex.id);
    out.push({ ...ex, label: null });
  }
  if (out.length === 0)
    throw new ConfigError(
      `--transfer ${o.transfer!.join(' ')}: no row that is not already a training row. Give unlabelled in-domain text, or ` +
        'leave out --transfer',
    );
  return out;
}

/** The splits, the cache rows of the training (and transfer) rows and their cached teacher outputs (labels checked). */
async function readRunData(o: StudentRunOptions, cache: CacheReader) {
  const labels = LABEL_NAMES[o.read.classes];
  cache.assertClasses(labels);
  const train = limitRows((await readSplit(o.train, o.read, 'train')).examples, o.limit);
  const dev = (await readSplit(o.dev, o.read, 'dev')).examples;
  const test = o.test?.length ? (await readSplit(o.test, o.read, 'test')).examples : null;
  const transfer = o.transfer?.length ? limitRows(await readTransfer(o, train, [...dev, ...(test ?? [])]), o.limit) : [];
  const rows = joinCache(cache, train, 'training');
  const transferRows = transfer.length ? joinCache(cache, transfer, 'transfer') : new Int32Array(0);
  const all = new Int32Array(rows.length + transferRows.length);
  all.set(rows);
  all.set(transferRows, rows.length);
  const cached = cache.read(all);
  cache.assertLabels(train, cached.labels.subarray(0, train.length), labels);
  // Transfer rows keep no gold label, whatever the cache holds for them.
  cached.labels.fill(NO_LABEL, train.length);
  /** Training rows, then transfer rows: the index space of the batches and of MethodData. */
  const pool: Example[] = transfer.length ? [...train, ...transfer] : train;
  return { labels, train, transfer, pool, dev, test, cached };
}
type RunData = Awaited<ReturnType<typeof readRunData>>;

function sha256File(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** The run config (see StudentRunConfig): everything the result depends on, resolved. */
function buildRunConfig(
  o: StudentRunOptions,
  cache: CacheReader,
  d: RunData,
  s: { recorded: Record<string, unknown>; vocabulary: string | null; options: unknown; headSize: number },
): StudentRunConfig {
  return {
    student: o.student,
    studentOptions: s.recorded,
    vocabularySha256: s.vocabulary,
    loss: o.loss,
    lossOptions: s.options,
    headSize: s.headSize,
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
      train: { rows: d.train.length, sha256: splitDigest(d.train) },
      dev: { rows: d.dev.length, sha256: splitDigest(d.dev) },
      test: d.test ? { rows: d.test.length, sha256: splitDigest(d.test) } : null,
      // Only with --transfer, so runs without one keep the run config (and resume) they always had.
      ...(d.transfer.length
        ? {
            transfer: {
              rows: d.transfer.length,
              sha256: splitDigest(d.transfer),
              ratio: transferRatio(o, d),
              format: o.transferFormat ?? null,
            },
          }
        : {}),
    },
    cache: {
      teacher: cache.manifest.teacher.fingerprint,
      data: cache.manifest.data.files,
      maxLength: cache.manifest.maxLength,
      embedding: cache.manifest.embedding,
      extrasSha256: cache.manifest.extras.sha256,
    },
  };
}

/** A finished seed's result when it was trained with exactly these settings (a different one is refused naming the field). */
function finishedResult(resultPath: string, runConfig: StudentRunConfig): StudentRunResult {
  const done = JSON.parse(readFileSync(resultPath, 'utf8')) as StudentRunResult;
  if (done.runConfig === undefined)
    throw new DamagedFileError(
      resultPath,
      'has no run config (written by an older kd), so it cannot be matched to this run',
      'Delete the run folder and train again',
    );
  assertSameRunConfig(done.runConfig, runConfig, resultPath);
  return done;
}

function methodData(cache: CacheReader, d: RunData, seed: number): MethodData {
  const extras = cache.extras();
  return {
    classes: cache.classes,
    teacherLogits: d.cached.logits,
    embedding: d.cached.embedding,
    dim: cache.dim,
    weight: extras.weight,
    bias: extras.bias,
    pca: extras.pca,
    labels: d.cached.labels,
    seed,
  };
}

/** `--transfer-ratio`, or the transfer rows' share of all rows. */
function transferRatio(o: StudentRunOptions, d: { train: readonly Example[]; transfer: readonly Example[] }): number {
  return o.transferRatio ?? d.transfer.length / (d.train.length + d.transfer.length);
}

/** Transfer rows per batch: the ratio's share of the batch, at least one row of each kind. */
export function transferPerBatch(batchSize: number, ratio: number): number {
  return Math.min(batchSize - 1, Math.max(1, Math.round(batchSize * ratio)));
}

/**
 * An epoch of batches mixing `nl` labelled rows (indices 0..nl−1) and `nt` transfer rows (nl..nl+nt−1) in a set
 * ratio: ⌈(nl + nt) / B⌉ steps, each with B − b_t labelled and b_t transfer rows. Each kind is drawn in the student's
 * own batch order (its length buckets), pass after pass, so the smaller share repeats and the larger one is sampled.
 */
export function mixedBatches(
  nl: number,
  nt: number,
  batchSize: number,
  ratio: number,
  order: (offset: number, n: number, rng: Rng) => Int32Array[],
  rng: Rng,
): Int32Array[] {
  const bt = transferPerBatch(batchSize, ratio);
  const bl = batchSize - bt;
  const steps = Math.ceil((nl + nt) / batchSize);
  const stream = (offset: number, n: number, size: number): Int32Array => {
    const out = new Int32Array(steps * size);
    let filled = 0;
    while (filled < out.length)
      for (const b of order(offset, n, rng)) {
        const take = Math.min(b.length, out.length - filled);
        for (let k = 0; k < take; k++) out[filled + k] = b[k]! + offset;
        filled += take;
        if (filled === out.length) break;
      }
    return out;
  };
  const labelled = stream(0, nl, bl);
  const transfer = stream(nl, nt, bt);
  return Array.from({ length: steps }, (_, k) => {
    const batch = new Int32Array(batchSize);
    batch.set(labelled.subarray(k * bl, (k + 1) * bl));
    batch.set(transfer.subarray(k * bt, (k + 1) * bt), bl);
    return batch;
  });
}

/**
 * The student with the method's class logits on top, and the method's loss over its head. With transfer rows
 * (`transfer`), the loss is the mean over the batch of each row's loss: the method's loss on labelled rows
 * (input `labelled` = 1), its transfer loss on the others, weighted by `transfer_weight`; terms are logged per kind.
 */
export function trainingGraphs(
  model: ModelDefinition,
  method: DistillMethod<unknown>,
  options: unknown,
  classes: number,
  transfer = false,
): { full: ModelDefinition; loss: LossDefinition } {
  const full: ModelDefinition = {
    inputs: model.inputs,
    forward: (ctx, inputs) => {
      const out = model.forward(ctx, inputs);
      return { ...out, logits: method.classLogits(options, out.head!, classes) };
    },
  };
  const host = hostLossOf(method, options, classes, transfer);
  const loss: LossDefinition = {
    ...(host ? { host } : {}),
    inputs: {
      labels: { dtype: 'int64', shape: ['batch_size'] },
      ...method.inputs(options, classes),
      ...(transfer ? TRANSFER_INPUTS : {}),
    },
    build: (outputs, inputs) => {
      const head = outputs.head!;
      if (!transfer) {
        const { loss: value, terms } = method.loss(options, head, inputs.labels!, inputs, classes, batchMean);
        return { loss: value, metrics: terms };
      }
      const isLabelled = inputs.labelled!;
      const isTransfer = op.sub(1, isLabelled);
      const gold = method.loss(options, head, inputs.labels!, inputs, classes, (x) => maskedMean(x, isLabelled));
      const teacher = method.transfer!.loss(options, head, inputs, classes, (x) => maskedMean(x, isTransfer));
      const labelledShare = batchMean(isLabelled);
      const value = op.add(
        op.mul(gold.loss, labelledShare),
        op.mul(teacher.loss, op.mul(op.sub(1, labelledShare), inputs.transfer_weight!)),
      );
      const transferTerms = Object.fromEntries(Object.entries(teacher.terms).map(([k, v]) => [`transfer_${k}`, v]));
      return { loss: value, metrics: { ...gold.terms, ...transferTerms } };
    },
  };
  return { full, loss };
}

/**
 * trainingGraphs' loss on the host, from the method's host form (same terms, same means, same transfer-row weighting),
 * or null where the method has none: the host trainer then runs the loss graph in ONNX Runtime.
 */
function hostLossOf(method: DistillMethod<unknown>, options: unknown, classes: number, transfer: boolean): HostLoss | null {
  const h = method.host;
  if (!h || (transfer && !h.transfer)) return null;
  const names = Object.keys(method.inputs(options, classes));
  let labels = new Int32Array(0);
  let meanA = new Float64Array(0);
  let meanB = new Float64Array(0);
  let isTransfer = new Float64Array(0);
  const floatInput = (batch: Record<string, ort.Tensor>, name: string): Float32Array => {
    const t = batch[name];
    if (!t) throw new Error(`training step: batch lacks input '${name}'`);
    if (t.type !== 'float32') throw new TypeError(`training step: input '${name}' is ${t.type}, the loss reads float32`);
    return t.data as Float32Array;
  };
  return (head, batch) => {
    const { B } = head;
    if (labels.length !== B)
      [labels, meanA, meanB, isTransfer] = [new Int32Array(B), new Float64Array(B), new Float64Array(B), new Float64Array(B)];
    if (!batch.labels) throw new Error("training step: batch lacks input 'labels'");
    labelsOf(batch.labels, labels);
    const inputs: Record<string, Float32Array> = {};
    for (const name of names) inputs[name] = floatInput(batch, name);
    if (!transfer) {
      const { loss, terms } = h.loss(options, head, labels, inputs, classes, hostMean(B, meanA), 1);
      return { loss, metrics: terms };
    }
    // As the graph: the labelled rows' loss weighted by their share, the transfer rows' by the rest and transfer_weight.
    const labelled = floatInput(batch, 'labelled');
    const weight = floatInput(batch, 'transfer_weight')[0]!;
    let share = 0;
    for (let i = 0; i < B; i++) ((share += labelled[i]!), (isTransfer[i] = 1 - labelled[i]!));
    share /= B;
    const gold = h.loss(options, head, labels, inputs, classes, maskedHostMean(labelled, B, meanA), share);
    const teacher = h.transfer!(options, head, inputs, classes, maskedHostMean(isTransfer, B, meanB), (1 - share) * weight);
    const transferTerms = Object.fromEntries(Object.entries(teacher.terms).map(([k, v]) => [`transfer_${k}`, v]));
    return { loss: gold.loss * share + teacher.loss * (1 - share) * weight, metrics: { ...gold.terms, ...transferTerms } };
  };
}

/** The loss inputs a step with transfer rows adds: which rows are labelled (1) or transfer rows (0), and their weight. */
const TRANSFER_INPUTS: InputSpecs = {
  labelled: { dtype: 'float32', shape: ['batch_size'] },
  transfer_weight: { dtype: 'float32', shape: [] },
};

/** Class logits [n, C] of `xs` from the trainer's current weights (length-sorted batches when lengths matter). */
function predictor(trainer: StepTrainer, featurizer: Featurizer, classes: number) {
  return (xs: Example[]): Promise<Float32Array> => {
    const order = featurizer.lengths.length
      ? lengthOrder(xs.map((e) => e.text.length))
      : Int32Array.from({ length: xs.length }, (_, i) => i);
    const logitsOf = async (part: Int32Array) =>
      (await trainer.evaluate(featurizer.feeds(xs, part), ['logits'])).logits!.data as Float32Array;
    return predictRows(order, classes, 256, logitsOf);
  };
}

function accuracyOf(xs: LabelledExample[], logits: Float32Array, classes: number): AccuracyReport {
  return accuracyReport(
    xs.map((e) => e.label),
    xs.map((_, i) => argmaxRow(logits, i * classes, classes)),
    classes,
  );
}

/** `--transfer` needs a method with a teacher term on transfer rows, and a ratio in (0, 1). */
function checkTransferOptions(o: StudentRunOptions, method: DistillMethod<unknown>): void {
  if (o.transferRatio !== undefined && !o.transfer?.length)
    throw new OptionError("'--transfer-ratio' sets the share of transfer rows in each batch: give the transfer set with --transfer");
  if (o.transferFormat !== undefined && !o.transfer?.length)
    throw new OptionError("'--transfer-format' is the format of the --transfer files: give them with --transfer");
  if (!o.transfer?.length) return;
  if (!method.transfer)
    throw new OptionError(
      `'--loss ${o.loss}' learns from gold labels alone, and transfer rows have none that kd uses (they are learnt from the ` +
        "teacher's targets): use --loss kd, dtkd or lelp with --transfer, or leave out --transfer",
    );
  if (o.transferRatio !== undefined && !(o.transferRatio > 0 && o.transferRatio < 1))
    throw new OptionError(
      `'--transfer-ratio' must be a fraction in (0, 1) (the share of transfer rows in each batch), got ${o.transferRatio}`,
    );
  if (o.batchSize < 2)
    throw new OptionError(
      `'--batch-size' must be at least 2 with --transfer (each batch holds labelled and transfer rows), got ${o.batchSize}`,
    );
}

/** The trainers `kd train --trainer` chooses from. */
export const TRAINER_KINDS = ['auto', 'host', 'ort'] as const;
export type TrainerKind = (typeof TRAINER_KINDS)[number];

/**
 * The trainer a run uses: with `--trainer auto`, the host trainer where the student has a host form (`bag`) and the run
 * is on CPU, else the ONNX Runtime step; `host` and `ort` as asked.
 * @throws {OptionError} `--trainer host` where the host trainer does not apply.
 */
export function chooseTrainer(
  o: Pick<StudentRunOptions, 'trainer' | 'session' | 'student'>,
  bag: BagModelSpec | null,
): { kind: 'host' | 'ort'; bag: BagModelSpec | null } {
  const asked = o.trainer ?? 'auto';
  if (asked === 'ort') return { kind: 'ort', bag: null };
  const device = o.session?.device ?? 'cpu';
  const why = !bag
    ? `the ${o.student} student${o.student === 'ngram' ? ' with dropout' : ''} has no host form`
    : device !== 'cpu'
      ? `it runs on the CPU, this run asks for --device ${device}`
      : null;
  if (why === null) return { kind: 'host', bag };
  if (asked === 'host') throw new OptionError(`'--trainer host' cannot train this run: ${why}. Use --trainer ort (or auto)`);
  return { kind: 'ort', bag: null };
}

/** AdamW with linear warm-up and decay over the run's steps, on the run's device (or the host trainer, see chooseTrainer). */
async function createTrainer(
  o: StudentRunOptions,
  model: ModelDefinition,
  loss: LossDefinition,
  trainRows: number,
  bag: BagModelSpec | null,
): Promise<{ trainer: StepTrainer; kind: 'host' | 'ort'; totalSteps: number; batchesPerEpoch: number }> {
  const batchesPerEpoch = Math.ceil(trainRows / o.batchSize);
  const totalSteps = batchesPerEpoch * o.epochs;
  const chosen = chooseTrainer(o, bag);
  const settings = { model, loss, lr: o.lr, weightDecay: o.weightDecay, warmupRatio: o.warmupRatio, totalSteps, seed: o.seed };
  const trainer = chosen.bag
    ? await BagTrainer.create({
        ...adamwTrainerOptions(settings),
        bag: chosen.bag,
        session: { ...o.session, device: 'cpu' },
        // --threads 1 keeps the host trainer on one thread too; otherwise its default (2 where there are 2 cores).
        ...(o.session?.threads === 1 ? { threads: 1 } : {}),
      })
    : await adamwTrainer({ ...settings, session: o.session });
  return { trainer, kind: chosen.kind, totalSteps, batchesPerEpoch };
}

/** <out>/config.json: the options as given, what they resolved to, the cache, the run config and the versions. */
function writeRunFile(o: StudentRunOptions, path: string, cache: CacheReader, runConfig: StudentRunConfig, resolved: object): void {
  mkdirSync(o.out, { recursive: true });
  const fingerprint = { dir: o.cache, teacher: cache.manifest.teacher.fingerprint, data: cache.manifest.data.files };
  // The student's settings under its name (`ngram: { dim: 32, ... }`), as kd has always recorded them.
  const student = { settings: undefined, [o.student]: o.settings ?? {} };
  const recorded = {
    ...o,
    ...student,
    log: undefined,
    verifyCache: undefined,
    read: { ...o.read, labelMap: undefined },
    resolved,
    cache: fingerprint,
    runConfig,
  };
  writeFileAtomicSync(path, `${JSON.stringify({ ...recorded, versions: runVersions() }, null, 2)}\n`);
}

/** The best model in the student's export layout, with what it was trained with and how it scored. */
async function exportRun(
  o: StudentRunOptions,
  modelDir: string,
  cache: CacheReader,
  r: {
    onnx: Uint8Array;
    labels: string[];
    setup: StudentSetup<unknown>;
    options: unknown;
    dev: AccuracyReport;
    test: AccuracyReport | null;
  },
): Promise<void> {
  await exportStudent(modelDir, {
    kind: o.student,
    labels: r.labels,
    onnx: r.onnx,
    config: r.setup.config as object,
    tokenizer: r.setup.tokenizer,
    training: {
      loss: o.loss,
      lossOptions: r.options,
      seed: o.seed,
      devAccuracy: r.dev.accuracy,
      testAccuracy: r.test?.accuracy ?? null,
      cacheTeacher: cache.manifest.teacher.fingerprint,
    },
    quantize: o.quantize !== false,
    ...(o.session ? { session: o.session } : {}),
    ...(o.log ? { log: o.log } : {}),
  });
}

/**
 * The student's settings resolved onto its defaults, and its vocabulary if it has one: part of
 * the run, so a resumed run reads the one saved in the run folder (ids must point at the same rows).
 */
function setupStudent(o: StudentRunOptions, student: StudentDefinition<unknown>, d: RunData, tokenizerDir: string, resuming: boolean) {
  const settings = resolveStudentSettings(o.student, { ...o.settings, epochs: o.epochs, batchSize: o.batchSize, lr: o.lr });
  const setup = student.setup(settings, {
    // Transfer texts are in-domain text too: a student's own vocabulary is learnt from them as well.
    train: d.pool,
    tokenizerDir,
    resuming,
    ...(o.tokenizer ? { tokenizer: o.tokenizer } : {}),
  });
  if (setup.tokenizer && !setup.tokenizerSaved) {
    mkdirSync(tokenizerDir, { recursive: true });
    setup.tokenizer.save(tokenizerDir);
  }
  const vocabulary = setup.tokenizer ? sha256File(join(tokenizerDir, 'tokenizer.json')) : null;
  return { setup, vocabulary };
}

/** The training loop over the run's batches, evaluating on dev; checkpoints in `trainingDir`. */
function trainLoop(
  o: StudentRunOptions,
  t: { trainer: StepTrainer; totalSteps: number; batchesPerEpoch: number; runConfig: StudentRunConfig; trainingDir: string },
  batches: (epoch: number, rng: Rng) => Int32Array[],
  feeds: (rows: Int32Array, schedule: StepSchedule) => Record<string, ort.Tensor>,
  devAccuracy: () => Promise<number>,
): Promise<LoopResult> {
  const { trainer } = t;
  return runTrainingLoop<Int32Array>({
    trainer,
    outDir: t.trainingDir,
    runConfig: t.runConfig,
    epochs: o.epochs,
    seed: o.seed,
    batches,
    feed: (r) => feeds(r, { progress: trainer.stepCount / t.totalSteps, epoch: 1 + trainer.stepCount / t.batchesPerEpoch }),
    evaluate: async () => ({ score: await devAccuracy() }),
    ...(o.evalEvery ? { evalEvery: o.evalEvery } : {}),
    patience: o.patience,
    ...(o.resume ? { resume: true } : {}),
    label: `${o.student}/${o.loss} seed ${o.seed}`,
    ...(o.log ? { log: o.log } : {}),
    // The best checkpoint's weights back into the trainer when training ends.
    restoreBest: true,
  });
}

/**
 * Trains one student from cached teacher outputs with one method (`kd train` for one seed):
 * checkpoints and metrics in `<out>/training`, the best checkpoint exported to `<out>/model`,
 * `<out>/config.json` and `<out>/result.json`.
 *
 * @param o - Cache, train/dev/test files (their rows must be in the cache), read options, student kind and
 *   architecture, loss and its options, training settings, seed, output folder, `resume`, device.
 * @returns Dev and test accuracy of the best checkpoint, the loop's summary, parameter count, the exported model's folder.
 * @throws {OptionError} `out` holds a previous run and `resume` is not set, or an unknown loss.
 * @throws {MethodOptionError} A loss option out of range or one the method does not read.
 * @throws {CacheMismatchError} The cache is damaged, or its classes or labels are not the data's.
 * @throws {ConfigError} Rows missing from the cache, data changed since the cache was built, or settings that do not fit.
 * @throws {DamagedFileError} A checkpoint to resume from is damaged.
 * @throws {DeviceError} `device` is not available and `allowFallback` is not set.
 *
 * @example
 * ```ts
 * import { trainStudent } from 'kd-toolkit';
 * const run = await trainStudent({
 *   cache: 'cache', train: ['split/train.jsonl'], dev: ['split/dev.jsonl'], test: ['split/test.jsonl'],
 *   read: { classes: 2 }, student: 'ngram', settings: { dim: 16, buckets: 65536 },
 *   loss: 'kd', lossOptions: { lambda: 0.5, tau: 2 },
 *   epochs: 1, batchSize: 32, lr: 5e-3, weightDecay: 0, warmupRatio: 0, evalEvery: 0, patience: 0, seed: 13, out: 'run',
 * });
 * console.log(run.trainRows, run.parameters, run.loop.steps, run.dev.accuracy, run.test?.accuracy, run.model);
 * // 420 1048610 14 0.5222222222222223 0.5222222222222223 run/model   (600 tweets, tiny-random-bert teacher)
 * ```
 */
export async function trainStudent(o: StudentRunOptions): Promise<StudentRunResult> {
  const log = o.log ?? (() => undefined);
  const paths = runPaths(o.out);
  const started = checkRunFolder(o, paths);
  const student = getStudent(o.student);
  const method = getMethod(o.loss);
  const options = parseMethodOptions(o.loss, o.lossOptions);
  checkTransferOptions(o, method);
  const cache = CacheReader.open(o.cache, { verify: o.verifyCache ?? true });
  try {
    method.check?.(options, { embeddingMode: cache.manifest.embedding.mode, hasClassifier: cache.manifest.teacher.classifier.rows > 0 });
    const classes = cache.classes;
    const d = await readRunData(o, cache);
    const headSize = method.headSize(options, classes);

    const { setup, vocabulary } = setupStudent(o, student, d, paths.tokenizerDir, Boolean(o.resume && started));
    const runConfig = buildRunConfig(o, cache, d, { recorded: setup.recorded, vocabulary, options, headSize });
    if (o.resume && existsSync(paths.resultPath)) {
      const done = finishedResult(paths.resultPath, runConfig);
      log(`${o.student}/${o.loss} seed ${o.seed}: finished earlier with the same settings (${paths.resultPath})`);
      return done;
    }
    // Before anything else is written: the checkpoint is intact and has these settings.
    if (o.resume) checkResumable(paths.trainingDir, runConfig);

    const data = methodData(cache, d, o.seed);
    const bound = method.create(options, data);
    const featurizer = await student.featurizer(setup.config, setup.tokenizer, [d.pool, d.dev, ...(d.test ? [d.test] : [])]);
    const withTransfer = d.transfer.length > 0;
    const { full, loss } = trainingGraphs(student.model(setup.config, headSize), method, options, classes, withTransfer);
    const { trainer, kind, totalSteps, batchesPerEpoch } = await createTrainer(
      o,
      full,
      loss,
      d.pool.length,
      student.hostTrainer?.(setup.config) ?? null,
    );
    writeRunFile(o, paths.configPath, cache, runConfig, {
      student: setup.config,
      lossOptions: options,
      headSize,
      trainRows: d.train.length,
      ...(withTransfer ? { transferRows: d.transfer.length, transferRatio: transferRatio(o, d) } : {}),
      devRows: d.dev.length,
      testRows: d.test?.length ?? 0,
      stepsPerCall: trainer.stepsPerCall,
      trainer: kind,
      // The host trainer's threads (any count gives the same bits: a run may resume on another).
      ...(trainer instanceof BagTrainer ? { hostThreads: trainer.threads } : {}),
    });
    const predict = predictor(trainer, featurizer, classes);
    // The steps' feeds in the form their trainer reads best; evaluation (ONNX Runtime) keeps the graphs' int64.
    const hostFeeds = kind === 'host' && featurizer.hostFeeds !== undefined;
    const stepFeeds = (xs: Example[], r: ArrayLike<number>) => (hostFeeds ? featurizer.hostFeeds!(xs, r) : featurizer.feeds(xs, r));
    const rowsLine = withTransfer
      ? `${d.train.length} labelled + ${d.transfer.length} transfer rows (${transferPerBatch(o.batchSize, transferRatio(o, d))} of ` +
        `each batch of ${o.batchSize})`
      : `${d.train.length} training rows`;
    log(`${o.student} student, loss ${o.loss}, seed ${o.seed}: ${rowsLine}, ${trainer.store.count()} parameters`);
    const nl = d.train.length;
    const order = (offset: number, n: number, size: number, rng: Rng) =>
      student.batches(n, featurizer.lengths.slice(offset, offset + n), size, rng);
    const loop = await trainLoop(
      o,
      { trainer, totalSteps, batchesPerEpoch, runConfig, trainingDir: paths.trainingDir },
      withTransfer
        ? (_e, rng) =>
            mixedBatches(nl, d.transfer.length, o.batchSize, transferRatio(o, d), (off, n, r) => order(off, n, o.batchSize, r), rng)
        : (_e, rng) => student.batches(nl, featurizer.lengths, o.batchSize, rng),
      (r, schedule) => {
        // Transfer rows (index ≥ nl) get label 0 in the feed; the loss never reads it (their rows are masked out of CE).
        const labelFeed = new ort.Tensor('int64', BigInt64Array.from(Array.from(r, (i) => BigInt(i < nl ? d.train[i]!.label : 0))), [
          r.length,
        ]);
        const feeds = { ...stepFeeds(d.pool, r), labels: labelFeed, ...bound.feeds(r, schedule) };
        if (!withTransfer) return feeds;
        return {
          ...feeds,
          labelled: new ort.Tensor(
            'float32',
            Float32Array.from(r, (i) => (i < nl ? 1 : 0)),
            [r.length],
          ),
          transfer_weight: scalarFeed(method.transfer!.weight(options, schedule)),
        };
      },
      async () => accuracyOf(d.dev, await predict(d.dev), classes).accuracy,
    );
    const devReport = accuracyOf(d.dev, await predict(d.dev), classes);
    const testReport = d.test ? accuracyOf(d.test, await predict(d.test), classes) : null;
    await exportRun(o, paths.modelDir, cache, {
      onnx: exportModel(full, trainer.store, { outputs: ['logits'], metadata: { producer: 'kd-toolkit student', loss: o.loss } }),
      labels: [...d.labels],
      setup,
      options,
      dev: devReport,
      test: testReport,
    });
    const result: StudentRunResult = {
      seed: o.seed,
      loss: o.loss,
      student: o.student,
      dev: devReport,
      test: testReport,
      loop,
      parameters: trainer.store.count(),
      model: paths.modelDir,
      trainRows: d.train.length,
      ...(withTransfer ? { transferRows: d.transfer.length } : {}),
      runConfig,
    };
    writeFileAtomicSync(paths.resultPath, `${JSON.stringify(result, null, 2)}\n`);
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
 *
 * @param o - As for {@link trainStudent}; `seed` is replaced by each of `seeds`, `out` is the parent folder.
 * @param seeds - Distinct integers in [0, 2³² − 1].
 * @returns Each seed's result and the summary: mean, std and 95% t interval of dev (and test) accuracy.
 * @throws {OptionError} No seeds, a repeated or out-of-range seed; and everything {@link trainStudent} throws.
 *
 * @example
 * ```ts
 * const { runs, summary } = await trainStudentSeeds({ ...options, out: 'runs' }, [13, 14]);
 * console.log(runs.map((r) => r.dev.accuracy), summary.test);
 * // [ 0.5222222222222223, 0.5222222222222223 ] { mean: 0.5222222222222223, std: 0, ci95: [ 0.5222222222222223, 0.5222222222222223 ] }
 * ```
 */
export async function trainStudentSeeds(
  o: StudentRunOptions,
  seeds: number[],
): Promise<{ runs: StudentRunResult[]; summary: SeedSummary }> {
  checkSeeds(seeds);
  // One run at a time in a folder (see util/lock): a second kd train into this --out is refused naming the pid.
  const lock = acquireFolderLock(o.out, 'kd train', o.log);
  try {
    return await trainSeedsLocked(o, seeds);
  } finally {
    lock.release();
  }
}

async function trainSeedsLocked(o: StudentRunOptions, seeds: number[]): Promise<{ runs: StudentRunResult[]; summary: SeedSummary }> {
  // One checksum pass over the cache for all seeds, not one per seed (each seed still checks paths and sizes).
  if (o.verifyCache !== false && seeds.length > 1) CacheReader.open(o.cache, { verify: true }).close();
  const verified = seeds.length > 1 ? { verifyCache: false } : {};
  const runs: StudentRunResult[] = [];
  for (const seed of seeds) runs.push(await trainStudent({ ...o, ...verified, seed, out: join(o.out, `seed-${seed}`) }));
  const summary: SeedSummary = {
    seeds,
    dev: summarize(runs.map((r) => r.dev.accuracy)),
    test: runs.every((r) => r.test) ? summarize(runs.map((r) => r.test!.accuracy)) : null,
  };
  const perSeed = runs.map((r) => ({
    seed: r.seed,
    dev: r.dev.accuracy,
    test: r.test?.accuracy ?? null,
    steps: r.loop.steps,
    bestStep: r.loop.bestStep,
  }));
  const file = { student: o.student, loss: o.loss, lossOptions: o.lossOptions, summary, runs: perSeed };
  writeFileAtomicSync(join(o.out, 'summary.json'), `${JSON.stringify(file, null, 2)}\n`);
  return { runs, summary };
}
