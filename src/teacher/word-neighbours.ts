// Words of the same kind from a teacher's input embeddings: the whole-word tokens of its vocabulary,
// each word's k nearest others by cosine in the word-embedding table of onnx/model.onnx.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from '../data/errors.js';
import type { WordReplacer } from '../text/augment.js';
import { findEmbeddingTables } from './embedding-tables.js';
import { decodeModel, GraphIndex } from './onnx-model.js';
import { readJsonObject } from './teacher.js';
import { Graph, int } from '../engine/graph.js';
import * as op from '../engine/ops.js';
import { createSession, ort, type SessionOptions } from '../engine/session.js';

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

/** Score rows per ONNX Runtime call: the [batch, words] cosine block stays near 64 MiB. */
const SCORE_BLOCK = 1 << 24;

/**
 * Each of `count` unit vectors' `k` nearest others by cosine, best first (ties: the lower index
 * first, as ONNX TopK orders them), as a [count, k] table of indices. The cosines are one Gemm of
 * the table with itself in ONNX Runtime, in blocks of rows, and a TopK of k + 1 that drops the row itself.
 */
export async function nearestByCosine(vectors: Float32Array, count: number, dim: number, k: number, session: SessionOptions = {}) {
  const g = new Graph('word_neighbours');
  const table = g.constant(vectors.subarray(0, count * dim), 'float32', [count, dim], 'unit_vectors');
  const rows = g.input('rows', 'int64', ['B']);
  const scores = op.gemm(op.gather(table, rows), table, null, { transB: true });
  const take = Math.min(k + 1, count);
  const [, indices] = g.addNode('TopK', [scores, g.int64s([take], 'k')], { axis: int(-1), largest: int(1), sorted: int(1) }, [
    { dtype: 'float32', shape: ['B', take] },
    { dtype: 'int64', shape: ['B', take] },
  ]);
  g.output(indices!, 'indices');
  const handle = await createSession(g.serialize(), session);
  const nearest = new Int32Array(count * k);
  const block = Math.max(1, Math.floor(SCORE_BLOCK / count));
  try {
    for (let start = 0; start < count; start += block) {
      const n = Math.min(block, count - start);
      const ids = BigInt64Array.from({ length: n }, (_, j) => BigInt(start + j));
      const out = await handle.session.run({ rows: new ort.Tensor('int64', ids, [n]) });
      const got = out.indices!.data as BigInt64Array;
      for (let j = 0; j < n; j++) {
        let w = 0;
        for (let t = 0; t < take && w < k; t++) {
          const idx = Number(got[j * take + t]!);
          if (idx !== start + j) nearest[(start + j) * k + w++] = idx;
        }
      }
    }
  } finally {
    await handle.session.release();
  }
  return nearest;
}

/**
 * Each vocabulary word's k nearest other vocabulary words by cosine of their input embeddings
 * (ties: the lower token id first), all computed when the teacher is loaded ({@link nearestByCosine}).
 *
 * ```ts
 * const near = await EmbeddingNeighbours.fromTeacher('models/teacher', { k: 10 });
 * near.replacements('great').length; // 10: the words nearest to 'great', best first
 * near.replacements('##ing'); // []: not a whole word of the vocabulary
 * ```
 */
export class EmbeddingNeighbours implements WordReplacer {
  private readonly index = new Map<string, number>();
  private readonly lists: (readonly string[] | undefined)[];

  /** `nearest`: [words, k] indices into `words`, best first. */
  constructor(
    readonly words: readonly string[],
    private readonly nearest: Int32Array,
    readonly k: number,
    readonly info: EmbeddingNeighboursInfo,
  ) {
    words.forEach((w, i) => this.index.set(w, i));
    this.lists = new Array<readonly string[] | undefined>(words.length);
  }

  /**
   * Reads `dir/tokenizer.json` and the word-embedding table of `dir/onnx/model.onnx` (the 2-D
   * initializer a Gather of `input_ids` reads; see teacher/embedding-tables.ts).
   */
  static async fromTeacher(dir: string, opts: { k: number; session?: SessionOptions }): Promise<EmbeddingNeighbours> {
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
    const k = Math.min(opts.k, words.length - 1);
    const nearest = await nearestByCosine(vectors, words.length, dim, k, opts.session ?? {});
    const info = { teacher: dir, table: tables.wordTable, rows, dim, words: words.length, k };
    return new EmbeddingNeighbours(words, nearest, k, info);
  }

  replacements(word: string): readonly string[] {
    const i = this.index.get(word);
    if (i === undefined) return [];
    let list = this.lists[i];
    if (list === undefined) {
      list = Array.from(this.nearest.subarray(i * this.k, (i + 1) * this.k), (w) => this.words[w]!);
      this.lists[i] = list;
    }
    return list;
  }
}
