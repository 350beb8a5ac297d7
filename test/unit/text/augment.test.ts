// The augmentation rules on one text: the word split, masking and n-gram rates against their
// probabilities (binomial bounds), spans as contiguous word runs, word-list replacement and its case.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { augmentText, splitWords, WordListReplacer, type AugmentRules } from '../../../src/text/augment.js';
import { Rng } from '../../../src/engine/rng.js';
import { UserError } from '../../../src/errors.js';
import { tempDir } from '../../helpers.js';

const NONE: AugmentRules = { pMask: 0, pReplace: 0, pNgram: 0, maxNgram: 5, maskToken: '[MASK]' };
const VOCAB = ['good', 'bad', 'movie', 'book', 'the', 'is', 'was', 'not', 'great', 'plot', 'sound', 'price'];

/** `count` texts of `words` words each from VOCAB, with commas and a full stop, drawn from `seed`. */
function syntheticTexts(count: number, words: number, seed: number): string[] {
  const rng = new Rng(seed);
  return Array.from({ length: count }, () => {
    const w = Array.from({ length: words }, (_, i) => VOCAB[rng.int(VOCAB.length)]! + (i % 7 === 6 ? ',' : ''));
    return `${w.join(' ')}.`;
  });
}

test('splitWords: glue and words give back the text; punctuation, emoji and spaces are glue', () => {
  const text = "  Don't stop, @user #tag: well-made!! 3.5 stars 😀 café—naïve ";
  const { words, glue } = splitWords(text);
  assert.deepEqual(words, ["Don't", 'stop', '@user', '#tag', 'well-made', '3', '5', 'stars', 'café', 'naïve']);
  assert.deepEqual(glue, ['  ', ' ', ', ', ' ', ': ', '!! ', '.', ' ', ' 😀 ', '—', ' ']);
  assert.equal(glue.map((g, i) => g + (words[i] ?? '')).join(''), text);
  assert.deepEqual(splitWords('?!'), { words: [], glue: ['?!'] });
});

test('masking: rate within 5 standard deviations of p_mask, masked words in place, punctuation kept', () => {
  for (const pMask of [0.1, 0.3]) {
    let words = 0;
    let masked = 0;
    const rng = new Rng(7);
    for (const text of syntheticTexts(2000, 50, 11)) {
      const a = augmentText(text, { ...NONE, pMask }, rng);
      const src = splitWords(text);
      const got = splitWords(a.text);
      // The glue is untouched and every word is the source's or the mask token's letters.
      assert.deepEqual(got.glue.length, src.glue.length);
      const maskedHere = got.words.filter((w, i) => w !== src.words[i]);
      assert.ok(maskedHere.every((w) => w === 'MASK'));
      assert.equal(a.text.split('[MASK]').length - 1, a.masked);
      assert.equal(maskedHere.length, a.masked);
      words += a.words;
      masked += a.masked;
    }
    assert.equal(words, 100000);
    const sd = Math.sqrt((pMask * (1 - pMask)) / words);
    assert.ok(Math.abs(masked / words - pMask) < 5 * sd, `mask rate ${masked / words} for p ${pMask} (sd ${sd})`);
  }
});

test('n-gram sampling: spans are contiguous runs of 1..max-ngram source words; rate and lengths as drawn', () => {
  const texts = syntheticTexts(4000, 30, 12);
  const rng = new Rng(8);
  const lengths = new Map<number, number>();
  let cut = 0;
  for (const text of texts) {
    const a = augmentText(text, { ...NONE, pNgram: 0.25, maxNgram: 5 }, rng);
    if (a.ngram === null) {
      assert.equal(a.text, text);
      continue;
    }
    cut += 1;
    lengths.set(a.ngram, (lengths.get(a.ngram) ?? 0) + 1);
    assert.ok(text.includes(a.text), `${a.text} is not a substring of its source`);
    const span = splitWords(a.text).words;
    const src = splitWords(text).words;
    assert.equal(span.length, a.ngram);
    assert.ok(span.length >= 1 && span.length <= 5);
    const at = src.findIndex((_, i) => span.every((w, j) => src[i + j] === w));
    assert.ok(at >= 0, `${span.join(' ')} is not a run of source words`);
    // The span starts and ends on a word: no leading or trailing glue.
    assert.equal(a.text, a.text.trim());
    assert.match(a.text, /^[a-z].*[a-z]$|^[a-z]$/);
  }
  const sd = Math.sqrt((0.25 * 0.75) / texts.length);
  assert.ok(Math.abs(cut / texts.length - 0.25) < 5 * sd, `n-gram rate ${cut / texts.length}`);
  // n uniform in 1..5: each length within 5 sd of cut/5.
  assert.deepEqual([...lengths.keys()].sort(), [1, 2, 3, 4, 5]);
  const sdn = Math.sqrt(cut * 0.2 * 0.8);
  for (const [n, c] of lengths) assert.ok(Math.abs(c - cut / 5) < 5 * sdn, `n=${n}: ${c} of ${cut}`);
  // A text shorter than n: the span is all of its words.
  for (let s = 0; s < 50; s++) {
    const a = augmentText('good movie!', { ...NONE, pNgram: 1, maxNgram: 5 }, new Rng(s));
    assert.ok(a.ngram === 1 || a.ngram === 2);
    assert.ok(['good', 'movie', 'good movie'].includes(a.text), a.text);
  }
});

