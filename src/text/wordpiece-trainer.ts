// WordPiece vocabulary learning: the merge procedure of the `tokenizers` WordPieceTrainer (BPE
// merges of the most frequent adjacent pair, "##" on non-initial pieces), made deterministic.
// The native trainer numbers the "##x" pieces in hash-map order, random per process, and breaks
// ties between equally frequent pairs by those numbers, so two runs on the same texts differed.

export interface WordPieceLearnOptions {
  /** Tokens to learn in all: the alphabet, its "##" continuation pieces, then merges. */
  vocabSize: number;
  /** Prefix of a piece that continues a word (BERT: "##"). */
  continuingSubwordPrefix?: string;
}

/** Ids stay below 2^21 (a vocabulary is far smaller), so a pair (a, b) is the number a·2^21 + b. */
const PAIR_BASE = 2 ** 21;
const pairKey = (a: number, b: number) => a * PAIR_BASE + b;

const byCodeUnits = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/**
 * A max-heap of (pair, count) entries: higher count first, ties to the smaller pair (a, b) in
 * id order, as in the native trainer. Entries go stale when counts drop; the trainer checks
 * each popped entry against the current count.
 */
class PairHeap {
  private keys: number[] = [];
  private counts: number[] = [];

  get size(): number {
    return this.keys.length;
  }

  private before(i: number, j: number): boolean {
    const ci = this.counts[i]!;
    const cj = this.counts[j]!;
    return ci !== cj ? ci > cj : this.keys[i]! < this.keys[j]!;
  }

  private swap(i: number, j: number): void {
    [this.keys[i], this.keys[j]] = [this.keys[j]!, this.keys[i]!];
    [this.counts[i], this.counts[j]] = [this.counts[j]!, this.counts[i]!];
  }

  push(key: number, count: number): void {
    this.keys.push(key);
    this.counts.push(count);
    let i = this.keys.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.before(i, parent)) break;
      this.swap(i, parent);
      i = parent;
    }
  }

  pop(): { key: number; count: number } {
    const top = { key: this.keys[0]!, count: this.counts[0]! };
    const lastKey = this.keys.pop()!;
    const lastCount = this.counts.pop()!;
    if (this.keys.length > 0) {
      this.keys[0] = lastKey;
      this.counts[0] = lastCount;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let best = i;
        if (l < this.keys.length && this.before(l, best)) best = l;
        if (r < this.keys.length && this.before(r, best)) best = r;
        if (best === i) break;
        this.swap(i, best);
        i = best;
      }
    }
    return top;
  }
}

/**
 * Learns a WordPiece vocabulary from word counts and returns its tokens in id order: the
 * alphabet (sorted by code point), the continuation pieces (in order of first use over the
 * words sorted by their UTF-16 code units), then the merges in the order learned. The result
 * depends only on the counts, never on the order they were gathered in.
 *
 * ```ts
 * learnWordPieceVocabulary(new Map([['aab', 2], ['ab', 1]]), { vocabSize: 6 });
 * // → ['a', 'b', '##a', '##b', 'aa', 'aab']: (a, ##a) and (##a, ##b) both occur twice,
 * //   the tie goes to the smaller pair of ids, and then (aa, ##b) is the most frequent pair
 * ```
 */
export function learnWordPieceVocabulary(wordCounts: ReadonlyMap<string, number>, o: WordPieceLearnOptions): string[] {
  const prefix = o.continuingSubwordPrefix ?? '##';
  const words = [...wordCounts.keys()].filter((w) => w.length > 0).sort(byCodeUnits);
  const tokens: string[] = [];
  const idOf = new Map<string, number>();
  const add = (t: string): number => {
    let id = idOf.get(t);
    if (id === undefined) {
      id = tokens.length;
      tokens.push(t);
      idOf.set(t, id);
    }
    return id;
  };
  const alphabet = new Set<string>();
  for (const w of words) for (const c of w) alphabet.add(c);
  for (const c of [...alphabet].sort((a, b) => a.codePointAt(0)! - b.codePointAt(0)!)) add(c);
  const symbols = words.map((w) => Array.from(w, (c, i) => add(i === 0 ? c : prefix + c)));
  const counts = words.map((w) => wordCounts.get(w)!);

  const pairCounts = new Map<number, number>();
  const wordsWith = new Map<number, Set<number>>();
  const grown = new Set<number>();
  const change = (key: number, delta: number, word: number) => {
    pairCounts.set(key, (pairCounts.get(key) ?? 0) + delta);
    if (delta > 0) {
      let set = wordsWith.get(key);
      if (!set) wordsWith.set(key, (set = new Set()));
      set.add(word);
      grown.add(key);
    }
  };
  symbols.forEach((s, w) => {
    for (let i = 0; i + 1 < s.length; i++) change(pairKey(s[i]!, s[i + 1]!), counts[w]!, w);
  });
  const heap = new PairHeap();
  const pushGrown = () => {
    for (const key of grown) {
      const count = pairCounts.get(key)!;
      if (count > 0) heap.push(key, count);
    }
    grown.clear();
  };
  pushGrown();

  while (tokens.length < o.vocabSize && heap.size > 0) {
    const top = heap.pop();
    const current = pairCounts.get(top.key) ?? 0;
    if (top.count !== current) {
      if (current > 0) heap.push(top.key, current);
      continue;
    }
    if (current < 1) break;
    const a = Math.floor(top.key / PAIR_BASE);
    const b = top.key % PAIR_BASE;
    const right = tokens[b]!;
    const merged = add(tokens[a]! + (right.startsWith(prefix) ? right.slice(prefix.length) : right));
    for (const w of wordsWith.get(top.key)!) {
      const s = symbols[w]!;
      const c = counts[w]!;
      // Left to right, non-overlapping, as the native Word::merge.
      for (let i = 0; i + 1 < s.length; i++) {
        if (s[i] !== a || s[i + 1] !== b) continue;
        change(top.key, -c, w);
        if (i > 0) {
          change(pairKey(s[i - 1]!, a), -c, w);
          change(pairKey(s[i - 1]!, merged), c, w);
        }
        if (i + 2 < s.length) {
          change(pairKey(b, s[i + 2]!), -c, w);
          change(pairKey(merged, s[i + 2]!), c, w);
        }
        s.splice(i, 2, merged);
      }
    }
    wordsWith.delete(top.key);
    pushGrown();
  }
  return tokens.slice(0, o.vocabSize);
}
