// A pure-TypeScript encoder for the n-gram student's word-level tokenizer.json (word-tokenizer.ts):
// the same ids as the `tokenizers` package, 4-6x faster, because the native call's per-text cost
// (crossing into Rust and back, an Encoding object per text) dwarfs the work on short texts.
// Built only for the exact shape word-tokenizer.ts writes; any other tokenizer.json gives null.

import {
  ENTITIES,
  TOKEN_PATTERN,
  URL_PATTERN,
  USER_PATTERN,
  WORD_SPECIALS,
  wordAddedTokens,
  wordNormalizer,
  wordPreTokenizer,
} from './word-tokenizer.js';

/**
 * White space as the Rust tokenizer's regex engine (Oniguruma) reads `\s`: Unicode White_Space.
 * JavaScript's `\s` also matches U+FEFF, which the Rust side keeps as a word. Checked for every code
 * point in test/unit/text/word-fast.test.ts.
 */
const SPACE = '\\t-\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';

/**
 * The patterns this encoder translates by hand (URL_RE, USER_RE, the scanner in segment), kept literal: when
 * word-tokenizer.ts changes one, its tokenizers stop matching LOCK and get the native path until this file follows.
 */
const RUST_URL = '(?:https?://|www\\.)\\S+';
const RUST_USER = '@[a-z0-9_]+';
const RUST_TOKEN = "<url>|<user>|[a-z0-9']+|[^\\sa-z0-9']";
const LOCK = URL_PATTERN === RUST_URL && USER_PATTERN === RUST_USER && TOKEN_PATTERN === RUST_TOKEN;
const SPECIALS = [WORD_SPECIALS.pad, WORD_SPECIALS.unk] as const;

// Their JavaScript twins (RUST_TOKEN: the scanner in segment); `u` so an astral character is one character, as in Rust.
const URL_RE = new RegExp(`(?:https?://|www\\.)[^${SPACE}]+`, 'gu');
const USER_RE = /@[a-z0-9_]+/gu;
/** Added tokens: the Rust tokenizer splits them out of the raw text (normalized: false) before normalizing the rest. */
const SPECIAL_RE = /\[PAD\]|\[UNK\]/g;
/** A lone surrogate: the native binding receives U+FFFD in its place (UTF-8 conversion). */
const LONE_SURROGATE_SOURCE = '[\\ud800-\\udbff](?![\\udc00-\\udfff])|(?<![\\ud800-\\udbff])[\\udc00-\\udfff]';
const HAS_LONE_SURROGATE = new RegExp(LONE_SURROGATE_SOURCE);
const LONE_SURROGATES = new RegExp(LONE_SURROGATE_SOURCE, 'g');

/** The word-level tokenizer as plain JavaScript: words from a text, ids from words. */
export interface FastWordEncoder {
  /** The ids of `text`'s first `maxLength` tokens, as the native tokenizer truncated to `maxLength` gives them. */
  encode(text: string, maxLength: number): Int32Array;
}

/**
 * The fast encoder of a parsed tokenizer.json, or null when it is not exactly the word-level shape
 * (normalizer, pre-tokenizer, added tokens, no truncation / padding / post-processor, a WordLevel model).
 *
 * ```ts
 * const fast = fastWordEncoder(JSON.parse(wordTokenizerJson(['[PAD]', '[UNK]', 'good'])));
 * fast!.encode('GOOD, good!', 128); // → Int32Array [2, 1, 2, 1]
 * ```
 */
export function fastWordEncoder(tokenizer: unknown): FastWordEncoder | null {
  if (!isObject(tokenizer)) return null;
  const t = tokenizer;
  if (t.truncation !== null || t.padding !== null || t.post_processor !== null) return null;
  if (t.decoder !== null && t.decoder !== undefined) return null;
  if (!LOCK || !sameJson(t.normalizer, wordNormalizer()) || !sameJson(t.pre_tokenizer, wordPreTokenizer())) return null;
  if (!sameJson(t.added_tokens, wordAddedTokens(SPECIALS))) return null;
  const model = t.model;
  if (!isObject(model) || model.type !== 'WordLevel' || model.unk_token !== SPECIALS[1] || !isObject(model.vocab)) return null;
  const keys = Object.keys(model).sort().join(',');
  if (keys !== 'type,unk_token,vocab') return null;
  const vocab = new Map<string, number>();
  for (const [word, id] of Object.entries(model.vocab)) {
    if (!(Number.isInteger(id) && (id as number) >= 0 && (id as number) <= 0x7fffffff)) return null;
    vocab.set(word, id as number);
  }
  if (vocab.get(SPECIALS[0]) !== 0 || vocab.get(SPECIALS[1]) !== 1) return null;
  return new WordLevelEncoder(vocab, 1);
}

