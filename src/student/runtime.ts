// Running an exported student (kd predict, kd eval): the n-gram student from its ONNX model
// and preprocessing spec, the transformer student from its Hugging Face-layout folder.
import { ConfigError, FormatError } from '../data/errors.js';
import { UserError } from '../errors.js';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { createSession, ort, type Device } from '../engine/session.js';
import { ngramFeatures } from '../text/ngrams.js';
import { TextTokenizer } from '../text/tokenizer.js';
import { readJsonObject } from '../teacher/teacher.js';
import { tokenFeeds } from '../text/feeds.js';
import { predictRows } from '../engine/batches.js';
import { ngramFeeds, type NgramStudentConfig } from './ngram.js';
import type { StudentCard } from './export.js';

const REEXPORT = 'export the student again with kd train (the card is written by it, not by hand)';

/** kd-student.json, checked for the fields running a student reads. */
export function readStudentCard(path: string): StudentCard {
  const card = readJsonObject(path, `the card kd train writes beside a student's onnx/model.onnx; ${REEXPORT}`);
  const bad = (field: string, want: string) =>
    new ConfigError(`${path}: field ${field} must be ${want}, got ${JSON.stringify(card[field] ?? null)}; ${REEXPORT}`);
  if (card.format !== 'kd-student') throw bad('format', '"kd-student"');
  if (card.version !== 1) throw bad('version', '1 (the only card version this kd reads)');
  if (card.kind !== 'ngram' && card.kind !== 'transformer') throw bad('kind', '"ngram" or "transformer"');
  const labels = card.labels;
  if (!Array.isArray(labels) || labels.length < 2 || !labels.every((l) => typeof l === 'string'))
    throw bad('labels', 'a list of at least two class names');
  const config = card.config as Record<string, unknown> | undefined;
  if (typeof config !== 'object' || config === null || Array.isArray(config)) throw bad('config', "an object (the student's architecture)");
  if (card.kind === 'ngram') {
    const ngrams = config.ngrams as Record<string, unknown> | undefined;
    const positive = (v: unknown) => typeof v === 'number' && Number.isInteger(v) && v >= 1;
    if (
      typeof ngrams !== 'object' ||
      ngrams === null ||
      !positive(ngrams.buckets) ||
      !positive(ngrams.maxN) ||
      !positive(ngrams.maxFeatures)
    ) {
      throw new ConfigError(
        `${path}: field config.ngrams must be { buckets, maxN, maxFeatures } (positive integers), got ${JSON.stringify(ngrams ?? null)}; ${REEXPORT}`,
      );
    }
  }
  return card as unknown as StudentCard;
}

export class Student {
  private constructor(
    readonly dir: string,
    readonly card: StudentCard,
    readonly session: ort.InferenceSession,
    private readonly tokenizer: TextTokenizer | null,
    /** Where the session runs: CPU after an allowed fallback. */
    readonly device: Device,
  ) {}

  static async load(dir: string, opts: { device?: Device; allowFallback?: boolean; threads?: number } = {}): Promise<Student> {
    const cardPath = join(dir, 'kd-student.json');
    if (!existsSync(cardPath))
      throw new ConfigError(
        `${dir}: no kd-student.json (a student exported by kd train has one; for any HF-layout classifier use kd teacher predict)`,
      );
    const card = readStudentCard(cardPath);
    const modelFile = join(dir, 'onnx', 'model.onnx');
    if (!existsSync(modelFile))
      throw new ConfigError(`${dir}: no onnx/model.onnx beside kd-student.json; export the student again (kd train writes both)`);
    let session: ort.InferenceSession;
    let device: Device;
    try {
      ({ session, device } = await createSession(modelFile, opts));
    } catch (e) {
      if (e instanceof UserError) throw e;
      throw new FormatError(
        modelFile,
        `ONNX Runtime could not load the student (${(e as Error).message.split('\n')[0]}); the file is damaged: export the student again with kd train`,
      );
    }
    const tokenizer = card.kind === 'transformer' ? TextTokenizer.fromFolder(dir) : null;
    return new Student(dir, card, session, tokenizer, device);
  }

  get labels(): string[] {
    return this.card.labels;
  }

  /** Class logits [n, C] for `texts`, in order. */
  async logits(texts: readonly string[], batchSize = 256): Promise<Float32Array> {
    const inOrder = Int32Array.from({ length: texts.length }, (_, i) => i);
    return predictRows(inOrder, this.labels.length, batchSize, async (rows) => {
      const part = Array.from(rows, (i) => texts[i]!);
      let feeds: Record<string, ort.Tensor>;
      if (this.tokenizer) {
        feeds = tokenFeeds(this.tokenizer.pad(await this.tokenizer.encode(part)));
      } else {
        const cfg = this.card.config as NgramStudentConfig;
        feeds = ngramFeeds(part.map((t) => ngramFeatures(t, cfg.ngrams)));
      }
      return (await this.session.run(feeds, ['logits'])).logits!.data as Float32Array;
    });
  }

  async dispose(): Promise<void> {
    await this.session.release();
  }
}
