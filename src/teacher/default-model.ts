// The default teacher's graphs: one member (a BERT-style encoder, a word-piece unigram/bigram
// bag, or both) for training, the exported product-of-experts ensemble of all members, and the
// feeds of a tokenized set.
import type { Value } from '../engine/graph.js';
import type { ModelContext, ModelDefinition } from '../engine/context.js';
import * as op from '../engine/ops.js';
import { bertEncoder, linear, maskedMean } from '../engine/layers.js';
import { batchMean, correct, crossEntropy } from '../engine/losses.js';
import { normal } from '../engine/params.js';
import type { LossDefinition } from '../engine/train-graph.js';
import { ort } from '../engine/session.js';
import { OptionError } from '../errors.js';
import { tokenFeeds } from '../text/feeds.js';
import type { Encoding, TextTokenizer } from '../text/tokenizer.js';
import { lexiconScoreGraph, type LexiconTables } from './lexicon.js';
import { BIGRAM_PRIME, bigramBucket, type DefaultTeacherConfig, type MemberConfig } from './default-config.js';

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
 * a single MatMul + Add that reads the concatenated embedding. Lexicon members (`lexicons`)
 * come after the trained ones, each a one-wide embedding (its score s, see lexicon.ts) whose
 * classifier row u gives the logits u·s (binary: [−a·s, a·s] up to a shared bias).
 */
export function ensembleModel(cfg: DefaultTeacherConfig, classes: number, lexicons: readonly LexiconTables[] = []): ModelDefinition {
  return {
    inputs: { input_ids: SEQ, attention_mask: SEQ, token_type_ids: SEQ },
    forward: (ctx, inputs) => {
      const parts: { embedding: Value; dim: number }[] = cfg.members.map((m, k) =>
        memberForward(ctx.scoped(`member${k}.`), m, cfg, classes, inputs),
      );
      // A lexicon member's "embedding" is its score: the final layer gives it a row of per-class weights.
      for (const t of lexicons)
        parts.push({ embedding: op.unsqueeze(lexiconScoreGraph(ctx.g, t, inputs.input_ids!, inputs.attention_mask!), [1]), dim: 1 });
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

/** Cross-entropy on the labels, with the count of correct predictions as a metric. */
export const ceLoss: LossDefinition = {
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
