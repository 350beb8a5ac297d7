// Training the default teacher: read and split the data, train (or reuse on resume) the
// word-piece vocabulary, pretrain one encoder with masked-language modelling, train each
// member with early stopping on dev, tune the ensemble weights and export the teacher folder.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { ConfigError, requireLabel } from '../data/errors.js';
import { DatasetReader, type ReadOptions } from '../data/read.js';
import { assignSplits } from '../data/split.js';
import { LABEL_NAMES } from '../data/labels.js';
import type { Example, LabelledExample } from '../data/example.js';
import type { ParameterStore } from '../engine/params.js';
import { adamwTrainer, type Trainer } from '../engine/trainer.js';
import { exportModel } from '../engine/train-graph.js';
import type { SessionOptions } from '../engine/session.js';
import { assertSameRunConfig, refuseSymlinks, runTrainingLoop, type LoopResult } from '../engine/loop.js';
import { DamagedFileError } from '../engine/safetensors.js';
import { OptionError } from '../errors.js';
import { bucketedBatches, lengthOrder, predictRows } from '../engine/batches.js';
import { TextTokenizer } from '../text/tokenizer.js';
import { unitHash } from '../util/hash.js';
import { writeFileAtomicSync } from '../util/fs.js';
import { runVersions } from '../util/versions.js';
import { acquireFolderLock } from '../util/lock.js';
import { argmaxRow } from '../util/stats.js';
import type { DefaultTeacherConfig, MemberConfig } from './default-config.js';
import { ceLoss, ensembleModel, memberModel, teacherFeeds, type TokenizedSet } from './default-model.js';
import { ensembleStore, exportTeacherFolder, fitStackedEnsemble, stackedAccuracy, tuneEnsembleWeights } from './ensemble.js';
import { lexiconScore, lexiconTables, type LexiconTables } from './lexicon.js';
import { lexiconWords } from './lexicon-data.js';
import { pretrainEncoder, type PretrainResult } from './pretrain.js';

export interface TrainTeacherOptions {
  trainFiles: string[];
  /** Extra unlabeled text for pretraining (labels are not read). */
  pretrainFiles?: string[];
  devFiles?: string[];
  /**
   * Labelled files the ensemble (member weights, lexicon rows, bias) is fitted on instead of
   * dev; the entry `dev` stands for the dev rows. Only these few numbers see them: no member
   * trains on them.
   */
  tuneFiles?: string[];
  read: ReadOptions & { classes: 2 | 3 | 5 };
  out: string;
  config: DefaultTeacherConfig;
  resume?: boolean;
  /** Where its ONNX Runtime sessions run (device, threads, CPU fallback). */
  session?: SessionOptions;
  limit?: number;
  log?: (line: string) => void;
  maxSteps?: number;
}

export interface MemberResult {
  devAccuracy: number;
  loop: LoopResult;
  parameters: number;
}

export interface TrainTeacherResult {
  out: string;
  /** Masked-token accuracy of the pretrained encoder on held-out dev texts, when pretrained. */
  pretrainMaskedAccuracy: number | null;
  trainRows: number;
  devRows: number;
  /** Accuracy of the exported ensemble on dev. */
  devAccuracy: number;
  members: MemberResult[];
  /** Ensemble weight of each member (tuned on dev, or on the tuning files). */
  weights: number[];
  /** The lexicon members' classifier rows and the extra bias, when the ensemble was fitted (lexicons or tuning files). */
  lexicon: { names: string[]; rows: number[][]; bias: number[] } | null;
  /** Rows and accuracy of the fit on the tuning set, when tuning files were given. */
  tune: { files: string[]; rows: number; accuracy: number } | null;
  parameters: number;
}

/**
 * Unique examples of `files` (first occurrence of an id wins). With a limit, a seeded
 * random subset of that size (files are often sorted by label, so the first N would not do).
 */
