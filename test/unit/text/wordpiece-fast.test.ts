// The pure-TypeScript WordPiece encoder (src/text/wordpiece-fast.ts) gives the native tokenizer's ids and type ids:
// on every text of the shared datasets for a kd-trained vocabulary and the shared Hugging Face fixtures, on crafted
// edge cases, on every code point of planes 0-3 and 14 under each normalizer setting, after a save and reload, under
// truncation and a vocabulary limit; texts and lengths it does not implement go native; other shapes get no encoder.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, mkdirSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import tokenizers from 'tokenizers';
import { TextTokenizer, type Encoding } from '../../../src/text/tokenizer.js';
import { fastWordPieceEncoder } from '../../../src/text/wordpiece-fast.js';
import { REORDERS } from '../../../src/text/wordpiece-unicode.js';
import { readAllExamples } from '../../../src/data/read.js';
import { SHARED_SAMPLE_FILES, sharedPath, tempDir } from '../../helpers.js';

const { bertNormalizer, bertPreTokenizer } = tokenizers;

/** The shared Hugging Face fixture folders (bert-base-uncased-style tokenizer.json files). */
const HF_FIXTURES = readdirSync(sharedPath('fixtures', 'hf'))
  .map((d) => sharedPath('fixtures', 'hf', d))
  .filter((d) => existsSync(join(d, 'tokenizer.json')));

const CRAFTED = [
  '',
  '   ',
  '\t\n\r\u00a0\u2003\u3000\u0085\u000b\u000c\u001c',
  'Héllo Wörld! Crème brûlée, naïve façade, ÅNGSTRÖM, ǅemal, ﬁne',
  'a\u0301\u0323 e\u0323\u0301 o\u0308\u0304 \u0301start \u0345 x\u20dd',
  '中文字 and 日本語のテキスト 한국어 텍스트 𠀀𪜀 兀 丽',
  '😀👍🏽 ok 𝔘𝔫𝔦 𐐀𐐨 🇫🇷 👨‍👩‍👧 ❤️ great😀product',
  'a\u0000b c\ufffdd e\u0007f g\u200bh i\u00adj k\ufeffl m\u2028n o\u202ep \ue000q',
  'a\ud800b \udc00 \ud83d x\ud83d\ude00y',
  '[CLS] typed [SEP] in [MASK] text [PAD] and [UNK] [cls] [ CLS ] [CLS [[SEP]] x[CLS]y',
  'İstanbul İ ı ǅ ß ẞ K Å Ω ΣΑΣ σας ς ΟΔΟΣ',
  'don\'t "quote" (paren) {brace} <angle> $5.00 50% #tag @user a_b a-b a/b ~ ` ^ | + = ¡¿ «» „" … — – · • ※ ‰ ′ § ¶',
  'http://example.com/path?x=1&y=2 www.test.org user@mail.com',
  'x'.repeat(100),
  'x'.repeat(101),
  '𝔘'.repeat(100),
  '𝔘'.repeat(101),
  'unbelievablyunbelievablyunbelievable superextraordinarilylong',
  'ok '.repeat(300),
  'ｆｕｌｌｗｉｄｔｈ ＡＢＣ　１２３',
  'ﾊﾝｶｸ ｶﾀｶﾅ ゔ が ぱ',
  'العربية עברית हिन्दी ไทย ελληνικά русский ქართული',
  '1234567890 3.14 1,000,000 ½ ² ①',
  'tab\there new\nline cr\rhere',
  'ends with punctuation!!!',
];

/** Every text of the shared datasets, once each. */
const texts = readAllExamples(SHARED_SAMPLE_FILES(), { progress: false }).then((r) => [...new Set(r.examples.map((e) => e.text))]);

/** A WordPiece tokenizer trained with the repo's own trainer on a slice of the data and the crafted texts. */
async function trained(maxLength = 128): Promise<TextTokenizer> {
  const slice = (await texts).filter((_, i) => i % 7 === 0);
  return TextTokenizer.trainWordPiece([...slice, ...CRAFTED], { vocabSize: 8000, maxLength });
}

function assertSame(fast: readonly Encoding[], native: readonly Encoding[], inputs: readonly string[]): void {
  assert.equal(fast.length, native.length);
  for (let i = 0; i < fast.length; i++) {
    const f = fast[i]!;
    const n = native[i]!;
    if (!sameIds(f.ids, n.ids) || !sameIds(f.typeIds, n.typeIds))
      assert.deepEqual(
        { ids: Array.from(f.ids), typeIds: Array.from(f.typeIds) },
        { ids: Array.from(n.ids), typeIds: Array.from(n.typeIds) },
        `text ${i}: ${JSON.stringify(inputs[i]).slice(0, 300)}`,
      );
  }
}

