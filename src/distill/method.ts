// The contract every distillation method follows (one file per method, one registry line):
// options parsed at the edge, the inputs it needs per batch, its loss graph with named terms,
// and how its head maps to class logits.
import { UserError } from '../errors.js';
import type { Value } from '../engine/graph.js';
import type { InputSpecs } from '../engine/context.js';
import { ort } from '../engine/session.js';
import * as op from '../engine/ops.js';

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
  labels: Int32Array;
  seed: number;
}

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

export interface DistillMethod<O> {
  name: string;
  summary: string;
  /** Validates raw options (CLI strings or recipe values); errors name the option. */
  parse(raw: Record<string, unknown>): O;
  /** Fails early when the cache cannot support the method (e.g. LELP without embeddings). */
  check?(o: O, cache: { embeddingMode: string; hasClassifier: boolean }): void;
  /** Student head width: C for most methods, C·S for LELP. */
  headSize(o: O, classes: number): number;
  /** Host-side, once: targets derived from the cache (LELP) or nothing. */
  prepare(o: O, data: MethodData): unknown;
  /** Batch inputs the loss reads besides labels. */
  inputs(o: O, classes: number): InputSpecs;
  /** Feeds for those inputs for training rows `rows` (indices into MethodData). */
  feeds(o: O, prepared: unknown, data: MethodData, rows: ArrayLike<number>, schedule: StepSchedule): Record<string, ort.Tensor>;
  /** The loss graph; `head` is the student's raw output, `labels` int64 [B]. */
  loss(o: O, head: Value, labels: Value, inputs: Record<string, Value>, classes: number): LossParts;
  /** Class logits [B, C] from the head (identity unless the head has subclasses). */
  classLogits(o: O, head: Value, classes: number): Value;
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
    return new MethodOptionError(`'--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}' ${problem}`, key, problem);
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

export function parseLambdaSchedule(raw: Record<string, unknown>): LambdaSchedule {
  const kind = String(raw.lambdaSchedule ?? 'constant');
  if (kind !== 'constant' && kind !== 'linear')
    throw MethodOptionError.forOption('lambdaSchedule', `must be constant or linear, got ${JSON.stringify(kind)}`);
  return { kind, rampFraction: num(raw, 'lambdaRamp', 0.5, [1e-9, 1]) };
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
export const mean = (v: Value): Value =>
  op.reduceMean(
    v,
    v.shape.map((_, i) => i),
    false,
  );