async function readExamples(files: string[], read: ReadOptions, limit: number, seed: number): Promise<Example[]> {
  const out: Example[] = [];
  const seen = new Set<string>();
  for await (const ex of new DatasetReader(files, { ...read, progress: read.progress ?? true })) {
    if (seen.has(ex.id)) continue;
    seen.add(ex.id);
    out.push(ex);
  }
  if (out.length <= limit) return out;
  const keep = new Set(
    out
      .map((e, i) => [unitHash(seed, e.id), i] as const)
      .sort((a, b) => a[0] - b[0])
      .slice(0, limit)
      .map(([, i]) => i),
  );
  return out.filter((_, i) => keep.has(i));
}

/** {@link readExamples} for the rows the teacher learns and is measured on: every one must be labelled. */
async function readLabelledExamples(files: string[], read: ReadOptions, limit: number, seed: number): Promise<LabelledExample[]> {
  const rows = await readExamples(files, read, limit, seed);
  return rows.map((ex) =>
    requireLabel(ex, {
      needs: 'kd teacher train',
      why: 'the teacher learns from gold labels',
      instead: 'unlabelled text can go to its masked-language pretraining instead',
    }),
  );
}

/** The training rows and the dev rows: the dev files, or a seeded stratified split of the training rows. */
async function readTrainAndDev(o: TrainTeacherOptions, classes: number): Promise<{ train: LabelledExample[]; dev: LabelledExample[] }> {
  const cfg = o.config;
  let train = await readLabelledExamples(o.trainFiles, o.read, o.limit ?? Infinity, cfg.seed);
  let dev: LabelledExample[];
  if (o.devFiles?.length) {
    dev = await readLabelledExamples(o.devFiles, o.read, Infinity, cfg.seed);
  } else {
    const keys = Float64Array.from(train, (e) => unitHash(cfg.seed, e.id));
    const split = assignSplits(
      keys,
      Uint8Array.from(train, (e) => e.label),
      classes,
      cfg.devFraction,
      0,
    );
    dev = train.filter((_, i) => split[i] === 1);
    train = train.filter((_, i) => split[i] === 0);
  }
  if (train.length === 0 || dev.length === 0)
    throw new ConfigError(`teacher training needs rows to train on and a dev set; got ${train.length} and ${dev.length}`);
  return { train, dev };
}

/** The word-piece vocabulary is part of the run: trained on the training texts, reused on resume so ids stay the same. */
function runTokenizer(o: TrainTeacherOptions, work: string, train: readonly Example[]): TextTokenizer {
  const cfg = o.config;
  const tokDir = join(work, 'tokenizer');
  if (o.resume && existsSync(join(tokDir, 'tokenizer.json'))) return TextTokenizer.fromFolder(tokDir, { maxLength: cfg.maxLength });
  const tokenizer = TextTokenizer.trainWordPiece(
    train.map((e) => e.text),
    { vocabSize: cfg.vocabSize, maxLength: cfg.maxLength, wholeWords: lexiconWords(cfg.lexicons) },
  );
  mkdirSync(tokDir, { recursive: true });
  tokenizer.save(tokDir);
  return tokenizer;
}

/** sha256 over each example's id, text hash and label: the identity of a set of rows, wherever its files live. */
function rowsDigest(rows: readonly LabelledExample[]): { rows: number; sha256: string } {
  const hash = createHash('sha256');
  for (const e of rows) hash.update(`${e.id}\t${e.textHash}\t${e.label}\n`);
  return { rows: rows.length, sha256: hash.digest('hex') };
}

/**
 * Everything the members (and so the resumable part of the run) depend on, resolved: the config,
 * the classes, the limit, the pretraining files and the training and dev rows by content. Left
 * out, because a resumed run may change them: where it executes (session), --max-steps, the log,
 * the paths of the data (their contents are compared) and the tuning files (only the ensemble's
 * few numbers are fitted on them, after the members; kd distill refits on a changed one).
 */
function teacherRunConfig(o: TrainTeacherOptions, train: readonly LabelledExample[], dev: readonly LabelledExample[]) {
  return {
    config: o.config,
    classes: o.read.classes,
    limit: o.limit ?? null,
    pretrainFiles: o.pretrainFiles ?? [],
    train: rowsDigest(train),
    dev: rowsDigest(dev),
  };
}

