// A pure-TypeScript encoder for BERT WordPiece tokenizer.json files (the ones TextTokenizer.trainWordPiece writes,
// and Hugging Face's bert-base-uncased shape): the same ids and type ids as the `tokenizers` package, without the
// native call's per-text cost. Built only for the exact shape it implements; any other tokenizer.json gives null.

import { isObject, withoutLoneSurrogates } from './word-fast.js';
import { DECOMPOSES, LOWERS, MN, OTHER, PUNCT, REORDERS, WHITE } from './wordpiece-unicode.js';

/** One text's ids and type ids, special tokens included. */
export interface FastEncoding {
  ids: Int32Array;
  typeIds: Int32Array;
}

/** A tokenizer.json's encoder as plain JavaScript. */
export interface FastWordPieceEncoder {
  /**
   * The ids of `text` as the native tokenizer truncated to `maxLength` gives them, or null where this text (or this
   * `maxLength`) is one the encoder leaves to the native path (see REORDERS in wordpiece-unicode.ts).
   */
  encode(text: string, maxLength: number): FastEncoding | null;
}

// Character classes, one bit each, for every code point (1.1 MB, built on first use).
const IS_OTHER = 1;
const IS_WHITE = 2;
const IS_PUNCT = 4;
const DECOMPOSES_BIT = 8;
const IS_MN = 16;
const LOWERS_BIT = 32;
const REORDERS_BIT = 64;
const IS_CJK = 128;

/** The "Chinese characters" of the Rust BertNormalizer (is_chinese_char in normalizers/bert.rs). */
const CJK_RANGES: readonly [number, number][] = [
  [0x4e00, 0x9fff],
  [0x3400, 0x4dbf],
  [0x20000, 0x2a6df],
  [0x2a700, 0x2b73f],
  [0x2b740, 0x2b81f],
  [0x2b920, 0x2ceaf],
  [0xf900, 0xfaff],
  [0x2f800, 0x2fa1f],
];

let classTable: Uint8Array | null = null;

function classes(): Uint8Array {
  if (classTable) return classTable;
  const table = new Uint8Array(0x110000);
  const mark = (runs: string, bit: number) => {
    let end = 0;
    for (const run of runs.split(',')) {
      const [gap, length] = run.split(':').map((x) => parseInt(x, 36)) as [number, number];
      const start = end + gap;
      end = start + length;
      for (let cp = start; cp < end; cp++) table[cp]! |= bit;
    }
  };
  mark(OTHER, IS_OTHER);
  mark(WHITE, IS_WHITE);
  mark(PUNCT, IS_PUNCT);
  mark(DECOMPOSES, DECOMPOSES_BIT);
  mark(MN, IS_MN);
  mark(LOWERS, LOWERS_BIT);
  mark(REORDERS, REORDERS_BIT);
  for (const [from, to] of CJK_RANGES) for (let cp = from; cp <= to; cp++) table[cp]! |= IS_CJK;
  // A lone surrogate reaches the native side as U+FFFD, which clean_text removes.
  table.fill(table[0xd800]! | IS_OTHER, 0xd800, 0xe000);
  classTable = table;
  return table;
}

/** A stretch that BERT normalization leaves as it is, but for ASCII lowercasing. */
const PRINTABLE_ASCII = /^[\x20-\x7e]*$/;

interface Normalization {
  handleChineseChars: boolean;
  stripAccents: boolean;
  lowercase: boolean;
}

/** The special tokens a post-processor puts around the text's tokens, with their type ids. */
interface Template {
  before: readonly number[];
  beforeTypes: readonly number[];
  sequenceType: number;
  after: readonly number[];
  afterTypes: readonly number[];
}

