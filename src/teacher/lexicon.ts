// Lexicon members of the default teacher: a lexicon's valences as per-token tables over the
// teacher's vocabulary, with its negation, booster and phrase rules over neighbouring ids, as
// an ONNX subgraph on input_ids (lexiconScoreGraph) and as plain TypeScript (lexiconScore).
import type { Graph, Value } from '../engine/graph.js';
import * as op from '../engine/ops.js';
import type { TextTokenizer } from '../text/tokenizer.js';
import { lexiconSource, type LexiconName, type LexiconPooling } from './lexicon-data.js';

/** VADER's normalization constant: compound = x / sqrt(x² + α). */
export const VADER_ALPHA = 15;
/** wink's assumed sentence length: a text of W > 15 words has its mean valence divided by sqrt(W / 15). */
export const WINK_SENTENCE_WORDS = 15;
/** How far back VADER's booster words reach, and their weight at distance 1, 2, 3. */
const VADER_DISTANCE = [1, 0.95, 0.9];
/** Positions a shifted view can look ahead or back (VADER reaches 3 back; phrases 2 ahead). */
const REACH = 3;

/** Phrases of 2–3 token ids in an open-addressing table: key = ids packed base V, probed linearly from key mod size. */
export interface PhraseTable {
  /** Packed key per slot (−1 = empty). */
  keys: BigInt64Array;
  /** Valence added at the phrase's first position, per slot. */
  values: Float32Array;
  /** Longest probe sequence any key needs (lookups probe this many slots). */
  probes: number;
  /** The same phrases as a map (what the reference scorer reads). */
  byKey: Map<number, number>;
}

/** One lexicon compiled against one vocabulary: what the graph stores and the reference reads. */
export interface LexiconTables {
  name: LexiconName;
  vocabSize: number;
  /** Valence of single-token entries (scored only where the next token does not continue the word). */
  valence: Float32Array;
  negator: Float32Array;
  booster: Float32Array;
  /** 1 for tokens that are entries of the lexicon (VADER's boosters and negators act only through other tokens). */
  inLexicon: Float32Array;
  /** 1 for "##" pieces. */
  continuation: Float32Array;
  /** 1 for tokens that start a word (letters, digits, symbols that are not punctuation): wink's word count. */
  word: Float32Array;
  exclamation: Float32Array;
  question: Float32Array;
  /** 1 for "but" (VADER halves what comes before the first one and adds half to what follows). */
  but: Float32Array;
  phrases: PhraseTable;
  negationWindow: number;
  negationFactor: number;
  pooling: LexiconPooling;
  /** How many entries became one token, a phrase of 2–3 tokens, or were dropped (longer, or with [UNK]). */
  coverage: { single: number; phrase: number; dropped: number };
}

const packKey = (ids: readonly number[], V: number) => ids.reduce((k, id) => k * V + id, 0);

function phraseTable(phrases: Map<number, number>): PhraseTable {
  // A prime at least 4× the phrases: keys a·V + b of one first token are consecutive, so a prime size and a low load keep probes short.
  const isPrime = (m: number) => {
    for (let d = 2; d * d <= m; d++) if (m % d === 0) return false;
    return m > 1;
  };
  let size = 4 * phrases.size + 1;
  while (!isPrime(size)) size++;
  const keys = new BigInt64Array(size).fill(-1n);
  const values = new Float32Array(size);
  let probes = phrases.size ? 1 : 0;
  for (const [key, value] of phrases) {
    let slot = key % size;
    let p = 1;
    while (keys[slot] !== -1n) ((slot = (slot + 1) % size), p++);
    keys[slot] = BigInt(key);
    values[slot] = value;
    probes = Math.max(probes, p);
  }
  return { keys, values, probes, byKey: new Map([...phrases].map(([k, v]) => [k, Math.fround(v)])) };
}