function sameIds(a: Int32Array, b: Int32Array): boolean {
  if (a.length !== b.length) return false;
  for (let k = 0; k < a.length; k++) if (a[k] !== b[k]) return false;
  return true;
}

/** Encodes with the fast encoder alone (no native fallback), failing on any text it leaves to the native path. */
function encodeFast(tok: TextTokenizer, inputs: readonly string[]): Encoding[] {
  assert.ok(tok.fast, 'a WordPiece tokenizer has a fast encoder');
  return inputs.map((t, i) => {
    const e = tok.fast!.encode(t, tok.maxLength);
    assert.ok(e, `text ${i} went to the native path: ${JSON.stringify(t).slice(0, 100)}`);
    return e;
  });
}

test('the fast encoder gives the native ids on every text of the shared datasets, for a kd-trained vocabulary', async () => {
  const all = await texts;
  assert.ok(all.length > 80_000, `only ${all.length} texts`);
  const tok = await trained();
  const inputs = [...CRAFTED, ...all];
  const native = await tok.encodeNative(inputs);
  assertSame(encodeFast(tok, inputs), native, inputs);
  // Not vacuous: whole words and pieces, [UNK], [CLS] … [SEP], added tokens typed in the text, truncation at 128.
  const id = (t: string) => tok.tokenId(t);
  const vocabulary = tok.tokens();
  const unk = id('[UNK]');
  let pieces = 0;
  let unknown = 0;
  for (const e of native) for (const k of e.ids) k === unk ? unknown++ : vocabulary[k]!.startsWith('##') && pieces++;
  assert.ok(pieces > 100_000 && unknown > 100, `${pieces} continuation pieces, ${unknown} [UNK]`);
  const ids = (text: string) => Array.from(native[CRAFTED.indexOf(text)]!.ids);
  assert.deepEqual(ids(''), [id('[CLS]'), id('[SEP]')]);
  assert.deepEqual(ids(CRAFTED[9]!).slice(0, 2), [id('[CLS]'), id('[CLS]')]);
  assert.ok(ids(CRAFTED[9]!).filter((k) => k === id('[MASK]')).length === 1);
  assert.equal(ids('ok '.repeat(300)).length, 128);
  assert.equal(ids('ok '.repeat(300)).at(-1), id('[SEP]'));
  assert.deepEqual(ids('x'.repeat(101)), [id('[CLS]'), id('[UNK]'), id('[SEP]')]);
  assert.notDeepEqual(ids('x'.repeat(100)), [id('[CLS]'), id('[UNK]'), id('[SEP]')]);
});

test('the Hugging Face fixtures: a fast encoder, the native ids and type ids on the datasets and crafted texts', async () => {
  assert.ok(HF_FIXTURES.length >= 1);
  const all = (await texts).filter((_, i) => i % 3 === 0);
  const inputs = [...CRAFTED, ...all];
  for (const dir of HF_FIXTURES) {
    const tok = TextTokenizer.fromFolder(dir);
    const native = await tok.encodeNative(inputs);
    assertSame(encodeFast(tok, inputs), native, inputs);
    assert.ok(native.some((e) => e.ids.length === tok.maxLength));
  }
  // Type ids from the template, not assumed zero: a template that gives [SEP] type 1 and $A type 2.
  const json = JSON.parse(readFileSync(join(HF_FIXTURES[0]!, 'tokenizer.json'), 'utf8'));
  json.post_processor.single[1].Sequence.type_id = 2;
  json.post_processor.single[2].SpecialToken.type_id = 1;
  const tok = tokenizerFolder(json, 64);
  const native = await tok.encodeNative(CRAFTED);
  assertSame(encodeFast(tok, CRAFTED), native, CRAFTED);
  assert.deepEqual(Array.from(native[3]!.typeIds.slice(0, 2)), [0, 2]);
  assert.equal(native[3]!.typeIds.at(-1), 1);
});

/** A tokenizer folder holding `json` (model_max_length `maxLength`), loaded. */
function tokenizerFolder(json: unknown, maxLength: number): TextTokenizer {
  const dir = join(tempDir('kd-wpfast-'), 'tok');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(json));
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ model_max_length: maxLength }));
  return TextTokenizer.fromFolder(dir);
}