/**
 * Before anything is written: without --resume, refuses a folder that holds a teacher run; with it, refuses a run
 * config other than the one in work/run.json, naming the field and both values (as kd train does with its checkpoints).
 */
function checkTeacherResume(o: TrainTeacherOptions, work: string, runConfig: Record<string, unknown>): void {
  const runPath = join(work, 'run.json');
  refuseSymlinks(work, runPath);
  // Started: a member has a checkpoint, or the teacher was written (a run that failed before training may be rerun).
  const started = [join(o.out, 'onnx', 'model.onnx'), join(work, 'member0', 'last.safetensors')].find((p) => existsSync(p));
  if (!o.resume && started)
    throw new OptionError(
      `${o.out} holds a previous teacher (${relative(o.out, started)}): ` +
        'pass --resume to continue it with the same settings, or choose another --out (or delete that folder) to start anew',
    );
  if (!existsSync(runPath)) return;
  const remedy = `Delete ${o.out} and train anew without --resume, or choose another --out`;
  let stored: { runConfig?: unknown };
  try {
    stored = JSON.parse(readFileSync(runPath, 'utf8')) as { runConfig?: unknown };
  } catch (e) {
    throw new DamagedFileError(runPath, `is not valid JSON (${(e as Error).message})`, remedy);
  }
  if (stored?.runConfig === undefined)
    throw new DamagedFileError(runPath, 'has no run config (written by an older kd), so it cannot be matched to this run', remedy);
  assertSameRunConfig(stored.runConfig, runConfig, runPath);
}

/** What the run was started with: work/run.json. */
function writeRunJson(o: TrainTeacherOptions, work: string, runConfig: Record<string, unknown>, trainRows: number, devRows: number): void {
  const run = {
    runConfig,
    config: o.config,
    trainFiles: o.trainFiles,
    devFiles: o.devFiles ?? null,
    limit: o.limit ?? null,
    trainRows,
    devRows,
    versions: runVersions(),
    startedAt: new Date().toISOString(),
  };
  writeFileAtomicSync(join(work, 'run.json'), `${JSON.stringify(run, null, 2)}\n`);
}

/** Everything the members' training shares: the data, the tokenizer and the dev evaluation. */
interface TeacherRun {
  o: TrainTeacherOptions;
  cfg: DefaultTeacherConfig;
  classes: number;
  work: string;
  tokenizer: TextTokenizer;
  trainSet: TokenizedSet;
  devSet: TokenizedSet;
  /** The tuning files' rows (not dev), when tuning files other than `dev` were given. */
  tuneSet: TokenizedSet | null;
  /** The resolved settings (teacherRunConfig), stored in run.json and in every member checkpoint. */
  runConfig: Record<string, unknown>;
  log: (line: string) => void;
}

/** A member's logits on a set (dev unless given), in its order (batches of similar length). */
function setLogits(run: TeacherRun, trainer: Trainer, devSet: TokenizedSet = run.devSet): Promise<Float32Array> {
  const { tokenizer, cfg } = run;
  const order = lengthOrder(devSet.encodings.map((e) => e.ids.length));
  return predictRows(order, run.classes, 128, async (rows) => {
    const feeds = teacherFeeds(tokenizer, devSet, rows, cfg, false, true);
    return (await trainer.evaluate(feeds, ['logits'])).logits!.data as Float32Array;
  });
}

function devAccuracy(run: TeacherRun, logits: Float32Array): number {
  const C = run.classes;
  return run.devSet.labels.reduce((s, y, i) => s + (argmaxRow(logits, i * C, C) === y ? 1 : 0), 0) / run.devSet.labels.length;
}

const shapeOf = (m: MemberConfig) => `${m.layers}/${m.hidden}/${m.heads}/${m.intermediate}`;

