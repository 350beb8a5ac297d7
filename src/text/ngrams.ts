// Word n-gram features of the n-gram student. Today's form: unigrams are token ids of its
// word-level tokenizer (word-tokenizer.ts), bigrams are hashed from consecutive ids by
// integer arithmetic its ONNX graph repeats (bigramBucket, ngramFeatureIds).

/** Odd and prime: a·P + b spreads the pairs of consecutive ids over the buckets; kept below 2^20 so a·P + b < 2^53. */
export const BIGRAM_PRIME = 1_000_003;

/** The largest vocabulary plus buckets the hashing allows: every id a·P + b stays an exact double (and an int64). */
export const MAX_NGRAM_ROWS = 2 ** 31 - 1;

/** How token ids become feature rows: `vocabSize` unigram rows, then `buckets` hashed bigram rows. */
export interface BigramHashing {
  vocabSize: number;
  buckets: number;
}

/**
 * The bucket of the bigram (a, b) of token ids: (a·P + b) mod buckets, P = BIGRAM_PRIME. With
 * a, b < 2^31 the sum stays below 2^53, so doubles compute it exactly, as int64 Mul, Add and Mod
 * do in the exported graph (src/student/ngram.ts).
 */
export function bigramBucket(a: number, b: number, buckets: number): number {
  return (a * BIGRAM_PRIME + b) % buckets;
}

/**
 * Feature rows of one text's token ids: each id (its unigram row), then for each pair of
 * consecutive ids the row vocabSize + bigramBucket(a, b): n + (n − 1) rows for n tokens.
 *
 * ```ts
 * ngramFeatureIds(Int32Array.of(5, 7), { vocabSize: 10, buckets: 4 }); // → [5, 7, 10 + (5·1000003 + 7) mod 4] = [5, 7, 12]
 * ```
 */
export function ngramFeatureIds(ids: ArrayLike<number>, h: BigramHashing): Int32Array {
  const n = ids.length;
  const out = new Int32Array(n === 0 ? 0 : 2 * n - 1);
  for (let i = 0; i < n; i++) out[i] = ids[i]!;
  for (let i = 0; i + 1 < n; i++) out[n + i] = h.vocabSize + bigramBucket(ids[i]!, ids[i + 1]!, h.buckets);
  return out;
}

// The first form, which students exported before the tokenizer use (kd predict still reads them):
//   1. lowercase; HTML entities &quot; &amp; &lt; &gt; &#39; decoded;
//   2. URLs → "<url>", @mentions → "<user>", digits runs kept;
//   3. tokens: runs of [a-z0-9'] or single other non-space characters (punctuation, emoji);
//   4. features: every unigram "w" and bigram "w1 w2", hashed with 32-bit FNV-1a of their
//      UTF-8 bytes, bucket = 1 + hash mod (buckets − 1); bucket 0 is padding.

/** The first form's hashing. */
export interface NgramSpec {
  buckets: number;
  /** Largest n (1 = unigrams, 2 = + bigrams). */
  maxN: number;
  /** At most this many features per text (the first ones are kept). */
  maxFeatures: number;
}

export const DEFAULT_NGRAMS: NgramSpec = { buckets: 1 << 20, maxN: 2, maxFeatures: 256 };

const ENTITIES: Record<string, string> = { '&quot;': '"', '&amp;': '&', '&lt;': '<', '&gt;': '>', '&#39;': "'" };

export function normalizeText(text: string): string {
  return text
    .toLowerCase()
    .replace(/&(quot|amp|lt|gt|#39);/g, (m) => ENTITIES[m] ?? m)
    .replace(/(?:https?:\/\/|www\.)\S+/g, ' <url> ')
    .replace(/@\w+/g, ' <user> ');
}

const TOKEN_RE = /<url>|<user>|[a-z0-9']+|[^\sa-z0-9']/gu;

export function wordTokens(text: string): string[] {
  return normalizeText(text).match(TOKEN_RE) ?? [];
}

const encoder = new TextEncoder();

/** 32-bit FNV-1a of the UTF-8 bytes of `s`. */
export function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  const bytes = encoder.encode(s);
  for (let i = 0; i < bytes.length; i++) {
    h ^= bytes[i]!;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** Feature buckets of one text (no padding). */
export function ngramFeatures(text: string, spec: NgramSpec = DEFAULT_NGRAMS): Int32Array {
  const tokens = wordTokens(text);
  const out: number[] = [];
  const bucket = (s: string) => 1 + (fnv1a(s) % (spec.buckets - 1));
  for (let n = 1; n <= spec.maxN; n++) {
    for (let i = 0; i + n <= tokens.length && out.length < spec.maxFeatures; i++) out.push(bucket(tokens.slice(i, i + n).join(' ')));
  }
  return Int32Array.from(out);
}
