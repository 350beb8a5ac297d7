// The models the engine benchmark trains, in the engine's own terms (same shapes as the peers).
import type { ModelDefinition } from '../../src/engine/context.js';
import type { LossDefinition } from '../../src/engine/train-graph.js';
import { bertEncoder, linear, maskedMean } from '../../src/engine/layers.js';
import { batchMean, crossEntropy } from '../../src/engine/losses.js';
import { normal } from '../../src/engine/params.js';
import { crossEntropyTerm, hostMean, labelsOf } from '../../src/engine/host-losses.js';
import * as op from '../../src/engine/ops.js';

export const MLP = { input: 768, hidden: 256, classes: 2, batch: 256 };
export const TRANSFORMER = {
  vocab: 8192,
  hidden: 128,
  layers: 2,
  heads: 2,
  intermediate: 512,
  seq: 64,
  batch: 32,
  classes: 2,
  dropout: 0.1,
};
export const NGRAM = { dim: 64, batch: 256, length: 64, classes: 2 };

export const ceLoss: LossDefinition = {
  inputs: { labels: { dtype: 'int64', shape: ['B'] } },
  build: (outputs, inputs) => ({ loss: batchMean(crossEntropy(outputs.logits!, inputs.labels!)) }),
  // The same on the host, as kd train's losses have it (the host trainer's n-gram case computes it so).
  host: (head, batch) => ({
    loss: crossEntropyTerm(head, labelsOf(batch.labels!, new Int32Array(head.B)), hostMean(head.B), 1),
    metrics: {},
  }),
};

export const mlpModel: ModelDefinition = {
  inputs: { x: { dtype: 'float32', shape: ['B', MLP.input] } },
  forward(ctx, { x }) {
    const h = op.relu(linear(ctx, x!, MLP.input, MLP.hidden, 'l1'));
    return { logits: linear(ctx, h, MLP.hidden, MLP.classes, 'l2') };
  },
};

/** FLOPs of one MLP training step (forward, weight gradients, hidden-layer input gradient). */
export function mlpStepFlops(batch: number): number {
  const l1 = 2 * batch * MLP.input * MLP.hidden;
  const l2 = 2 * batch * MLP.hidden * MLP.classes;
  return 2 * l1 + 3 * l2; // l1: forward + dW1 (no gradient for the data); l2: forward + dW2 + dA1
}

export const transformerModel: ModelDefinition = {
  inputs: { input_ids: { dtype: 'int64', shape: ['B', 'T'] }, attention_mask: { dtype: 'int64', shape: ['B', 'T'] } },
  forward(ctx, { input_ids, attention_mask }) {
    const t = TRANSFORMER;
    const h = bertEncoder(
      ctx,
      {
        vocabSize: t.vocab,
        hidden: t.hidden,
        layers: t.layers,
        heads: t.heads,
        intermediate: t.intermediate,
        maxPositions: t.seq,
        typeVocabSize: 0,
        dropout: t.dropout,
        attentionDropout: t.dropout,
        layerNormEps: 1e-12,
      },
      input_ids!,
      attention_mask!,
    );
    const cls = op.squeeze(op.slice(h, [0], [1], [1]), [1]);
    const pooled = op.tanh(linear(ctx, cls, t.hidden, t.hidden, 'pooler.dense'));
    return { logits: linear(ctx, ctx.dropout(pooled, t.dropout), t.hidden, t.classes, 'classifier') };
  },
};

export function ngramModel(rows: number, sparse = true): ModelDefinition {
  return {
    inputs: { ids: { dtype: 'int64', shape: ['B', 'L'] }, mask: { dtype: 'int64', shape: ['B', 'L'] } },
    forward(ctx, { ids, mask }) {
      const e = ctx.embedding('ngrams', rows, NGRAM.dim, ids!, { init: normal(0.01), sparse });
      return { logits: linear(ctx, maskedMean(e, mask!), NGRAM.dim, NGRAM.classes, 'head') };
    },
  };
}