/** Decodes a wordpiece-unicode.ts table. */
function codePoints(runs: string): number[] {
  const out: number[] = [];
  let end = 0;
  for (const run of runs.split(',')) {
    const [gap, length] = run.split(':').map((x) => parseInt(x, 36)) as [number, number];
    for (let cp = end + gap; cp < end + gap + length; cp++) out.push(cp);
    end += gap + length;
  }
  return out;
}

test('every code point of planes 0-3 and 14, alone under each BERT normalizer setting and inside a word', async () => {
  const reorders = new Set(codePoints(REORDERS));
  const base = JSON.parse(readFileSync(join(HF_FIXTURES[0]!, 'tokenizer.json'), 'utf8'));
  const settings = [
    { clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: true },
    { clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: false },
    { clean_text: true, handle_chinese_chars: false, strip_accents: false, lowercase: true },
    { clean_text: true, handle_chinese_chars: true, strip_accents: true, lowercase: false },
  ];
  for (const setting of settings) {
    const strips = setting.strip_accents ?? setting.lowercase;
    // Each code point alone between spaces, and between two x's; the marks strip_accents may reorder apart.
    const alone: string[] = [];
    const inside: string[] = [];
    const left: string[] = [];
    for (let start = 0; start < 0xf0000; start += 0x8000) {
      if (start >= 0x40000 && start < 0xe0000) continue;
      const cps: string[] = [];
      for (let cp = start; cp < start + 0x8000; cp++) {
        if (cp >= 0xd800 && cp <= 0xdfff) continue;
        (strips && reorders.has(cp) ? left : cps).push(String.fromCodePoint(cp));
      }
      alone.push(cps.join(' '));
      inside.push(cps.map((c) => `x${c}x`).join(' '));
    }
    // The vocabulary: every word the native side makes of a code point, whole and as a continuation.
    const normalizer = bertNormalizer({
      cleanText: true,
      handleChineseChars: setting.handle_chinese_chars,
      stripAccents: strips,
      lowercase: setting.lowercase,
    });
    const words = new Set<string>(['x']);
    for (const chunk of alone) for (const [w] of bertPreTokenizer().preTokenizeString(normalizer.normalizeString(chunk))) words.add(w);
    const tokens = new Set(['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', ...words, ...[...words].map((w) => `##${w}`)]);
    const vocab = Object.fromEntries([...tokens].map((t, i) => [t, i]));
    const json = { ...base, normalizer: { type: 'BertNormalizer', ...setting }, model: { ...base.model, vocab } };
    const tok = tokenizerFolder(json, 200_000);
    assert.ok(tok.vocabSize > 400_000, `${tok.vocabSize} tokens`);
    // Inside a word (pieces, punctuation split off) once: the same for every setting.
    const inputs = setting === settings[0] ? [...alone, ...inside] : alone;
    assertSame(encodeFast(tok, inputs), await tok.encodeNative(inputs), inputs);
    // Texts holding a mark NFD may reorder go native, with the native ids.
    if (strips) {
      assert.ok(left.length > 50, `${left.length} marks left to the native path`);
      for (const c of left) assert.equal(tok.fast!.encode(`a${c}b`, tok.maxLength), null, `U+${c.codePointAt(0)!.toString(16)}`);
      const mixed = left.map((c) => `x${c}\u0301\u0323x ok`);
      assertSame(await tok.encode(mixed), await tok.encodeNative(mixed), mixed);
    } else assert.equal(left.length, 0);
  }
});

