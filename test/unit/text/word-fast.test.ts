// The pure-TypeScript word-level encoder (src/text/word-fast.ts) gives the native tokenizer's ids:
// on every text of the shared datasets, on crafted edge cases, on every Unicode code point, after a
// save and reload, under truncation and a vocabulary limit; any other tokenizer.json shape gets none.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { TextTokenizer } from '../../../src/text/tokenizer.js';
import { fastWordEncoder } from '../../../src/text/word-fast.js';
import { wordTokenizerJson } from '../../../src/text/word-tokenizer.js';
import { readAllExamples } from '../../../src/data/read.js';
import { SHARED_SAMPLE_FILES, tempDir } from '../../helpers.js';

const DATASETS = SHARED_SAMPLE_FILES();

const CRAFTED = [
  '',
  '   ',
  '\t\n\r\u00a0\u2003\u3000\u0085',
  '😀👍🏽 ok 𝔘𝔫𝔦 𐐀𐐨 🇫🇷',
  'to\ufeff it \ufeff',
  'İstanbul İ ǅ ß ẞ K Å',
  'καλΟΣ ΟΔΟΣ σας ς Σ ΣΑΣ',
  'i\u00a0love\u2003you\u3000\u0085x\u180ey\u200bz\u001cw\u2028v\u205fu',
  'a[UNK]b [PAD]x y[PAD] [UNK][PAD][UNK] [unk] [UN K] [[UNK]] [PAD',
  'http://x.co/[UNK]y @bob[PAD]z www.[PAD]',
  "http://x.co/ab!! @Bob_1 &quot;hi&quot; &amp;amp; don't &lt;url&gt; &#39;",
  'HTTP://EXAMPLE.COM/ABC www.example.com/x?y=1,z love https://',
  '@ @@ a@b.com <url> <user> <URL> <us er> <url><user>',
  'http://a.b\ufeffc https://x\u00a0y @us\ufeffer',
  'http://end',
  '@start and end @',
  "it's 'quoted' rock'n'roll ''",
  'a\ud800b \udc00 \ud83d',
  '\u0130\u0307 \u1e9e \u2126 \u212a \u212b \u03d0 \u1f88',
  'ok '.repeat(300),
];

/** Every text of the shared datasets, once each. */
const texts = readAllExamples(DATASETS, { progress: false }).then((r) => [...new Set(r.examples.map((e) => e.text))]);

/** A tokenizer trained with the repo's own trainer on a slice of the data and the crafted texts. */
async function trained(maxLength = 128) {
  const all = await texts;
  const slice = all.filter((_, i) => i % 7 === 0);
  return TextTokenizer.trainWordLevel([...slice, ...CRAFTED], { vocabSize: 20_000, maxLength });
}

function assertSameIds(fast: { ids: Int32Array }[], native: { ids: Int32Array }[], inputs: readonly string[]): void {
  assert.equal(fast.length, native.length);
  for (let i = 0; i < fast.length; i++)
    if (!sameIds(fast[i]!.ids, native[i]!.ids))
      assert.deepEqual(Array.from(fast[i]!.ids), Array.from(native[i]!.ids), `text ${i}: ${JSON.stringify(inputs[i])}`);
}

function sameIds(a: Int32Array, b: Int32Array): boolean {
  if (a.length !== b.length) return false;
  for (let k = 0; k < a.length; k++) if (a[k] !== b[k]) return false;
  return true;
}

test('the fast encoder gives the native ids on every text of the shared datasets and on crafted edge cases', async () => {
  const all = await texts;
  assert.ok(all.length > 80_000, `only ${all.length} texts`);
  const tok = await trained();
  assert.ok(tok.fast, 'a trained word-level tokenizer has a fast encoder');
  const inputs = [...CRAFTED, ...all];
  const fast = await tok.encode(inputs);
  const native = await tok.encodeNative(inputs);
  assertSameIds(fast, native, inputs);
  // Not vacuous: words in and out of the vocabulary, the added tokens, truncation at maxLength.
  let unknown = 0;
  let known = 0;
  for (const e of native) for (const id of e.ids) id === 1 ? unknown++ : known++;
  assert.ok(unknown > 10_000 && known > 1_000_000, `${unknown} [UNK], ${known} known`);
  const ids = (text: string) => Array.from(native[CRAFTED.indexOf(text)]!.ids);
  const id = (w: string) => tok.tokenId(w);
  assert.deepEqual(ids(CRAFTED[8]!).slice(0, 6), [id('a'), 1, id('b'), 0, id('x'), id('y')]);
  assert.deepEqual(ids(CRAFTED[4]!), [id('to'), id('\ufeff'), id('it'), id('\ufeff')]);
  assert.deepEqual(ids(''), []);
  assert.deepEqual(ids('   '), []);
  assert.equal(ids('ok '.repeat(300)).length, 128);
  assert.ok(fast.every((e) => e.typeIds.length === e.ids.length && e.typeIds.every((t) => t === 0)));
});

