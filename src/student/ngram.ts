// The bag-of-n-grams student (fastText-like) on its own word-level tokenizer: unigram ids and
// bigrams hashed from consecutive ids → one embedding table (updated sparsely) → masked mean →
// optional hidden layer → linear head. Exported as a transformers.js text classifier.
import type { Value } from '../engine/graph.js';
import { int } from '../engine/graph.js';
import type { ModelContext, ModelDefinition } from '../engine/context.js';
import * as op from '../engine/ops.js';
import { linear, maskedMean } from '../engine/layers.js';
import { normal, uniform } from '../engine/params.js';
import { ort } from '../engine/session.js';
import type { BagModelSpec } from '../engine/bag-trainer.js';
import { shuffledBatches } from '../engine/batches.js';
import { DamagedFileError } from '../engine/safetensors.js';
import { ConfigError } from '../data/errors.js';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { BIGRAM_PRIME, MAX_NGRAM_ROWS, ngramFeatureIds, ngramFeatures, type BigramHashing, type NgramSpec } from '../text/ngrams.js';
import { TextTokenizer } from '../text/tokenizer.js';
import { tokenFeeds } from '../text/feeds.js';
import { writeFileAtomicSync } from '../util/fs.js';
import type { Example } from '../data/example.js';
import type { SetupContext, StudentCard, StudentDefinition, StudentSettings } from './student.js';

export interface NgramStudentConfig extends BigramHashing {
  /** Tokens kept per text (the tokenizer truncates to it): n tokens give n unigram and n − 1 bigram features. */
  maxLength: number;
  dim: number;
  /** Hidden layer width (0 = linear head straight on the bag, as fastText). */
  hidden: number;
  dropout: number;
}

/** The first form's config (students exported before the tokenizer: `ngram_ids` hashed in JavaScript). */
export interface LegacyNgramConfig {
  ngrams: NgramSpec;
  dim: number;
  hidden: number;
  dropout: number;
}

/** The n-gram student's defaults (what kd train runs with; recipes merge onto them). */
export const NGRAM_DEFAULTS: StudentSettings = { dim: 32, hidden: 0, vocab: 32768, buckets: 196608, epochs: 5, batchSize: 64, lr: 5e-3 };

/** Tokens kept per text: tweets and most reviews fit; 128 + 127 features, about the first form's 256. */
export const NGRAM_MAX_TOKENS = 128;

function architecture(s: StudentSettings): Omit<NgramStudentConfig, 'vocabSize'> {
  return { buckets: s.buckets!, maxLength: NGRAM_MAX_TOKENS, dim: s.dim!, hidden: s.hidden!, dropout: 0 };
}

const SEQ = { dtype: 'int64' as const, shape: ['batch_size', 'sequence_length'] };
const FEATURES = { dtype: 'int64' as const, shape: ['batch_size', 'num_ngrams'] };

/** `x[:, :-1]` of a [B, T] value (T may be 0). */
function dropLast(x: Value): Value {
  const g = x.graph;
  const t = x.shape[1]!;
  const shape = [x.shape[0]!, typeof t === 'number' ? Math.max(0, t - 1) : `${t}-1`];
  return g.addNode('Slice', [x, g.int64s([0], 'starts'), g.int64s([-1], 'ends'), g.int64s([1], 'axes')], {}, [
    { dtype: x.dtype, shape },
  ])[0]!;
}

/**
 * The features of token ids inside the graph, as ngramFeatureIds computes them (src/text/ngrams.ts):
 * ids [B, T] and mask [B, T] → rows [B, 2T − 1]: the ids, then vocabSize + (a·P + b) mod buckets for
 * each pair of neighbours (int64 Mul, Add, Mod; below 2^53, no overflow), a pair counted where both
 * tokens are. Outputs `rows` and `mask` (int64).
 */
export function ngramFeatureGraph(inputIds: Value, attentionMask: Value, h: BigramHashing): { rows: Value; mask: Value } {
  const g = inputIds.graph;
  const next = op.slice(inputIds, [1], [op.SLICE_END], [1]);
  const mixed = op.add(op.mul(dropLast(inputIds), BIGRAM_PRIME), next);
  const bucket = g.addNode('Mod', [mixed, g.scalar(h.buckets, 'int64')], { fmod: int(0) }, [{ dtype: 'int64', shape: mixed.shape }])[0]!;
  const pairMask = op.mul(dropLast(attentionMask), op.slice(attentionMask, [1], [op.SLICE_END], [1]));
  return {
    rows: op.concat([inputIds, op.add(bucket, h.vocabSize)], 1),
    mask: op.concat([attentionMask, pairMask], 1),
  };
}

/**
 * Outputs `head` (headSize raw outputs) and `embedding` (the pooled bag). Training and evaluation
 * graphs read the feature rows (`ngram_ids`, `ngram_mask`) from the host, because a sparse table's
 * update needs the rows a batch touches; the exported graph computes the same rows from
 * `input_ids` and `attention_mask` (ngramFeatureGraph). Each graph keeps only the inputs it reads.
 */