/** Compiles lexicon `name` against the tokenizer's vocabulary. */
export async function lexiconTables(name: LexiconName, tokenizer: TextTokenizer): Promise<LexiconTables> {
  const src = lexiconSource(name);
  const tokens = tokenizer.tokens();
  const V = tokens.length;
  const special = (t: string) => /^\[[A-Z]+\]$/.test(t);
  const flags = (test: (t: string) => boolean) => Float32Array.from(tokens, (t) => (t !== undefined && !special(t) && test(t) ? 1 : 0));
  const continuation = flags((t) => t.startsWith('##'));
  const word = flags((t) => !t.startsWith('##') && /^[\p{L}\p{N}\p{S}]/u.test(t));
  const exclamation = flags((t) => t === '!');
  const question = flags((t) => t === '?');
  const but = flags((t) => t === 'but');
  const unk = tokenizer.tokenId('[UNK]');
  const strings = [...src.entries.keys(), ...src.negators, ...src.boosters.keys()];
  const encoded = await tokenizer.encode(strings);
  const idsOf = new Map(strings.map((s, i) => [s, Array.from(encoded[i]!.ids.subarray(1, encoded[i]!.ids.length - 1))]));
  const single = (s: string) => {
    const ids = idsOf.get(s)!;
    return ids.length === 1 && ids[0] !== unk ? ids[0]! : -1;
  };

  const valence = new Float32Array(V);
  const inLexicon = new Float32Array(V);
  const coverage = { single: 0, phrase: 0, dropped: 0 };
  const multi: [number[], number][] = [];
  for (const [entry, value] of src.entries) {
    const ids = idsOf.get(entry)!;
    if (ids.length === 1 && ids[0] !== unk) {
      coverage.single += 1;
      if (inLexicon[ids[0]!]) continue; // two spellings of one token: the first entry wins
      valence[ids[0]!] = value;
      inLexicon[ids[0]!] = 1;
    } else if (ids.length >= 2 && ids.length <= 3 && !ids.includes(unk)) multi.push([ids, value]);
    else coverage.dropped += 1;
  }
  // A phrase adds its valence less what its tokens score alone (a token followed by a "##" piece scores nothing).
  const phrases = new Map<number, number>();
  for (const [ids, value] of multi) {
    const key = packKey(ids, V);
    coverage.phrase += 1;
    if (phrases.has(key)) continue;
    const alone = ids.reduce((s, id, j) => s + (j + 1 < ids.length && continuation[ids[j + 1]!] ? 0 : valence[id]!), 0);
    phrases.set(key, value - alone);
  }
  const negator = new Float32Array(V);
  for (const w of src.negators) {
    const id = single(w);
    if (id >= 0) negator[id] = 1;
  }
  // "can't", "isn't", "n't": the BERT pre-tokenizer splits them into can ' t, so the "t" after an apostrophe negates.
  if ([...src.negators].some((w) => w.includes("n't")) && tokens.includes('t')) negator[tokenizer.tokenId('t')] = 1;
  const booster = new Float32Array(V);
  for (const [w, b] of src.boosters) {
    const id = single(w);
    if (id >= 0) booster[id] = b;
  }
  return {
    name,
    vocabSize: V,
    valence,
    negator,
    booster,
    inLexicon,
    continuation,
    word,
    exclamation,
    question,
    but,
    phrases: phraseTable(phrases),
    negationWindow: src.negationWindow,
    negationFactor: src.negationFactor,
    pooling: src.pooling,
    coverage,
  };
}

/** VADER's emphasis from '!' (0.292 each, up to 4) and '?' (0.18 each for 2–3, 0.96 for more). */
function vaderEmphasis(exclamations: number, questions: number): number {
  return 0.292 * Math.min(exclamations, 4) + (questions > 1 ? (questions <= 3 ? 0.18 * questions : 0.96) : 0);
}

/**
 * The lexicon member's score of one token sequence (special tokens included, no padding):
 * the plain-TypeScript reference of {@link lexiconScoreGraph}.
 *
 * Per position k: r = valence (if the next token is not a "##" piece) + the valence of a phrase
 * starting at k; then negation (AFINN: a negator just before flips r; wink: one of the two
 * before; VADER: each of the three before that is not itself a lexicon entry multiplies by
 * −0.74, and boosters there add ±0.293·(1, 0.95, 0.9) away from zero; before the first "but"
 * ×0.5, after it ×1.5). Pooled as the lexicon
 * does: AFINN the sum; wink the mean over scored tokens divided by sqrt(max(words/15, 1));
 * VADER x/sqrt(x² + 15) of the sum plus its '!'/'?' emphasis.
 */
