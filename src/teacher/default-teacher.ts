// The default teacher this toolkit can build offline: a BERT-style encoder trained from scratch
// on the engine, widened with a bag of word-piece unigrams and hashed bigrams (the n-gram
// model's knowledge, in the same graph), exported in the Hugging Face layout with the
// standard inputs (input_ids, attention_mask, token_type_ids) and output (logits).
import { OptionError } from '../errors.js';
import { ConfigError } from '../data/errors.js';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Value } from '../engine/graph.js';
import type { ModelContext, ModelDefinition } from '../engine/context.js';
import * as op from '../engine/ops.js';
import { bertEncoder, linear, maskedMean } from '../engine/layers.js';
import { batchMean, correct, crossEntropy } from '../engine/losses.js';
import { normal } from '../engine/params.js';
import { Trainer } from '../engine/trainer.js';
import { exportModel, type LossDefinition } from '../engine/train-graph.js';
import { ParameterStore } from '../engine/params.js';
import { modelParamSpecs } from '../engine/context.js';
import { loadSafetensors } from '../engine/safetensors.js';
import { ort, type Device } from '../engine/session.js';
import { DatasetReader, type ReadOptions } from '../data/read.js';
import { assignSplits } from '../data/split.js';
import { LABEL_NAMES } from '../data/labels.js';
import type { Example } from '../data/example.js';
import { unitHash } from '../util/hash.js';
import { writeFileAtomicSync } from '../util/fs.js';
import { runVersions } from '../util/versions.js';
import { TextTokenizer, type Encoding } from '../text/tokenizer.js';
import { runTrainingLoop, type LoopResult } from '../engine/loop.js';
import { bucketedBatches } from '../engine/batches.js';
import { argmaxRow } from '../util/stats.js';
import { tokenFeeds } from '../text/feeds.js';
import { DEFAULT_PRETRAIN, pretrainEncoder, type PretrainConfig, type PretrainResult } from './pretrain.js';

/** One ensemble member: a BERT-style encoder, a word-piece n-gram bag, or both. */
export interface MemberConfig {
  /** Encoder layers (0 = no encoder). */
  layers: number;
  hidden: number;
  heads: number;
  intermediate: number;
  /** Width of the unigram + bigram bag (0 = no bag). */
  wideDim: number;
  dropout: number;
  epochs: number;
  lr: number;
  seed: number;
}

export interface DefaultTeacherConfig {
  /** Members trained one after another on the same tokenizer and data, then combined. */
  members: MemberConfig[];
  /**
   * Masked-language-model pretraining of one encoder (the first encoder member's shape) on
   * the training texts and any extra text, used to initialize every encoder of that shape.
   */
  pretrain: PretrainConfig | null;
  maxLength: number;
  vocabSize: number;
  /** Hash buckets for word-piece bigrams. */
  bigramBuckets: number;
  batchSize: number;
  warmupRatio: number;
  weightDecay: number;
  /** Dev evaluations without improvement before a member stops. */
  patience: number;
  /** Evaluate on dev every N steps (0 = once per epoch). */
  evalEvery: number;
  seed: number;
  /** Fraction of the training rows held out as dev when no dev files are given. */
  devFraction: number;
}

const deep = (seed: number): MemberConfig => ({
  layers: 2,
  hidden: 128,
  heads: 2,
  intermediate: 512,
  wideDim: 0,
  dropout: 0.2,
  epochs: 3,
  lr: 5e-4,
  seed,
});
const wide = (seed: number): MemberConfig => ({
  layers: 0,
  hidden: 0,
  heads: 0,
  intermediate: 0,
  wideDim: 64,
  dropout: 0.1,
  epochs: 3,
  lr: 2e-3,
  seed,
});

