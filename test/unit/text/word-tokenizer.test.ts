// The n-gram student's word-level tokenizer: kd (the `tokenizers` package) and transformers.js
// read its tokenizer.json to the same ids, on crafted texts and on real tweets; its words are the
// first form's (src/text/ngrams.ts wordTokens) but for two white-space characters; its vocabulary
// follows counts and does not depend on the order of the texts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { TextTokenizer } from '../../../src/text/tokenizer.js';
import { wordTokens } from '../../../src/text/ngrams.js';
import { wordVocabulary } from '../../../src/text/word-tokenizer.js';
import { readAllExamples } from '../../../src/data/read.js';
import { S140_RANDOM, tempDir } from '../../helpers.js';

const CRAFTED = [
  "I LOVE http://x.co/ab!! @Bob_1 &quot;hi&quot; &amp;amp; don't",
  'i\u00a0love\u2003you\u3000\u0085x\ufeffy',
  'καλΟΣ ΟΔΟΣ σας',
  '😀👍🏽 ok',
  '',
  '   ',
  'www.example.com/x?y=1,z love',
  'İstanbul ǅ ß',
  '@ @@ a@b.com <url> <user>',
  '\t\n  i love  \r\n',
  'ok '.repeat(300),
];

/** The Sentiment140 sample, read once for all tests. */
const tweets = readAllExamples([S140_RANDOM()], { progress: false }).then((r) => r.examples);

async function loaded() {
  const examples = await tweets;
  const texts = examples.slice(0, 4000).map((e) => e.text);
  const tok = TextTokenizer.trainWordLevel(texts.slice(0, 3000), { vocabSize: 2000, maxLength: 128 });
  const dir = join(tempDir('kd-wordtok-'), 'model');
  tok.save(dir);
  return { texts, tok, dir };
}

test('kd and transformers.js tokenize to the same ids (crafted texts, 4,000 tweets, truncation at model_max_length)', async () => {
  const { texts, tok, dir } = await loaded();
  const { AutoTokenizer, env } = await import('@huggingface/transformers');
  env.allowRemoteModels = false;
  env.localModelPath = `${dirname(dir)}/`;
  const theirs = await AutoTokenizer.from_pretrained(basename(dir));
  const all = [...CRAFTED, ...texts];
  const mine = await tok.encode(all);
  let unknown = 0;
  all.forEach((t, i) => {
    const ids = theirs(t, { truncation: true, return_tensor: false }).input_ids as number[];
    assert.deepEqual(ids, Array.from(mine[i]!.ids), `text ${i}: ${JSON.stringify(t)}`);
    unknown += ids.filter((id) => id === 1).length;
  });
  assert.equal(mine.at(CRAFTED.indexOf('ok '.repeat(300)))!.ids.length, 128);
  // Both see words the vocabulary lacks (the last 1,000 tweets were not trained on).
  assert.ok(unknown > 100, `only ${unknown} [UNK]`);
  // The normalizer's work, read back through the vocabulary.
  const id = (w: string) => tok.tokenId(w);
  const crafted = await tok.encode([CRAFTED[0]!]);
  assert.deepEqual(Array.from(crafted[0]!.ids).slice(0, 4), [id('i'), id('love'), id('<url>'), id('<user>')]);
  const config = JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8'));
  assert.deepEqual(
    [config.tokenizer_class, config.model_max_length, config.pad_token, config.unk_token],
    ['PreTrainedTokenizerFast', 128, '[PAD]', '[UNK]'],
  );
});

test("its words are the first form's, except U+FEFF (not white space now) and U+0085 (white space now)", async () => {
  const examples = await tweets;
  const tok = TextTokenizer.trainWordLevel(['x'], { vocabSize: 3, maxLength: 128 });
  const normalizer = tok.native.getNormalizer()!;
  const preTokenizer = tok.native.getPreTokenizer()!;
  const words = (t: string) => preTokenizer.preTokenizeString(normalizer.normalizeString(t)).map(([w]) => w);
  const differ = examples.filter((e) => words(e.text).join('\u0001') !== wordTokens(e.text).join('\u0001'));
  assert.equal(differ.length, 2, differ.map((e) => JSON.stringify(e.text)).join('\n'));
  assert.ok(differ.every((e) => /[\ufeff\u0085]/.test(e.text)));
  assert.deepEqual(words('to\ufeff it'), ['to', '\ufeff', 'it']);
  assert.deepEqual(wordTokens('to\ufeff it'), ['to', 'it']);
  // Final sigma: JavaScript lowercases it to ς, Rust to σ; the normalizer makes both σ.
  assert.deepEqual(words('ΟΔΟΣ'), ['ο', 'δ', 'ο', 'σ']);
});

test('the vocabulary: most frequent words first, ties in code-unit order, specials first; the same for texts in any order', async () => {
  const counts = new Map([
    ['good', 3],
    ['bad', 3],
    ['ok', 1],
    ['[UNK]', 9],
    ['zz', 2],
  ]);
  assert.deepEqual(wordVocabulary(counts, 5), ['[PAD]', '[UNK]', 'bad', 'good', 'zz']);
  assert.deepEqual(wordVocabulary(counts, 100), ['[PAD]', '[UNK]', 'bad', 'good', 'zz', 'ok']);
  assert.throws(() => wordVocabulary(counts, 2), /'vocabSize' must be an integer ≥ 3, got 2/);
  const { texts } = await loaded();
  const a = join(tempDir('kd-wordtok-'), 'a');
  const b = join(tempDir('kd-wordtok-'), 'b');
  TextTokenizer.trainWordLevel(texts, { vocabSize: 500, maxLength: 64 }).save(a);
  TextTokenizer.trainWordLevel([...texts].reverse(), { vocabSize: 500, maxLength: 64 }).save(b);
  for (const f of ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'vocab.txt'])
    assert.ok(readFileSync(join(a, f)).equals(readFileSync(join(b, f))), `${f} depends on the order of the texts`);
  const vocab = readFileSync(join(a, 'vocab.txt'), 'utf8').split('\n').slice(0, -1); // not trimEnd: U+FEFF can be a word
  assert.equal(vocab.length, 500);
  assert.deepEqual(vocab.slice(0, 2), ['[PAD]', '[UNK]']);
});