export function lexiconScore(t: LexiconTables, ids: ArrayLike<number>): number {
  const T = ids.length;
  const at = (table: Float32Array, k: number) => (k < 0 || k >= T ? 0 : table[ids[k]!]!);
  const id = (k: number) => (k < T ? ids[k]! : 0);
  let sum = 0;
  let scored = 0;
  let words = 0;
  let exclamations = 0;
  let questions = 0;
  let firstBut = -1;
  for (let k = 0; k < T && firstBut < 0; k++) if (t.but[ids[k]!]) firstBut = k;
  for (let k = 0; k < T; k++) {
    const key2 = id(k) * t.vocabSize + id(k + 1);
    const r0 =
      at(t.valence, k) * (1 - at(t.continuation, k + 1)) +
      (t.phrases.byKey.get(key2) ?? 0) +
      (t.phrases.byKey.get(key2 * t.vocabSize + id(k + 2)) ?? 0);
    let r = r0;
    if (t.pooling === 'vader') {
      for (let j = 1; j <= REACH; j++) {
        const open = 1 - at(t.inLexicon, k - j);
        r += open * at(t.booster, k - j) * (r < 0 ? -1 : 1) * VADER_DISTANCE[j - 1]!;
        r *= 1 + open * at(t.negator, k - j) * (t.negationFactor - 1);
      }
      if (r0 === 0) r = 0;
      if (firstBut >= 0) r *= k < firstBut ? 0.5 : k > firstBut ? 1.5 : 1;
    } else {
      let negated = 0;
      for (let j = 1; j <= t.negationWindow; j++) negated = Math.max(negated, at(t.negator, k - j));
      r *= 1 + negated * (t.negationFactor - 1);
    }
    sum += r;
    scored += r !== 0 ? 1 : 0;
    words += at(t.word, k);
    exclamations += at(t.exclamation, k);
    questions += at(t.question, k);
  }
  if (t.pooling === 'sum') return sum;
  if (t.pooling === 'wink') return sum / Math.max(scored, 1) / Math.sqrt(Math.max(words / WINK_SENTENCE_WORDS, 1));
  const x = sum + Math.sign(sum) * vaderEmphasis(exclamations, questions);
  return x / Math.sqrt(x * x + VADER_ALPHA);
}

/** `x` [B, T] moved by `d` positions (value at t + d), zeros shifted in; |d| ≤ REACH. */
function shifted(x: Value, d: number): Value {
  const zero = op.mul(op.slice(x, [0], [1], [1]), 0);
  const pad = Array.from({ length: REACH }, () => zero);
  const padded = op.concat([...pad, x, ...pad], 1);
  // Positions REACH + d .. REACH + d + T of the padded row; the end depends on T, so it is computed in the graph.
  const g = x.graph;
  const end = op.add(op.slice(op.shapeOf(x), [1], [2], [0]), REACH + d);
  return g.addNode('Slice', [padded, g.int64s([REACH + d], 'starts'), end, g.int64s([1], 'axes')], {}, [
    { dtype: x.dtype, shape: [...x.shape] },
  ])[0]!;
}

/** The valence of phrases whose packed key is `key` [B, T] (0 where none): linear probing over the slots. */
function phraseLookup(g: Graph, t: LexiconTables, key: Value): Value {
  const size = t.phrases.keys.length;
  const keys = g.constant(t.phrases.keys, 'int64', [size], `lexicon.${t.name}.phrase_keys`);
  const values = g.constant(t.phrases.values, 'float32', [size], `lexicon.${t.name}.phrase_values`);
  const mod = (x: Value) =>
    g.addNode('Mod', [x, g.scalar(size, 'int64')], { fmod: { kind: 'int', value: 0 } }, [{ dtype: x.dtype, shape: x.shape }])[0]!;
  const home = mod(key);
  const parts: Value[] = [];
  for (let p = 0; p < t.phrases.probes; p++) {
    const slot = p === 0 ? home : mod(op.add(home, p));
    parts.push(op.where(op.equal(op.gather(keys, slot), key), op.gather(values, slot), 0));
  }
  return op.sumOf(parts);
}

