// Embedding neighbours on the shared tiny-random-bert teacher: the whole-word vocabulary by exact
// list, and each word's k nearest by cosine against a float64 computation made here from the raw graph.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import onnxProto from 'onnx-proto';
import { EmbeddingNeighbours, wholeWordVocabulary } from '../../../src/teacher/word-neighbours.js';
import { sharedPath } from '../../helpers.js';

const TEACHER = () => sharedPath('fixtures', 'hf', 'tiny-random-bert');

/** The words of tiny-random-bert that are whole, word-shaped tokens inside its 56-row table, by id. */
const WORDS = ['the', 'and', 'not', 'good', 'bad', 'great', 'terrible', 'love', 'hate', 'movie', 'book', 'cd', 'it', 'is', 'was', 'this'];

/** The table a Gather of input_ids reads, straight from the protobuf (float32 raw data). */
function wordTable(): { rows: number; dim: number; data: Float32Array } {
  const model = onnxProto.onnx.ModelProto.decode(readFileSync(join(TEACHER(), 'onnx', 'model.onnx')));
  const gather = model.graph!.node!.find((n) => n.opType === 'Gather' && n.input![1] === 'input_ids')!;
  const t = model.graph!.initializer!.find((i) => i.name === gather.input![0])!;
  const [rows, dim] = t.dims!.map(Number) as [number, number];
  const raw = new Uint8Array(t.rawData!);
  return { rows, dim, data: new Float32Array(raw.buffer, raw.byteOffset, rows * dim) };
}

/** Each word's other words sorted by float64 cosine, best first. */
function rankedByCosine(): Map<string, { word: string; cos: number }[]> {
  const { dim, data } = wordTable();
  const vocab = (JSON.parse(readFileSync(join(TEACHER(), 'tokenizer.json'), 'utf8')) as { model: { vocab: Record<string, number> } }).model
    .vocab;
  const vec = (w: string) => Array.from(data.subarray(vocab[w]! * dim, (vocab[w]! + 1) * dim));
  const cos = (a: number[], b: number[]) => {
    const dot = a.reduce((s, x, i) => s + x * b[i]!, 0);
    return dot / Math.sqrt(a.reduce((s, x) => s + x * x, 0) * b.reduce((s, x) => s + x * x, 0));
  };
  return new Map(
    WORDS.map((w) => [
      w,
      WORDS.filter((o) => o !== w)
        .map((o) => ({ word: o, cos: cos(vec(w), vec(o)) }))
        .sort((a, b) => b.cos - a.cos),
    ]),
  );
}

test('wholeWordVocabulary: the word-shaped whole tokens below the table rows (no specials, ##pieces, letters or punctuation)', () => {
  const json = JSON.parse(readFileSync(join(TEACHER(), 'tokenizer.json'), 'utf8')) as Record<string, unknown>;
  assert.equal(wordTable().rows, 56);
  assert.deepEqual(
    wholeWordVocabulary(json, 56).map((w) => w.word),
    WORDS,
  );
  // A smaller table leaves out the rows it does not have ("this" is id 48).
  assert.deepEqual(
    wholeWordVocabulary(json, 48).map((w) => w.word),
    WORDS.slice(0, -1),
  );
  // Byte-level BPE and SentencePiece mark word starts; the marker goes, pieces without it stay out.
  const bpe = { model: { type: 'BPE', vocab: { Ġgood: 0, good: 1, Ġmovie: 2, ing: 3, '<s>': 4 } }, added_tokens: [{ content: '<s>' }] };
  assert.deepEqual(wholeWordVocabulary(bpe, 5), [
    { word: 'good', id: 0 },
    { word: 'movie', id: 2 },
  ]);
  const unigram = {
    model: {
      type: 'Unigram',
      vocab: [
        ['<unk>', 0],
        ['▁great', -1],
        ['ly', -2],
        ['▁film', -3],
      ],
    },
  };
  assert.deepEqual(
    wholeWordVocabulary(unigram, 4).map((w) => w.word),
    ['great', 'film'],
  );
});

test('EmbeddingNeighbours: k nearest by cosine, best first, equal to a float64 ranking from the raw table', async () => {
  const ranked = rankedByCosine();
  for (const k of [1, 3, 15]) {
    const near = await EmbeddingNeighbours.fromTeacher(TEACHER(), { k });
    assert.deepEqual([near.info.rows, near.info.dim, near.info.words, near.info.table], [56, 64, 16, 'tok.weight']);
    for (const w of WORDS) {
      const expected = ranked.get(w)!.slice(0, k);
      // Near-ties (cosines within float32 rounding) may swap; none at this fixture's boundaries.
      const boundary = ranked.get(w)![k];
      if (boundary) assert.ok(expected.at(-1)!.cos - boundary.cos > 1e-5, `${w}: a near-tie at k=${k}`);
      assert.deepEqual(
        near.replacements(w),
        expected.map((e) => e.word),
        `${w}, k=${k}`,
      );
    }
    assert.deepEqual(near.replacements('nonexistent'), []);
    assert.deepEqual(near.replacements('##s'), []);
  }
});
