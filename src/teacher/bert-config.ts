// The Hugging Face config.json of a BERT-style sequence classifier (the default teacher and the
// transformer student), written the way transformers.js and kd's Teacher read it.
import { join } from 'node:path';
import { writeFileAtomicSync } from '../util/fs.js';

export interface BertConfigFields {
  vocabSize: number;
  hidden: number;
  layers: number;
  heads: number;
  intermediate: number;
  maxLength: number;
  labels: readonly string[];
  /** Hidden and attention dropout (left out of the file when not given). */
  dropout?: number;
  problemType?: string;
  /** kd's own description of the model, under `kd`. */
  kd: Record<string, unknown>;
}

/** Writes `dir`/config.json (atomically). */
export function writeBertConfig(dir: string, f: BertConfigFields): void {
  const config = {
    architectures: ['BertForSequenceClassification'],
    model_type: 'bert',
    vocab_size: f.vocabSize,
    hidden_size: f.hidden,
    num_hidden_layers: f.layers,
    num_attention_heads: f.heads,
    intermediate_size: f.intermediate,
    hidden_act: 'gelu',
    max_position_embeddings: f.maxLength,
    type_vocab_size: 2,
    layer_norm_eps: 1e-12,
    hidden_dropout_prob: f.dropout,
    attention_probs_dropout_prob: f.dropout,
    pad_token_id: 0,
    problem_type: f.problemType,
    id2label: Object.fromEntries(f.labels.map((l, i) => [String(i), l])),
    label2id: Object.fromEntries(f.labels.map((l, i) => [l, i])),
    kd: f.kd,
  };
  // JSON.stringify leaves out the fields that are undefined.
  writeFileAtomicSync(join(dir, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
}