/**
 * The fast encoder of a parsed tokenizer.json, or null when it is not exactly a shape this encoder implements:
 * BertNormalizer with clean_text, BertPreTokenizer, a WordPiece model whose unknown token is in its vocabulary, added
 * tokens matched whole in the raw text (not normalized, no strip, not single-word, the vocabulary's own ids),
 * BertProcessing or a TemplateProcessing of special tokens around $A (or none), no truncation or padding in the file
 * (TextTokenizer sets its own). The decoder does not take part in encoding and may be any.
 *
 * ```ts
 * const fast = fastWordPieceEncoder(JSON.parse(readFileSync('tiny-random-bert/tokenizer.json', 'utf8')));
 * fast!.encode('The movie, not good!', 128); // → { ids: Int32Array [2, 31, 39, 51, 33, 34, 49, 3], typeIds: [0 × 8] }
 * ```
 */
export function fastWordPieceEncoder(tokenizer: unknown): FastWordPieceEncoder | null {
  if (!isObject(tokenizer)) return null;
  const t = tokenizer;
  if (t.truncation !== null || t.padding !== null) return null;
  const normalization = bertNormalization(t.normalizer);
  if (!normalization || !isObject(t.pre_tokenizer) || !hasExactly(t.pre_tokenizer, { type: 'BertPreTokenizer' })) return null;
  const model = t.model;
  if (
    !isObject(model) ||
    model.type !== 'WordPiece' ||
    !sameKeys(model, ['type', 'unk_token', 'continuing_subword_prefix', 'max_input_chars_per_word', 'vocab'])
  )
    return null;
  const { unk_token: unk, continuing_subword_prefix: prefix, max_input_chars_per_word: maxChars } = model;
  if (typeof unk !== 'string' || typeof prefix !== 'string' || !isId(maxChars) || !isObject(model.vocab)) return null;
  const vocab = new Map<string, number>();
  for (const [token, id] of Object.entries(model.vocab)) {
    if (!isId(id)) return null;
    vocab.set(token, id);
  }
  const unkId = vocab.get(unk);
  if (unkId === undefined) return null;
  const added = addedTokens(t.added_tokens, vocab);
  const template = postProcessor(t.post_processor, vocab);
  if (!added || !template) return null;
  return new WordPieceEncoder(vocab, unkId, prefix, maxChars, normalization, added, template);
}

function bertNormalization(n: unknown): Normalization | null {
  if (
    !isObject(n) ||
    n.type !== 'BertNormalizer' ||
    !sameKeys(n, ['type', 'clean_text', 'handle_chinese_chars', 'strip_accents', 'lowercase'])
  )
    return null;
  // Without clean_text, white space other than ' ' and control characters reach the pre-tokenizer: not implemented.
  if (n.clean_text !== true || typeof n.handle_chinese_chars !== 'boolean' || typeof n.lowercase !== 'boolean') return null;
  if (n.strip_accents !== null && typeof n.strip_accents !== 'boolean') return null;
  // strip_accents: null follows lowercase, as in the Rust normalizer.
  return { handleChineseChars: n.handle_chinese_chars, stripAccents: n.strip_accents ?? n.lowercase, lowercase: n.lowercase };
}

/** Added token content → id, when every added token is one this encoder splits out exactly; else null. */
function addedTokens(list: unknown, vocab: ReadonlyMap<string, number>): Map<string, number> | null {
  if (!Array.isArray(list)) return null;
  const out = new Map<string, number>();
  for (const a of list) {
    if (!isObject(a) || !sameKeys(a, ['id', 'content', 'single_word', 'lstrip', 'rstrip', 'normalized', 'special'])) return null;
    if (a.single_word !== false || a.lstrip !== false || a.rstrip !== false || a.normalized !== false || typeof a.special !== 'boolean')
      return null;
    const content = a.content;
    if (typeof content !== 'string' || content === '' || withoutLoneSurrogates(content) !== content || content.includes('\ufffd'))
      return null;
    if (!isId(a.id) || vocab.get(content) !== a.id || out.has(content)) return null;
    out.set(content, a.id);
  }
  return out;
}