/**
 * The lexicon member's score [B] of `input_ids` [B, T] under `attention_mask`, as ONNX ops
 * (Gather on per-token tables, shifted views for the neighbouring ids, a hashed phrase table,
 * masked sums): equal to {@link lexiconScore} on each unpadded row.
 */
export function lexiconScoreGraph(g: Graph, t: LexiconTables, ids: Value, attentionMask: Value): Value {
  const table = (a: Float32Array, hint: string) => g.constant(a, 'float32', [a.length], `lexicon.${t.name}.${hint}`);
  const look = (a: Float32Array, hint: string) => op.gather(table(a, hint), ids);
  const mask = op.cast(attentionMask, 'float32');
  const cont = look(t.continuation, 'continuation');
  let r0 = op.mul(look(t.valence, 'valence'), op.sub(1, shifted(cont, 1)));
  if (t.phrases.probes > 0) {
    const key2 = op.add(op.mul(ids, t.vocabSize), shifted(ids, 1));
    const key3 = op.add(op.mul(key2, t.vocabSize), shifted(ids, 2));
    r0 = op.add(r0, op.add(phraseLookup(g, t, key2), phraseLookup(g, t, key3)));
  }
  let r = r0;
  const negator = look(t.negator, 'negator');
  if (t.pooling === 'vader') {
    const inLex = look(t.inLexicon, 'in_lexicon');
    const booster = look(t.booster, 'booster');
    for (let j = 1; j <= REACH; j++) {
      const open = op.sub(1, shifted(inLex, -j));
      const away = op.sub(1, op.mul(op.cast(op.less(r, 0), 'float32'), 2));
      r = op.add(r, op.mul(op.mul(open, shifted(booster, -j)), op.mul(away, VADER_DISTANCE[j - 1]!)));
      r = op.mul(r, op.add(1, op.mul(op.mul(open, shifted(negator, -j)), t.negationFactor - 1)));
    }
    r = op.where(op.equal(r0, 0), 0, r);
    // VADER's "but" rule: butsSoFar counts the "but"s up to and including each position (CumSum).
    const isBut = op.mul(look(t.but, 'but'), mask);
    const butsSoFar = g.addNode('CumSum', [isBut, g.scalar(1, 'int64')], {}, [{ dtype: 'float32', shape: [...isBut.shape] }])[0]!;
    const firstBut = op.mul(isBut, op.cast(op.equal(butsSoFar, 1), 'float32'));
    const afterFirst = op.where(op.equal(butsSoFar, 0), 0.5, op.sub(1.5, op.mul(firstBut, 0.5)));
    const anyBut = op.greater(op.reduceSum(isBut, [1], true), 0);
    r = op.mul(r, op.where(anyBut, afterFirst, 1));
  } else {
    let negated = shifted(negator, -1);
    for (let j = 2; j <= t.negationWindow; j++) negated = op.maximum(negated, shifted(negator, -j));
    r = op.mul(r, op.add(1, op.mul(negated, t.negationFactor - 1)));
  }
  const total = (x: Value) => op.reduceSum(op.mul(x, mask), [1], false);
  const sum = total(r);
  if (t.pooling === 'sum') return sum;
  if (t.pooling === 'wink') {
    const scored = op.maximum(total(op.cast(op.not(op.equal(r, 0)), 'float32')), 1);
    const words = total(look(t.word, 'word'));
    return op.div(op.div(sum, scored), op.sqrt(op.maximum(op.div(words, WINK_SENTENCE_WORDS), 1)));
  }
  const e = op.minimum(total(look(t.exclamation, 'exclamation')), 4);
  const q = total(look(t.question, 'question'));
  const qAmp = op.where(op.greater(q, 3), 0.96, op.where(op.greater(q, 1), op.mul(q, 0.18), 0));
  const x = op.add(sum, op.mul(op.sign(sum), op.add(op.mul(e, 0.292), qAmp)));
  return op.div(x, op.sqrt(op.add(op.mul(x, x), VADER_ALPHA)));
}
