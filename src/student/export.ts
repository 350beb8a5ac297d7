// Student exports a user can run: onnx/model.onnx, kd-student.json, and what the student's
// module writes beside them (the transformer's Hugging Face layout, which transformers.js and
// onnxruntime-web load as is; the n-gram student's preprocessing spec in the card).
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomicSync } from '../util/fs.js';
import type { TextTokenizer } from '../text/tokenizer.js';
import type { StudentCard } from './student.js';
import { getStudent } from './registry.js';

export type { StudentCard } from './student.js';
/** A student's registry name (see src/student/registry.ts). */
export type StudentKind = string;

export function exportStudent(
  dir: string,
  s: {
    kind: StudentKind;
    labels: string[];
    onnx: Uint8Array;
    config: object;
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
    config: s.config as Record<string, unknown>,
    training: s.training,
  };
  const { inputs, preprocessing } = getStudent(s.kind).exportFiles(dir, {
    config: s.config as never,
    labels: s.labels,
    tokenizer: s.tokenizer,
    training: s.training,
  });
  card.inputs = inputs;
  if (preprocessing) card.preprocessing = preprocessing;
  writeFileAtomicSync(join(dir, 'kd-student.json'), `${JSON.stringify(card, null, 2)}\n`);
}