export const TEACHER_PRESETS: Record<string, DefaultTeacherConfig> = {
  /**
   * The default: two BERT-style encoders (different seeds) and a word-piece unigram/bigram
   * bag, combined as a product of experts with weights tuned on dev.
   */
  base: {
    members: [deep(13), deep(14), wide(15)],
    pretrain: DEFAULT_PRETRAIN,
    maxLength: 128,
    vocabSize: 16384,
    bigramBuckets: 1 << 18,
    batchSize: 32,
    warmupRatio: 0.06,
    weightDecay: 0.01,
    patience: 4,
    evalEvery: 500,
    seed: 13,
    devFraction: 0.1,
  },
  /** For end-to-end tests: trains in seconds. */
  tiny: {
    members: [
      { layers: 1, hidden: 32, heads: 2, intermediate: 64, wideDim: 0, dropout: 0.1, epochs: 2, lr: 2e-3, seed: 13 },
      { layers: 0, hidden: 0, heads: 0, intermediate: 0, wideDim: 16, dropout: 0.1, epochs: 2, lr: 5e-3, seed: 14 },
    ],
    pretrain: { epochs: 1, lr: 2e-3, batchSize: 64, maskProbability: 0.15, seed: 7 },
    maxLength: 48,
    vocabSize: 2048,
    bigramBuckets: 4096,
    batchSize: 32,
    warmupRatio: 0.1,
    weightDecay: 0.01,
    patience: 2,
    evalEvery: 0,
    seed: 13,
    devFraction: 0.1,
  },
};

/** Multiplier of the word-piece bigram hash: bucket = (a·P + b) mod buckets, in the graph and on the host. */
export const BIGRAM_PRIME = 1000003;

export function bigramBucket(a: number, b: number, buckets: number): number {
  return (a * BIGRAM_PRIME + b) % buckets;
}

const SEQ = { dtype: 'int64' as const, shape: ['batch_size', 'sequence_length'] };

/**
 * One member's forward pass: its embedding (what its classifier reads) and logits. In
 * training, bigram buckets arrive as a batch input (so the bigram table is updated sparsely);
 * an exported graph computes them from input_ids with the same formula.
 */
function memberForward(
  ctx: ModelContext,
  m: MemberConfig,
  shared: DefaultTeacherConfig,
  classes: number,
  inputs: Record<string, Value>,
): { embedding: Value; dim: number; logits: Value } {
  const ids = inputs.input_ids!;
  const mask = inputs.attention_mask!;
  const parts: Value[] = [];
  let dim = 0;
  if (m.layers > 0) {
    const h = bertEncoder(
      ctx,
      {
        vocabSize: shared.vocabSize,
        hidden: m.hidden,
        layers: m.layers,
        heads: m.heads,
        intermediate: m.intermediate,
        maxPositions: shared.maxLength,
        typeVocabSize: 2,
        dropout: m.dropout,
        attentionDropout: m.dropout,
        layerNormEps: 1e-12,
        sparseEmbeddings: true,
      },
      ids,
      mask,
      inputs.token_type_ids!,
    );
    const cls = op.squeeze(op.slice(h, [0], [1], [1]), [1]);
    parts.push(op.tanh(linear(ctx, cls, m.hidden, m.hidden, 'pooler.dense')));
    dim += m.hidden;
  }
  if (m.wideDim > 0) {
    const uni = maskedMean(ctx.embedding('wide.unigrams', shared.vocabSize, m.wideDim, ids, { init: normal(0.02), sparse: true }), mask);
    const next = (v: Value) => op.concat([op.slice(v, [1], [op.SLICE_END], [1]), op.mul(op.slice(v, [0], [1], [1]), 0)], 1);
    const bigramMask = op.mul(mask, next(mask));
    const buckets =
      inputs.bigram_ids ??
      ctx.g.addNode(
        'Mod',
        [op.add(op.mul(ids, BIGRAM_PRIME), next(ids)), ctx.g.scalar(shared.bigramBuckets, 'int64')],
        { fmod: { kind: 'int', value: 0 } },
        [{ dtype: 'int64', shape: ids.shape }],
      )[0]!;
    const bi = maskedMean(
      ctx.embedding('wide.bigrams', shared.bigramBuckets, m.wideDim, buckets, { init: normal(0.02), sparse: true }),
      bigramMask,
    );
    parts.push(op.add(uni, bi));
    dim += m.wideDim;
  }
  if (parts.length === 0) throw new OptionError('a teacher member needs encoder layers or a wide branch (layers > 0 or wideDim > 0)');
  const embedding = parts.length === 1 ? parts[0]! : op.concat(parts, 1);
  const logits = linear(ctx, ctx.dropout(embedding, m.dropout), dim, classes, 'classifier');
  return { embedding, dim, logits };
}

