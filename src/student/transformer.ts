// The small transformer student: a BERT-style encoder (configurable depth, width, heads,
// length) with a tanh pooler on [CLS] and a linear head, on its own WordPiece vocabulary or
// the teacher's tokenizer.
import { OptionError } from '../errors.js';
import type { Value } from '../engine/graph.js';
import type { ModelContext, ModelDefinition } from '../engine/context.js';
import * as op from '../engine/ops.js';
import { bertEncoder, linear } from '../engine/layers.js';

export interface TransformerStudentConfig {
  layers: number;
  hidden: number;
  heads: number;
  intermediate: number;
  maxLength: number;
  vocabSize: number;
  dropout: number;
}

export const DEFAULT_TRANSFORMER_STUDENT: Omit<TransformerStudentConfig, 'vocabSize'> = {
  layers: 2,
  hidden: 128,
  heads: 2,
  intermediate: 512,
  maxLength: 128,
  dropout: 0.1,
};

const SEQ = { dtype: 'int64' as const, shape: ['batch_size', 'sequence_length'] };

/** Outputs `head` (headSize raw outputs) and `embedding` (the pooled vector). */
export function transformerStudent(cfg: TransformerStudentConfig, headSize: number): ModelDefinition {
  if (cfg.hidden % cfg.heads !== 0) throw new OptionError(`'--hidden' ${cfg.hidden} must be divisible by '--heads' ${cfg.heads}`);
  return {
    inputs: { input_ids: SEQ, attention_mask: SEQ, token_type_ids: SEQ },
    forward(ctx: ModelContext, inputs: Record<string, Value>) {
      const h = bertEncoder(
        ctx,
        {
          vocabSize: cfg.vocabSize,
          hidden: cfg.hidden,
          layers: cfg.layers,
          heads: cfg.heads,
          intermediate: cfg.intermediate,
          maxPositions: cfg.maxLength,
          typeVocabSize: 2,
          dropout: cfg.dropout,
          attentionDropout: cfg.dropout,
          layerNormEps: 1e-12,
          sparseEmbeddings: true,
        },
        inputs.input_ids!,
        inputs.attention_mask!,
        inputs.token_type_ids!,
      );
      const cls = op.squeeze(op.slice(h, [0], [1], [1]), [1]);
      const embedding = op.tanh(linear(ctx, cls, cfg.hidden, cfg.hidden, 'pooler.dense'));
      return { head: linear(ctx, ctx.dropout(embedding, cfg.dropout), cfg.hidden, headSize, 'classifier'), embedding };
    },
  };
}
