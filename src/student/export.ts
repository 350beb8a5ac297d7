// Student exports a user can run: the transformer in the Hugging Face layout (transformers.js
// and onnxruntime-web load it as is), the n-gram student as ONNX plus a preprocessing spec.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomicSync } from '../util/fs.js';
import type { TextTokenizer } from '../text/tokenizer.js';
import type { NgramStudentConfig } from './ngram.js';
import type { TransformerStudentConfig } from './transformer.js';
import { writeBertConfig } from '../teacher/bert-config.js';

export type StudentKind = 'ngram' | 'transformer';

/** Written as kd-student.json next to the model. */
export interface StudentCard {
  format: 'kd-student';
  version: 1;
  kind: StudentKind;
  labels: string[];
  /** The n-gram student's preprocessing (see src/text/ngrams.ts): what a browser must reproduce. */
  preprocessing?: {
    version: 1;
    lowercase: true;
    entities: string[];
    url: string;
    user: string;
    tokenPattern: string;
    hash: 'fnv1a-32 of UTF-8, bucket = 1 + h mod (buckets - 1), 0 = padding';
    buckets: number;
    maxN: number;
    maxFeatures: number;
  };
  inputs: string[];
  config: NgramStudentConfig | TransformerStudentConfig;
  training: Record<string, unknown>;
}

export function exportStudent(
  dir: string,
  s: {
    kind: StudentKind;
    labels: string[];
    onnx: Uint8Array;
    config: NgramStudentConfig | TransformerStudentConfig;
    tokenizer: TextTokenizer | null;
    training: Record<string, unknown>;
  },
): void {
  mkdirSync(join(dir, 'onnx'), { recursive: true });
  writeFileAtomicSync(join(dir, 'onnx', 'model.onnx'), s.onnx);
  const card: StudentCard = {
    format: 'kd-student',
    version: 1,
    kind: s.kind,
    labels: s.labels,
    inputs: [],
    config: s.config,
    training: s.training,
  };
  if (s.kind === 'ngram') {
    const c = s.config as NgramStudentConfig;
    card.inputs = ['ngram_ids', 'ngram_mask'];
    card.preprocessing = {
      version: 1,
      lowercase: true,
      entities: ['&quot;', '&amp;', '&lt;', '&gt;', '&#39;'],
      url: '(?:https?://|www\\.)\\S+ → " <url> "',
      user: '@\\w+ → " <user> "',
      tokenPattern: "<url>|<user>|[a-z0-9']+|[^\\sa-z0-9']",
      hash: 'fnv1a-32 of UTF-8, bucket = 1 + h mod (buckets - 1), 0 = padding',
      buckets: c.ngrams.buckets,
      maxN: c.ngrams.maxN,
      maxFeatures: c.ngrams.maxFeatures,
    };
  } else {
    const c = s.config as TransformerStudentConfig;
    card.inputs = ['input_ids', 'attention_mask', 'token_type_ids'];
    s.tokenizer!.save(dir);
    writeBertConfig(dir, {
      vocabSize: c.vocabSize,
      hidden: c.hidden,
      layers: c.layers,
      heads: c.heads,
      intermediate: c.intermediate,
      maxLength: c.maxLength,
      labels: s.labels,
      kd: { producer: 'kd-toolkit', role: 'student', training: s.training },
    });
  }
  writeFileAtomicSync(join(dir, 'kd-student.json'), `${JSON.stringify(card, null, 2)}\n`);
}
