// The contract every distillation method follows (one file per method, one registry line):
// options parsed at the edge, the inputs it needs per batch, its loss graph with named terms,
// and how its head maps to class logits.
import { UserError } from '../errors.js';
import type { Value } from '../engine/graph.js';
import type { InputSpecs } from '../engine/context.js';
import { ort } from '../engine/session.js';
import { batchMean } from '../engine/losses.js';
import type { HostHead, HostLossParts, HostMean } from '../engine/host-losses.js';
import type { Registered } from '../util/registry.js';

/** What the method can see of the cache and the training rows, host side. */
export interface MethodData {
  classes: number;
  /** Teacher logits of the training rows [n, classes] (cache order of `rows`). */
  teacherLogits: Float32Array;
  /** Teacher embeddings of the training rows [n, dim], when the cache has them. */
  embedding: Float32Array | null;
  dim: number;
  /** The teacher's classifier W [classes, sourceDim], b. */
  weight: Float32Array | null;
  bias: Float32Array | null;
  /** PCA projection of the cache, when embeddings were reduced: mean [sourceDim], components [dim, sourceDim]. */
  pca: { mean: Float32Array; components: Float32Array } | null;
  /** Gold labels of the training rows; NO_LABEL (−1) on transfer rows (`kd train --transfer`), whose gold label is never used. */
  labels: Int32Array;
  seed: number;
}

/**
 * A batch average the loss terms use: the plain mean over the batch, or, in a step that mixes
 * labelled and transfer rows, the mean over the rows of one kind (see `kd train --transfer`).
 */
export type RowMean = (perExample: Value) => Value;

/** Per-step scalars computed on the host (schedules, warm-up, the late switch). */
export interface StepSchedule {
  /** Fraction of training done, in [0, 1]. */
  progress: number;
  /** 1-based epoch, fractional within an epoch. */
  epoch: number;
}

export interface LossParts {
  loss: Value;
  /** Named terms (ce, kd, dt, ...) logged per step. */
  terms: Record<string, Value>;
}

/**
 * One option a method reads, declared in its file: kd train's flag, the recipe field, the help,
 * the default and the allowed values all come from here.
 */
export interface MethodOption {
  /** Raw key (recipe field, e.g. `lambdaSchedule`); the flag is its kebab case (`--lambda-schedule`). */
  key: string;
  help: string;
  default: number | string | boolean;
  /** Numbers: the inclusive range (default: any finite number). */
  range?: readonly [number, number];
  integer?: boolean;
  /** Words: the values allowed. */
  choices?: readonly string[];
}

/** The parsed value of one declared option: a choice's words, a boolean, or a number. */
type OptionValue<S extends MethodOption> = S extends { choices: readonly (infer C)[] }
  ? C
  : S['default'] extends boolean
    ? boolean
    : number;

/** Parsed values of a list of declared options, by key. */
export type OptionValues<T extends readonly MethodOption[]> = { [S in T[number] as S['key']]: OptionValue<S> };

