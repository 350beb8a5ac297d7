// Masked-language-model pretraining of the teacher's encoder on unlabeled text (our own
// training texts and any extra text): what a from-scratch transformer needs most on small data.
import type { Value } from '../engine/graph.js';
import type { ModelDefinition } from '../engine/context.js';
import * as op from '../engine/ops.js';
import { bertEncoder, gelu, layerNorm, linear } from '../engine/layers.js';
import { batchMean, correct, crossEntropy } from '../engine/losses.js';
import type { ParameterStore } from '../engine/params.js';
import { adamwTrainer } from '../engine/trainer.js';
import { type LossDefinition } from '../engine/train-graph.js';
import { ort, type SessionOptions } from '../engine/session.js';
import { Rng } from '../engine/rng.js';
import type { Encoding, TextTokenizer } from '../text/tokenizer.js';
import { runTrainingLoop, type LoopResult } from '../engine/loop.js';
import type { MemberConfig, PretrainConfig } from './default-config.js';

export { DEFAULT_PRETRAIN, type PretrainConfig } from './default-config.js';

/** Encoder + MLM head (dense, GELU, LayerNorm, decoder over the vocabulary), scored at masked positions only. */
export function mlmModel(m: MemberConfig, vocabSize: number, maxLength: number): ModelDefinition {
  const seq = { dtype: 'int64' as const, shape: ['batch_size', 'sequence_length'] };
  return {
    inputs: { input_ids: seq, attention_mask: seq, token_type_ids: seq, mlm_positions: { dtype: 'int64', shape: ['masked'] } },
    forward(ctx, inputs: Record<string, Value>) {
      const h = bertEncoder(
        ctx,
        {
          vocabSize,
          hidden: m.hidden,
          layers: m.layers,
          heads: m.heads,
          intermediate: m.intermediate,
          maxPositions: maxLength,
          typeVocabSize: 2,
          dropout: m.dropout,
          attentionDropout: m.dropout,
          layerNormEps: 1e-12,
          sparseEmbeddings: true,
        },
        inputs.input_ids!,
        inputs.attention_mask!,
        inputs.token_type_ids!,
      );
      const rows = op.gather(op.reshape(h, [-1, m.hidden]), inputs.mlm_positions!);
      const t = layerNorm(ctx, gelu(linear(ctx, rows, m.hidden, m.hidden, 'mlm.transform')), m.hidden, 'mlm.LayerNorm', 1e-12);
      return { logits: linear(ctx, t, m.hidden, vocabSize, 'mlm.decoder') };
    },
  };
}

const mlmLoss: LossDefinition = {
  inputs: { mlm_labels: { dtype: 'int64', shape: ['masked'] } },
  build: (o, i) => ({ loss: batchMean(crossEntropy(o.logits!, i.mlm_labels!)), metrics: { correct: correct(o.logits!, i.mlm_labels!) } }),
};

/**
 * BERT's masking: pick `p` of the non-special tokens (at least one per text); replace 80%
 * with [MASK], 10% with a random token, keep 10%. Returns the feeds.
 */
export function maskBatch(tok: TextTokenizer, encodings: readonly Encoding[], p: number, rng: Rng): Record<string, ort.Tensor> {
  const padded = tok.pad(encodings);
  const ids = padded.inputIds;
  const positions: bigint[] = [];
  const labels: bigint[] = [];
  const maskId = BigInt(tok.tokenId(tok.specials.mask));
  const firstNormal = 5; // [PAD] [UNK] [CLS] [SEP] [MASK] come first in our vocabularies
  encodings.forEach((e, r) => {
    const candidates: number[] = [];
    for (let k = 1; k < e.ids.length - 1; k++) candidates.push(k); // skip [CLS] and [SEP]
    if (candidates.length === 0) return;
    const chosen = candidates.filter(() => rng.uniform() < p);
    if (chosen.length === 0) chosen.push(candidates[rng.int(candidates.length)]!);
    for (const k of chosen) {
      const at = r * padded.length + k;
      positions.push(BigInt(at));
      labels.push(ids[at]!);
      const u = rng.uniform();
      if (u < 0.8) ids[at] = maskId;
      else if (u < 0.9) ids[at] = BigInt(firstNormal + rng.int(tok.vocabSize - firstNormal));
    }
  });
  const dims = [padded.size, padded.length];
  return {
    input_ids: new ort.Tensor('int64', ids, dims),
    attention_mask: new ort.Tensor('int64', padded.attentionMask, dims),
    token_type_ids: new ort.Tensor('int64', padded.tokenTypeIds, dims),
    mlm_positions: new ort.Tensor('int64', BigInt64Array.from(positions), [positions.length]),
    mlm_labels: new ort.Tensor('int64', BigInt64Array.from(labels), [labels.length]),
  };
}

