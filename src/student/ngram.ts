// The hashed bag-of-n-grams student (fastText-like): n-gram buckets → embedding table
// (updated sparsely) → masked mean → optional hidden layer → linear head.
import type { Value } from '../engine/graph.js';
import type { ModelContext, ModelDefinition } from '../engine/context.js';
import * as op from '../engine/ops.js';
import { linear, maskedMean } from '../engine/layers.js';
import { normal, uniform } from '../engine/params.js';
import { ort } from '../engine/session.js';
import { shuffledBatches } from '../engine/batches.js';
import { ConfigError } from '../data/errors.js';
import { ngramFeatures, type NgramSpec } from '../text/ngrams.js';
import type { Example } from '../data/example.js';
import type { StudentDefinition, StudentSettings } from './student.js';

export interface NgramStudentConfig {
  ngrams: NgramSpec;
  dim: number;
  /** Hidden layer width (0 = linear head straight on the bag, as fastText). */
  hidden: number;
  dropout: number;
}

/** The n-gram student's defaults (what kd train runs with; recipes merge onto them). */
export const NGRAM_DEFAULTS: StudentSettings = { dim: 32, hidden: 0, buckets: 1 << 18, epochs: 5, batchSize: 64, lr: 5e-3 };

function ngramConfig(s: StudentSettings): NgramStudentConfig {
  return { ngrams: { buckets: s.buckets!, maxN: 2, maxFeatures: 256 }, dim: s.dim!, hidden: s.hidden!, dropout: 0 };
}

export const DEFAULT_NGRAM_STUDENT: NgramStudentConfig = ngramConfig(NGRAM_DEFAULTS);

/** Outputs `head` (headSize raw outputs) and `embedding` (the pooled bag). */
export function ngramStudent(cfg: NgramStudentConfig, classes: number): ModelDefinition {
  return {
    inputs: {
      ngram_ids: { dtype: 'int64', shape: ['batch_size', 'num_ngrams'] },
      ngram_mask: { dtype: 'int64', shape: ['batch_size', 'num_ngrams'] },
    },
    forward(ctx: ModelContext, inputs: Record<string, Value>) {
      const table = ctx.embedding('ngrams', cfg.ngrams.buckets, cfg.dim, inputs.ngram_ids!, { init: uniform(1 / cfg.dim), sparse: true });
      let h = ctx.dropout(maskedMean(table, inputs.ngram_mask!), cfg.dropout);
      let dim = cfg.dim;
      if (cfg.hidden > 0) {
        h = op.relu(linear(ctx, h, cfg.dim, cfg.hidden, 'hidden', { init: normal(Math.sqrt(2 / cfg.dim)) }));
        dim = cfg.hidden;
      }
      return { head: linear(ctx, h, dim, classes, 'classifier', { init: normal(0.02) }), embedding: h };
    },
  };
}

/** Pads feature lists into ngram_ids / ngram_mask feeds (an empty text gets one padding slot). */
export function ngramFeeds(features: readonly Int32Array[]): Record<string, ort.Tensor> {
  const width = Math.max(1, ...features.map((f) => f.length));
  const ids = new BigInt64Array(features.length * width);
  const mask = new BigInt64Array(features.length * width);
  features.forEach((f, r) => {
    for (let k = 0; k < f.length; k++) {
      ids[r * width + k] = BigInt(f[k]!);
      mask[r * width + k] = 1n;
    }
  });
  return {
    ngram_ids: new ort.Tensor('int64', ids, [features.length, width]),
    ngram_mask: new ort.Tensor('int64', mask, [features.length, width]),
  };
}

const PREPROCESSING = {
  version: 1,
  lowercase: true,
  entities: ['&quot;', '&amp;', '&lt;', '&gt;', '&#39;'],
  url: '(?:https?://|www\\.)\\S+ → " <url> "',
  user: '@\\w+ → " <user> "',
  tokenPattern: "<url>|<user>|[a-z0-9']+|[^\\sa-z0-9']",
  hash: 'fnv1a-32 of UTF-8, bucket = 1 + h mod (buckets - 1), 0 = padding',
};

export const ngram: StudentDefinition<NgramStudentConfig> = {
  name: 'ngram',
  order: 1,
  summary: 'hashed bag of word uni- and bigrams (fastText-like)',
  options: [
    { key: 'dim', flag: 'dim', help: 'ngram: embedding width', min: 1 },
    { key: 'hidden', flag: 'ngram-hidden', help: 'ngram: hidden layer width (0 = linear)', min: 0 },
    { key: 'buckets', flag: 'buckets', help: 'ngram: hash buckets', min: 2 },
  ],
  defaults: NGRAM_DEFAULTS,
  setup: (settings) => {
    const config = ngramConfig(settings);
    return { config, recorded: { ...config }, tokenizer: null, tokenizerSaved: false };
  },
  model: ngramStudent,
  featurizer: async (cfg) => {
    const featureCache = new Map<Example[], Int32Array[]>();
    const features = (xs: Example[]) => {
      let f = featureCache.get(xs);
      if (!f) featureCache.set(xs, (f = xs.map((e) => ngramFeatures(e.text, cfg.ngrams))));
      return f;
    };
    return { feeds: (xs, r) => ngramFeeds(Array.from(r, (i) => features(xs)[i]!)), lengths: [] };
  },
  batches: (n, _lengths, batchSize, rng) => shuffledBatches(n, batchSize, rng),
  exportFiles: (_dir, s) => {
    return {
      inputs: ['ngram_ids', 'ngram_mask'],
      preprocessing: {
        ...PREPROCESSING,
        buckets: s.config.ngrams.buckets,
        maxN: s.config.ngrams.maxN,
        maxFeatures: s.config.ngrams.maxFeatures,
      },
    };
  },
  checkCard: (config, path, reexport) => {
    const ngrams = config.ngrams as Record<string, unknown> | undefined;
    const positive = (v: unknown) => typeof v === 'number' && Number.isInteger(v) && v >= 1;
    if (
      typeof ngrams !== 'object' ||
      ngrams === null ||
      !positive(ngrams.buckets) ||
      !positive(ngrams.maxN) ||
      !positive(ngrams.maxFeatures)
    ) {
      throw new ConfigError(
        `${path}: field config.ngrams must be { buckets, maxN, maxFeatures } (positive integers), ` +
          `got ${JSON.stringify(ngrams ?? null)}; ${reexport}`,
      );
    }
  },
  loader: (_dir, card) => {
    const cfg = card.config as unknown as NgramStudentConfig;
    return async (texts) => ngramFeeds(texts.map((t) => ngramFeatures(t, cfg.ngrams)));
  },
};
