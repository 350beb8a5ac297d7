// Writes src/text/wordpiece-unicode.ts: the character classes of the Rust `tokenizers` BERT normalizer and
// pre-tokenizer, read off the installed native binding one code point at a time (its unicode_categories tables
// are older than JavaScript's Unicode, so \p{...} would not match them). Usage, after `npx tsc -p .`:
// node dist/scripts/wordpiece-unicode.js > src/text/wordpiece-unicode.ts && npx prettier --write src/text/wordpiece-unicode.ts
import { readFileSync } from 'node:fs';
import tokenizers from 'tokenizers';
import { packageRoot } from '../src/util/versions.js';

const { bertNormalizer, bertPreTokenizer, nfdNormalizer } = tokenizers;

/** Every Unicode scalar value (no surrogates). */
const SCALARS: number[] = [];
for (let cp = 0; cp <= 0x10ffff; cp++) if (cp < 0xd800 || cp > 0xdfff) SCALARS.push(cp);

/**
 * What `run` makes of each code point alone: the code points joined by `sep` in chunks, the output split on it
 * (`sep` must come out unchanged and no code point may produce it); `sep` itself is probed with `otherSep`.
 */
function eachAlone(run: (s: string) => string, sep: string, otherSep: string): Map<number, string> {
  const out = new Map<number, string>();
  const probe = (cps: number[], by: string) => {
    for (let from = 0; from < cps.length; from += 0x8000) {
      const part = cps.slice(from, from + 0x8000);
      const pieces = run(by + part.map((cp) => String.fromCodePoint(cp)).join(by) + by).split(by);
      if (pieces.length !== part.length + 2)
        throw new Error(`separator ${JSON.stringify(by)} did not survive at U+${part[0]!.toString(16)}`);
      part.forEach((cp, i) => out.set(cp, pieces[i + 1]!));
    }
  };
  const sepCp = sep.codePointAt(0)!;
  probe(
    SCALARS.filter((cp) => cp !== sepCp),
    sep,
  );
  probe([sepCp], otherSep);
  return out;
}

const clean = eachAlone(
  (s) => bertNormalizer({ cleanText: true, handleChineseChars: false, stripAccents: false, lowercase: false }).normalizeString(s),
  'x',
  'q',
);
const nfd = eachAlone((s) => nfdNormalizer().normalizeString(s), '\n', '\t');
const strip = eachAlone(
  (s) => bertNormalizer({ cleanText: false, handleChineseChars: false, stripAccents: true, lowercase: false }).normalizeString(s),
  '\n',
  '\t',
);
const lower = eachAlone(
  (s) => bertNormalizer({ cleanText: false, handleChineseChars: false, stripAccents: false, lowercase: true }).normalizeString(s),
  '\n',
  '\t',
);
const preTokenizer = bertPreTokenizer();
const punct = new Set<number>();
for (const by of ['x', 'q']) {
  const cps = SCALARS.filter((cp) => cp !== by.codePointAt(0));
  for (let from = 0; from < cps.length; from += 0x8000) {
    const text =
      by +
      cps
        .slice(from, from + 0x8000)
        .map((cp) => String.fromCodePoint(cp))
        .join(by) +
      by;
    // A punctuation character is isolated: a piece of its own; every other character stays joined to `by`.
    for (const [piece] of preTokenizer.preTokenizeString(text)) if (!piece.includes(by)) punct.add(piece.codePointAt(0)!);
  }
}

