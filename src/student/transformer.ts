// The small transformer student: a BERT-style encoder (configurable depth, width, heads,
// length) with a tanh pooler on [CLS] and a linear head, on its own WordPiece vocabulary or
// the teacher's tokenizer.
import { OptionError } from '../errors.js';
import type { Value } from '../engine/graph.js';
import type { ModelContext, ModelDefinition } from '../engine/context.js';
import * as op from '../engine/ops.js';
import { bertEncoder, linear } from '../engine/layers.js';
import { bucketedBatches } from '../engine/batches.js';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { DamagedFileError } from '../engine/safetensors.js';
import { TextTokenizer, type Encoding } from '../text/tokenizer.js';
import { tokenFeeds } from '../text/feeds.js';
import { writeBertConfig } from '../teacher/bert-config.js';
import type { Example } from '../data/example.js';
import type { SetupContext, StudentDefinition, StudentSettings } from './student.js';

export interface TransformerStudentConfig {
  layers: number;
  hidden: number;
  heads: number;
  intermediate: number;
  maxLength: number;
  vocabSize: number;
  dropout: number;
}

/** The transformer student's defaults (what kd train runs with; recipes merge onto them). */
export const TRANSFORMER_DEFAULTS: StudentSettings = {
  layers: 2,
  hidden: 128,
  heads: 2,
  intermediate: 512,
  maxLength: 128,
  vocabSize: 8192,
  epochs: 4,
  batchSize: 32,
  lr: 5e-4,
};

function architecture(s: StudentSettings): Omit<TransformerStudentConfig, 'vocabSize'> {
  return { layers: s.layers!, hidden: s.hidden!, heads: s.heads!, intermediate: s.intermediate!, maxLength: s.maxLength!, dropout: 0.1 };
}

export const DEFAULT_TRANSFORMER_STUDENT: Omit<TransformerStudentConfig, 'vocabSize'> = architecture(TRANSFORMER_DEFAULTS);

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

/** The vocabulary: the run's own on resume (ids must point at the same rows), else --tokenizer's, else trained on the training texts. */
function vocabulary(base: { maxLength: number }, vocabSize: number, ctx: SetupContext) {
  if (ctx.resuming) {
    if (!existsSync(join(ctx.tokenizerDir, 'tokenizer.json')))
      throw new DamagedFileError(
        join(ctx.tokenizerDir, 'tokenizer.json'),
        'missing: the run has a checkpoint but not the vocabulary it was trained with',
        'Delete the run folder and start the run anew without --resume',
      );
    return { tokenizer: TextTokenizer.fromFolder(ctx.tokenizerDir, { maxLength: base.maxLength }), saved: true };
  }
  const tokenizer = ctx.tokenizer
    ? TextTokenizer.fromFolder(ctx.tokenizer, { maxLength: base.maxLength })
    : TextTokenizer.trainWordPiece(
        ctx.train.map((e) => e.text),
        { vocabSize, maxLength: base.maxLength },
      );
  return { tokenizer, saved: false };
}

const SEQ_INPUTS = ['input_ids', 'attention_mask', 'token_type_ids'];

export const transformer: StudentDefinition<TransformerStudentConfig> = {
  name: 'transformer',
  order: 2,
  summary: 'small BERT-style encoder on its own WordPiece vocabulary (or the teacher tokenizer)',
  options: [
    { key: 'layers', flag: 'layers', help: 'transformer: layers', min: 1 },
    { key: 'hidden', flag: 'hidden', help: 'transformer: hidden size', min: 1 },
    { key: 'heads', flag: 'heads', help: 'transformer: attention heads', min: 1 },
    { key: 'intermediate', flag: 'intermediate', help: 'transformer: feed-forward size', min: 1 },
    { key: 'maxLength', flag: 'max-length', help: 'transformer: max tokens', min: 4 },
    { key: 'vocabSize', flag: 'vocab-size', help: 'transformer: own WordPiece vocabulary size', min: 16 },
  ],
  defaults: TRANSFORMER_DEFAULTS,
  check: (s) => (s.hidden! % s.heads! !== 0 ? { key: 'hidden', problem: `${s.hidden} must be divisible by heads (${s.heads})` } : null),
  setup: (settings, ctx) => {
    const base = architecture(settings);
    const { tokenizer, saved } = vocabulary(base, settings.vocabSize!, ctx);
    return {
      config: { ...base, maxLength: tokenizer.maxLength, vocabSize: tokenizer.vocabSize },
      recorded: {
        ...base,
        vocabSize: ctx.tokenizer ? null : settings.vocabSize!,
        tokenizer: ctx.tokenizer ? resolve(ctx.tokenizer) : 'trained',
      },
      tokenizer,
      tokenizerSaved: saved,
    };
  },
  model: transformerStudent,
  featurizer: async (_cfg, tokenizer, splits) => {
    const tok = tokenizer!;
    const encoded = new Map<Example[], Encoding[]>();
    for (const xs of splits) encoded.set(xs, await tok.encode(xs.map((e) => e.text)));
    return {
      feeds: (xs, r) => tokenFeeds(tok.pad(Array.from(r, (i) => encoded.get(xs)![i]!))),
      lengths: encoded.get(splits[0]!)!.map((e) => e.ids.length),
    };
  },
  batches: (_n, lengths, batchSize, rng) => bucketedBatches(lengths, batchSize, rng),
  exportFiles: (dir, s) => {
    s.tokenizer!.save(dir);
    writeBertConfig(dir, {
      vocabSize: s.config.vocabSize,
      hidden: s.config.hidden,
      layers: s.config.layers,
      heads: s.config.heads,
      intermediate: s.config.intermediate,
      maxLength: s.config.maxLength,
      labels: s.labels,
      kd: { producer: 'kd-toolkit', role: 'student', training: s.training },
    });
    return { inputs: SEQ_INPUTS };
  },
  graphRewrites: true,
  loader: (dir) => {
    const tokenizer = TextTokenizer.fromFolder(dir);
    return async (texts) => tokenFeeds(tokenizer.pad(await tokenizer.encode(texts)));
  },
};