/** Masked-language-model pretraining of the first encoder member's shape, when the config asks for it. */
async function pretrainIfAsked(run: TeacherRun): Promise<PretrainResult | null> {
  const { o, cfg, tokenizer, log } = run;
  const encoderShape = cfg.members.find((m) => m.layers > 0);
  if (!cfg.pretrain || !encoderShape) return null;
  const extra = o.pretrainFiles?.length ? await readExamples(o.pretrainFiles, { ...o.read, classes: 3 }, Infinity, cfg.seed) : [];
  const texts = [...run.trainSet.encodings, ...(await tokenizer.encode(extra.map((e) => e.text)))];
  log(`pretraining a ${shapeOf(encoderShape)} encoder (masked language model) on ${texts.length} texts`);
  const pretrained = await pretrainEncoder({
    tokenizer,
    texts,
    heldOut: run.devSet.encodings,
    member: encoderShape,
    maxLength: cfg.maxLength,
    config: cfg.pretrain,
    outDir: join(run.work, 'pretrain'),
    ...(o.resume ? { resume: true } : {}),
    session: o.session,
    ...(o.log ? { log: o.log } : {}),
    bucketedBatches,
  });
  log(`pretraining: masked-token accuracy ${(100 * pretrained.devMaskedAccuracy).toFixed(2)}% on dev texts`);
  return pretrained;
}

function describeMember(m: MemberConfig): string {
  const encoder = m.layers > 0 ? `${m.layers}-layer encoder (hidden ${m.hidden})` : '';
  const bag = m.wideDim > 0 ? `n-gram bag (${m.wideDim})` : '';
  return encoder && bag ? `${encoder} + ${bag}` : encoder || bag;
}

/** Trains member `k` (from the pretrained encoder when its shape matches) and returns its best parameters and dev logits. */
async function trainMember(
  run: TeacherRun,
  k: number,
  pretrained: PretrainResult | null,
): Promise<{ result: MemberResult; logits: Float32Array; tuneLogits: Float32Array | null; store: ParameterStore }> {
  const { o, cfg, log } = run;
  const m = cfg.members[k]!;
  const memberDir = join(run.work, `member${k}`);
  const totalSteps = Math.ceil(run.trainSet.labels.length / cfg.batchSize) * m.epochs;
  const encoderShape = cfg.members.find((x) => x.layers > 0);
  const initial = pretrained && m.layers > 0 && shapeOf(m) === shapeOf(encoderShape!) ? pretrained.encoder.clone() : undefined;
  const trainer = await adamwTrainer({
    model: memberModel(m, cfg, run.classes, true),
    ...(initial ? { store: initial } : {}),
    loss: ceLoss,
    lr: m.lr,
    weightDecay: cfg.weightDecay,
    warmupRatio: cfg.warmupRatio,
    totalSteps,
    seed: m.seed,
    session: o.session,
  });
  log(`member ${k + 1}/${cfg.members.length}: ${describeMember(m)}, ${trainer.store.count()} parameters`);
  const lengths = run.trainSet.encodings.map((e) => e.ids.length);
  const loop = await runTrainingLoop<Int32Array>({
    trainer,
    outDir: memberDir,
    epochs: m.epochs,
    seed: m.seed,
    batches: (_epoch, rng) => bucketedBatches(lengths, cfg.batchSize, rng),
    feed: (rows) => teacherFeeds(run.tokenizer, run.trainSet, rows, cfg, true, true),
    evaluate: async () => ({ score: devAccuracy(run, await setLogits(run, trainer)) }),
    ...(cfg.evalEvery ? { evalEvery: cfg.evalEvery } : {}),
    patience: cfg.patience,
    ...(o.resume ? { resume: true } : {}),
    runConfig: run.runConfig,
    ...(o.maxSteps !== undefined ? { maxSteps: o.maxSteps } : {}),
    label: `teacher member ${k + 1}`,
    log,
    restoreBest: true,
  });
  const logits = await setLogits(run, trainer);
  const tuneLogits = run.tuneSet ? await setLogits(run, trainer, run.tuneSet) : null;
  const result = { devAccuracy: devAccuracy(run, logits), loop, parameters: trainer.store.count() };
  const store = trainer.store.clone();
  await trainer.dispose();
  log(`member ${k + 1}: dev accuracy ${(100 * result.devAccuracy).toFixed(2)}%`);
  return { result, logits, tuneLogits, store };
}

