// Student exports a user can run: onnx/model.onnx, kd-student.json, and what the student's
// module writes beside them (the transformer's Hugging Face layout, which transformers.js and
// onnxruntime-web load as is; the n-gram student's preprocessing spec in the card), and the int8
// onnx/model_quantized.onnx that transformers.js loads by default in a browser (dtype 'q8').
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomicSync } from '../util/fs.js';
import type { SessionOptions } from '../engine/session.js';
import { AgreementError, quantizeModel, type QuantizeReport } from '../quantize/model.js';
import { NothingToQuantizeError } from '../quantize/graph.js';
import type { TextTokenizer } from '../text/tokenizer.js';
import type { StudentCard } from './student.js';
import { getStudent } from './registry.js';

export type { StudentCard } from './student.js';
/** A student's registry name (see src/student/registry.ts). */
export type StudentKind = string;

/**
 * Writes a student's folder; with `quantize` (the default) also its int8 copy, checked against the float
 * model on the student's own features of the check texts. An int8 model that fails the check is not
 * written (a warning says why); the float export stands either way.
 *
 * @returns The int8 report, or null when it was not written (`quantize: false`, or the check failed).
 */
export async function exportStudent(
  dir: string,
  s: {
    kind: StudentKind;
    labels: string[];
    onnx: Uint8Array;
    config: object;
    tokenizer: TextTokenizer | null;
    training: Record<string, unknown>;
    /** Write onnx/model_quantized.onnx too (default true). */
    quantize?: boolean;
    /** Where the int8 check runs. */
    session?: SessionOptions;
    /** Where the int8 line (and the warning when it is not written) goes; default stderr. */
    log?: (line: string) => void;
  },
): Promise<QuantizeReport | null> {
  mkdirSync(join(dir, 'onnx'), { recursive: true });
  writeFileAtomicSync(join(dir, 'onnx', 'model.onnx'), s.onnx);
  // An int8 file from an earlier export of this folder is not this model's.
  rmSync(join(dir, 'onnx', 'model_quantized.onnx'), { force: true });
  const card: StudentCard = {
    format: 'kd-student',
    version: 1,
    kind: s.kind,
    labels: s.labels,
    inputs: [],
    config: s.config as Record<string, unknown>,
    training: s.training,
  };
  const student = getStudent(s.kind);
  const { inputs, preprocessing } = student.exportFiles(dir, {
    config: s.config as never,
    labels: s.labels,
    tokenizer: s.tokenizer,
    training: s.training,
  });
  card.inputs = inputs;
  if (preprocessing) card.preprocessing = preprocessing;
  writeFileAtomicSync(join(dir, 'kd-student.json'), `${JSON.stringify(card, null, 2)}\n`);
  if (s.quantize === false) return null;
  const log = s.log ?? ((m: string) => process.stderr.write(`${m}\n`));
  try {
    const r = await quantizeModel(dir, { feeds: student.loader(dir, card), ...(s.session ? { session: s.session } : {}) });
    const mb = (n: number) => (n / 1e6).toFixed(2);
    log(
      `int8: ${r.file} (${mb(r.bytes.int8)} MB, fp32 ${mb(r.bytes.fp32)} MB), argmax agreement with fp32 ` +
        `${(100 * r.check.agreement).toFixed(1)}% on ${r.check.rows} check texts`,
    );
    return r;
  } catch (e) {
    if (!(e instanceof AgreementError || e instanceof NothingToQuantizeError)) throw e;
    log(`warning: no int8 export: ${e.message}`);
    return null;
  }
}