/** One member as a model definition (for training). */
export function memberModel(m: MemberConfig, shared: DefaultTeacherConfig, classes: number, forTraining: boolean): ModelDefinition {
  return {
    inputs: { input_ids: SEQ, attention_mask: SEQ, token_type_ids: SEQ, ...(forTraining && m.wideDim > 0 ? { bigram_ids: SEQ } : {}) },
    forward: (ctx, inputs) => {
      const { embedding, logits } = memberForward(ctx, m, shared, classes, inputs);
      return { logits, embedding };
    },
  };
}

/**
 * The exported teacher: every member under `member<k>.`, their embeddings concatenated, and
 * one final linear layer whose weights are the members' classifiers scaled by their ensemble
 * weights. So logits = Σ_k w_k·logits_k (a product of experts) and the classifier is still
 * a single MatMul + Add that reads the concatenated embedding.
 */
export function ensembleModel(cfg: DefaultTeacherConfig, classes: number): ModelDefinition {
  return {
    inputs: { input_ids: SEQ, attention_mask: SEQ, token_type_ids: SEQ },
    forward: (ctx, inputs) => {
      const parts = cfg.members.map((m, k) => memberForward(ctx.scoped(`member${k}.`), m, cfg, classes, inputs));
      const embedding =
        parts.length === 1
          ? parts[0]!.embedding
          : op.concat(
              parts.map((p) => p.embedding),
              1,
            );
      const dim = parts.reduce((s, p) => s + p.dim, 0);
      return { logits: linear(ctx, embedding, dim, classes, 'classifier'), embedding };
    },
  };
}

const ceLoss: LossDefinition = {
  inputs: { labels: { dtype: 'int64', shape: ['batch_size'] } },
  build: (outputs, inputs) => ({
    loss: batchMean(crossEntropy(outputs.logits!, inputs.labels!)),
    metrics: { correct: correct(outputs.logits!, inputs.labels!) },
  }),
};

export interface TokenizedSet {
  encodings: Encoding[];
  labels: Int32Array;
}

/** Feeds for rows `rows` of a tokenized set (padded to their longest). */
export function teacherFeeds(
  tok: TextTokenizer,
  set: TokenizedSet,
  rows: ArrayLike<number>,
  cfg: DefaultTeacherConfig,
  withLabels: boolean,
  withBigrams: boolean,
): Record<string, ort.Tensor> {
  const enc = Array.from(rows as ArrayLike<number>, (r) => set.encodings[r]!);
  const b = tok.pad(enc);
  const dims = [b.size, b.length];
  const feeds = tokenFeeds(b);
  if (withBigrams) {
    const big = new BigInt64Array(b.size * b.length);
    enc.forEach((e, r) => {
      for (let t = 0; t + 1 < e.ids.length; t++) big[r * b.length + t] = BigInt(bigramBucket(e.ids[t]!, e.ids[t + 1]!, cfg.bigramBuckets));
    });
    feeds.bigram_ids = new ort.Tensor('int64', big, dims);
  }
  if (withLabels)
    feeds.labels = new ort.Tensor('int64', BigInt64Array.from(Array.from(rows as ArrayLike<number>, (r) => BigInt(set.labels[r]!))), [
      b.size,
    ]);
  return feeds;
}