const classes: Record<string, number[]> = {
  OTHER: [],
  WHITE: [],
  PUNCT: [...punct].sort((a, b) => a - b),
  DECOMPOSES: [],
  MN: [],
  LOWERS: [],
};
for (const cp of SCALARS) {
  const c = String.fromCodePoint(cp);
  const cleaned = clean.get(cp)!;
  if (cleaned === '') classes.OTHER!.push(cp);
  else if (cleaned === ' ') classes.WHITE!.push(cp);
  else if (cleaned !== c) throw new Error(`clean_text maps U+${cp.toString(16)} to ${JSON.stringify(cleaned)}`);
  if (nfd.get(cp) !== c) classes.DECOMPOSES!.push(cp);
  else if (strip.get(cp) === '') classes.MN!.push(cp);
  if (lower.get(cp) !== c) classes.LOWERS!.push(cp);
}
const mn = new Set(classes.MN);
// The encoder maps a character with JavaScript's own tables where these say the Rust side maps it: check they agree.
for (const cp of classes.DECOMPOSES!) {
  const c = String.fromCodePoint(cp);
  if (c.normalize('NFD') !== nfd.get(cp)) throw new Error(`NFD of U+${cp.toString(16)} differs from JavaScript's`);
  const stripped = [...c.normalize('NFD')].filter((d) => !mn.has(d.codePointAt(0)!)).join('');
  if (stripped !== strip.get(cp)) throw new Error(`strip_accents of U+${cp.toString(16)} is not its NFD less Mn`);
}
for (const cp of classes.LOWERS!)
  if (String.fromCodePoint(cp).toLowerCase() !== lower.get(cp))
    throw new Error(`lowercase of U+${cp.toString(16)} differs from JavaScript's`);
/** Characters whose NFD holds a mark with a combining class that strip_accents keeps (NFD may reorder it). */
classes.REORDERS = SCALARS.filter((cp) => {
  const c = String.fromCodePoint(cp);
  const parts = nfd.get(cp) !== c ? [...c.normalize('NFD')] : [c];
  // A nonzero combining class below 240 moves before U+0345 (class 240) in NFD; 240 is U+0345 alone, an Mn.
  return parts.some((d) => !mn.has(d.codePointAt(0)!) && `a\u0345${d}`.normalize('NFD') !== `a\u0345${d}`);
});

/** A long string as quoted pieces of at most 110 characters joined by `+`, one per line, cut after a comma. */
function wrapped(text: string): string[] {
  const pieces: string[] = [];
  let rest = text;
  while (rest.length > 110) {
    const cut = rest.lastIndexOf(',', 110) + 1;
    pieces.push(rest.slice(0, cut));
    rest = rest.slice(cut);
  }
  pieces.push(rest);
  return pieces.map((p, i) => `  '${p}'${i === pieces.length - 1 ? ';' : ' +'}`);
}

/** Sorted code points → runs, written as base-36 "gap:length" pairs (gap from the end of the previous run). */
function encodeRuns(cps: readonly number[]): string {
  const runs: string[] = [];
  let end = 0;
  for (let i = 0; i < cps.length;) {
    let j = i;
    while (j + 1 < cps.length && cps[j + 1] === cps[j]! + 1) j++;
    runs.push(`${(cps[i]! - end).toString(36)}:${(j - i + 1).toString(36)}`);
    end = cps[j]! + 1;
    i = j + 1;
  }
  return runs.join(',');
}

const version = (JSON.parse(readFileSync(`${packageRoot}/node_modules/tokenizers/package.json`, 'utf8')) as { version: string }).version;
const doc: Record<string, string> = {
  OTHER: "clean_text removes these (unicode_categories' is_other: Cc, Cf, Co of its tables; \\t \\n \\r are white space)",
  WHITE: "clean_text turns these into ' ' (char::is_whitespace and not removed)",
  PUNCT: 'BertPreTokenizer isolates these (is_ascii_punctuation or unicode_categories is_punctuation)',
  DECOMPOSES: 'NFD (unicode-normalization-alignments) changes these; JavaScript decomposes them alike',
  MN: 'strip_accents drops these after NFD (is_mark_nonspacing; those that NFD leaves alone)',
  LOWERS: "char::to_lowercase changes these; JavaScript's toLowerCase of the one character agrees",
  REORDERS: 'NFD may reorder a mark of these that strip_accents keeps: texts with one take the native path when stripping accents',
};
const lines = [
  `// Generated by scripts/wordpiece-unicode.ts from the tokenizers ${version} native binding ` +
    `(Node ${process.version}, Unicode ${process.versions.unicode}).`,
  '// Do not edit: run the script again. Each table is sorted runs of code points as base-36 "gap:length" pairs.',
  '',
  ...Object.entries(classes).flatMap(([name, cps]) => {
    const runs = encodeRuns(cps);
    const line = `export const ${name} = '${runs}';`;
    return [`/** ${doc[name]}. */`, ...(line.length <= 140 ? [line] : [`export const ${name} =`, ...wrapped(runs)]), ''];
  }),
];
process.stdout.write(lines.join('\n'));
