// Rule-based augmentation of one text (Tang et al. 2019, §3.3): words masked, words replaced by
// words of the same kind, and n-gram spans sampled, all drawn from a caller's seeded stream.
import { readFileSync } from 'node:fs';
import { ConfigError, FormatError } from '../data/errors.js';

/** A source of uniform numbers in [0, 1) (engine/rng.ts `Rng` is one). */
export interface UniformSource {
  uniform(): number;
}

/** Words of the same kind as a word: the candidates a replacement is drawn from (never the word itself). */
export interface WordReplacer {
  /** Candidates for `word` as written (the caller retries lowercased); empty when the word has none. */
  replacements(word: string): readonly string[];
}

/** The rules' parameters. */
export interface AugmentRules {
  /** Probability that a word becomes `maskToken`. */
  pMask: number;
  /** Probability that a word is replaced by a word of the same kind (no-op without a replacer or candidates). */
  pReplace: number;
  /** Probability that the whole text becomes a random contiguous span of 1..maxNgram words. */
  pNgram: number;
  maxNgram: number;
  maskToken: string;
  replacer?: WordReplacer;
}

/** A text cut into words and the glue around them, such that `glue[0] + words[0] + glue[1] + … + glue[n]` is the text. */
export interface WordSplit {
  words: string[];
  /** words.length + 1 pieces: what comes before each word (spaces, punctuation, emoji), and the tail. */
  glue: string[];
}

/** What one augmented copy is, and what the rules did to make it. */
export interface AugmentedText {
  text: string;
  /** Words in the source text. */
  words: number;
  masked: number;
  replaced: number;
  /** Replacement was drawn but the word has no candidate (it stayed). */
  replaceMissed: number;
  /** Words in the n-gram span, or null when the whole text was kept. */
  ngram: number | null;
}

/**
 * A word: letters, marks, digits and underscores, with inner apostrophes and hyphens ("don't",
 * "well-made") and an optional leading @ or # (handles, hashtags). Everything else is glue: kept as
 * it is, so the text stays readable and punctuation is never masked.
 */
const WORD = /[@#]?[\p{L}\p{M}\p{N}_]+(?:['’-][\p{L}\p{M}\p{N}_]+)*/gu;

/** Splits a text into words and glue (see {@link WordSplit}). */
export function splitWords(text: string): WordSplit {
  const words: string[] = [];
  const glue: string[] = [];
  let at = 0;
  for (const m of text.matchAll(WORD)) {
    glue.push(text.slice(at, m.index));
    words.push(m[0]);
    at = m.index + m[0].length;
  }
  glue.push(text.slice(at));
  return { words, glue };
}

/** `word` in the case pattern of `like`: UPPER, Capitalized or as it is. */
function matchCase(word: string, like: string): string {
  if (like.length > 1 && like === like.toUpperCase() && like !== like.toLowerCase()) return word.toUpperCase();
  const first = like.charAt(0);
  if (first !== first.toLowerCase()) return word.charAt(0).toUpperCase() + word.slice(1);
  return word;
}

/** The candidates for `word`: as written, else lowercased (then put back in the word's case). */
function candidatesFor(replacer: WordReplacer, word: string): { list: readonly string[]; recase: boolean } {
  const exact = replacer.replacements(word);
  if (exact.length > 0) return { list: exact, recase: false };
  const lower = word.toLowerCase();
  return lower === word ? { list: exact, recase: false } : { list: replacer.replacements(lower), recase: true };
}

/**
 * One augmented copy of `text`. The draws, in order, a fixed number per text so a stream replays
 * exactly and one rule's outcome never shifts another's: two uniforms per word, u and v; u < pMask
 * masks the word, pMask ≤ u < pMask + pReplace replaces it by candidate ⌊v·count⌋; then three for
 * the n-gram rule: g < pNgram cuts the text to n = 1 + ⌊v₁·maxNgram⌋ words (at most all of them)
 * starting at word ⌊v₂·(words − n + 1)⌋. The span keeps the glue between its words, so it is a
 * contiguous piece of the (masked, replaced) text. So the same stream masks the same words with
 * or without a replacer. `text` may come split already ({@link splitWords}), to split it once for many copies.
 */
export function augmentText(text: string | WordSplit, rules: AugmentRules, random: UniformSource): AugmentedText {
  const { words, glue } = typeof text === 'string' ? splitWords(text) : text;
  const out = words.slice();
  let masked = 0;
  let replaced = 0;
  let replaceMissed = 0;
  for (let i = 0; i < out.length; i++) {
    const u = random.uniform();
    const v = random.uniform();
    if (u < rules.pMask) {
      out[i] = rules.maskToken;
      masked += 1;
    } else if (u < rules.pMask + rules.pReplace && rules.replacer) {
      const { list, recase } = candidatesFor(rules.replacer, words[i]!);
      if (list.length === 0) {
        replaceMissed += 1;
        continue;
      }
      const pick = list[Math.floor(v * list.length)]!;
      out[i] = recase ? matchCase(pick, words[i]!) : pick;
      replaced += 1;
    }
  }
  const g = random.uniform();
  const v1 = random.uniform();
  const v2 = random.uniform();
  let first = 0;
  let last = out.length - 1;
  let ngram: number | null = null;
  if (g < rules.pNgram && out.length > 0) {
    ngram = Math.min(1 + Math.floor(v1 * rules.maxNgram), out.length);
    first = Math.floor(v2 * (out.length - ngram + 1));
    last = first + ngram - 1;
  }
  let result = ngram === null ? glue[0]! : '';
  for (let i = first; i <= last; i++) result += (i > first ? glue[i]! : '') + out[i]!;
  if (ngram === null) result += glue[out.length]!;
  return { text: result, words: words.length, masked, replaced, replaceMissed, ngram };
}

/** Interchangeable words from a word list: each word's candidates are the other words of its lines. */
export class WordListReplacer implements WordReplacer {
  private readonly groups = new Map<string, string[]>();
  /** Lines read (groups) and distinct words. */
  readonly lines: number;

  constructor(lines: readonly (readonly string[])[]) {
    const sets = new Map<string, Set<string>>();
    for (const line of lines)
      for (const w of line) {
        const set = sets.get(w) ?? new Set<string>();
        for (const other of line) if (other !== w) set.add(other);
        sets.set(w, set);
      }
    for (const [w, set] of sets) this.groups.set(w, [...set]);
    this.lines = lines.length;
  }

  get words(): number {
    return this.groups.size;
  }

  replacements(word: string): readonly string[] {
    return this.groups.get(word) ?? [];
  }

  /**
   * Reads a word list: one group of interchangeable words a line, separated by spaces; blank lines
   * and lines starting with # are skipped. A line with one word, or a file with no group, is an error.
   */
  static fromFile(file: string): WordListReplacer {
    let content: string;
    try {
      content = readFileSync(file, 'utf8');
    } catch (e) {
      throw new ConfigError(`'--word-list' ${file}: cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
    const lines: string[][] = [];
    content.split(/\r?\n/).forEach((raw, i) => {
      const line = raw.trim();
      if (line === '' || line.startsWith('#')) return;
      const words = [...new Set(line.split(/\s+/))];
      if (words.length < 2)
        throw new FormatError(
          file,
          `line ${i + 1} holds one word (${JSON.stringify(words[0])}); a line lists two or more interchangeable words, space-separated`,
        );
      lines.push(words);
    });
    if (lines.length === 0)
      throw new FormatError(file, 'no word group in the file; write one group of interchangeable words a line, e.g. "good great fine"');
    return new WordListReplacer(lines);
  }
}