test('every Unicode code point: the same lowercasing and the same white space as the native tokenizer', async () => {
  // Each code point alone between spaces; the vocabulary holds every word the native side makes of them.
  // Planes 0-3 and 14: planes 4-13 have nothing assigned, 15-16 are private use (no case, no white space).
  const chunks: string[] = [];
  for (let start = 0; start <= 0x10ffff; start += 0x8000) {
    if ((start >= 0x40000 && start < 0xe0000) || start >= 0xf0000) continue;
    const cps: string[] = [];
    for (let cp = start; cp < Math.min(start + 0x8000, 0x110000); cp++) if (cp < 0xd800 || cp > 0xdfff) cps.push(String.fromCodePoint(cp));
    chunks.push(cps.join(' '));
  }
  const tok = TextTokenizer.trainWordLevel(chunks, { vocabSize: 2_000_000, maxLength: 100_000 });
  assert.ok(tok.vocabSize > 250_000, `${tok.vocabSize} words`);
  assertSameIds(await tok.encode(chunks), await tok.encodeNative(chunks), chunks);
});

test('a saved and reloaded tokenizer keeps its fast encoder; truncation and the vocabulary limit match the native path', async () => {
  const dir = join(tempDir('kd-wordfast-'), 'model');
  (await trained(512)).save(dir);
  const all = (await texts).filter((_, i) => i % 13 === 0);
  const inputs = [...CRAFTED, 'ok '.repeat(600), ...all];
  for (const maxLength of [1, 5, 512]) {
    const a = TextTokenizer.fromFolder(dir, { maxLength });
    const b = TextTokenizer.fromFolder(dir, { maxLength });
    assert.ok(a.fast, 'a reloaded word-level tokenizer has a fast encoder');
    assert.deepEqual(a.limitVocabulary(3000).sort(), b.limitVocabulary(3000).sort());
    const fast = await a.encode(inputs);
    const native = await b.encodeNative(inputs);
    assertSameIds(fast, native, inputs);
    assert.equal(a.outOfRangeTokens, b.outOfRangeTokens);
    assert.ok(a.outOfRangeTokens > 0);
    assert.ok(fast.every((e) => e.ids.length <= maxLength));
    assert.ok(fast.some((e) => e.ids.length === maxLength));
  }
});

test('a tokenizer.json of another shape gets no fast encoder (the native path is used)', async () => {
  const base = JSON.parse(wordTokenizerJson(['[PAD]', '[UNK]', 'good']));
  assert.deepEqual(Array.from(fastWordEncoder(base)!.encode('GOOD, good!', 128)), [2, 1, 2, 1]);
  const variant = (edit: (t: any) => void) => {
    const t = structuredClone(base);
    edit(t);
    return fastWordEncoder(t);
  };
  const variants: [string, (t: any) => void][] = [
    ['truncation', (t) => (t.truncation = { max_length: 8, strategy: 'LongestFirst', stride: 0, direction: 'Left' })],
    ['padding', (t) => (t.padding = { strategy: 'BatchLongest' })],
    ['post_processor', (t) => (t.post_processor = { type: 'BertProcessing', sep: ['[SEP]', 3], cls: ['[CLS]', 2] })],
    ['decoder', (t) => (t.decoder = { type: 'WordPiece', prefix: '##', cleanup: true })],
    ['a normalizer step less', (t) => t.normalizer.normalizers.pop()],
    ['another URL pattern', (t) => (t.normalizer.normalizers[7].pattern.Regex = 'https?://\\S+')],
    ['another token pattern', (t) => (t.pre_tokenizer.pattern.Regex = '\\w+|[^\\w\\s]+')],
    ['behavior Isolated', (t) => (t.pre_tokenizer.behavior = 'Isolated')],
    ['a normalized added token', (t) => (t.added_tokens[1].normalized = true)],
    ['a third added token', (t) => t.added_tokens.push({ ...t.added_tokens[1], id: 2, content: 'good' })],
    ['another unk token', (t) => (t.model.unk_token = '[PAD]')],
    ['a BPE model', (t) => (t.model.type = 'BPE')],
    ['a fractional id', (t) => (t.model.vocab.good = 2.5)],
    ['[UNK] not id 1', (t) => ((t.model.vocab['[UNK]'] = 2), (t.model.vocab.good = 1))],
  ];
  for (const [name, edit] of variants) assert.equal(variant(edit), null, name);
  assert.equal(fastWordEncoder(null), null);
  assert.equal(fastWordEncoder([]), null);
  // A WordPiece tokenizer (the teacher's and transformer students' kind), trained and reloaded: not this encoder's
  // (its fast twin is wordpiece-fast.ts's, tested in wordpiece-fast.test.ts).
  const wordPiece = TextTokenizer.trainWordPiece(['a great product', 'awful'], { vocabSize: 60, maxLength: 16 });
  const dir = join(tempDir('kd-wordfast-'), 'wp');
  wordPiece.save(dir);
  assert.equal(fastWordEncoder(JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8'))), null);
});