export interface PretrainResult {
  /** Encoder parameters (embeddings.*, encoder.*) to initialize members with. */
  encoder: ParameterStore;
  loop: LoopResult;
  devMaskedAccuracy: number;
}

/** Pretrains an encoder of shape `m` with masked-language modelling. */
export async function pretrainEncoder(o: {
  tokenizer: TextTokenizer;
  texts: Encoding[];
  heldOut: Encoding[];
  member: MemberConfig;
  maxLength: number;
  config: PretrainConfig;
  outDir: string;
  resume?: boolean;
  /** Where its ONNX Runtime sessions run (device, threads, CPU fallback). */
  session?: SessionOptions;
  log?: (line: string) => void;
  bucketedBatches: (lengths: ArrayLike<number>, batchSize: number, rng: Rng) => Int32Array[];
}): Promise<PretrainResult> {
  const c = o.config;
  const totalSteps = Math.ceil(o.texts.length / c.batchSize) * c.epochs;
  const trainer = await adamwTrainer({
    model: mlmModel(o.member, o.tokenizer.vocabSize, o.maxLength),
    loss: mlmLoss,
    lr: c.lr,
    weightDecay: 0.01,
    warmupRatio: 0.06,
    totalSteps,
    seed: c.seed,
    session: o.session,
  });
  const lengths = o.texts.map((e) => e.ids.length);
  const heldOutFeeds = async (): Promise<number> => {
    const rng = new Rng(c.seed + 1);
    let right = 0;
    let total = 0;
    for (let s = 0; s < o.heldOut.length; s += 128) {
      const feeds = maskBatch(o.tokenizer, o.heldOut.slice(s, s + 128), c.maskProbability, rng);
      const logits = (await trainer.evaluate(feeds, ['logits'])).logits!.data as Float32Array;
      const labels = feeds.mlm_labels!.data as BigInt64Array;
      const V = o.tokenizer.vocabSize;
      labels.forEach((y, k) => {
        let best = 0;
        for (let v = 1; v < V; v++) if (logits[k * V + v]! > logits[k * V + best]!) best = v;
        right += BigInt(best) === y ? 1 : 0;
      });
      total += labels.length;
    }
    return right / Math.max(1, total);
  };
  // Each batch carries the seed of its masks, so a resumed run masks the same tokens.
  const loop = await runTrainingLoop<{ rows: Int32Array; maskSeed: number }>({
    trainer,
    outDir: o.outDir,
    epochs: c.epochs,
    seed: c.seed,
    batches: (_epoch, rng) => o.bucketedBatches(lengths, c.batchSize, rng).map((rows) => ({ rows, maskSeed: rng.nextU32() })),
    feed: (b) =>
      maskBatch(
        o.tokenizer,
        Array.from(b.rows, (r) => o.texts[r]!),
        c.maskProbability,
        new Rng(b.maskSeed),
      ),
    evaluate: async () => ({ score: await heldOutFeeds() }),
    ...(o.resume ? { resume: true } : {}),
    label: 'pretrain (MLM)',
    restoreBest: true,
    ...(o.log ? { log: o.log } : {}),
  });
  const encoder = trainer.store.clone((spec) => !spec.name.startsWith('mlm.'));
  const devMaskedAccuracy = loop.bestScore;
  await trainer.dispose();
  return { encoder, loop, devMaskedAccuracy };
}
