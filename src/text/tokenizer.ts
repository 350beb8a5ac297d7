// Tokenization with the `tokenizers` package (Rust, native) from a Hugging Face
// tokenizer.json; WordPiece vocabularies trained on our own texts (default teacher, students).
import { ConfigError, FormatError } from '../data/errors.js';
import { readFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import tokenizers from 'tokenizers';
import { writeFileAtomicSync } from '../util/fs.js';
import { learnWordPieceVocabulary } from './wordpiece-trainer.js';
import { WORD_SPECIALS, wordTokenizerConfig, wordTokenizerJson, wordVocabulary } from './word-tokenizer.js';
import { fastWordEncoder } from './word-fast.js';
import { fastWordPieceEncoder } from './wordpiece-fast.js';

const { Tokenizer, WordPiece, bertNormalizer, bertPreTokenizer, bertProcessing, wordPieceDecoder } = tokenizers;
type NativeTokenizer = InstanceType<typeof Tokenizer>;

/** A batch of encodings: row-major ids/masks of one padded length. */
export interface EncodedBatch {
  /** Number of texts. */
  size: number;
  /** Padded length (longest text in the batch). */
  length: number;
  inputIds: BigInt64Array;
  attentionMask: BigInt64Array;
  tokenTypeIds: BigInt64Array;
}

/** One text's token ids (special tokens included), before padding. */
export interface Encoding {
  ids: Int32Array;
  typeIds: Int32Array;
}

/**
 * A pure-TypeScript twin of a tokenizer.json (word-fast.ts, wordpiece-fast.ts): the native ids of a text truncated
 * to `maxLength`, or null for a text it leaves to the native tokenizer.
 */
export interface FastTextEncoder {
  encode(text: string, maxLength: number): Encoding | null;
}

export interface SpecialTokens {
  pad: string;
  unk: string;
  cls: string;
  sep: string;
  mask: string;
}

export const BERT_SPECIALS: SpecialTokens = { pad: '[PAD]', unk: '[UNK]', cls: '[CLS]', sep: '[SEP]', mask: '[MASK]' };

const BERT_NORMALIZATION = { lowercase: true, stripAccents: true, cleanText: true, handleChineseChars: true };

/**
 * A tokenizer.json (with its tokenizer_config.json) ready for batched, truncated encoding.
 *
 * ```ts
 * const tok = TextTokenizer.fromFolder('models/teacher', { maxLength: 128 });
 * const encodings = await tok.encode(['great product', 'awful']);
 * ```
 */
export class TextTokenizer {
  readonly padId: number;
  /** Ids at or above this are outside the model's embedding table; they become [UNK]. */
  private idLimit = Infinity;
  private unkId = 0;
  /** Tokens replaced by [UNK] because the model's table has no row for them. */
  outOfRangeTokens = 0;

  private constructor(
    readonly native: NativeTokenizer,
    readonly maxLength: number,
    readonly specials: SpecialTokens,
    readonly config: Record<string, unknown>,
    /** The pure-TypeScript twin of the tokenizer.json (same ids, no native call per batch); null: native. */
    readonly fast: FastTextEncoder | null = null,
  ) {
    const pad = native.tokenToId(specials.pad);
    if (pad === null || pad === undefined) throw new ConfigError(`tokenizer has no pad token '${specials.pad}' in its vocabulary`);
    this.padId = pad;
    native.setTruncation(maxLength);
    native.disablePadding();
  }

  /** Loads `dir/tokenizer.json` and `dir/tokenizer_config.json` (special tokens, model_max_length). */
  static fromFolder(dir: string, opts: { maxLength?: number } = {}): TextTokenizer {
    const file = join(dir, 'tokenizer.json');
    if (!existsSync(file))
      throw new ConfigError(
        `${dir}: no tokenizer.json (a Hugging Face-layout model folder has config.json, tokenizer.json and onnx/model.onnx)`,
      );
    const configPath = join(dir, 'tokenizer_config.json');
    const config = existsSync(configPath) ? readJsonObject(configPath) : {};
    const tokenName = (key: string, fallback: string): string => {
      const v = config[key];
      if (typeof v === 'string') return v;
      if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content;
      return fallback;
    };
    const specials: SpecialTokens = {
      pad: tokenName('pad_token', '[PAD]'),
      unk: tokenName('unk_token', '[UNK]'),
      cls: tokenName('cls_token', '[CLS]'),
      sep: tokenName('sep_token', '[SEP]'),
      mask: tokenName('mask_token', '[MASK]'),
    };
    const modelMax = typeof config.model_max_length === 'number' && config.model_max_length < 1e6 ? config.model_max_length : 512;
    const maxLength = Math.min(opts.maxLength ?? modelMax, modelMax);
    let native: NativeTokenizer;
    let json: string;
    try {
      json = readFileSync(file, 'utf8');
      native = Tokenizer.fromString(json);
    } catch (e) {
      throw new FormatError(
        file,
        `not a tokenizer the tokenizers library can read (${(e as Error).message.split('\n')[0]}); export the tokenizer again ` +
          `(tokenizer.save_pretrained writes tokenizer.json)`,
      );
    }
    return new TextTokenizer(native, maxLength, specials, config, fastEncoder(parseJson(json)));
  }

  get vocabSize(): number {
    return this.native.getVocabSize(true);
  }

  /** One more than the largest id: the rows a table indexed by these ids needs (a vocabulary's ids may skip numbers). */
  get idBound(): number {
    return Object.values(this.native.getVocab(true)).reduce((m, id) => Math.max(m, id + 1), 0);
  }

  /** The vocabulary in id order (token of id i at index i). */
  tokens(): string[] {
    const out: string[] = [];
    for (const [t, id] of Object.entries(this.native.getVocab(true))) out[id] = t;
    return out;
  }

  tokenId(token: string): number {
    const id = this.native.tokenToId(token);
    if (id === null || id === undefined)
      throw new ConfigError(
        `token '${token}' is not in the tokenizer's vocabulary; name a token it has in tokenizer_config.json (e.g. "unk_token")`,
      );
    return id;
  }

  /**
   * Limits ids to a model's vocabulary size: tokenizer ids at or above `vocabSize` (some
   * exports ship a tokenizer larger than the embedding table) become [UNK] and are counted,
   * instead of crashing the model. Returns the tokens affected.
   */
  limitVocabulary(vocabSize: number): string[] {
    this.idLimit = vocabSize;
    this.unkId = this.tokenId(this.specials.unk);
    return Object.entries(this.native.getVocab(true))
      .filter(([, id]) => id >= vocabSize)
      .map(([t]) => t);
  }

  /**
   * Encodes texts (truncated to maxLength, special tokens added); where the tokenizer.json has a pure-TypeScript twin
   * (word-fast.ts, wordpiece-fast.ts), without a native call but for the texts that twin leaves to it.
   */
  async encode(texts: readonly string[]): Promise<Encoding[]> {
    const fast = this.fast;
    if (!fast) return this.encodeNative(texts);
    const out: Encoding[] = new Array(texts.length);
    const left: number[] = [];
    texts.forEach((t, i) => {
      const e = fast.encode(t, this.maxLength);
      if (e === null) left.push(i);
      else out[i] = { ids: this.limitIds(e.ids), typeIds: e.typeIds };
    });
    if (left.length) (await this.encodeNative(left.map((i) => texts[i]!))).forEach((e, k) => (out[left[k]!] = e));
    return out;
  }

  /** Encodes texts with the native tokenizer, even where a fast twin exists (the reference it is tested against). */
  async encodeNative(texts: readonly string[]): Promise<Encoding[]> {
    const encodings = await this.native.encodeBatch([...texts]);
    return encodings.map((e) => ({ ids: this.limitIds(Int32Array.from(e.getIds())), typeIds: Int32Array.from(e.getTypeIds()) }));
  }

  /** Ids at or above idLimit (see limitVocabulary) become [UNK], counted; in place. */
  private limitIds(ids: Int32Array): Int32Array {
    if (this.idLimit !== Infinity) {
      for (let k = 0; k < ids.length; k++) {
        if (ids[k]! >= this.idLimit) {
          ids[k] = this.unkId;
          this.outOfRangeTokens += 1;
        }
      }
    }
    return ids;
  }

  /** Pads encodings to their longest member. */
  pad(encodings: readonly Encoding[]): EncodedBatch {
    const length = encodings.reduce((m, e) => Math.max(m, e.ids.length), 0);
    const size = encodings.length;
    const inputIds = new BigInt64Array(size * length).fill(BigInt(this.padId));
    const attentionMask = new BigInt64Array(size * length);
    const tokenTypeIds = new BigInt64Array(size * length);
    encodings.forEach((e, r) => {
      for (let k = 0; k < e.ids.length; k++) {
        inputIds[r * length + k] = BigInt(e.ids[k]!);
        attentionMask[r * length + k] = 1n;
        tokenTypeIds[r * length + k] = BigInt(e.typeIds[k]!);
      }
    });
    return { size, length, inputIds, attentionMask, tokenTypeIds };
  }

  /**
   * Trains a lowercase BERT WordPiece vocabulary on `texts`: BERT normalization and
   * pre-tokenization from the `tokenizers` package, merges learned by our deterministic
   * trainer (see wordpiece-trainer.ts; the same texts give the same vocabulary, in any order),
   * the special tokens first, so [PAD] = 0, [UNK] = 1, [CLS] = 2, [SEP] = 3, [MASK] = 4.
   * `wholeWords` (e.g. a sentiment lexicon's words) become whole tokens: each that the learned
   * vocabulary lacks takes the place of one of the last merges (its characters join the alphabet);
   * at most half the vocabulary, the words most frequent in `texts` first.
   */
  static trainWordPiece(
    texts: Iterable<string>,
    opts: { vocabSize: number; maxLength: number; wholeWords?: readonly string[] },
  ): TextTokenizer {
    const normalizer = bertNormalizer(BERT_NORMALIZATION);
    const preTokenizer = bertPreTokenizer();
    // BERT normalization works character by character and turns every line break into a space,
    // so texts are normalized 1,000 at a time, joined by newlines; the pre-tokenizer (whitespace,
    // then punctuation) runs once per distinct space-separated chunk: 3x faster than per text,
    // the same counts.
    const chunkCounts = new Map<string, number>();
    const batch: string[] = [];
    const countChunks = () => {
      for (const chunk of normalizer.normalizeString(batch.join('\n')).split(' '))
        if (chunk) chunkCounts.set(chunk, (chunkCounts.get(chunk) ?? 0) + 1);
      batch.length = 0;
    };
    for (const text of texts) if (batch.push(text) === 1000) countChunks();
    countChunks();
    const wordCounts = new Map<string, number>();
    for (const [chunk, n] of chunkCounts)
      for (const [word] of preTokenizer.preTokenizeString(chunk)) wordCounts.set(word, (wordCounts.get(word) ?? 0) + n);
    const specials = Object.values(BERT_SPECIALS);
    const vocab: Record<string, number> = {};
    specials.forEach((s, i) => (vocab[s] = i));
    // The pre-tokenizer splits '[' and ']' off, so no learned token is a special token.
    let next = specials.length;
    // At most half the vocabulary goes to whole words, the ones most frequent in the texts first (ties: code-unit order).
    const learnedSize = Math.max(0, opts.vocabSize - specials.length);
    const whole = wholeWordsOf(opts.wholeWords ?? [], (t) => normalizer.normalizeString(t), preTokenizer)
      .map((w) => [w, wordCounts.get(w) ?? 0] as const)
      .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
      .slice(0, Math.floor(learnedSize / 2))
      .map(([w]) => w);
    // The characters of whole words must be in the alphabet, or a word holding one becomes [UNK].
    for (const w of whole) if (!wordCounts.has(w)) wordCounts.set(w, 0);
    const learned = learnWordPieceVocabulary(wordCounts, {
      vocabSize: learnedSize,
      continuingSubwordPrefix: '##',
    });
    for (const token of keepWholeWords(learned, whole, learnedSize)) vocab[token] = next++;
    const tok = new Tokenizer(
      WordPiece.init(vocab, { unkToken: BERT_SPECIALS.unk, continuingSubwordPrefix: '##', maxInputCharsPerWord: 100 }),
    );
    tok.setNormalizer(bertNormalizer(BERT_NORMALIZATION));
    tok.setPreTokenizer(bertPreTokenizer());
    tok.setPostProcessor(bertProcessing([BERT_SPECIALS.sep, 3], [BERT_SPECIALS.cls, 2]));
    tok.setDecoder(wordPieceDecoder('##', true));
    tok.addSpecialTokens(specials);
    const fast = fastEncoder(JSON.parse(tokenizerJson(tok)));
    return new TextTokenizer(tok, opts.maxLength, BERT_SPECIALS, bertTokenizerConfig(opts.maxLength), fast);
  }

  /**
   * Trains the n-gram student's word-level tokenizer on `texts` (see word-tokenizer.ts): its own
   * normalizer and pre-tokenizer split the texts into words, the `vocabSize − 2` most frequent
   * become the vocabulary after [PAD] = 0 and [UNK] = 1 (ties in code-unit order: the same texts
   * give the same vocabulary, in any order).
   */
  static trainWordLevel(texts: Iterable<string>, opts: { vocabSize: number; maxLength: number }): TextTokenizer {
    const counter = Tokenizer.fromString(wordTokenizerJson([WORD_SPECIALS.pad, WORD_SPECIALS.unk]));
    const normalizer = counter.getNormalizer()!;
    const preTokenizer = counter.getPreTokenizer()!;
    // No token spans white space, so 1,000 texts joined by newlines split into the words of each.
    const counts = new Map<string, number>();
    const batch: string[] = [];
    const countWords = () => {
      for (const [word] of preTokenizer.preTokenizeString(normalizer.normalizeString(batch.join('\n'))))
        counts.set(word, (counts.get(word) ?? 0) + 1);
      batch.length = 0;
    };
    for (const text of texts) if (batch.push(text) === 1000) countWords();
    countWords();
    const json = wordTokenizerJson(wordVocabulary(counts, opts.vocabSize));
    const native = Tokenizer.fromString(json);
    const specials: SpecialTokens = { ...BERT_SPECIALS, ...WORD_SPECIALS };
    return new TextTokenizer(native, opts.maxLength, specials, wordTokenizerConfig(opts.maxLength), fastEncoder(JSON.parse(json)));
  }

  /** Writes tokenizer.json, tokenizer_config.json, special_tokens_map.json (the special tokens it has) and vocab.txt. */
  save(dir: string): void {
    try {
      this.native.disableTruncation();
      writeFileAtomicSync(join(dir, 'tokenizer.json'), tokenizerJson(this.native));
    } finally {
      this.native.setTruncation(this.maxLength);
    }
    writeFileAtomicSync(join(dir, 'tokenizer_config.json'), `${JSON.stringify(this.config, null, 2)}\n`);
    const s = this.specials;
    const has = (token: string) => this.native.tokenToId(token) !== null && this.native.tokenToId(token) !== undefined;
    const map = Object.entries({ cls_token: s.cls, mask_token: s.mask, pad_token: s.pad, sep_token: s.sep, unk_token: s.unk });
    writeFileAtomicSync(
      join(dir, 'special_tokens_map.json'),
      `${JSON.stringify(Object.fromEntries(map.filter(([, token]) => has(token))), null, 2)}\n`,
    );
    const vocab = Object.entries(this.native.getVocab(true))
      .sort((a, b) => a[1] - b[1])
      .map(([t]) => t);
    writeFileAtomicSync(join(dir, 'vocab.txt'), `${vocab.join('\n')}\n`);
  }
}

/** The native tokenizer's tokenizer.json text (the binding writes it only to a file). */
function tokenizerJson(native: NativeTokenizer): string {
  const tmp = mkdtempSync(join(tmpdir(), 'kd-tok-'));
  try {
    native.save(join(tmp, 'tokenizer.json'), true);
    return readFileSync(join(tmp, 'tokenizer.json'), 'utf8');
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** The pure-TypeScript twin of a parsed tokenizer.json, where it has the shape of one (else null: the native path). */
function fastEncoder(tokenizer: unknown): FastTextEncoder | null {
  const word = fastWordEncoder(tokenizer);
  if (word)
    return {
      encode: (text, maxLength) => {
        const ids = word.encode(text, maxLength);
        return { ids, typeIds: new Int32Array(ids.length) };
      },
    };
  return fastWordPieceEncoder(tokenizer);
}

/** The normalized forms of `words` that pre-tokenize to one word (the ones a vocabulary can hold whole), sorted, unique. */
function wholeWordsOf(
  words: readonly string[],
  normalize: (t: string) => string,
  preTokenizer: { preTokenizeString(s: string): [string, [number, number]][] },
): string[] {
  const out = new Set<string>();
  for (const w of words) {
    const pieces = preTokenizer.preTokenizeString(normalize(w));
    if (pieces.length === 1) out.add(pieces[0]![0]);
  }
  return [...out].sort();
}

/**
 * The learned tokens with every whole word in: the longest prefix of the learned list (learning
 * is sequential, so a prefix is what a smaller vocabulary would have learned) that leaves room
 * for the whole words it lacks, then those words. Exported for its test.
 */
export function keepWholeWords(learned: readonly string[], whole: readonly string[], size: number): string[] {
  const position = new Map(learned.map((t, i) => [t, i] as const));
  // For a prefix of n learned tokens, the whole words missing from it are those at a position ≥ n.
  const inside = whole.map((w) => position.get(w) ?? Infinity).sort((a, b) => a - b);
  let n = Math.min(size, learned.length);
  let within = inside.filter((p) => p < n).length;
  while (n > 0 && n + whole.length - within > size) {
    n--;
    if (within > 0 && inside[within - 1]! >= n) within--;
  }
  const kept = learned.slice(0, n);
  const have = new Set(kept);
  return [...kept, ...whole.filter((w) => !have.has(w))];
}

/** tokenizer_config.json of a lowercase BERT WordPiece tokenizer, with the special tokens transformers.js needs to pad batches. */
export function bertTokenizerConfig(maxLength: number): Record<string, unknown> {
  return {
    tokenizer_class: 'BertTokenizer',
    do_lower_case: true,
    strip_accents: null,
    tokenize_chinese_chars: true,
    model_max_length: maxLength,
    clean_up_tokenization_spaces: true,
    cls_token: BERT_SPECIALS.cls,
    mask_token: BERT_SPECIALS.mask,
    pad_token: BERT_SPECIALS.pad,
    sep_token: BERT_SPECIALS.sep,
    unk_token: BERT_SPECIALS.unk,
  };
}

/** The parsed tokenizer.json, or null where JavaScript's JSON parser disagrees with the native one (then no fast path). */
function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/** A JSON file that must hold an object: a damaged one names the file instead of a parser trace. */
function readJsonObject(file: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new FormatError(file, `not valid JSON (${(e as Error).message}); fix or re-export it`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value))
    throw new FormatError(file, 'must hold a JSON object; fix or re-export it');
  return value as Record<string, unknown>;
}