test('a saved and reloaded tokenizer keeps its fast encoder; truncation and the vocabulary limit match the native path', async () => {
  const dir = join(tempDir('kd-wpfast-'), 'model');
  (await trained(512)).save(dir);
  const all = (await texts).filter((_, i) => i % 13 === 0);
  const inputs = [...CRAFTED, 'ok '.repeat(600), '[CLS] '.repeat(10), ...all];
  for (const maxLength of [2, 3, 4, 7, 512]) {
    const plain = TextTokenizer.fromFolder(dir, { maxLength });
    assertSame(encodeFast(plain, inputs), await plain.encodeNative(inputs), inputs);
    // With the limit: [UNK] for ids ≥ 3000, counted alike.
    const a = TextTokenizer.fromFolder(dir, { maxLength });
    const b = TextTokenizer.fromFolder(dir, { maxLength });
    assert.deepEqual(a.limitVocabulary(3000).sort(), b.limitVocabulary(3000).sort());
    const fast = await a.encode(inputs);
    assertSame(fast, await b.encodeNative(inputs), inputs);
    assert.equal(a.outOfRangeTokens, b.outOfRangeTokens);
    if (maxLength > 2) assert.ok(a.outOfRangeTokens > 0);
    assert.ok(fast.every((e) => e.ids.length <= maxLength && e.ids[e.ids.length - 1] === 3));
    assert.ok(fast.some((e) => e.ids.length === maxLength));
  }
  // Below the two special tokens the native side computes the length in unsigned arithmetic: those go native.
  const one = TextTokenizer.fromFolder(dir, { maxLength: 1 });
  assert.equal(one.fast!.encode('ok', 1), null);
  assertSame(await one.encode(inputs), await one.encodeNative(inputs), inputs);
});

test('a tokenizer.json of another shape gets no fast encoder (the native path is used)', async () => {
  const base = JSON.parse(readFileSync(join(HF_FIXTURES[0]!, 'tokenizer.json'), 'utf8'));
  assert.ok(fastWordPieceEncoder(base));
  const variant = (edit: (t: any) => void) => {
    const t = structuredClone(base);
    edit(t);
    return fastWordPieceEncoder(t);
  };
  const variants: [string, (t: any) => void][] = [
    ['truncation', (t) => (t.truncation = { max_length: 8, strategy: 'LongestFirst', stride: 0, direction: 'Left' })],
    ['padding', (t) => (t.padding = { strategy: 'BatchLongest' })],
    ['clean_text off', (t) => (t.normalizer.clean_text = false)],
    ['a normalizer field more', (t) => (t.normalizer.nfkc = true)],
    ['a Sequence normalizer', (t) => (t.normalizer = { type: 'Sequence', normalizers: [t.normalizer] })],
    ['no normalizer', (t) => (t.normalizer = null)],
    ['another pre-tokenizer', (t) => (t.pre_tokenizer = { type: 'Whitespace' })],
    ['a normalized added token', (t) => (t.added_tokens[2].normalized = true)],
    ['an lstrip added token', (t) => (t.added_tokens[4].lstrip = true)],
    ['an added token beyond the vocabulary', (t) => t.added_tokens.push({ ...t.added_tokens[1], id: 999, content: '<extra>' })],
    ['an added token with another id', (t) => (t.added_tokens[0].id = 7)],
    ['unk token outside the vocabulary', (t) => (t.model.unk_token = '<unk>')],
    ['a BPE model', (t) => (t.model.type = 'BPE')],
    ['a model field more', (t) => (t.model.byte_fallback = true)],
    ['a fractional id', (t) => (t.model.vocab.the = 2.5)],
    ['a RobertaProcessing', (t) => (t.post_processor = { type: 'RobertaProcessing', sep: ['[SEP]', 3], cls: ['[CLS]', 2] })],
    ['a template over $B', (t) => (t.post_processor.single[1].Sequence.id = 'B')],
    ['a template without $A', (t) => t.post_processor.single.splice(1, 1)],
    ['a template special token with another id', (t) => (t.post_processor.special_tokens['[CLS]'].ids = [7])],
    ['a template special token not listed', (t) => delete t.post_processor.special_tokens['[SEP]']],
  ];
  for (const [name, edit] of variants) assert.equal(variant(edit), null, name);
  assert.equal(fastWordPieceEncoder(null), null);
  assert.equal(fastWordPieceEncoder([]), null);
  // The shapes it takes beyond the fixture's: BertProcessing (kd's own), no post-processor, a cased normalizer.
  const bert = variant((t) => (t.post_processor = { type: 'BertProcessing', sep: ['[SEP]', 3], cls: ['[CLS]', 2] }));
  assert.deepEqual(Array.from(bert!.encode('The movie!', 16)!.ids), [
    2,
    base.model.vocab.the,
    base.model.vocab.movie,
    base.model.vocab['!'],
    3,
  ]);
  const bare = variant((t) => (t.post_processor = null));
  assert.deepEqual(Array.from(bare!.encode('The movie!', 2)!.ids), [base.model.vocab.the, base.model.vocab.movie]);
  assert.ok(variant((t) => (t.normalizer.lowercase = false)));
});
