// WordPiece vocabulary training: merges checked by hand on a tiny corpus, and determinism on
// real tweets (the same texts, in any order, give byte-identical tokenizer files).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { learnWordPieceVocabulary } from '../../../src/text/wordpiece-trainer.js';
import { TextTokenizer } from '../../../src/text/tokenizer.js';
import { DatasetReader } from '../../../src/data/read.js';
import { S140_RANDOM, tempDir } from '../../helpers.js';

test('merges follow counts, ties go to the smaller pair of ids, and "##" is dropped inside a merge', () => {
  // aab ×2, ab ×1: alphabet a=0 b=1, pieces ##a=2 ##b=3 (first used in "aab").
  // Pairs: (a,##a) 2, (##a,##b) 2, (a,##b) 1 → tie → (0,2) "aa"; then (aa,##b) 2 → "aab";
  // then (a,##b) 1 → "ab".
  const counts = new Map([
    ['ab', 1],
    ['aab', 2],
  ]);
  assert.deepEqual(learnWordPieceVocabulary(counts, { vocabSize: 7 }), ['a', 'b', '##a', '##b', 'aa', 'aab', 'ab']);
  // A continuation pair keeps its "##": "xyz" ×3 → (x,##y) and (##y,##z) tie → "xy", then "xyz".
  assert.deepEqual(learnWordPieceVocabulary(new Map([['xyz', 3]]), { vocabSize: 10 }), ['x', 'y', 'z', '##y', '##z', 'xy', 'xyz']);
  // Counts weigh words: "ba" ×5 beats the tie above.
  assert.deepEqual(
    learnWordPieceVocabulary(
      new Map([
        ['ab', 1],
        ['aab', 2],
        ['ba', 5],
      ]),
      { vocabSize: 6 },
    ),
    ['a', 'b', '##a', '##b', 'ba', 'aa'],
  );
  // The insertion order of the counts does not matter.
  assert.deepEqual(
    learnWordPieceVocabulary(
      new Map([
        ['aab', 2],
        ['ab', 1],
      ]),
      { vocabSize: 7 },
    ),
    learnWordPieceVocabulary(counts, { vocabSize: 7 }),
  );
});

test('two trainings on the same tweets, in either order, write byte-identical tokenizer files', async () => {
  const texts: string[] = [];
  for await (const ex of new DatasetReader([S140_RANDOM()], { progress: false })) {
    texts.push(ex.text);
    if (texts.length === 1500) break;
  }
  const dirs = [tempDir('kd-vocab-a-'), tempDir('kd-vocab-b-'), tempDir('kd-vocab-c-')];
  TextTokenizer.trainWordPiece(texts, { vocabSize: 1000, maxLength: 64 }).save(dirs[0]!);
  TextTokenizer.trainWordPiece(texts, { vocabSize: 1000, maxLength: 64 }).save(dirs[1]!);
  TextTokenizer.trainWordPiece([...texts].reverse(), { vocabSize: 1000, maxLength: 64 }).save(dirs[2]!);
  const vocab = readFileSync(join(dirs[0]!, 'vocab.txt'), 'utf8').trimEnd().split('\n');
  assert.equal(vocab.length, 1000);
  assert.deepEqual(vocab.slice(0, 5), ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']);
  assert.ok(vocab.includes('the') && vocab.includes('##ing'), 'frequent words and suffixes are learned');
  for (const dir of dirs.slice(1)) {
    for (const file of ['vocab.txt', 'tokenizer.json'])
      assert.ok(readFileSync(join(dir, file)).equals(readFileSync(join(dirs[0]!, file))), `${file} differs between trainings`);
  }
  // The vocabulary encodes text the way BERT's WordPiece does.
  const tok = TextTokenizer.fromFolder(dirs[0]!);
  const [enc] = await tok.encode(['The thinking']);
  assert.equal(enc!.ids[0], 2);
  assert.equal(enc!.ids.at(-1), 3);
  assert.equal(enc!.ids[1], vocab.indexOf('the'));
});