test('word-list replacement: another word of its line, in the source word’s case; other words stay', () => {
  const list = new WordListReplacer([
    ['good', 'great', 'fine'],
    ['movie', 'film'],
    ['great', 'superb'],
  ]);
  assert.deepEqual([...list.replacements('great')].sort(), ['fine', 'good', 'superb']);
  assert.deepEqual(list.replacements('nothing'), []);
  const text = 'Good movie, GOOD film, great plot.';
  const seen = new Set<string>();
  for (let s = 0; s < 200; s++) {
    const a = augmentText(text, { ...NONE, pReplace: 1, replacer: list }, new Rng(s));
    const w = splitWords(a.text).words;
    assert.equal(a.replaced, 5);
    assert.equal(a.replaceMissed, 1); // "plot"
    assert.ok(['Great', 'Fine'].includes(w[0]!), w[0]);
    assert.equal(w[1], 'film');
    assert.ok(['GREAT', 'FINE'].includes(w[2]!), w[2]);
    assert.equal(w[3], 'movie');
    assert.ok(['good', 'fine', 'superb'].includes(w[4]!), w[4]);
    assert.equal(w[5], 'plot');
    seen.add(w[4]!);
  }
  assert.equal(seen.size, 3);
});

test('the same stream masks the same words with and without a replacer (a fixed number of draws per word)', () => {
  const list = new WordListReplacer([VOCAB]);
  for (const text of syntheticTexts(200, 40, 13)) {
    const seed = text.length;
    const plain = augmentText(text, { ...NONE, pMask: 0.2, pNgram: 0.5 }, new Rng(seed));
    const withReplacer = augmentText(text, { ...NONE, pMask: 0.2, pReplace: 0.5, pNgram: 0.5, replacer: list }, new Rng(seed));
    const a = splitWords(plain.text).words;
    const b = splitWords(withReplacer.text).words;
    assert.equal(plain.ngram, withReplacer.ngram);
    assert.equal(plain.masked, withReplacer.masked);
    a.forEach((w, i) => assert.equal(w === 'MASK', b[i] === 'MASK'));
  }
});

test('WordListReplacer.fromFile: groups and words counted; a one-word line and an empty list are errors naming file and line', () => {
  const dir = tempDir();
  const good = join(dir, 'words.txt');
  writeFileSync(good, '# sentiment words\ngood great fine\n\nmovie film\n');
  const list = WordListReplacer.fromFile(good);
  assert.deepEqual([list.lines, list.words], [2, 5]);
  const bad = join(dir, 'bad.txt');
  writeFileSync(bad, 'good great\nmovie\n');
  assert.throws(
    () => WordListReplacer.fromFile(bad),
    (e: Error) => e instanceof UserError && e.message.includes(`${bad}: line 2 holds one word ("movie")`),
  );
  const empty = join(dir, 'empty.txt');
  writeFileSync(empty, '# nothing\n');
  assert.throws(() => WordListReplacer.fromFile(empty), /empty\.txt: no word group in the file/);
  assert.throws(() => WordListReplacer.fromFile(join(dir, 'missing.txt')), /'--word-list' .*missing\.txt: cannot read it \(ENOENT\)/);
});