class WordLevelEncoder implements FastWordEncoder {
  constructor(
    private readonly vocab: ReadonlyMap<string, number>,
    private readonly unkId: number,
  ) {}

  encode(text: string, maxLength: number): Int32Array {
    const ids: number[] = [];
    if (maxLength <= 0) return new Int32Array(0);
    const raw = withoutLoneSurrogates(text);
    if (!raw.includes('[')) {
      this.segment(raw, ids, maxLength);
    } else {
      let from = 0;
      SPECIAL_RE.lastIndex = 0;
      for (let m = SPECIAL_RE.exec(raw); m !== null && ids.length < maxLength; m = SPECIAL_RE.exec(raw)) {
        this.segment(raw.slice(from, m.index), ids, maxLength);
        if (ids.length < maxLength) ids.push(m[0] === SPECIALS[0] ? 0 : this.unkId);
        from = m.index + m[0].length;
      }
      if (ids.length < maxLength) this.segment(raw.slice(from), ids, maxLength);
    }
    return Int32Array.from(ids);
  }

  /** Normalizes one stretch between added tokens and appends its words' ids, up to `maxLength` in all. */
  private segment(stretch: string, ids: number[], maxLength: number): void {
    if (stretch.length === 0) return;
    // Lowercase then ς → σ: JavaScript's one context rule (final sigma) is undone by the replacement,
    // and both sides map every other code point alike (checked for all of them in the test).
    let s = stretch.toLowerCase();
    if (s.includes('ς')) s = s.replaceAll('ς', 'σ');
    if (s.includes('&')) for (const [entity, char] of ENTITIES) s = s.replaceAll(entity, char);
    if (s.includes('http') || s.includes('www.')) s = s.replace(URL_RE, ' <url> ');
    if (s.includes('@')) s = s.replace(USER_RE, ' <user> ');
    // RUST_TOKEN as a scanner (no match objects: 1.2x the regex's speed on reviews): a placeholder, a run of
    // [a-z0-9'], white space skipped, or any other one character (a surrogate pair is one).
    const n = s.length;
    let i = 0;
    while (i < n) {
      const c = s.charCodeAt(i);
      let end: number;
      if (isWordUnit(c)) {
        end = i + 1;
        while (end < n && isWordUnit(s.charCodeAt(end))) end++;
      } else if (isSpaceUnit(c)) {
        i++;
        continue;
      } else if (c === 0x3c && s.startsWith('<url>', i)) end = i + 5;
      else if (c === 0x3c && s.startsWith('<user>', i)) end = i + 6;
      else if (c >= 0xd800 && c <= 0xdbff && i + 1 < n && isLowSurrogate(s.charCodeAt(i + 1))) end = i + 2;
      else end = i + 1;
      ids.push(this.vocab.get(s.slice(i, end)) ?? this.unkId);
      if (ids.length >= maxLength) return;
      i = end;
    }
  }
}

/** [a-z0-9'] */
function isWordUnit(c: number): boolean {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x27;
}

/** SPACE, one UTF-16 unit at a time (all of it is in the BMP). */
function isSpaceUnit(c: number): boolean {
  if (c <= 0x20) return c === 0x20 || (c >= 0x09 && c <= 0x0d);
  if (c < 0x85) return false;
  return (
    c === 0x85 ||
    c === 0xa0 ||
    c === 0x1680 ||
    (c >= 0x2000 && c <= 0x200a) ||
    c === 0x2028 ||
    c === 0x2029 ||
    c === 0x202f ||
    c === 0x205f ||
    c === 0x3000
  );
}

function isLowSurrogate(c: number): boolean {
  return c >= 0xdc00 && c <= 0xdfff;
}

/** `text` as the native binding receives it: each lone surrogate becomes U+FFFD (UTF-8 conversion). */
export function withoutLoneSurrogates(text: string): string {
  return HAS_LONE_SURROGATE.test(text) ? text.replace(LONE_SURROGATES, '\ufffd') : text;
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** Deep equality of JSON values, object keys in any order. */
function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
    return a.every((x, i) => sameJson(x, b[i]));
  }
  if (!isObject(a) || !isObject(b)) return false;
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  return ka.every((k) => Object.hasOwn(b, k) && sameJson(a[k], b[k]));
}
