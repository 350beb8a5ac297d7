// The n-gram student's word-level tokenizer as a Hugging Face tokenizer.json: the featurizer's
// lowercasing, entity decoding and URL/@user folding as its normalizer, its token pattern as a
// Split pre-tokenizer, and a WordLevel vocabulary of the most frequent training words.
// The `tokenizers` package (kd) and transformers.js (browsers) read the same file the same way.

/** Special tokens of the word vocabulary: [PAD] = 0 (padding), [UNK] = 1 (words outside it). */
export const WORD_SPECIALS = { pad: '[PAD]', unk: '[UNK]' } as const;

/** HTML entities Sentiment140 and Amazon texts carry, decoded; &amp; last so "&amp;lt;" gives "&lt;", as one pass would. */
export const ENTITIES: readonly [string, string][] = [
  ['&quot;', '"'],
  ['&lt;', '<'],
  ['&gt;', '>'],
  ['&#39;', "'"],
  ['&amp;', '&'],
];

/** A URL: http(s):// or www. and everything up to the next white space. */
export const URL_PATTERN = '(?:https?://|www\\.)\\S+';
/** An @mention (after lowercasing; ASCII word characters, as Twitter handles are). */
export const USER_PATTERN = '@[a-z0-9_]+';
/** A token: a placeholder, a run of [a-z0-9'], or any other single non-space character (punctuation, emoji). */
export const TOKEN_PATTERN = "<url>|<user>|[a-z0-9']+|[^\\sa-z0-9']";

/**
 * The normalizer: Lowercase, then Replace steps. "ς" becomes "σ" because JavaScript's
 * toLowerCase (transformers.js) writes a final sigma where the Rust normalizer (kd) writes σ.
 */
export function wordNormalizer(): Record<string, unknown> {
  const replace = (pattern: Record<string, string>, content: string) => ({ type: 'Replace', pattern, content });
  return {
    type: 'Sequence',
    normalizers: [
      { type: 'Lowercase' },
      replace({ String: 'ς' }, 'σ'),
      ...ENTITIES.map(([entity, char]) => replace({ String: entity }, char)),
      replace({ Regex: URL_PATTERN }, ' <url> '),
      replace({ Regex: USER_PATTERN }, ' <user> '),
    ],
  };
}

/** The pre-tokenizer: every match of TOKEN_PATTERN is a word, the white space between them is dropped. */
export function wordPreTokenizer(): Record<string, unknown> {
  return { type: 'Split', pattern: { Regex: TOKEN_PATTERN }, behavior: 'Removed', invert: true };
}

const byCodeUnits = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/**
 * The vocabulary in id order: [PAD], [UNK], then the `vocabSize − 2` most frequent words, ties
 * broken by UTF-16 code units (the same counts give the same vocabulary, in any order).
 *
 * ```ts
 * wordVocabulary(new Map([['good', 3], ['bad', 3], ['ok', 1]]), 4); // → ['[PAD]', '[UNK]', 'bad', 'good']
 * ```
 */
export function wordVocabulary(wordCounts: ReadonlyMap<string, number>, vocabSize: number): string[] {
  if (!(Number.isInteger(vocabSize) && vocabSize >= 3)) throw new RangeError(`'vocabSize' must be an integer ≥ 3, got ${vocabSize}`);
  const specials: string[] = [WORD_SPECIALS.pad, WORD_SPECIALS.unk];
  const words = [...wordCounts.entries()]
    .filter(([w]) => w.length > 0 && !specials.includes(w))
    .sort((a, b) => b[1] - a[1] || byCodeUnits(a[0], b[0]))
    .slice(0, vocabSize - specials.length)
    .map(([w]) => w);
  return [...specials, ...words];
}

/** The added tokens: the specials at ids 0, 1, …, matched in the raw text (not normalized). */
export function wordAddedTokens(specials: readonly string[]): Record<string, unknown>[] {
  return specials.map((content, id) => ({
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  }));
}

/** tokenizer.json of the word-level tokenizer over `vocab` (in id order; [PAD] and [UNK] first). */
export function wordTokenizerJson(vocab: readonly string[]): string {
  const specials = [WORD_SPECIALS.pad, WORD_SPECIALS.unk];
  if (vocab[0] !== specials[0] || vocab[1] !== specials[1])
    throw new Error('wordTokenizerJson: the vocabulary must start with [PAD], [UNK]');
  const tokenizer = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: wordAddedTokens(specials),
    normalizer: wordNormalizer(),
    pre_tokenizer: wordPreTokenizer(),
    post_processor: null,
    decoder: null,
    model: { type: 'WordLevel', vocab: Object.fromEntries(vocab.map((t, i) => [t, i])), unk_token: WORD_SPECIALS.unk },
  };
  return JSON.stringify(tokenizer);
}

/**
 * tokenizer_config.json: the class Python's AutoTokenizer builds from a bare tokenizer.json (transformers.js drops the
 * "Fast" and uses its base class), the special tokens (transformers.js reads [UNK] of a WordLevel model from here, and
 * pads with pad_token), and model_max_length, where both truncate.
 */
export function wordTokenizerConfig(maxLength: number): Record<string, unknown> {
  return {
    tokenizer_class: 'PreTrainedTokenizerFast',
    model_max_length: maxLength,
    padding_side: 'right',
    pad_token: WORD_SPECIALS.pad,
    unk_token: WORD_SPECIALS.unk,
    clean_up_tokenization_spaces: false,
  };
}
