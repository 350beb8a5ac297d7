// Running an exported student (kd predict, kd eval): its ONNX model, fed by the loader of the
// student module its card names (n-gram: the preprocessing spec; transformer: the HF folder).
import { ConfigError, FormatError } from '../data/errors.js';
import { UserError } from '../errors.js';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createSession, ort, type Device, type SessionOptions } from '../engine/session.js';
import { readJsonObject } from '../teacher/teacher.js';
import { optimizeTeacherGraph } from '../teacher/optimize.js';
import { decodeModelBytes, encodeModel } from '../teacher/onnx-model.js';
import { lengthOrder, predictRows } from '../engine/batches.js';
import type { StudentCard } from './student.js';
import { getStudent, STUDENTS } from './registry.js';

const REEXPORT = 'export the student again with kd train (the card is written by it, not by hand)';

/** kd-student.json, checked for the fields running a student reads. */
export function readStudentCard(path: string): StudentCard {
  const card = readJsonObject(path, `the card kd train writes beside a student's onnx/model.onnx; ${REEXPORT}`);
  const bad = (field: string, want: string) =>
    new ConfigError(`${path}: field ${field} must be ${want}, got ${JSON.stringify(card[field] ?? null)}; ${REEXPORT}`);
  if (card.format !== 'kd-student') throw bad('format', '"kd-student"');
  if (card.version !== 1) throw bad('version', '1 (the only card version this kd reads)');
  if (typeof card.kind !== 'string' || !Object.hasOwn(STUDENTS, card.kind))
    throw bad(
      'kind',
      Object.keys(STUDENTS)
        .map((k) => JSON.stringify(k))
        .join(' or '),
    );
  const labels = card.labels;
  if (!Array.isArray(labels) || labels.length < 2 || !labels.every((l) => typeof l === 'string'))
    throw bad('labels', 'a list of at least two class names');
  const config = card.config as Record<string, unknown> | undefined;
  if (typeof config !== 'object' || config === null || Array.isArray(config)) throw bad('config', "an object (the student's architecture)");
  getStudent(card.kind).checkCard?.(config, path, REEXPORT);
  return card as unknown as StudentCard;
}

/**
 * A student exported by `kd train` (`<run>/model`: onnx/model.onnx and kd-student.json, plus the
 * tokenizer for a transformer), run for class logits; what `kd predict` and `kd eval` use.
 *
 * @example
 * ```ts
 * import { Student } from 'kd-toolkit';
 * const student = await Student.load('run/model');
 * console.log(student.card.kind, student.labels, await student.logits(['what a great day', 'worst film ever']));
 * // ngram [ 'negative', 'positive' ] Float32Array(4) [ 0.0048, -0.0021, 0.0048, -0.0054 ]   (rounded)
 * await student.dispose();
 * ```
 */
export class Student {
  private constructor(
    readonly dir: string,
    readonly card: StudentCard,
    readonly session: ort.InferenceSession,
    /** Feeds for raw texts, from the student's module. */
    private readonly featurize: (texts: readonly string[]) => Promise<Record<string, ort.Tensor>>,
    /** Where the session runs: CPU after an allowed fallback. */
    readonly device: Device,
    /** What the graph rewrites did at load, or why none ran ("graph optimized: …", "graph not optimized: …"). */
    readonly graphNote: string,
  ) {}

  /**
   * Loads an exported student folder.
   *
   * @param dir - The `model` folder of a `kd train` run.
   * @param opts - The session: device, CPU fallback, threads; `optimize: false` runs the graph as exported (by default a
   *   transformer student runs the teacher's graph rewrites, src/teacher/optimize.ts, used only when they reproduce its logits).
   * @returns The student, its session open on `student.device`.
   * @throws {ConfigError} No kd-student.json or onnx/model.onnx, or a card with a missing or malformed field.
   * @throws {FormatError} ONNX Runtime cannot load the model (a damaged file).
   * @throws {DeviceError} `device` is not available and `allowFallback` is not set.
   *
   * @example
   * ```ts
   * await Student.load('nope');
   * // ConfigError: nope: no kd-student.json (a student exported by kd train has one; for any HF-layout classifier use kd teacher predict)
   * ```
   */
  static async load(dir: string, opts: SessionOptions & { optimize?: boolean } = {}): Promise<Student> {
    const cardPath = join(dir, 'kd-student.json');
    if (!existsSync(cardPath))
      throw new ConfigError(
        `${dir}: no kd-student.json (a student exported by kd train has one; for any HF-layout classifier use kd teacher predict)`,
      );
    const card = readStudentCard(cardPath);
    const modelFile = join(dir, 'onnx', 'model.onnx');
    if (!existsSync(modelFile))
      throw new ConfigError(`${dir}: no onnx/model.onnx beside kd-student.json; export the student again (kd train writes both)`);
    const definition = getStudent(card.kind);
    let session: ort.InferenceSession;
    let device: Device;
    let graphNote = definition.graphRewrites
      ? 'graph not optimized: asked not to (optimize: false)'
      : 'graph not optimized: not an encoder the rewrites apply to';
    try {
      let model: Uint8Array | string = modelFile;
      if (definition.graphRewrites && opts.optimize !== false) {
        const vocabSize = Number(card.config.vocabSize);
        const optimized = await optimizeTeacherGraph(decodeModelBytes(readFileSync(modelFile)), modelFile, {
          session: opts,
          vocabSize: Number.isInteger(vocabSize) && vocabSize > 1 ? vocabSize : 2,
          outputs: ['logits'],
        });
        graphNote = optimized.note;
        if (optimized.applied) model = encodeModel(optimized.model);
      }
      ({ session, device } = await createSession(model, opts));
    } catch (e) {
      if (e instanceof UserError) throw e;
      throw new FormatError(
        modelFile,
        `ONNX Runtime could not load the student (${(e as Error).message.split('\n')[0]}); the file is damaged: export the ` +
          `student again with kd train`,
      );
    }
    return new Student(dir, card, session, definition.loader(dir, card), device, graphNote);
  }

  get labels(): string[] {
    return this.card.labels;
  }

  /**
   * Class logits [n, C] for `texts`, in order. Batches are formed in order of text length (each batch is padded to its
   * longest text, so texts of like length pad little); every row's logits go back to its own place.
   *
   * @param texts - The texts to classify.
   * @param batchSize - Texts per ONNX Runtime call.
   * @returns Row-major logits, C = `labels.length`.
   */
  async logits(texts: readonly string[], batchSize = 256): Promise<Float32Array> {
    const byLength = lengthOrder(texts.map((t) => t.length));
    return predictRows(byLength, this.labels.length, batchSize, async (rows) => {
      const part = Array.from(rows, (i) => texts[i]!);
      return (await this.session.run(await this.featurize(part), ['logits'])).logits!.data as Float32Array;
    });
  }

  async dispose(): Promise<void> {
    await this.session.release();
  }
}