function postProcessor(p: unknown, vocab: ReadonlyMap<string, number>): Template | null {
  if (p === null) return { before: [], beforeTypes: [], sequenceType: 0, after: [], afterTypes: [] };
  if (!isObject(p)) return null;
  if (p.type === 'BertProcessing') {
    if (!sameKeys(p, ['type', 'sep', 'cls'])) return null;
    const cls = tokenAndId(p.cls, vocab);
    const sep = tokenAndId(p.sep, vocab);
    if (cls === null || sep === null) return null;
    return { before: [cls], beforeTypes: [0], sequenceType: 0, after: [sep], afterTypes: [0] };
  }
  if (p.type !== 'TemplateProcessing' || !sameKeys(p, ['type', 'single', 'pair', 'special_tokens'])) return null;
  const specials = p.special_tokens;
  if (!Array.isArray(p.single) || !isObject(specials)) return null;
  const template: Template = { before: [], beforeTypes: [], sequenceType: 0, after: [], afterTypes: [] };
  let sequences = 0;
  for (const piece of p.single) {
    if (!isObject(piece) || Object.keys(piece).length !== 1) return null;
    if (isObject(piece.Sequence)) {
      const s = piece.Sequence;
      if (!sameKeys(s, ['id', 'type_id']) || s.id !== 'A' || !isId(s.type_id)) return null;
      template.sequenceType = s.type_id;
      sequences++;
    } else if (isObject(piece.SpecialToken)) {
      const s = piece.SpecialToken;
      if (!sameKeys(s, ['id', 'type_id']) || typeof s.id !== 'string' || !isId(s.type_id) || !Object.hasOwn(specials, s.id)) return null;
      const special = specials[s.id];
      if (!isObject(special) || !sameKeys(special, ['id', 'ids', 'tokens']) || special.id !== s.id) return null;
      const { ids, tokens } = special;
      if (!Array.isArray(ids) || !Array.isArray(tokens) || ids.length === 0 || ids.length !== tokens.length || !ids.every(isId))
        return null;
      // The native side adds these ids as they are; keep to ones that name their own tokens.
      if (!tokens.every((token, k) => typeof token === 'string' && vocab.get(token) === ids[k])) return null;
      const [into, types] = sequences === 0 ? [template.before, template.beforeTypes] : [template.after, template.afterTypes];
      for (const id of ids as number[]) {
        (into as number[]).push(id);
        (types as number[]).push(s.type_id);
      }
    } else return null;
  }
  return sequences === 1 ? template : null;
}

/**
 * BertProcessing's ["[CLS]", 2]: the id (the native side adds it as it is), when the entry is well formed and names the
 * vocabulary's own token.
 */
function tokenAndId(v: unknown, vocab: ReadonlyMap<string, number>): number | null {
  if (!Array.isArray(v) || v.length !== 2 || typeof v[0] !== 'string' || !isId(v[1]) || vocab.get(v[0]) !== v[1]) return null;
  return v[1];
}

class WordPieceEncoder implements FastWordPieceEncoder {
  private readonly table = classes();
  /** Added tokens, longest first: at the leftmost match the longest wins, as with the native LeftmostLongest automaton. */
  private readonly addedPattern: RegExp | null;
  /** No vocabulary entry is longer (UTF-16 units): the greedy match starts there. */
  private readonly longestToken: number;
  /** Word → its ids; words repeat, so most of a text's words are found here. */
  private readonly cache = new Map<string, readonly number[]>();

  constructor(
    private readonly vocab: ReadonlyMap<string, number>,
    private readonly unkId: number,
    private readonly prefix: string,
    private readonly maxChars: number,
    private readonly norm: Normalization,
    private readonly added: ReadonlyMap<string, number>,
    private readonly template: Template,
  ) {
    const contents = [...added.keys()].sort((a, b) => b.length - a.length);
    this.addedPattern = contents.length ? new RegExp(contents.map(escapeRegExp).join('|'), 'g') : null;
    this.longestToken = [...vocab.keys()].reduce((m, k) => Math.max(m, k.length), 0);
  }

