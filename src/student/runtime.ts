// Running an exported student (kd predict, kd eval): the n-gram student from its ONNX model
// and preprocessing spec, the transformer student from its Hugging Face-layout folder.
import { ConfigError } from '../data/errors.js';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createSession, ort, type Device } from '../engine/session.js';
import { ngramFeatures } from '../text/ngrams.js';
import { TextTokenizer } from '../text/tokenizer.js';
import { tokenFeeds } from '../teacher/teacher.js';
import { ngramFeeds, type NgramStudentConfig } from './ngram.js';
import type { StudentCard } from './export.js';

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
    if (!existsSync(cardPath)) throw new ConfigError(`${dir}: no kd-student.json (a student exported by kd train has one; for any HF-layout classifier use kd teacher predict)`);
    const card = JSON.parse(readFileSync(cardPath, 'utf8')) as StudentCard;
    const { session, device } = await createSession(join(dir, 'onnx', 'model.onnx'), opts);
    const tokenizer = card.kind === 'transformer' ? TextTokenizer.fromFolder(dir) : null;
    return new Student(dir, card, session, tokenizer, device);
  }

  get labels(): string[] {
    return this.card.labels;
  }

  /** Class logits [n, C] for `texts`, in order. */
  async logits(texts: readonly string[], batchSize = 256): Promise<Float32Array> {
    const C = this.labels.length;
    const out = new Float32Array(texts.length * C);
    for (let s = 0; s < texts.length; s += batchSize) {
      const part = texts.slice(s, s + batchSize);
      let feeds: Record<string, ort.Tensor>;
      if (this.tokenizer) {
        feeds = tokenFeeds(this.tokenizer.pad(await this.tokenizer.encode(part)));
      } else {
        const cfg = this.card.config as NgramStudentConfig;
        feeds = ngramFeeds(part.map((t) => ngramFeatures(t, cfg.ngrams)));
      }
      const r = await this.session.run(feeds, ['logits']);
      out.set(r.logits!.data as Float32Array, s * C);
    }
    return out;
  }

  async dispose(): Promise<void> {
    await this.session.release();
  }
}