export function ngramStudent(cfg: NgramStudentConfig, classes: number): ModelDefinition {
  return {
    inputs: { input_ids: SEQ, attention_mask: SEQ, ngram_ids: FEATURES, ngram_mask: FEATURES },
    forward(ctx: ModelContext, inputs: Record<string, Value>) {
      const f =
        ctx.mode === 'export'
          ? ngramFeatureGraph(inputs.input_ids!, inputs.attention_mask!, cfg)
          : { rows: inputs.ngram_ids!, mask: inputs.ngram_mask! };
      const rows = cfg.vocabSize + cfg.buckets;
      const table = ctx.embedding('ngrams', rows, cfg.dim, f.rows, { init: uniform(1 / cfg.dim), sparse: true });
      let h = ctx.dropout(maskedMean(table, f.mask), cfg.dropout);
      let dim = cfg.dim;
      if (cfg.hidden > 0) {
        h = op.relu(linear(ctx, h, cfg.dim, cfg.hidden, 'hidden', { init: normal(Math.sqrt(2 / cfg.dim)) }));
        dim = cfg.hidden;
      }
      return { head: linear(ctx, h, dim, classes, 'classifier', { init: normal(0.02) }), embedding: h };
    },
  };
}

/**
 * Pads feature lists into ngram_ids / ngram_mask feeds (an empty text gets one padding slot): int64 as the graphs take
 * them, or int32 for the host trainer (src/engine/bag-trainer.ts), which reads those as they are.
 */
export function ngramFeeds(features: readonly Int32Array[], type: 'int64' | 'int32' = 'int64'): Record<string, ort.Tensor> {
  const width = Math.max(1, ...features.map((f) => f.length));
  const n = features.length * width;
  const ids = type === 'int64' ? new BigInt64Array(n) : new Int32Array(n);
  const mask = type === 'int64' ? new BigInt64Array(n) : new Int32Array(n);
  // int64 written through their low 32-bit words (ids are ≥ 0 and < 2^31; little-endian): no BigInt per element.
  const words = type === 'int64' ? 2 : 1;
  const idWords = new Int32Array(ids.buffer);
  const maskWords = new Int32Array(mask.buffer);
  features.forEach((f, r) => {
    const at = r * width;
    for (let k = 0; k < f.length; k++) {
      idWords[words * (at + k)] = f[k]!;
      maskWords[words * (at + k)] = 1;
    }
  });
  return {
    ngram_ids: new ort.Tensor(type, ids, [features.length, width]),
    ngram_mask: new ort.Tensor(type, mask, [features.length, width]),
  };
}

/** The vocabulary: the run's own on resume (ids must point at the same rows), else --tokenizer's, else trained on the training texts. */
function vocabulary(vocabSize: number, ctx: SetupContext): { tokenizer: TextTokenizer; saved: boolean } {
  if (ctx.resuming) {
    if (!existsSync(join(ctx.tokenizerDir, 'tokenizer.json')))
      throw new DamagedFileError(
        join(ctx.tokenizerDir, 'tokenizer.json'),
        'missing: the run has a checkpoint but not the vocabulary it was trained with',
        'Delete the run folder and start the run anew without --resume',
      );
    return { tokenizer: TextTokenizer.fromFolder(ctx.tokenizerDir, { maxLength: NGRAM_MAX_TOKENS }), saved: true };
  }
  const tokenizer = ctx.tokenizer
    ? TextTokenizer.fromFolder(ctx.tokenizer, { maxLength: NGRAM_MAX_TOKENS })
    : TextTokenizer.trainWordLevel(
        ctx.train.map((e) => e.text),
        { vocabSize, maxLength: NGRAM_MAX_TOKENS },
      );
  return { tokenizer, saved: false };
}

/** The rows of texts' token ids (the host twin of ngramFeatureGraph). */
async function featureRows(tokenizer: TextTokenizer, cfg: BigramHashing, texts: readonly string[]): Promise<Int32Array[]> {
  return (await tokenizer.encode(texts)).map((e) => ngramFeatureIds(e.ids, cfg));
}