/** The tuning files' rows: every row labelled, no limit (an id seen twice, in one file or two, is kept once). */
function readLabelledTuneRows(files: string[], read: ReadOptions): Promise<LabelledExample[]> {
  return readLabelledExamples(files, read, Infinity, 0);
}

interface FittedEnsemble {
  weights: number[];
  lexicon: { names: string[]; rows: number[][]; bias: number[] } | null;
  /** Accuracy of the exported ensemble on dev. */
  accuracy: number;
  tune: { files: string[]; rows: number; accuracy: number } | null;
}

/**
 * The ensemble's few numbers: without lexicons or tuning files, the weight grid on dev (as
 * before); otherwise a stacked fit (fitStackedEnsemble) on the tuning set (the tuning files'
 * rows, and dev's where `dev` is listed, or dev alone when no files are given).
 */
function fitEnsemble(
  run: TeacherRun,
  lexicons: LexiconTables[],
  devLogitsOf: Float32Array[],
  tuneLogitsOf: Float32Array[],
): FittedEnsemble {
  const { o, classes } = run;
  const files = o.tuneFiles ?? [];
  if (!lexicons.length && !files.length) {
    const grid = tuneEnsembleWeights(devLogitsOf, run.devSet.labels, classes);
    return { weights: grid.weights, lexicon: null, accuracy: grid.accuracy, tune: null };
  }
  const scores = (set: TokenizedSet) => lexicons.map((t) => Float64Array.from(set.encodings, (e) => lexiconScore(t, e.ids)));
  const withDev = !files.length || files.includes('dev');
  const sets: { logits: Float32Array[]; scores: Float64Array[]; labels: Int32Array }[] = [];
  if (withDev) sets.push({ logits: devLogitsOf, scores: scores(run.devSet), labels: run.devSet.labels });
  if (run.tuneSet) sets.push({ logits: tuneLogitsOf, scores: scores(run.tuneSet), labels: run.tuneSet.labels });
  const cat = <T extends Float32Array | Float64Array | Int32Array>(parts: T[], make: (n: number) => T): T => {
    const out = make(parts.reduce((s, p) => s + p.length, 0));
    let at = 0;
    for (const p of parts) (out.set(p as never, at), (at += p.length));
    return out;
  };
  const fit = fitStackedEnsemble(
    devLogitsOf.map((_, k) =>
      cat(
        sets.map((s) => s.logits[k]!),
        (n) => new Float32Array(n),
      ),
    ),
    lexicons.map((_, l) =>
      cat(
        sets.map((s) => s.scores[l]!),
        (n) => new Float64Array(n),
      ),
    ),
    cat(
      sets.map((s) => s.labels),
      (n) => new Int32Array(n),
    ),
    classes,
  );
  const devAcc = stackedAccuracy(fit, devLogitsOf, scores(run.devSet), run.devSet.labels, classes);
  return {
    weights: fit.weights,
    lexicon: { names: lexicons.map((t) => t.name), rows: fit.lexiconRows, bias: fit.bias },
    accuracy: devAcc,
    tune: files.length ? { files, rows: sets.reduce((s, x) => s + x.labels.length, 0), accuracy: fit.accuracy } : null,
  };
}

/** Trains the default teacher (its members, then their ensemble) and writes it to `out` in the Hugging Face layout. */
export async function trainDefaultTeacher(o: TrainTeacherOptions): Promise<TrainTeacherResult> {
  // One run at a time in a folder (see util/lock): a second kd teacher train into this --out is refused naming the pid.
  const lock = acquireFolderLock(o.out, 'kd teacher train', o.log);
  try {
    return await trainTeacherLocked(o);
  } finally {
    lock.release();
  }
}

