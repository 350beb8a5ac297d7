// The hashed bag-of-n-grams student (fastText-like): n-gram buckets → embedding table
// (updated sparsely) → masked mean → optional hidden layer → linear head.
import type { Value } from '../engine/graph.js';
import type { ModelContext, ModelDefinition } from '../engine/context.js';
import * as op from '../engine/ops.js';
import { linear, maskedMean } from '../engine/layers.js';
import { normal, uniform } from '../engine/params.js';
import { ort } from '../engine/session.js';
import { DEFAULT_NGRAMS, type NgramSpec } from '../text/ngrams.js';

export interface NgramStudentConfig {
  ngrams: NgramSpec;
  dim: number;
  /** Hidden layer width (0 = linear head straight on the bag, as fastText). */
  hidden: number;
  dropout: number;
}

export const DEFAULT_NGRAM_STUDENT: NgramStudentConfig = { ngrams: DEFAULT_NGRAMS, dim: 64, hidden: 0, dropout: 0 };

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