/** `--lambda-schedule` for `lambdaSchedule`. */
export function optionFlag(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/** `a, b or c`. */
const orList = (words: readonly string[]) => (words.length > 1 ? `${words.slice(0, -1).join(', ')} or ${words.at(-1)}` : words.join(''));

/** Reads declared options from raw values (CLI strings or recipe values), in declaration order; errors name the option. */
export function readOptions<const T extends readonly MethodOption[]>(specs: T, raw: Record<string, unknown>): OptionValues<T> {
  const out: Record<string, unknown> = {};
  for (const s of specs) {
    const v = raw[s.key];
    if (typeof s.default === 'boolean') {
      out[s.key] = v === undefined ? s.default : v === true || v === 'true';
    } else if (s.choices) {
      const word = String(v ?? s.default);
      if (!s.choices.includes(word)) throw MethodOptionError.forOption(s.key, `must be ${orList(s.choices)}, got ${JSON.stringify(word)}`);
      out[s.key] = word;
    } else {
      const n = num(raw, s.key, s.default as number, s.range ? [s.range[0], s.range[1]] : undefined);
      if (s.integer && !Number.isInteger(n)) throw MethodOptionError.forOption(s.key, `must be an integer, got ${n}`);
      out[s.key] = n;
    }
  }
  return out as OptionValues<T>;
}

/** A method bound to one run's options and data: it closes over them (and LELP over the targets it derived). */
export interface MethodRun {
  /** Feeds for the loss's inputs for training rows `rows` (indices into MethodData). */
  feeds(rows: ArrayLike<number>, schedule: StepSchedule): Record<string, ort.Tensor>;
}

/** One distillation method; exported from `methods/index.ts`, it is in the registry (`order` places it in listings). */
export interface DistillMethod<O> extends Registered {
  name: string;
  summary: string;
  /** The options it reads: parsing, the unused-option check, kd train's flags and recipe checks come from this list. */
  options: readonly MethodOption[];
  /** Validates raw options (CLI strings or recipe values) with readOptions(options, raw); errors name the option. */
  parse(raw: Record<string, unknown>): O;
  /** Fails early when the cache cannot support the method (e.g. LELP without embeddings). */
  check?(o: O, cache: { embeddingMode: string; hasClassifier: boolean }): void;
  /** Student head width: C for most methods, C·S for LELP. */
  headSize(o: O, classes: number): number;
  /** Host-side, once per run: the method bound to its options and the run's data (LELP derives its targets here). */
  create(o: O, data: MethodData): MethodRun;
  /** Batch inputs the loss reads besides labels. */
  inputs(o: O, classes: number): InputSpecs;
  /**
   * The loss graph on labelled rows; `head` is the student's raw output, `labels` int64 [B].
   * Every batch average goes through `mean` (the plain batch mean unless the step mixes in transfer rows).
   */
  loss(o: O, head: Value, labels: Value, inputs: Record<string, Value>, classes: number, mean: RowMean): LossParts;
  /**
   * The loss on transfer rows (`kd train --transfer`: rows learnt from the teacher's targets alone, gold labels unused):
   * the method's teacher term, averaged with `mean` over those rows. A method without it (ce) refuses transfer sets.
   */
  transfer?: {
    /** Why transfer rows fit this method's teacher term, for kd train --help and docs. */
    summary: string;
    /** The weight of the transfer-row loss at this step: 0 before the late switch, else 1. */
    weight(o: O, schedule: StepSchedule): number;
    loss(o: O, head: Value, inputs: Record<string, Value>, classes: number, mean: RowMean): LossParts;
  };
  /** Class logits [B, C] from the head (identity unless the head has subclasses). */
  classLogits(o: O, head: Value, classes: number): Value;
  /**
   * The same losses in closed form on the host (engine/host-losses.ts), for the host trainer's step: each adds
   * `scale`·d(loss)/d(head) into `head.grad`. Without it the host trainer runs the loss graph in ONNX Runtime.
   */
  host?: {
    loss(
      o: O,
      head: HostHead,
      labels: Int32Array,
      inputs: Record<string, Float32Array>,
      classes: number,
      mean: HostMean,
      scale: number,
    ): HostLossParts;
    /** With `transfer`: the transfer rows' loss. */
    transfer?(o: O, head: HostHead, inputs: Record<string, Float32Array>, classes: number, mean: HostMean, scale: number): HostLossParts;
  };
}

export class MethodOptionError extends UserError {
  /** The option at fault (its raw key, e.g. `lambdaSchedule`) and what is wrong with it, when it is one option. */
  readonly option: string | undefined;
  readonly problem: string;
  /** True when the option is one the method does not read at all (rather than a bad value). */
  readonly unread: boolean;
  constructor(message: string, option?: string, problem?: string, unread = false) {
    super(message);
    this.unread = unread;
    this.name = 'ConfigError';
    this.option = option;
    this.problem = problem ?? message;
  }

  /** `'--lambda-schedule' must be ...` on the command line; a recipe names its own field instead. */
  static forOption(key: string, problem: string): MethodOptionError {
    return new MethodOptionError(`'--${optionFlag(key)}' ${problem}`, key, problem);
  }
}

/** Reads a number option, naming it in the error. */
export function num(raw: Record<string, unknown>, key: string, fallback: number, range: [number, number] = [-Infinity, Infinity]): number {
  const v = raw[key];
  const n = v === undefined ? fallback : typeof v === 'number' ? v : Number(v);
  if (!Number.isFinite(n) || n < range[0] || n > range[1])
    throw MethodOptionError.forOption(key, `must be a number in [${range[0]}, ${range[1]}], got ${JSON.stringify(v)}`);
  return n;
}

/** λ schedules: constant, or a linear ramp from 0 over the first `rampFraction` of training. */
export interface LambdaSchedule {
  kind: 'constant' | 'linear';
  rampFraction: number;
}

/** The λ-schedule options (kd): declared once, read by readOptions. */
export const LAMBDA_SCHEDULE_OPTIONS = [
  { key: 'lambdaSchedule', help: 'constant | linear (ramp λ up from 0)', default: 'constant', choices: ['constant', 'linear'] },
  { key: 'lambdaRamp', help: 'fraction of training the linear ramp takes', default: 0.5, range: [1e-9, 1] },
] as const satisfies readonly MethodOption[];

export function parseLambdaSchedule(raw: Record<string, unknown>): LambdaSchedule {
  const v = readOptions(LAMBDA_SCHEDULE_OPTIONS, raw);
  return { kind: v.lambdaSchedule, rampFraction: v.lambdaRamp };
}

/**
 * The distillation weight at `progress`: 0 before the late switch (`kdStart`), then the λ
 * schedule measured from the switch.
 */
export function distillWeight(lambda: number, s: LambdaSchedule, kdStart: number, progress: number): number {
  if (progress < kdStart) return 0;
  if (s.kind === 'constant') return lambda;
  const since = (progress - kdStart) / Math.max(1e-9, 1 - kdStart);
  return lambda * Math.min(1, since / s.rampFraction);
}

export function scalarFeed(value: number): ort.Tensor {
  return new ort.Tensor('float32', Float32Array.of(value), []);
}

/** Rows of a row-major [n, width] array as a [rows.length, width] tensor. */
export function rowsFeed(data: Float32Array, width: number, rows: ArrayLike<number>): ort.Tensor {
  const out = new Float32Array(rows.length * width);
  for (let k = 0; k < rows.length; k++) out.set(data.subarray(rows[k]! * width, (rows[k]! + 1) * width), k * width);
  return new ort.Tensor('float32', out, [rows.length, width]);
}

/** Mean over the batch. */
export const mean = batchMean;
