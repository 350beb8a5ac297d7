// Lexicon members: the in-graph score equals the TypeScript reference on every UCI sentence (to
// 1e-5), the rules give hand-computed values (and VADER's npm package agrees on them), and the
// WordPiece vocabulary keeps lexicon words whole.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { TextTokenizer, keepWholeWords } from '../../../src/text/tokenizer.js';
import { lexiconScore, lexiconScoreGraph, lexiconTables, VADER_ALPHA, type LexiconTables } from '../../../src/teacher/lexicon.js';
import { LEXICON_NAMES, lexiconWords, parseLexiconList } from '../../../src/teacher/lexicon-data.js';
import { exportModel } from '../../../src/engine/train-graph.js';
import { ParameterStore } from '../../../src/engine/params.js';
import { ort } from '../../../src/engine/session.js';
import { sharedPath } from '../../helpers.js';

const sentences = ['yelp', 'imdb'].flatMap((set) =>
  readFileSync(sharedPath('datasets', 'uci_sentences', `${set}_labelled.jsonl`), 'utf8')
    .trim()
    .split('\n')
    .map((l) => (JSON.parse(l) as { text: string }).text),
);
const tokenizer = TextTokenizer.trainWordPiece(sentences, { vocabSize: 8192, maxLength: 128, wholeWords: lexiconWords(LEXICON_NAMES) });
const SEQ = { dtype: 'int64' as const, shape: ['batch_size', 'sequence_length'] };

async function graphScores(t: LexiconTables, texts: string[]): Promise<Float32Array> {
  const bytes = exportModel(
    {
      inputs: { input_ids: SEQ, attention_mask: SEQ },
      forward: (ctx, i) => ({ score: lexiconScoreGraph(ctx.g, t, i.input_ids!, i.attention_mask!) }),
    },
    new ParameterStore('float32'),
  );
  const session = await ort.InferenceSession.create(bytes);
  const b = tokenizer.pad(await tokenizer.encode(texts));
  const dims = [b.size, b.length];
  const out = await session.run({
    input_ids: new ort.Tensor('int64', b.inputIds, dims),
    attention_mask: new ort.Tensor('int64', b.attentionMask, dims),
  });
  await session.release();
  return out.score!.data as Float32Array;
}

const referenceScores = async (t: LexiconTables, texts: string[]) => (await tokenizer.encode(texts)).map((e) => lexiconScore(t, e.ids));

for (const name of LEXICON_NAMES) {
  test(`${name}: the in-graph score equals the TypeScript reference on all 1,993 UCI sentences (padded batches) to 1e-5`, async () => {
    const t = await lexiconTables(name, tokenizer);
    assert.ok(t.coverage.single > 1000 && t.coverage.phrase > 10, JSON.stringify(t.coverage));
    const graph = await graphScores(t, sentences);
    const reference = await referenceScores(t, sentences);
    let nonzero = 0;
    reference.forEach((r, i) => {
      assert.ok(Math.abs(r - graph[i]!) <= 1e-5, `sentence ${i} (${sentences[i]}): reference ${r}, graph ${graph[i]}`);
      if (r !== 0) nonzero += 1;
    });
    assert.ok(nonzero > 1500, `${nonzero} of ${sentences.length} sentences scored`);
  });
}

test('the rules by hand: AFINN negation, wink two-back negation and length scaling, VADER boosters, negation, emphasis, but', async () => {
  const [afinn, vader, wink] = await Promise.all(LEXICON_NAMES.map((n) => lexiconTables(n, tokenizer)));
  // AFINN: good +3, bad −3 flipped by the "not" before it.
  assert.deepEqual(await referenceScores(afinn!, ['good food, not bad', 'the food was good']), [6, 3]);
  // wink: "not" two tokens back still negates; one scored word, 4 words (≤ 15): −3 / 1 / 1.
  assert.deepEqual(await referenceScores(wink!, ['not a good product']), [-3]);
  // wink: 30 words of which one scores +3 → 3 / 1 / sqrt(30 / 15).
  const long = `good ${'and '.repeat(29)}`.trim();
  assert.ok(Math.abs((await referenceScores(wink!, [long]))[0]! - 3 / Math.sqrt(2)) < 1e-12);
  // VADER: good 1.9, "very" before it adds 0.293, "!" adds 0.292; "not" multiplies by −0.74; "n't" is the token t.
  const compound = (x: number) => x / Math.sqrt(x * x + VADER_ALPHA);
  const [veryGood, notGood, isntGood] = await referenceScores(vader!, ['very good!', 'not good', "isn't good"]);
  assert.ok(Math.abs(veryGood! - compound(1.9 + 0.293 + 0.292)) < 1e-6, `${veryGood}`);
  assert.ok(Math.abs(notGood! - compound(-0.74 * 1.9)) < 1e-6, `${notGood}`);
  assert.ok(Math.abs(isntGood! - compound(-0.74 * 1.9)) < 1e-6, `${isntGood}`);
  // "but": what comes before the first one counts half, what follows it one and a half: 0.5·1.9 + 1.5·(−2.5).
  const [goodButBad] = await referenceScores(vader!, ['good but bad']);
  assert.ok(Math.abs(goodButBad! - compound(0.5 * 1.9 - 1.5 * 2.5)) < 1e-6, `${goodButBad}`);
  // And the npm package says the same (it rounds to 4 decimals).
  const { SentimentIntensityAnalyzer } = createRequire(import.meta.url)('vader-sentiment') as {
    SentimentIntensityAnalyzer: { polarity_scores(t: string): { compound: number } };
  };
  for (const [text, ours] of [
    ['very good!', veryGood],
    ['not good', notGood],
    ['good but bad', goodButBad],
  ] as const)
    assert.ok(Math.abs(SentimentIntensityAnalyzer.polarity_scores(text).compound - ours!) < 1e-4, text);
});

test('lexicon words stay whole in the trained vocabulary; keepWholeWords gives up the last merges for them', () => {
  const vocab = new Set(tokenizer.tokens());
  for (const w of ['disappointing', 'horrible', 'delicious', 'excellent', 'awful']) assert.ok(vocab.has(w), w);
  assert.equal(tokenizer.vocabSize, 8192);
  // 6 slots: the learned list keeps its first 4 ('abb' and 'bb' give way) and adds bb and zz (a is in already).
  assert.deepEqual(keepWholeWords(['a', 'b', '##b', 'ab', 'abb', 'bb'], ['bb', 'zz', 'a'], 6), ['a', 'b', '##b', 'ab', 'bb', 'zz']);
  assert.deepEqual(keepWholeWords(['a', 'b', 'c'], ['b'], 3), ['a', 'b', 'c']);
});

test('--lexicons: names, none, and an unknown name that says which exist', () => {
  assert.deepEqual(parseLexiconList('afinn, wink'), ['afinn', 'wink']);
  assert.deepEqual(parseLexiconList('none'), []);
  assert.throws(() => parseLexiconList('afinn,vadr'), /^OptionError: --lexicons: unknown lexicon 'vadr'\. Known: afinn, vader, wink/);
});