async function trainTeacherLocked(o: TrainTeacherOptions): Promise<TrainTeacherResult> {
  const cfg = o.config;
  const log = o.log ?? (() => undefined);
  const labels = [...LABEL_NAMES[o.read.classes]];
  const classes = labels.length;
  const { train, dev } = await readTrainAndDev(o, classes);
  log(`teacher: ${train.length} training rows, ${dev.length} dev rows, ${classes} classes, ${cfg.members.length} member(s)`);

  const work = join(o.out, 'training');
  const runConfig = teacherRunConfig(o, train, dev);
  checkTeacherResume(o, work, runConfig);
  mkdirSync(work, { recursive: true });
  const tokenizer = runTokenizer(o, work, train);
  writeRunJson(o, work, runConfig, train.length, dev.length);
  const tokenize = async (rows: LabelledExample[]): Promise<TokenizedSet> => ({
    encodings: await tokenizer.encode(rows.map((e) => e.text)),
    labels: Int32Array.from(rows, (e) => e.label),
  });
  const tuneFiles = (o.tuneFiles ?? []).filter((f) => f !== 'dev');
  const tuneRows = tuneFiles.length ? await readLabelledTuneRows(tuneFiles, o.read) : null;
  const run: TeacherRun = {
    o,
    cfg,
    classes,
    work,
    tokenizer,
    trainSet: await tokenize(train),
    devSet: await tokenize(dev),
    tuneSet: tuneRows ? await tokenize(tuneRows) : null,
    runConfig,
    log,
  };

  const pretrained = await pretrainIfAsked(run);
  const members: MemberResult[] = [];
  const memberDevLogits: Float32Array[] = [];
  const memberTuneLogits: Float32Array[] = [];
  const memberStores: ParameterStore[] = [];
  for (let k = 0; k < cfg.members.length; k++) {
    const { result, logits, tuneLogits, store } = await trainMember(run, k, pretrained);
    members.push(result);
    memberDevLogits.push(logits);
    if (tuneLogits) memberTuneLogits.push(tuneLogits);
    memberStores.push(store);
  }

  const lexicons = await Promise.all(cfg.lexicons.map((name) => lexiconTables(name, tokenizer)));
  for (const { name, coverage: c } of lexicons)
    log(`lexicon ${name}: ${c.single} entries as one token, ${c.phrase} as 2–3 tokens, ${c.dropped} dropped`);
  const tuned = fitEnsemble(run, lexicons, memberDevLogits, memberTuneLogits);
  const rows = tuned.lexicon
    ? `, lexicon rows ${tuned.lexicon.rows.map((r) => `[${r.map((v) => v.toFixed(3)).join(', ')}]`).join(' ')}`
    : '';
  const onTune = tuned.tune ? `, tuning-set accuracy ${(100 * tuned.tune.accuracy).toFixed(2)}%` : '';
  const weights = tuned.weights.map((w) => w.toFixed(2)).join(', ');
  log(`ensemble weights ${weights}${rows}: dev accuracy ${(100 * tuned.accuracy).toFixed(2)}%${onTune}`);
  const head = tuned.lexicon ? { tables: lexicons, rows: tuned.lexicon.rows, bias: tuned.lexicon.bias } : undefined;
  const store = ensembleStore(cfg, classes, memberStores, tuned.weights, head);
  const onnx = exportModel(ensembleModel(cfg, classes, lexicons), store, {
    outputs: ['logits'],
    metadata: { producer: 'kd-toolkit default teacher' },
  });
  exportTeacherFolder(o.out, cfg, tokenizer, labels, onnx, {
    devAccuracy: tuned.accuracy,
    pretrainMaskedAccuracy: pretrained?.devMaskedAccuracy ?? null,
    weights: tuned.weights,
    lexicon: tuned.lexicon,
    tune: tuned.tune,
    members: members.map((m) => ({ devAccuracy: m.devAccuracy, steps: m.loop.steps, seconds: m.loop.secondsTraining })),
    trainRows: train.length,
    devRows: dev.length,
  });
  return {
    out: o.out,
    trainRows: train.length,
    devRows: dev.length,
    devAccuracy: tuned.accuracy,
    pretrainMaskedAccuracy: pretrained?.devMaskedAccuracy ?? null,
    members,
    weights: tuned.weights,
    lexicon: tuned.lexicon,
    tune: tuned.tune,
    parameters: store.count(),
  };
}
