// The sentiment lexicons npm users rely on, read from their packages: AFINN-165 as `sentiment`
// ships it, VADER (`vader-sentiment`) and wink's AFINN + emoji + emoticon + bigram tables
// (`wink-sentiment`), each with the rules the teacher's graph reproduces (negation, boosters, pooling).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { OptionError } from '../errors.js';

const require = createRequire(import.meta.url);

export const LEXICON_NAMES = ['afinn', 'vader', 'wink'] as const;
export type LexiconName = (typeof LEXICON_NAMES)[number];

/** How a lexicon turns its per-token scores into one score of the text. */
export type LexiconPooling = 'sum' | 'wink' | 'vader';

/** A lexicon as the graph uses it: valences of words, phrases and emoticons, and its rules. */
export interface LexiconSource {
  name: LexiconName;
  /** The npm package it is read from, with its licence. */
  package: string;
  licence: string;
  /** Word, emoticon, emoji or space-separated phrase → valence. */
  entries: Map<string, number>;
  /** Words that negate the valence words after them. */
  negators: Set<string>;
  /** How many tokens back a negator reaches. */
  negationWindow: number;
  /** What a negator multiplies a valence by (AFINN, wink: −1; VADER: −0.74 per negator). */
  negationFactor: number;
  /** Degree adverbs (VADER): added to the valence after them, away from zero. */
  boosters: Map<string, number>;
  pooling: LexiconPooling;
}

/** Negators and degree adverbs of VADER (Hutto & Gilbert 2014), as vader-sentiment 1.1.3 lists them (its bundle does not export them). */
const VADER_NEGATE = `aint arent cannot cant couldnt darent didnt doesnt ain't aren't can't couldn't daren't didn't doesn't dont hadnt hasnt
  havent isnt mightnt mustnt neither don't hadn't hasn't haven't isn't mightn't mustn't neednt needn't never none nope nor not nothing
  nowhere oughtnt shant shouldnt uhuh wasnt werent oughtn't shan't shouldn't uh-uh wasn't weren't without wont wouldnt won't wouldn't
  rarely seldom despite`;
const VADER_BOOST_UP = `absolutely amazingly awfully completely considerably decidedly deeply effing enormously entirely especially
  exceptionally extremely fabulously flipping flippin fricking frickin frigging friggin fully fucking greatly hella highly hugely
  incredibly intensely majorly more most particularly purely quite really remarkably so substantially thoroughly totally tremendously
  uber unbelievably unusually utterly very`;
const VADER_BOOST_DOWN = `almost barely hardly kinda kindof less little marginally occasionally partly scarcely slightly somewhat sorta
  sortof`;
/** VADER's booster increment (B_INCR). */
export const VADER_BOOST = 0.293;
const words = (s: string) => s.split(/\s+/).filter(Boolean);

function packageFile(pkg: string, file: string): string {
  try {
    return require.resolve(`${pkg}/${file}`);
  } catch {
    throw new OptionError(`the lexicon member needs the npm package '${pkg}' (${file}); install it with: npm install ${pkg}`);
  }
}

function readAfinn(): LexiconSource {
  const labels = JSON.parse(readFileSync(packageFile('sentiment', 'languages/en/labels.json'), 'utf8')) as Record<string, number>;
  const negators = JSON.parse(readFileSync(packageFile('sentiment', 'languages/en/negators.json'), 'utf8')) as Record<string, number>;
  // `sentiment` splits on spaces, so its multi-word labels never match: only single words are kept.
  const entries = new Map(Object.entries(labels).filter(([w]) => !w.includes(' ')));
  return {
    name: 'afinn',
    package: 'sentiment',
    licence: 'MIT (AFINN-165 by Finn Årup Nielsen)',
    entries,
    negators: new Set(Object.keys(negators)),
    negationWindow: 1,
    negationFactor: -1,
    boosters: new Map(),
    pooling: 'sum',
  };
}

function readVader(): LexiconSource {
  const entries = new Map<string, number>();
  for (const line of readFileSync(packageFile('vader-sentiment', 'vader_lexicon.txt'), 'utf8').split('\n')) {
    const [token, mean] = line.split('\t');
    if (token && mean !== undefined && !entries.has(token)) entries.set(token, Number(mean));
  }
  const boosters = new Map<string, number>([
    ...words(VADER_BOOST_UP).map((w) => [w, VADER_BOOST] as const),
    ...words(VADER_BOOST_DOWN).map((w) => [w, -VADER_BOOST] as const),
  ]);
  return {
    name: 'vader',
    package: 'vader-sentiment',
    licence: 'Apache-2.0 (VADER lexicon by C.J. Hutto, MIT)',
    entries,
    negators: new Set(words(VADER_NEGATE)),
    negationWindow: 3,
    negationFactor: -0.74,
    boosters,
    pooling: 'vader',
  };
}

function readWink(): LexiconSource {
  const table = (file: string) => require(packageFile('wink-sentiment', file)) as Record<string, number>;
  const entries = new Map<string, number>([
    ...Object.entries(table('src/afinn-en-165.js')),
    ...Object.entries(table('src/emojis.js')),
    ...Object.entries(table('src/emoticons.js')),
  ]);
  const bigrams = require(packageFile('wink-sentiment', 'src/afinn-en-165-2grams.js')) as Record<string, Record<string, number>>;
  for (const [a, next] of Object.entries(bigrams)) for (const [b, v] of Object.entries(next)) entries.set(`${a} ${b}`, v);
  const negations = require(packageFile('wink-sentiment', 'src/negations.js')) as Record<string, boolean>;
  return {
    name: 'wink',
    package: 'wink-sentiment',
    licence: 'MIT (AFINN-165 by Finn Årup Nielsen; Emoji Sentiment Ranking 1.0, CC BY-SA 4.0)',
    entries,
    negators: new Set(Object.keys(negations)),
    negationWindow: 2,
    negationFactor: -1,
    boosters: new Map(),
    pooling: 'wink',
  };
}

const cache = new Map<LexiconName, LexiconSource>();

/** The lexicon `name`, read from its npm package (once per process). */
export function lexiconSource(name: string): LexiconSource {
  if (!(LEXICON_NAMES as readonly string[]).includes(name))
    throw new OptionError(`Unknown lexicon '${name}'. Known: ${LEXICON_NAMES.join(', ')}`);
  const key = name as LexiconName;
  let src = cache.get(key);
  if (!src) cache.set(key, (src = key === 'afinn' ? readAfinn() : key === 'vader' ? readVader() : readWink()));
  return src;
}

/** `afinn,vader` → the names (checked); `none` → []. */
export function parseLexiconList(list: string): LexiconName[] {
  if (list.trim() === 'none') return [];
  const names = list.split(',').map((s) => s.trim());
  for (const name of names)
    if (!(LEXICON_NAMES as readonly string[]).includes(name))
      throw new OptionError(`--lexicons: unknown lexicon '${name}'. Known: ${LEXICON_NAMES.join(', ')} (or none)`);
  return names as LexiconName[];
}

/** Every single word of the lexicons (entries, negators, boosters): what the teacher's vocabulary keeps whole. */
export function lexiconWords(names: readonly string[]): string[] {
  const out = new Set<string>();
  for (const name of names) {
    const src = lexiconSource(name);
    for (const w of [...src.entries.keys(), ...src.negators, ...src.boosters.keys()]) if (!/\s/.test(w)) out.add(w);
  }
  return [...out].sort();
}