  encode(text: string, maxLength: number): FastEncoding | null {
    const { before, beforeTypes, sequenceType, after, afterTypes } = this.template;
    const limit = maxLength - before.length - after.length;
    // The native side computes maxLength − (special tokens) in unsigned arithmetic: left to it.
    if (!Number.isInteger(maxLength) || maxLength <= 0 || limit < 0) return null;
    const ids: number[] = [];
    // A lone surrogate (U+FFFD on the native side, then removed by clean_text) is removed by the class table alike;
    // no added token holds either, so none matches differently.
    let ok = true;
    const pattern = this.addedPattern;
    if (pattern === null) ok = this.stretch(text, ids, limit);
    else {
      let from = 0;
      pattern.lastIndex = 0;
      for (let m = pattern.exec(text); m !== null && ok && ids.length < limit; m = pattern.exec(text)) {
        ok = this.stretch(text.slice(from, m.index), ids, limit);
        if (ids.length < limit) ids.push(this.added.get(m[0])!);
        from = m.index + m[0].length;
      }
      if (ok && ids.length < limit) ok = this.stretch(text.slice(from), ids, limit);
    }
    if (!ok) return null;
    const n = before.length + ids.length + after.length;
    const out = new Int32Array(n);
    const types = new Int32Array(n);
    out.set(before);
    types.set(beforeTypes);
    out.set(ids, before.length);
    if (sequenceType !== 0) types.fill(sequenceType, before.length, before.length + ids.length);
    out.set(after, before.length + ids.length);
    types.set(afterTypes, before.length + ids.length);
    return { ids: out, typeIds: types };
  }

  /** Normalizes, pre-tokenizes and splits one stretch between added tokens, up to `limit` ids in all; false: native path. */
  private stretch(stretch: string, ids: number[], limit: number): boolean {
    if (stretch.length === 0 || ids.length >= limit) return true;
    const s = this.normalize(stretch);
    if (s === null) return false;
    // BertPreTokenizer: split on white space (only ' ' is left after clean_text), each punctuation character alone.
    const n = s.length;
    let start = -1;
    for (let i = 0; i < n && ids.length < limit;) {
      const c = s.charCodeAt(i);
      const width = c >= 0xd800 && c <= 0xdbff && i + 1 < n ? 2 : 1;
      const cls = c < 0x80 ? ASCII_CLASS[c]! : this.table[width === 2 ? s.codePointAt(i)! : c]!;
      if (cls & (IS_WHITE | IS_PUNCT)) {
        if (start >= 0) this.word(s.slice(start, i), ids, limit);
        start = -1;
        if (cls & IS_PUNCT && ids.length < limit) this.word(s.slice(i, i + width), ids, limit);
      } else if (start < 0) start = i;
      i += width;
    }
    if (start >= 0 && ids.length < limit) this.word(s.slice(start), ids, limit);
    return true;
  }

  /** BERT normalization of a stretch; null where NFD might reorder marks it keeps (see REORDERS). */
  private normalize(stretch: string): string | null {
    const { handleChineseChars, stripAccents, lowercase } = this.norm;
    if (PRINTABLE_ASCII.test(stretch)) return lowercase ? stretch.toLowerCase() : stretch;
    let out = '';
    for (let i = 0; i < stretch.length;) {
      const cp = stretch.codePointAt(i)!;
      const cls = this.table[cp]!;
      i += cp > 0xffff ? 2 : 1;
      if (cls & IS_OTHER) continue;
      if (cls & IS_WHITE) out += ' ';
      else if (cls & IS_CJK && handleChineseChars) out += ` ${this.mapChar(cp, cls, stripAccents, lowercase)} `;
      else if (!(cls & (DECOMPOSES_BIT | IS_MN | LOWERS_BIT | REORDERS_BIT))) out += String.fromCodePoint(cp);
      else {
        if (stripAccents && cls & REORDERS_BIT) return null;
        out += this.mapChar(cp, cls, stripAccents, lowercase);
      }
    }
    return out;
  }

