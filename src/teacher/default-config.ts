// The default teacher's settings: one record per ensemble member and the shared ones, the
// presets (base, large, tiny), their resolution from a preset name or JSON file plus flag overrides,
// and the word-piece bigram hash the graph and the host share.
import { existsSync, readFileSync } from 'node:fs';
import { OptionError } from '../errors.js';
import { lexiconSource, type LexiconName } from './lexicon-data.js';

/** Masked-language-model pretraining of the encoder (see pretrain.ts). */
export interface PretrainConfig {
  epochs: number;
  lr: number;
  batchSize: number;
  maskProbability: number;
  seed: number;
}

export const DEFAULT_PRETRAIN: PretrainConfig = { epochs: 6, lr: 1e-3, batchSize: 64, maskProbability: 0.15, seed: 7 };

/** One ensemble member: a BERT-style encoder, a word-piece n-gram bag, or both. */
export interface MemberConfig {
  /** Encoder layers (0 = no encoder). */
  layers: number;
  hidden: number;
  heads: number;
  intermediate: number;
  /** Width of the unigram + bigram bag (0 = no bag). */
  wideDim: number;
  dropout: number;
  epochs: number;
  lr: number;
  seed: number;
}

export interface DefaultTeacherConfig {
  /** Members trained one after another on the same tokenizer and data, then combined. */
  members: MemberConfig[];
  /**
   * Lexicon members (no training: per-token valence tables over the vocabulary, see lexicon.ts),
   * combined with the trained members; their words are kept whole in the WordPiece vocabulary.
   */
  lexicons: LexiconName[];
  /**
   * Masked-language-model pretraining of one encoder (the first encoder member's shape) on
   * the training texts and any extra text, used to initialize every encoder of that shape.
   */
  pretrain: PretrainConfig | null;
  maxLength: number;
  vocabSize: number;
  /** Hash buckets for word-piece bigrams. */
  bigramBuckets: number;
  batchSize: number;
  warmupRatio: number;
  weightDecay: number;
  /** Dev evaluations without improvement before a member stops. */
  patience: number;
  /** Evaluate on dev every N steps (0 = once per epoch). */
  evalEvery: number;
  seed: number;
  /** Fraction of the training rows held out as dev when no dev files are given. */
  devFraction: number;
}

const deep = (seed: number): MemberConfig => ({
  layers: 2,
  hidden: 128,
  heads: 2,
  intermediate: 512,
  wideDim: 0,
  dropout: 0.2,
  epochs: 3,
  lr: 5e-4,
  seed,
});
const wide = (seed: number): MemberConfig => ({
  layers: 0,
  hidden: 0,
  heads: 0,
  intermediate: 0,
  wideDim: 64,
  dropout: 0.1,
  epochs: 3,
  lr: 2e-3,
  seed,
});

/** What `base` and `large` share: sequence length, vocabulary, bigram buckets and the training schedule. */
const FULL_SIZE = {
  maxLength: 128,
  vocabSize: 16384,
  bigramBuckets: 1 << 18,
  batchSize: 32,
  warmupRatio: 0.06,
  weightDecay: 0.01,
  patience: 4,
  evalEvery: 500,
  seed: 13,
  devFraction: 0.1,
};

export const TEACHER_PRESETS: Record<string, DefaultTeacherConfig> = {
  /**
   * The default: a BERT-style encoder (from one epoch of masked-language pretraining), a word-piece unigram/bigram
   * bag and the three lexicon members, combined as a product of experts with weights tuned on dev (and the recipe's
   * `teacher.tune` sets). The teacher measured in docs/results.md (issue 17): about 25 minutes on 68k rows, 2 cores.
   */
  base: {
    members: [{ ...deep(13), epochs: 2 }, wide(15)],
    lexicons: ['afinn', 'vader', 'wink'],
    pretrain: { ...DEFAULT_PRETRAIN, epochs: 1 },
    ...FULL_SIZE,
  },
  /**
   * The earlier default: two encoders (different seeds, 3 epochs each, the first from 6 pretraining epochs) and the bag;
   * 4–5× base's training time. Tweets-only, without lexicons: 79.15% on the Sentiment140 test split, against base's
   * 78.91% with lexicons (models/teacher-s140.md, docs/results.md).
   */
  large: {
    members: [deep(13), deep(14), wide(15)],
    lexicons: ['afinn', 'vader', 'wink'],
    pretrain: DEFAULT_PRETRAIN,
    ...FULL_SIZE,
  },
  /** For end-to-end tests: trains in seconds. */
  tiny: {
    members: [
      { layers: 1, hidden: 32, heads: 2, intermediate: 64, wideDim: 0, dropout: 0.1, epochs: 2, lr: 2e-3, seed: 13 },
      { layers: 0, hidden: 0, heads: 0, intermediate: 0, wideDim: 16, dropout: 0.1, epochs: 2, lr: 5e-3, seed: 14 },
    ],
    lexicons: [],
    pretrain: { epochs: 1, lr: 2e-3, batchSize: 64, maskProbability: 0.15, seed: 7 },
    maxLength: 48,
    vocabSize: 2048,
    bigramBuckets: 4096,
    batchSize: 32,
    warmupRatio: 0.1,
    weightDecay: 0.01,
    patience: 2,
    evalEvery: 0,
    seed: 13,
    devFraction: 0.1,
  },
};

/** Multiplier of the word-piece bigram hash: bucket = (a·P + b) mod buckets, in the graph and on the host. */
export const BIGRAM_PRIME = 1000003;

export function bigramBucket(a: number, b: number, buckets: number): number {
  return (a * BIGRAM_PRIME + b) % buckets;
}

/** Reads a preset name or a JSON file of overrides. */
export function resolveTeacherConfig(preset: string, overrides: Partial<DefaultTeacherConfig & MemberConfig>): DefaultTeacherConfig {
  let base = TEACHER_PRESETS[preset];
  if (!base) {
    if (existsSync(preset))
      base = { ...TEACHER_PRESETS.base!, ...(JSON.parse(readFileSync(preset, 'utf8')) as Partial<DefaultTeacherConfig>) };
    else
      throw new OptionError(
        `Unknown teacher preset '${preset}'. Known: ${Object.keys(TEACHER_PRESETS).join(', ')} (or a JSON file of settings)`,
      );
  }
  const given = Object.fromEntries(Object.entries(overrides).filter(([, v]) => v !== undefined)) as Partial<
    DefaultTeacherConfig & MemberConfig
  >;
  const memberKeys: (keyof MemberConfig)[] = ['layers', 'hidden', 'heads', 'intermediate', 'wideDim', 'dropout', 'epochs', 'lr'];
  const memberOverrides = Object.fromEntries(memberKeys.filter((k) => k in given).map((k) => [k, given[k]]));
  const sharedOverrides = Object.fromEntries(Object.entries(given).filter(([k]) => !memberKeys.includes(k as keyof MemberConfig)));
  const cfg: DefaultTeacherConfig = { ...base, ...sharedOverrides, members: base.members.map((m) => ({ ...m, ...memberOverrides })) };
  cfg.lexicons ??= [];
  for (const name of cfg.lexicons) lexiconSource(name);
  for (const m of cfg.members) {
    if (m.layers > 0 && m.hidden % m.heads !== 0) throw new OptionError(`'--hidden' ${m.hidden} must be divisible by '--heads' ${m.heads}`);
  }
  return cfg;
}
