// Training the default teacher: read and split the data, train (or reuse on resume) the
// word-piece vocabulary, pretrain one encoder with masked-language modelling, train each
// member with early stopping on dev, tune the ensemble weights and export the teacher folder.
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, requireLabel } from '../data/errors.js';
import { DatasetReader, type ReadOptions } from '../data/read.js';
import { assignSplits } from '../data/split.js';
import { LABEL_NAMES } from '../data/labels.js';
import type { Example, LabelledExample } from '../data/example.js';
import type { ParameterStore } from '../engine/params.js';
import { adamwTrainer, type Trainer } from '../engine/trainer.js';
import { exportModel } from '../engine/train-graph.js';
import type { SessionOptions } from '../engine/session.js';
import { runTrainingLoop, type LoopResult } from '../engine/loop.js';
import { bucketedBatches, lengthOrder, predictRows } from '../engine/batches.js';
import { TextTokenizer } from '../text/tokenizer.js';
import { unitHash } from '../util/hash.js';
import { writeFileAtomicSync } from '../util/fs.js';
import { runVersions } from '../util/versions.js';
import { argmaxRow } from '../util/stats.js';
import type { DefaultTeacherConfig, MemberConfig } from './default-config.js';
import { ceLoss, ensembleModel, memberModel, teacherFeeds, type TokenizedSet } from './default-model.js';
import { ensembleStore, exportTeacherFolder, tuneEnsembleWeights } from './ensemble.js';
import { pretrainEncoder, type PretrainResult } from './pretrain.js';

export interface TrainTeacherOptions {
  trainFiles: string[];
  /** Extra unlabeled text for pretraining (labels are not read). */
  pretrainFiles?: string[];
  devFiles?: string[];
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
  /** Ensemble weight of each member (tuned on dev). */
  weights: number[];
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
    { vocabSize: cfg.vocabSize, maxLength: cfg.maxLength },
  );
  mkdirSync(tokDir, { recursive: true });
  tokenizer.save(tokDir);
  return tokenizer;
}

/** What the run was started with: work/run.json. */
function writeRunJson(o: TrainTeacherOptions, work: string, trainRows: number, devRows: number): void {
  const run = {
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
  log: (line: string) => void;
}

/** A member's dev logits in dev order (batches of similar length). */
function devLogits(run: TeacherRun, trainer: Trainer): Promise<Float32Array> {
  const { devSet, tokenizer, cfg } = run;
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
): Promise<{ result: MemberResult; logits: Float32Array; store: ParameterStore }> {
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
    evaluate: async () => ({ score: devAccuracy(run, await devLogits(run, trainer)) }),
    ...(cfg.evalEvery ? { evalEvery: cfg.evalEvery } : {}),
    patience: cfg.patience,
    ...(o.resume ? { resume: true } : {}),
    ...(o.maxSteps !== undefined ? { maxSteps: o.maxSteps } : {}),
    label: `teacher member ${k + 1}`,
    log,
    restoreBest: true,
  });
  const logits = await devLogits(run, trainer);
  const result = { devAccuracy: devAccuracy(run, logits), loop, parameters: trainer.store.count() };
  const store = trainer.store.clone();
  await trainer.dispose();
  log(`member ${k + 1}: dev accuracy ${(100 * result.devAccuracy).toFixed(2)}%`);
  return { result, logits, store };
}

/** Trains the default teacher (its members, then their ensemble) and writes it to `out` in the Hugging Face layout. */
export async function trainDefaultTeacher(o: TrainTeacherOptions): Promise<TrainTeacherResult> {
  const cfg = o.config;
  const log = o.log ?? (() => undefined);
  const labels = [...LABEL_NAMES[o.read.classes]];
  const classes = labels.length;
  const { train, dev } = await readTrainAndDev(o, classes);
  log(`teacher: ${train.length} training rows, ${dev.length} dev rows, ${classes} classes, ${cfg.members.length} member(s)`);

  const work = join(o.out, 'training');
  mkdirSync(work, { recursive: true });
  const tokenizer = runTokenizer(o, work, train);
  writeRunJson(o, work, train.length, dev.length);
  const tokenize = async (rows: LabelledExample[]): Promise<TokenizedSet> => ({
    encodings: await tokenizer.encode(rows.map((e) => e.text)),
    labels: Int32Array.from(rows, (e) => e.label),
  });
  const run: TeacherRun = { o, cfg, classes, work, tokenizer, trainSet: await tokenize(train), devSet: await tokenize(dev), log };

  const pretrained = await pretrainIfAsked(run);
  const members: MemberResult[] = [];
  const memberDevLogits: Float32Array[] = [];
  const memberStores: ParameterStore[] = [];
  for (let k = 0; k < cfg.members.length; k++) {
    const { result, logits, store } = await trainMember(run, k, pretrained);
    members.push(result);
    memberDevLogits.push(logits);
    memberStores.push(store);
  }

  const tuned = tuneEnsembleWeights(memberDevLogits, run.devSet.labels, classes);
  log(`ensemble weights ${tuned.weights.map((w) => w.toFixed(2)).join(', ')}: dev accuracy ${(100 * tuned.accuracy).toFixed(2)}%`);
  const store = ensembleStore(cfg, classes, memberStores, tuned.weights);
  const onnx = exportModel(ensembleModel(cfg, classes), store, {
    outputs: ['logits'],
    metadata: { producer: 'kd-toolkit default teacher' },
  });
  exportTeacherFolder(o.out, cfg, tokenizer, labels, onnx, {
    devAccuracy: tuned.accuracy,
    pretrainMaskedAccuracy: pretrained?.devMaskedAccuracy ?? null,
    weights: tuned.weights,
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
    parameters: store.count(),
  };
}