  /** strip_accents (NFD, Mn dropped), then lowercase, of one character, as the Rust normalizer does it character by character. */
  private mapChar(cp: number, cls: number, stripAccents: boolean, lowercase: boolean): string {
    const c = String.fromCodePoint(cp);
    let parts: string;
    if (!stripAccents) parts = c;
    else if (cls & DECOMPOSES_BIT) {
      parts = '';
      for (const d of c.normalize('NFD')) if (!(this.table[d.codePointAt(0)!]! & IS_MN)) parts += d;
    } else parts = cls & IS_MN ? '' : c;
    if (!lowercase) return parts;
    let out = '';
    for (const d of parts) out += this.table[d.codePointAt(0)!]! & LOWERS_BIT ? d.toLowerCase() : d;
    return out;
  }

  /** Appends the WordPiece ids of one pre-tokenized word. */
  private word(w: string, ids: number[], limit: number): void {
    let pieces = this.cache.get(w);
    if (pieces === undefined) {
      pieces = this.wordPiece(w);
      if (this.cache.size >= 100_000) this.cache.clear();
      this.cache.set(w, pieces);
    }
    for (let k = 0; k < pieces.length && ids.length < limit; k++) ids.push(pieces[k]!);
  }

  /** Greedy longest match from the left, continuations prefixed; the whole word is [UNK] if a piece is missing or it is too long. */
  private wordPiece(w: string): readonly number[] {
    if (w.length > this.maxChars && [...w].length > this.maxChars) return [this.unkId];
    const out: number[] = [];
    const n = w.length;
    for (let start = 0; start < n;) {
      let end = Math.min(n, start + this.longestToken);
      // Never end between the halves of a surrogate pair (the Rust side cuts at character boundaries).
      if (end < n && isLowSurrogate(w.charCodeAt(end)) && isHighSurrogate(w.charCodeAt(end - 1))) end--;
      let id: number | undefined;
      while (end > start) {
        const piece = w.slice(start, end);
        id = this.vocab.get(start > 0 ? this.prefix + piece : piece);
        if (id !== undefined) break;
        end -= end - start >= 2 && isLowSurrogate(w.charCodeAt(end - 1)) && isHighSurrogate(w.charCodeAt(end - 2)) ? 2 : 1;
      }
      if (id === undefined) return [this.unkId];
      out.push(id);
      start = end;
    }
    return out;
  }
}

/** ASCII classes: control characters other than \t \n \r removed, white space, punctuation (is_ascii_punctuation). */
const ASCII_CLASS: Uint8Array = (() => {
  const a = new Uint8Array(0x80);
  for (let c = 0; c < 0x80; c++) {
    if (c === 0x09 || c === 0x0a || c === 0x0d || c === 0x20) a[c] = IS_WHITE;
    else if (c < 0x20 || c === 0x7f) a[c] = IS_OTHER;
    else if (/[!-/:-@[-`{-~]/.test(String.fromCharCode(c))) a[c] = IS_PUNCT;
  }
  return a;
})();

function isHighSurrogate(c: number): boolean {
  return c >= 0xd800 && c <= 0xdbff;
}

function isLowSurrogate(c: number): boolean {
  return c >= 0xdc00 && c <= 0xdfff;
}

function isId(v: unknown): v is number {
  return Number.isInteger(v) && (v as number) >= 0 && (v as number) <= 0x7fffffff;
}

function sameKeys(o: Record<string, unknown>, keys: readonly string[]): boolean {
  const own = Object.keys(o);
  return own.length === keys.length && keys.every((k) => Object.hasOwn(o, k));
}

function hasExactly(o: Record<string, unknown>, want: Record<string, unknown>): boolean {
  return sameKeys(o, Object.keys(want)) && Object.entries(want).every(([k, v]) => o[k] === v);
}

function escapeRegExp(s: string): string {
  return s.replace(/[\\^$.*+?()[\]{}|/-]/g, '\\$&');
}
