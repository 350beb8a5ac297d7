// Hashed word n-gram features (fastText-style) for the n-gram student and baselines. The
// preprocessing is a small, documented spec so a browser can reproduce it exactly:
//   1. lowercase; HTML entities &quot; &amp; &lt; &gt; &#39; decoded;
//   2. URLs → "<url>", @mentions → "<user>", digits runs kept;
//   3. tokens: runs of [a-z0-9'] or single other non-space characters (punctuation, emoji);
//   4. features: every unigram "w" and bigram "w1 w2", hashed with 32-bit FNV-1a of their
//      UTF-8 bytes, bucket = 1 + hash mod (buckets − 1); bucket 0 is padding.

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