export interface TrainTeacherOptions {
  trainFiles: string[];
  /** Extra unlabeled text for pretraining (labels are not read). */
  pretrainFiles?: string[];
  devFiles?: string[];
  read: ReadOptions & { classes: 2 | 3 | 5 };
  out: string;
  config: DefaultTeacherConfig;
  resume?: boolean;
  device?: Device;
  /** Run on CPU with a warning when `device` is not available. */
  allowFallback?: boolean;
  threads?: number;
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

/** Log-softmax rows of [n, classes] logits. */
function logSoftmaxRows(logits: Float32Array, classes: number): Float64Array {
  const out = new Float64Array(logits.length);
  for (let i = 0; i < logits.length / classes; i++) {
    let max = -Infinity;
    for (let c = 0; c < classes; c++) max = Math.max(max, logits[i * classes + c]!);
    let sum = 0;
    for (let c = 0; c < classes; c++) sum += Math.exp(logits[i * classes + c]! - max);
    const lse = max + Math.log(sum);
    for (let c = 0; c < classes; c++) out[i * classes + c] = logits[i * classes + c]! - lse;
  }
  return out;
}

/** Weight vectors on the simplex in steps of 1/steps. */
function simplexGrid(k: number, steps: number): number[][] {
  if (k === 1) return [[1]];
  const out: number[][] = [];
  for (let i = 0; i <= steps; i++)
    for (const rest of simplexGrid(k - 1, steps - i)) out.push([i / steps, ...rest.map((r) => (r * (steps - i)) / steps)]);
  return out;
}

/**
 * Ensemble weights maximizing dev accuracy of Σ_k w_k·log p_k (ties: lower dev NLL), on a
 * grid of the simplex.
 */
export function tuneEnsembleWeights(
  memberLogits: Float32Array[],
  labels: Int32Array,
  classes: number,
): { weights: number[]; accuracy: number; nll: number } {
  const logp = memberLogits.map((l) => logSoftmaxRows(l, classes));
  const n = labels.length;
  let best = { weights: memberLogits.map(() => 1 / memberLogits.length), accuracy: -1, nll: Infinity };
  for (const w of simplexGrid(memberLogits.length, memberLogits.length > 3 ? 5 : 10)) {
    let right = 0;
    let nll = 0;
    const score = new Float64Array(classes);
    for (let i = 0; i < n; i++) {
      score.fill(0);
      w.forEach((wk, k) => {
        for (let c = 0; c < classes; c++) score[c]! += wk * logp[k]![i * classes + c]!;
      });
      let arg = 0;
      let max = -Infinity;
      for (let c = 0; c < classes; c++) if (score[c]! > max) ((max = score[c]!), (arg = c));
      let sum = 0;
      for (let c = 0; c < classes; c++) sum += Math.exp(score[c]! - max);
      nll += max + Math.log(sum) - score[labels[i]!]!;
      if (arg === labels[i]) right += 1;
    }
    const accuracy = right / n;
    if (accuracy > best.accuracy + 1e-12 || (Math.abs(accuracy - best.accuracy) <= 1e-12 && nll / n < best.nll))
      best = { weights: w, accuracy, nll: nll / n };
  }
  return best;
}

/** Trains the default teacher (its members, then their ensemble) and writes it to `out` in the Hugging Face layout. */
export async function trainDefaultTeacher(o: TrainTeacherOptions): Promise<TrainTeacherResult> {
  const cfg = o.config;
  const log = o.log ?? (() => undefined);
  const labels = [...LABEL_NAMES[o.read.classes]];
  const classes = labels.length;
  let train = await readExamples(o.trainFiles, o.read, o.limit ?? Infinity, cfg.seed);
  let dev: Example[];
  if (o.devFiles?.length) {
    dev = await readExamples(o.devFiles, o.read, Infinity, cfg.seed);
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
  log(`teacher: ${train.length} training rows, ${dev.length} dev rows, ${classes} classes, ${cfg.members.length} member(s)`);

  const work = join(o.out, 'training');
  mkdirSync(work, { recursive: true });
  // The vocabulary is part of the run: reuse it on resume so ids stay the same.
  const tokDir = join(work, 'tokenizer');
  let tokenizer: TextTokenizer;
  if (o.resume && existsSync(join(tokDir, 'tokenizer.json'))) tokenizer = TextTokenizer.fromFolder(tokDir, { maxLength: cfg.maxLength });
  else {
    tokenizer = TextTokenizer.trainWordPiece(
      train.map((e) => e.text),
      { vocabSize: cfg.vocabSize, maxLength: cfg.maxLength },
    );
    mkdirSync(tokDir, { recursive: true });
    tokenizer.save(tokDir);
  }
  writeFileAtomicSync(
    join(work, 'run.json'),
    `${JSON.stringify({ config: cfg, trainFiles: o.trainFiles, devFiles: o.devFiles ?? null, limit: o.limit ?? null, trainRows: train.length, devRows: dev.length, versions: runVersions(), startedAt: new Date().toISOString() }, null, 2)}\n`,
  );
  const tokenize = async (rows: Example[]): Promise<TokenizedSet> => ({
    encodings: await tokenizer.encode(rows.map((e) => e.text)),
    labels: Int32Array.from(rows, (e) => e.label),
  });
  const trainSet = await tokenize(train);
  const devSet = await tokenize(dev);
  const devOrder = Int32Array.from({ length: dev.length }, (_, i) => i).sort(
    (a, b) => devSet.encodings[a]!.ids.length - devSet.encodings[b]!.ids.length,
  );
  const devLogits = async (trainer: Trainer): Promise<Float32Array> => {
    const out = new Float32Array(dev.length * classes);
    for (let s = 0; s < devOrder.length; s += 128) {
      const rows = devOrder.subarray(s, s + 128);
      const logits = (await trainer.evaluate(teacherFeeds(tokenizer, devSet, rows, cfg, false, true), ['logits'])).logits!
        .data as Float32Array;
      rows.forEach((r, k) => out.set(logits.subarray(k * classes, (k + 1) * classes), r * classes));
    }
    return out;
  };
  const accuracyOf = (logits: Float32Array) =>
    devSet.labels.reduce((s, y, i) => s + (argmaxRow(logits, i * classes, classes) === y ? 1 : 0), 0) / dev.length;

  const lengths = trainSet.encodings.map((e) => e.ids.length);
  let pretrained: PretrainResult | null = null;
  const shapeOf = (m: MemberConfig) => `${m.layers}/${m.hidden}/${m.heads}/${m.intermediate}`;
  const encoderShape = cfg.members.find((m) => m.layers > 0);
  if (cfg.pretrain && encoderShape) {
    const extra = o.pretrainFiles?.length ? await readExamples(o.pretrainFiles, { ...o.read, classes: 3 }, Infinity, cfg.seed) : [];
    const texts = [...trainSet.encodings, ...(await tokenizer.encode(extra.map((e) => e.text)))];
    log(`pretraining a ${shapeOf(encoderShape)} encoder (masked language model) on ${texts.length} texts`);
    pretrained = await pretrainEncoder({
      tokenizer,
      texts,
      heldOut: devSet.encodings,
      member: encoderShape,
      maxLength: cfg.maxLength,
      config: cfg.pretrain,
      outDir: join(work, 'pretrain'),
      ...(o.resume ? { resume: true } : {}),
      ...(o.device ? { device: o.device } : {}),
      ...(o.allowFallback ? { allowFallback: true } : {}),
      ...(o.threads ? { threads: o.threads } : {}),
      ...(o.log ? { log: o.log } : {}),
      bucketedBatches,
    });
    log(`pretraining: masked-token accuracy ${(100 * pretrained.devMaskedAccuracy).toFixed(2)}% on dev texts`);
  }
  const members: MemberResult[] = [];
  const memberDevLogits: Float32Array[] = [];
  const memberStores: ParameterStore[] = [];
  for (const [k, m] of cfg.members.entries()) {
    const memberDir = join(work, `member${k}`);
    const totalSteps = Math.ceil(train.length / cfg.batchSize) * m.epochs;
    let initial: ParameterStore | undefined;
    if (pretrained && m.layers > 0 && shapeOf(m) === shapeOf(encoderShape!)) {
      initial = new ParameterStore('float32');
      for (const spec of pretrained.encoder.specs) {
        initial.specs.push(spec);
        initial.values.set(spec.name, Float32Array.from(pretrained.encoder.get(spec.name)));
      }
    }
    const trainer = await Trainer.create({
      model: memberModel(m, cfg, classes, true),
      ...(initial ? { store: initial } : {}),
      loss: ceLoss,
      optimizer: { kind: 'adamw', lr: m.lr, weightDecay: cfg.weightDecay, clipNorm: 1 },
      schedule: { kind: 'linear', warmupSteps: Math.max(1, Math.round(cfg.warmupRatio * totalSteps)), totalSteps },
      stepsPerCall: 'auto',
      seed: m.seed,
      ...(o.device ? { device: o.device } : {}),
      ...(o.allowFallback ? { allowFallback: true } : {}),
      ...(o.threads ? { threads: o.threads } : {}),
    });
    log(
      `member ${k + 1}/${cfg.members.length}: ${m.layers > 0 ? `${m.layers}-layer encoder (hidden ${m.hidden})` : ''}${m.layers > 0 && m.wideDim > 0 ? ' + ' : ''}${m.wideDim > 0 ? `n-gram bag (${m.wideDim})` : ''}, ${trainer.store.count()} parameters`,
    );
    const loop = await runTrainingLoop<Int32Array>({
      trainer,
      outDir: memberDir,
      epochs: m.epochs,
      seed: m.seed,
      batches: (_epoch, rng) => bucketedBatches(lengths, cfg.batchSize, rng),
      feed: (rows) => teacherFeeds(tokenizer, trainSet, rows, cfg, true, true),
      evaluate: async () => ({ score: accuracyOf(await devLogits(trainer)) }),
      ...(cfg.evalEvery ? { evalEvery: cfg.evalEvery } : {}),
      patience: cfg.patience,
      ...(o.resume ? { resume: true } : {}),
      ...(o.maxSteps !== undefined ? { maxSteps: o.maxSteps } : {}),
      label: `teacher member ${k + 1}`,
      log,
    });
    const best = loadSafetensors(join(memberDir, 'best.safetensors'));
    for (const [name, t] of best.tensors) trainer.store.get(name).set(t.data as Float32Array);
    const logits = await devLogits(trainer);
    memberDevLogits.push(logits);
    members.push({ devAccuracy: accuracyOf(logits), loop, parameters: trainer.store.count() });
    const copy = new ParameterStore('float32');
    for (const spec of trainer.store.specs) {
      copy.specs.push(spec);
      copy.values.set(spec.name, Float32Array.from(trainer.store.get(spec.name)));
    }
    memberStores.push(copy);
    await trainer.dispose();
    log(`member ${k + 1}: dev accuracy ${(100 * members.at(-1)!.devAccuracy).toFixed(2)}%`);
  }

  const tuned = tuneEnsembleWeights(memberDevLogits, devSet.labels, classes);
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

/** Parameters of the exported ensemble: members under `member<k>.`, classifiers scaled and stacked. */
function ensembleStore(cfg: DefaultTeacherConfig, classes: number, members: ParameterStore[], weights: number[]): ParameterStore {
  const store = new ParameterStore('float32');
  const specs = modelParamSpecs(ensembleModel(cfg, classes));
  const dims = members.map((m) => m.spec('classifier.weight').shape[0]!);
  const total = dims.reduce((a, b) => a + b, 0);
  for (const spec of specs) {
    store.specs.push(spec);
    if (spec.name === 'classifier.weight') {
      const w = new Float32Array(total * classes);
      let row = 0;
      members.forEach((m, k) => {
        const wk = m.get('classifier.weight');
        for (let i = 0; i < wk.length; i++) w[row * classes + i] = weights[k]! * wk[i]!;
        row += dims[k]!;
      });
      store.values.set(spec.name, w);
    } else if (spec.name === 'classifier.bias') {
      const b = new Float32Array(classes);
      members.forEach((m, k) => m.get('classifier.bias').forEach((v, c) => (b[c]! += weights[k]! * v)));
      store.values.set(spec.name, b);
    } else {
      const match = /^member(\d+)\.(.*)$/.exec(spec.name);
      if (!match) throw new Error(`ensemble parameter '${spec.name}' belongs to no member`);
      store.values.set(spec.name, members[Number(match[1])]!.get(match[2]!));
    }
  }
  return store;
}

/** Writes config.json, the tokenizer files and onnx/model.onnx (the layout transformers.js loads). */
export function exportTeacherFolder(
  out: string,
  cfg: DefaultTeacherConfig,
  tokenizer: TextTokenizer,
  labels: string[],
  onnx: Uint8Array,
  training: Record<string, unknown>,
): void {
  mkdirSync(join(out, 'onnx'), { recursive: true });
  const id2label = Object.fromEntries(labels.map((l, i) => [String(i), l]));
  const label2id = Object.fromEntries(labels.map((l, i) => [l, i]));
  // The BERT fields describe the first encoder member; `kd` describes the whole ensemble.
  const enc = cfg.members.find((m) => m.layers > 0) ?? cfg.members[0]!;
  const config = {
    architectures: ['BertForSequenceClassification'],
    model_type: 'bert',
    vocab_size: cfg.vocabSize,
    hidden_size: enc.hidden,
    num_hidden_layers: enc.layers,
    num_attention_heads: enc.heads,
    intermediate_size: enc.intermediate,
    hidden_act: 'gelu',
    max_position_embeddings: cfg.maxLength,
    type_vocab_size: 2,
    layer_norm_eps: 1e-12,
    hidden_dropout_prob: enc.dropout,
    attention_probs_dropout_prob: enc.dropout,
    pad_token_id: 0,
    problem_type: 'single_label_classification',
    id2label,
    label2id,
    kd: {
      producer: 'kd-toolkit',
      architecture: 'product-of-experts ensemble of BERT-style encoders and word-piece unigram/bigram bags, one final linear layer',
      members: cfg.members,
      bigram_buckets: cfg.bigramBuckets,
      bigram_prime: BIGRAM_PRIME,
      training,
    },
  };
  tokenizer.save(out);
  writeFileAtomicSync(join(out, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
  writeFileAtomicSync(join(out, 'onnx', 'model.onnx'), onnx);
}

/** Reads a preset name or a JSON file of overrides. */
export function resolveTeacherConfig(preset: string, overrides: Partial<DefaultTeacherConfig & MemberConfig>): DefaultTeacherConfig {
  let base = TEACHER_PRESETS[preset];
  if (!base) {
    if (existsSync(preset))
      base = { ...TEACHER_PRESETS.base!, ...(JSON.parse(readFileSync(preset, 'utf8')) as Partial<DefaultTeacherConfig>) };
    else
      throw new OptionError(
        `Unknown teacher preset '${preset}'. Known: ${Object.keys(TEACHER_PRESETS).join(', ')} (or a JSON file of settings)`,
      );
  }
  const given = Object.fromEntries(Object.entries(overrides).filter(([, v]) => v !== undefined)) as Partial<
    DefaultTeacherConfig & MemberConfig
  >;
  const memberKeys: (keyof MemberConfig)[] = ['layers', 'hidden', 'heads', 'intermediate', 'wideDim', 'dropout', 'epochs', 'lr'];
  const memberOverrides = Object.fromEntries(memberKeys.filter((k) => k in given).map((k) => [k, given[k]]));
  const sharedOverrides = Object.fromEntries(Object.entries(given).filter(([k]) => !memberKeys.includes(k as keyof MemberConfig)));
  const cfg: DefaultTeacherConfig = { ...base, ...sharedOverrides, members: base.members.map((m) => ({ ...m, ...memberOverrides })) };
  for (const m of cfg.members) {
    if (m.layers > 0 && m.hidden % m.heads !== 0) throw new OptionError(`'--hidden' ${m.hidden} must be divisible by '--heads' ${m.heads}`);
  }
  return cfg;
}