/** config.json for transformers.js and Optimum: see docs/manual-ngramtjs.md for why `distilbert`. */
function writeNgramConfig(dir: string, cfg: NgramStudentConfig, labels: readonly string[], training: Record<string, unknown>): void {
  const config = {
    architectures: ['DistilBertForSequenceClassification'],
    // A model type whose sequence classifier takes input_ids and attention_mask only, as this graph does.
    model_type: 'distilbert',
    vocab_size: cfg.vocabSize,
    max_position_embeddings: cfg.maxLength,
    pad_token_id: 0,
    problem_type: 'single_label_classification',
    id2label: Object.fromEntries(labels.map((l, i) => [String(i), l])),
    label2id: Object.fromEntries(labels.map((l, i) => [l, i])),
    kd: {
      producer: 'kd-toolkit',
      role: 'student',
      architecture: 'ngram',
      bigrams: `row = vocab_size + (a * ${BIGRAM_PRIME} + b) mod ${cfg.buckets}, computed in onnx/model.onnx`,
      training,
    },
  };
  writeFileAtomicSync(join(dir, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
}

/** A card of the first form: its config has `ngrams` (the JavaScript hashing) instead of a vocabulary. */
const isLegacy = (card: StudentCard) => 'ngrams' in card.config;

export const ngram: StudentDefinition<NgramStudentConfig> = {
  name: 'ngram',
  order: 1,
  summary: 'bag of word unigrams and hashed bigrams on its own word vocabulary (fastText-like)',
  options: [
    { key: 'dim', flag: 'dim', help: 'ngram: embedding width', min: 1 },
    { key: 'hidden', flag: 'ngram-hidden', help: 'ngram: hidden layer width (0 = linear)', min: 0 },
    { key: 'vocab', flag: 'ngram-vocab', help: 'ngram: word vocabulary size (unigram rows)', min: 3 },
    { key: 'buckets', flag: 'buckets', help: 'ngram: bigram hash buckets', min: 1 },
  ],
  defaults: NGRAM_DEFAULTS,
  check: (s) =>
    s.vocab! + s.buckets! > MAX_NGRAM_ROWS
      ? { key: 'buckets', problem: `vocab + buckets = ${s.vocab! + s.buckets!} rows is above ${MAX_NGRAM_ROWS} (int32 row ids)` }
      : null,
  setup: (settings, ctx) => {
    const base = architecture(settings);
    const { tokenizer, saved } = vocabulary(settings.vocab!, ctx);
    return {
      config: { ...base, vocabSize: tokenizer.idBound },
      recorded: { ...base, vocab: ctx.tokenizer ? null : settings.vocab!, tokenizer: ctx.tokenizer ? resolve(ctx.tokenizer) : 'trained' },
      tokenizer,
      tokenizerSaved: saved,
    };
  },
  model: ngramStudent,
  hostTrainer: ngramBag,
  featurizer: async (cfg, tokenizer, splits) => {
    const rows = new Map<Example[], Int32Array[]>();
    for (const xs of splits)
      rows.set(
        xs,
        await featureRows(
          tokenizer!,
          cfg,
          xs.map((e) => e.text),
        ),
      );
    const features = (xs: Example[], r: ArrayLike<number>) => Array.from(r, (i) => rows.get(xs)![i]!);
    return {
      feeds: (xs, r) => ngramFeeds(features(xs, r)),
      hostFeeds: (xs, r) => ngramFeeds(features(xs, r), 'int32'),
      lengths: [],
    };
  },
  batches: (n, _lengths, batchSize, rng) => shuffledBatches(n, batchSize, rng),
  exportFiles: (dir, s) => {
    s.tokenizer!.save(dir);
    writeNgramConfig(dir, s.config, s.labels, s.training);
    return {
      inputs: ['input_ids', 'attention_mask'],
      preprocessing: {
        version: 2,
        tokenizer: 'tokenizer.json (word level: lowercase, entities, <url>, <user> in its normalizer)',
        bigrams: `row = vocabSize + (a * ${BIGRAM_PRIME} + b) mod buckets, in the graph`,
      },
    };
  },
  checkCard: (config, path, reexport) => {
    const positive = (v: unknown) => typeof v === 'number' && Number.isInteger(v) && v >= 1;
    if ('ngrams' in config) {
      const ngrams = config.ngrams as Record<string, unknown> | undefined;
      if (
        typeof ngrams !== 'object' ||
        ngrams === null ||
        !positive(ngrams.buckets) ||
        !positive(ngrams.maxN) ||
        !positive(ngrams.maxFeatures)
      )
        throw new ConfigError(
          `${path}: field config.ngrams must be { buckets, maxN, maxFeatures } (positive integers), ` +
            `got ${JSON.stringify(ngrams ?? null)}; ${reexport}`,
        );
      return;
    }
    for (const field of ['vocabSize', 'buckets', 'maxLength', 'dim'])
      if (!positive(config[field]))
        throw new ConfigError(
          `${path}: field config.${field} must be a positive integer, got ${JSON.stringify(config[field] ?? null)}; ${reexport}`,
        );
  },
  loader: (dir, card) => {
    if (isLegacy(card)) {
      const legacy = card.config as unknown as LegacyNgramConfig;
      return async (texts) => ngramFeeds(texts.map((t) => ngramFeatures(t, legacy.ngrams)));
    }
    const tokenizer = TextTokenizer.fromFolder(dir);
    return async (texts) => tokenFeeds(tokenizer.pad(await tokenizer.encode(texts)), false);
  },
};

/** The n-gram model as the host trainer sees it (src/engine/bag-trainer.ts); null where it does not apply (dropout). */
export function ngramBag(cfg: NgramStudentConfig): BagModelSpec | null {
  if (cfg.dropout > 0) return null;
  return { table: 'ngrams', ids: 'ngram_ids', mask: 'ngram_mask', hidden: cfg.hidden > 0 ? 'hidden' : null, head: 'classifier' };
}
