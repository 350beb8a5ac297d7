// The contract every student follows (one module per student, one registry line): its name,
// one record of defaults (architecture and training), and how it is built, fed, batched,
// exported and loaded again for kd predict.
import type { BagModelSpec } from '../engine/bag-trainer.js';
import type { ModelDefinition } from '../engine/context.js';
import type { Example } from '../data/example.js';
import type { Rng } from '../engine/rng.js';
import type { ort } from '../engine/session.js';
import type { TextTokenizer } from '../text/tokenizer.js';
import type { Registered } from '../util/registry.js';

/** An integer architecture setting: its key (recipe field, settings key), its kd train flag, help and minimum. */
export interface StudentOption {
  key: string;
  flag: string;
  help: string;
  min: number;
}

/** Training settings every student has a default for. */
export interface TrainingDefaults {
  epochs: number;
  batchSize: number;
  lr: number;
}

/** The student's settings: its options by key plus the training defaults (a recipe's `students.<name>`). */
export type StudentSettings = Record<string, number> & TrainingDefaults;

/** What resolving the settings gives: the model's config, what the run config records, the vocabulary if any. */
export interface StudentSetup<C> {
  config: C;
  /** Recorded in the run config (a resumed run must match it). */
  recorded: Record<string, unknown>;
  tokenizer: TextTokenizer | null;
  /** True when `tokenizer` was read from the run folder (it need not be written again). */
  tokenizerSaved: boolean;
}

export interface SetupContext {
  train: readonly Example[];
  /** The run's tokenizer folder (<run>/tokenizer). */
  tokenizerDir: string;
  /** True when resuming a run that has started (its own vocabulary must be reused). */
  resuming: boolean;
  /** A folder holding a tokenizer.json to use instead of training one (--tokenizer). */
  tokenizer?: string;
}

/** Features of the splits, and feeds for rows of one of them. */
export interface Featurizer {
  feeds(examples: Example[], rows: ArrayLike<number>): Record<string, ort.Tensor>;
  /**
   * The same feeds as the host trainer (src/engine/bag-trainer.ts) takes them best, where they differ (the n-gram
   * student's int32 ids and mask, which it reads without a conversion; ONNX Runtime's graphs take int64).
   */
  hostFeeds?(examples: Example[], rows: ArrayLike<number>): Record<string, ort.Tensor>;
  /** Per-training-row lengths for length-sorted batches and predict order; empty when order does not matter. */
  lengths: number[];
}

/** Written as kd-student.json next to the model. */
export interface StudentCard {
  format: 'kd-student';
  version: 1;
  kind: string;
  labels: string[];
  /** What a runtime must reproduce before the model (the n-gram student's hashing, see src/text/ngrams.ts). */
  preprocessing?: Record<string, unknown>;
  inputs: string[];
  config: Record<string, unknown>;
  training: Record<string, unknown>;
}

/** One student architecture; exported from `students.ts`, it is in the registry (`order` places it in listings). */
export interface StudentDefinition<C> extends Registered {
  name: string;
  summary: string;
  /** Architecture settings, in the order kd train and recipes list them. */
  options: StudentOption[];
  /** The one place every default lives: kd train's flags and recipes merge onto it. */
  defaults: StudentSettings;
  /** A problem with settings that each pass their range (e.g. width not divisible by heads), or null. */
  check?(settings: StudentSettings): { key: string; problem: string } | null;
  /** The model's config from resolved settings (and for a tokenized student its vocabulary). */
  setup(settings: StudentSettings, ctx: SetupContext): StudentSetup<C>;
  /** Outputs `head` (headSize raw outputs) and `embedding`. */
  model(config: C, headSize: number): ModelDefinition;
  /** The model as the host trainer sees it (src/engine/bag-trainer.ts), or null where that trainer does not apply. */
  hostTrainer?(config: C): BagModelSpec | null;
  /** Features for the splits (computed once), and feeds for rows of them. */
  featurizer(config: C, tokenizer: TextTokenizer | null, splits: Example[][]): Promise<Featurizer>;
  /** An epoch's batches over `lengths.length` (or `n`) training rows. */
  batches(n: number, lengths: number[], batchSize: number, rng: Rng): Int32Array[];
  /** Writes what runs beside onnx/model.onnx (tokenizer, config.json); returns the card's inputs and preprocessing. */
  exportFiles(
    dir: string,
    s: { config: C; labels: string[]; tokenizer: TextTokenizer | null; training: Record<string, unknown> },
  ): Pick<StudentCard, 'inputs' | 'preprocessing'>;
  /** Checks the card's `config` (throws naming the field); `bad(field, want)` makes the error. */
  checkCard?(config: Record<string, unknown>, path: string, reexport: string): void;
  /**
   * True when the exported graph is an encoder the teacher's graph rewrites apply to (src/teacher/optimize.ts):
   * `Student.load` then runs the rewritten graph, checked against the original's logits on probe batches.
   */
  graphRewrites?: boolean;
  /** For kd predict and kd eval: feeds for raw texts of an exported student in `dir`. */
  loader(dir: string, card: StudentCard): (texts: readonly string[]) => Promise<Record<string, ort.Tensor>>;
}
