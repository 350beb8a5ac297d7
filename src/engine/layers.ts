// Neural-network building blocks over ModelContext: what students and the default teacher
// are made of (linear, norms, GELU, masked attention, pooling, BERT-style encoder).
import type { Value } from './graph.js';
import type { ModelContext } from './context.js';
import * as op from './ops.js';
import { normal, ones, zeros, type Init } from './params.js';

/** y = x·W + b with W stored [in, out]. */
export function linear(
  ctx: ModelContext,
  x: Value,
  inDim: number,
  outDim: number,
  name: string,
  opts: { bias?: boolean; init?: Init } = {},
): Value {
  const w = ctx.param(`${name}.weight`, [inDim, outDim], { init: opts.init ?? normal(0.02) });
  const y = op.matmul(x, w);
  if (opts.bias === false) return y;
  return op.add(y, ctx.param(`${name}.bias`, [outDim], { init: zeros }));
}

export function layerNorm(ctx: ModelContext, x: Value, dim: number, name: string, epsilon = 1e-12): Value {
  const gamma = ctx.param(`${name}.weight`, [dim], { init: ones, decay: false });
  const beta = ctx.param(`${name}.bias`, [dim], { init: zeros, decay: false });
  return op.layerNorm(x, gamma, beta, epsilon).y;
}

/**
 * Exact GELU, 0.5·x·(1 + erf(x/√2)), as BERT's "gelu". Written in the node order PyTorch
 * exports (Div → Erf → Add → Mul x → Mul 0.5), the pattern ONNX Runtime fuses into one Gelu
 * (with the preceding bias Add, BiasGelu) when it loads the model.
 */
export function gelu(x: Value): Value {
  return op.mul(op.mul(x, op.add(op.erf(op.div(x, Math.SQRT2)), 1)), 0.5);
}

/**
 * Mean of `x` [B, T, H] over positions where `mask` [B, T] is 1; rows with no position
 * count 1 so they stay finite.
 */
export function maskedMean(x: Value, mask: Value): Value {
  const m = op.unsqueeze(op.cast(mask, x.dtype), [-1]);
  const sum = op.reduceSum(op.mul(x, m), [1], false);
  const count = op.maximum(op.reduceSum(m, [1], false), 1);
  return op.div(sum, count);
}

/** Sum of `x` [B, T, H] over positions where `mask` [B, T] is 1. */
export function maskedSum(x: Value, mask: Value): Value {
  const m = op.unsqueeze(op.cast(mask, x.dtype), [-1]);
  return op.reduceSum(op.mul(x, m), [1], false);
}

/** Additive attention bias [B, 1, 1, T]: 0 where mask is 1, a large negative value where 0. */
export function attentionBias(mask: Value, dtype: Value['dtype']): Value {
  const m = op.cast(mask, dtype);
  return op.unsqueeze(op.mul(op.sub(1, m), -10000), [1, 2]);
}

export interface AttentionConfig {
  hidden: number;
  heads: number;
  dropout: number;
}

/** Multi-head self-attention over x [B, T, H] with an additive padding bias [B, 1, 1, T]. */
export function selfAttention(ctx: ModelContext, x: Value, bias: Value, cfg: AttentionConfig, name: string): Value {
  const headDim = cfg.hidden / cfg.heads;
  if (!Number.isInteger(headDim)) throw new RangeError(`hidden ${cfg.hidden} is not divisible by heads ${cfg.heads}`);
  const split = (v: Value) => op.transpose(op.reshape(v, [0, 0, cfg.heads, headDim]), [0, 2, 1, 3]);
  const q = split(linear(ctx, x, cfg.hidden, cfg.hidden, `${name}.query`));
  const k = op.transpose(op.reshape(linear(ctx, x, cfg.hidden, cfg.hidden, `${name}.key`), [0, 0, cfg.heads, headDim]), [0, 2, 3, 1]);
  const v = split(linear(ctx, x, cfg.hidden, cfg.hidden, `${name}.value`));
  const scores = op.add(op.mul(op.matmul(q, k), 1 / Math.sqrt(headDim)), bias);
  const probs = ctx.dropout(op.softmax(scores, -1), cfg.dropout);
  const context = op.reshape(op.transpose(op.matmul(probs, v), [0, 2, 1, 3]), [0, 0, cfg.hidden]);
  return linear(ctx, context, cfg.hidden, cfg.hidden, `${name}.output`);
}

export interface EncoderConfig {
  vocabSize: number;
  hidden: number;
  layers: number;
  heads: number;
  intermediate: number;
  maxPositions: number;
  typeVocabSize: number;
  dropout: number;
  attentionDropout: number;
  layerNormEps: number;
  /** Index the token embedding table sparsely in training (large vocabularies). */
  sparseEmbeddings?: boolean;
}

/** BERT-style encoder (post-LayerNorm): token + position (+ type) embeddings, N blocks. */
export function bertEncoder(ctx: ModelContext, cfg: EncoderConfig, inputIds: Value, attentionMask: Value, tokenTypeIds?: Value): Value {
  const words = ctx.embedding('embeddings.word_embeddings', cfg.vocabSize, cfg.hidden, inputIds, {
    init: normal(0.02),
    sparse: cfg.sparseEmbeddings ?? false,
  });
  const seqLen = op.dimSize(inputIds, 1);
  const positions = op.range(seqLen, inputIds.shape[1]!);
  const posTable = ctx.param('embeddings.position_embeddings', [cfg.maxPositions, cfg.hidden], { init: normal(0.02), decay: false });
  let h = op.add(words, op.gather(posTable, positions));
  if (cfg.typeVocabSize > 0) {
    const typeTable = ctx.param('embeddings.token_type_embeddings', [cfg.typeVocabSize, cfg.hidden], { init: normal(0.02), decay: false });
    h = op.add(h, tokenTypeIds ? op.gather(typeTable, tokenTypeIds) : op.slice(typeTable, [0], [1], [0]));
  }
  h = ctx.dropout(layerNorm(ctx, h, cfg.hidden, 'embeddings.LayerNorm', cfg.layerNormEps), cfg.dropout);
  const bias = attentionBias(attentionMask, h.dtype);
  for (let l = 0; l < cfg.layers; l++) {
    const p = `encoder.layer.${l}`;
    const a = selfAttention(ctx, h, bias, { hidden: cfg.hidden, heads: cfg.heads, dropout: cfg.attentionDropout }, `${p}.attention`);
    h = layerNorm(ctx, op.add(h, ctx.dropout(a, cfg.dropout)), cfg.hidden, `${p}.attention.LayerNorm`, cfg.layerNormEps);
    const f = linear(
      ctx,
      gelu(linear(ctx, h, cfg.hidden, cfg.intermediate, `${p}.intermediate`)),
      cfg.intermediate,
      cfg.hidden,
      `${p}.output`,
    );
    h = layerNorm(ctx, op.add(h, ctx.dropout(f, cfg.dropout)), cfg.hidden, `${p}.output.LayerNorm`, cfg.layerNormEps);
  }
  return h;
}
