// Words of the same kind from a teacher's input embeddings: the whole-word tokens of its vocabulary,
// each word's k nearest others by cosine in the word-embedding table of onnx/model.onnx.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from '../data/errors.js';
import type { WordReplacer } from '../text/augment.js';
import { findEmbeddingTables } from './embedding-tables.js';
import { decodeModel, GraphIndex } from './onnx-model.js';
import { readJsonObject } from './teacher.js';

/** A vocabulary word and the embedding row that holds it. */
export interface VocabularyWord {
  word: string;
  id: number;
}

/** What a word looks like to be a replacement candidate: a letter, then letters, marks, ' or -; two characters at least. */
const WORD_SHAPE = /^\p{L}[\p{L}\p{M}'’-]+$/u;

/**
 * The whole-word tokens of a tokenizer.json: tokens that start a word and are the whole word.
 * WordPiece: tokens without the continuing-subword prefix (`##`); byte-level BPE (`Ġ`) and
 * SentencePiece (`▁`) vocabularies: tokens with the word-start marker, marker removed; any other
 * vocabulary: every token. Special and added tokens, rows at or beyond `rows` (the embedding table)
 * and tokens not shaped like a word ({@link WORD_SHAPE}: no single letters, digits or punctuation)
 * are left out. The first id wins when two tokens give one word. Sorted by id.
 */
export function wholeWordVocabulary(tokenizerJson: Record<string, unknown>, rows: number): VocabularyWord[] {
  const model = (tokenizerJson.model ?? {}) as { type?: string; vocab?: unknown; continuing_subword_prefix?: string };
  const added = new Set(
    (Array.isArray(tokenizerJson.added_tokens) ? tokenizerJson.added_tokens : []).map((t) => (t as { content?: string }).content),
  );
  let entries: [string, number][];
  if (Array.isArray(model.vocab)) entries = model.vocab.map((piece, id) => [String((piece as unknown[])[0]), id]);
  else if (model.vocab && typeof model.vocab === 'object')
    entries = Object.entries(model.vocab as Record<string, number>).filter(([, id]) => Number.isInteger(id));
  else throw new ConfigError('tokenizer.json has no model.vocab; export the tokenizer again (tokenizer.save_pretrained)');
  entries.sort((a, b) => a[1] - b[1]);
  const tokens = entries.map(([t]) => t);
  let toWord: (token: string) => string | null;
  if (model.type === 'WordPiece') {
    const prefix = model.continuing_subword_prefix ?? '##';
    toWord = (t) => (t.startsWith(prefix) ? null : t);
  } else {
    const marker = ['Ġ', '▁'].find((m) => tokens.some((t) => t.startsWith(m)));
    toWord = marker === undefined ? (t) => t : (t) => (t.startsWith(marker) ? t.slice(marker.length) : null);
  }
  const seen = new Set<string>();
  const words: VocabularyWord[] = [];
  for (const [token, id] of entries) {
    if (id >= rows || added.has(token)) continue;
    const word = toWord(token);
    if (word === null || !WORD_SHAPE.test(word) || seen.has(word)) continue;
    seen.add(word);
    words.push({ word, id });
  }
  return words;
}

/** Where {@link EmbeddingNeighbours} took its vectors from (saved in the augment sidecar). */
export interface EmbeddingNeighboursInfo {
  teacher: string;
  table: string;
  rows: number;
  dim: number;
  /** Whole-word tokens with a non-zero embedding: the words that can be replaced and be replacements. */
  words: number;
  k: number;
}

/**
 * Each vocabulary word's k nearest other vocabulary words by cosine of their input embeddings
 * (ties: the lower token id first), computed when a word is first asked for and kept.
 *
 * ```ts
 * const near = EmbeddingNeighbours.fromTeacher('models/teacher', { k: 10 });
 * near.replacements('great'); // ['good', 'excellent', …] (10 words)
 * ```
 */
export class EmbeddingNeighbours implements WordReplacer {
  private readonly index = new Map<string, number>();
  private readonly memo = new Map<string, readonly string[]>();

  /** `vectors`: one unit-length row of `dim` per word, in the order of `words`. */
  constructor(
    readonly words: readonly string[],
    private readonly vectors: Float32Array,
    readonly dim: number,
    readonly k: number,
    readonly info: EmbeddingNeighboursInfo,
  ) {
    words.forEach((w, i) => this.index.set(w, i));
  }

  /**
   * Reads `dir/tokenizer.json` and the word-embedding table of `dir/onnx/model.onnx` (the 2-D
   * initializer a Gather of `input_ids` reads; see teacher/embedding-tables.ts).
   */
  static fromTeacher(dir: string, opts: { k: number }): EmbeddingNeighbours {
    const modelFile = join(dir, 'onnx', 'model.onnx');
    const tokenizerFile = join(dir, 'tokenizer.json');
    for (const f of [tokenizerFile, modelFile])
      if (!existsSync(f)) throw new ConfigError(`'--teacher' ${dir}: no ${f}; a teacher folder has tokenizer.json and onnx/model.onnx`);
    const model = decodeModel(modelFile);
    const tables = findEmbeddingTables(model, modelFile, null);
    const table = tables.wordTable === null ? null : new GraphIndex(model, modelFile).constantFloats(tables.wordTable);
    if (table === null || tables.wordTable === null)
      throw new ConfigError(
        `${modelFile}: no word-embedding table (a Gather of input_ids from a 2-D float initializer); ` +
          `give a word list with --word-list instead`,
      );
    const [rows, dim] = table.dims as [number, number];
    const vocabulary = wholeWordVocabulary(readJsonObject(tokenizerFile, 'a Hugging Face tokenizer.json'), rows);
    const words: string[] = [];
    const vectors = new Float32Array(vocabulary.length * dim);
    for (const { word, id } of vocabulary) {
      const row = table.data.subarray(id * dim, (id + 1) * dim);
      let norm = 0;
      for (let j = 0; j < dim; j++) norm += row[j]! * row[j]!;
      if (!(norm > 0) || !Number.isFinite(norm)) continue;
      const scale = 1 / Math.sqrt(norm);
      const at = words.length * dim;
      for (let j = 0; j < dim; j++) vectors[at + j] = row[j]! * scale;
      words.push(word);
    }
    if (words.length < 2)
      throw new ConfigError(`${tokenizerFile}: ${words.length} whole-word token(s) with an embedding; replacement needs two or more`);
    const info = { teacher: dir, table: tables.wordTable, rows, dim, words: words.length, k: opts.k };
    return new EmbeddingNeighbours(words, vectors.slice(0, words.length * dim), dim, opts.k, info);
  }

  replacements(word: string): readonly string[] {
    const cached = this.memo.get(word);
    if (cached) return cached;
    const i = this.index.get(word);
    const result = i === undefined ? [] : this.nearest(i);
    this.memo.set(word, result);
    return result;
  }

  /** The k words of highest cosine with word `i` (itself left out), best first. */
  private nearest(i: number): string[] {
    const { dim, vectors } = this;
    const k = Math.min(this.k, this.words.length - 1);
    const best: number[] = [];
    const scores: number[] = [];
    const q = i * dim;
    for (let w = 0; w < this.words.length; w++) {
      if (w === i) continue;
      let dot = 0;
      const at = w * dim;
      for (let j = 0; j < dim; j++) dot += vectors[q + j]! * vectors[at + j]!;
      if (best.length === k && dot <= scores[k - 1]!) continue; // ties keep the earlier (lower id) word
      let pos = best.length;
      while (pos > 0 && scores[pos - 1]! < dot) pos -= 1;
      best.splice(pos, 0, w);
      scores.splice(pos, 0, dot);
      if (best.length > k) {
        best.pop();
        scores.pop();
      }
    }
    return best.map((w) => this.words[w]!);
  }
}
