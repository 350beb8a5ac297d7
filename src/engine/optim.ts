// Optimizers as graph updates (SGD with momentum, AdamW with PyTorch's semantics) and, for the
// touched rows of sparse tables, the same update on the host; learning-rate schedules computed
// on the host, and global-norm gradient clipping.
import type { Graph, Value } from './graph.js';
import * as op from './ops.js';
import type { FloatDType } from './dtype.js';

export type OptimizerConfig =
  | { kind: 'sgd'; lr: number; momentum?: number; nesterov?: boolean; weightDecay?: number; clipNorm?: number }
  | { kind: 'adamw'; lr: number; beta1?: number; beta2?: number; eps?: number; weightDecay?: number; clipNorm?: number };

export interface ScheduleConfig {
  kind: 'constant' | 'linear' | 'cosine';
  /** Steps of linear warm-up from lr/warmup to lr. */
  warmupSteps?: number;
  /** Total steps (linear and cosine decay reach `minLrRatio`·lr there). */
  totalSteps?: number;
  minLrRatio?: number;
}

export function validateOptimizer(o: OptimizerConfig): void {
  const check = (name: string, v: number | undefined, lo: number, hi: number) => {
    if (v !== undefined && !(v >= lo && v <= hi)) throw new RangeError(`optimizer '${name}' must be in [${lo}, ${hi}], got ${v}`);
  };
  check('lr', o.lr, 0, Infinity);
  check('weightDecay', o.weightDecay, 0, Infinity);
  check('clipNorm', o.clipNorm, 0, Infinity);
  if (o.kind === 'sgd') check('momentum', o.momentum, 0, 1);
  else {
    check('beta1', o.beta1, 0, 1);
    check('beta2', o.beta2, 0, 1);
    check('eps', o.eps, 0, 1);
  }
}

/** The per-parameter state slots of an optimizer. */
export function stateSlots(o: OptimizerConfig): string[] {
  if (o.kind === 'adamw') return ['m', 'v'];
  return (o.momentum ?? 0) > 0 ? ['buf'] : [];
}

/** Learning rate for 0-based `step`: warm-up (step+1)/warmup, then the schedule's decay. */
export function learningRate(baseLr: number, schedule: ScheduleConfig | undefined, step: number): number {
  if (!schedule || schedule.kind === 'constant') {
    const w = schedule?.warmupSteps ?? 0;
    return step < w ? (baseLr * (step + 1)) / w : baseLr;
  }
  const warmup = schedule.warmupSteps ?? 0;
  if (step < warmup) return (baseLr * (step + 1)) / warmup;
  const total = schedule.totalSteps;
  if (total === undefined || total <= warmup)
    throw new RangeError(`schedule '${schedule.kind}' needs totalSteps > warmupSteps, got ${total}`);
  const minLr = baseLr * (schedule.minLrRatio ?? 0);
  const progress = Math.min(1, (step - warmup) / (total - warmup));
  const factor = schedule.kind === 'linear' ? 1 - progress : 0.5 * (1 + Math.cos(Math.PI * progress));
  return minLr + (baseLr - minLr) * factor;
}

/** Host-computed scalars an update step reads (names of graph inputs). */
export const HYPER_INPUTS = ['hyper/lr', 'hyper/step_size', 'hyper/eps'] as const;

export type HyperValues = Record<(typeof HYPER_INPUTS)[number], number>;

/**
 * Scalars for 1-based optimizer step `t` at learning rate `lr`. AdamW's bias corrections
 * are folded in: step_size = lr·√bc2/bc1 and eps = ε·√bc2, so that
 * (lr/bc1)·m/(√v/√bc2 + ε) = step_size·m/(√v + eps), one pass fewer per step.
 */
export function hyperValues(o: OptimizerConfig, lr: number, t: number): HyperValues {
  if (o.kind === 'adamw') {
    const bc1 = 1 - (o.beta1 ?? 0.9) ** t;
    const sqrtBc2 = Math.sqrt(1 - (o.beta2 ?? 0.999) ** t);
    return { 'hyper/lr': lr, 'hyper/step_size': (lr * sqrtBc2) / bc1, 'hyper/eps': (o.eps ?? 1e-8) * sqrtBc2 };
  }
  return { 'hyper/lr': lr, 'hyper/step_size': lr, 'hyper/eps': 0 };
}

export function declareHyperInputs(g: Graph, dtype: FloatDType, suffix = ''): Record<keyof HyperValues, Value> {
  return Object.fromEntries(HYPER_INPUTS.map((n) => [n, g.input(`${n}${suffix}`, dtype, [])])) as Record<keyof HyperValues, Value>;
}

/**
 * One update of parameter `p` with gradient `grad` (already clipped). `weightDecay` is the
 * decay of this parameter: a number, or a per-element value (one flat vector holding every
 * parameter, decayed or not). AdamW follows torch.optim.AdamW:
 * p ← p·(1 − lr·wd) − (lr/bc1)·m/(√v/√bc2 + ε). SGD follows torch.optim.SGD:
 * g ← g + wd·p; buf ← μ·buf + g; p ← p − lr·(nesterov ? g + μ·buf : buf).
 */
export function updateParameter(
  o: OptimizerConfig,
  p: Value,
  grad: Value,
  state: Record<string, Value>,
  hyper: Record<keyof HyperValues, Value>,
  weightDecay: number | Value,
): { param: Value; state: Record<string, Value> } {
  const hasDecay = typeof weightDecay !== 'number' || weightDecay > 0;
  if (o.kind === 'adamw') {
    const b1 = o.beta1 ?? 0.9;
    const b2 = o.beta2 ?? 0.999;
    const m = op.add(op.mul(state.m!, b1), op.mul(grad, 1 - b1));
    const v = op.add(op.mul(state.v!, b2), op.mul(op.mul(grad, grad), 1 - b2));
    const denom = op.add(op.sqrt(v), hyper['hyper/eps']);
    const decayed = hasDecay ? op.sub(p, op.mul(p, op.mul(weightDecay, hyper['hyper/lr']))) : p;
    const param = op.sub(decayed, op.mul(op.div(m, denom), hyper['hyper/step_size']));
    return { param, state: { m, v } };
  }
  const momentum = o.momentum ?? 0;
  const g = hasDecay ? op.add(grad, op.mul(p, weightDecay)) : grad;
  if (momentum === 0) return { param: op.sub(p, op.mul(g, hyper['hyper/lr'])), state: {} };
  const buf = op.add(op.mul(state.buf!, momentum), g);
  const direction = o.nesterov ? op.add(g, op.mul(buf, momentum)) : buf;
  return { param: op.sub(p, op.mul(direction, hyper['hyper/lr'])), state: { buf } };
}

/**
 * `updateParameter` on the host, in place, for the rows of a sparse table one batch touched:
 * row `touched[k]` of `table` and of each `state` table takes gradient row `k` of `grad`
 * (already clipped). Rows a batch does not touch keep their values and state (lazy, like
 * torch.optim.SparseAdam). Stored moments are read back before use, so float32 tables round
 * where the graph's float32 tensors do.
 */
export function updateRowsInPlace(
  o: OptimizerConfig,
  table: Float32Array | Float64Array,
  state: Record<string, Float32Array | Float64Array>,
  touched: Int32Array,
  dim: number,
  grad: Float32Array | Float64Array,
  hyper: HyperValues,
  weightDecay: number,
): void {
  const lr = hyper['hyper/lr'];
  if (o.kind === 'adamw') {
    const b1 = o.beta1 ?? 0.9;
    const b2 = o.beta2 ?? 0.999;
    const m = state.m!;
    const v = state.v!;
    const step = hyper['hyper/step_size'];
    const eps = hyper['hyper/eps'];
    const decay = weightDecay * lr;
    for (let k = 0; k < touched.length; k++) {
      const row = touched[k]! * dim;
      for (let j = 0; j < dim; j++) {
        const i = row + j;
        const g = grad[k * dim + j]!;
        m[i] = m[i]! * b1 + g * (1 - b1);
        v[i] = v[i]! * b2 + g * g * (1 - b2);
        const p = table[i]!;
        table[i] = p - p * decay - (m[i]! / (Math.sqrt(v[i]!) + eps)) * step;
      }
    }
    return;
  }
  const momentum = o.momentum ?? 0;
  const buf = state.buf;
  for (let k = 0; k < touched.length; k++) {
    const row = touched[k]! * dim;
    for (let j = 0; j < dim; j++) {
      const i = row + j;
      const g = grad[k * dim + j]! + (weightDecay > 0 ? table[i]! * weightDecay : 0);
      if (momentum === 0 || !buf) {
        table[i] = table[i]! - g * lr;
        continue;
      }
      buf[i] = buf[i]! * momentum + g;
      table[i] = table[i]! - (o.nesterov ? g + buf[i]! * momentum : buf[i]!) * lr;
    }
  }
}

/** Global L2 norm of all gradients, and the gradients scaled to at most `clipNorm`. */
export function clipByGlobalNorm(grads: readonly Value[], clipNorm: number | undefined): { norm: Value; clipped: Value[] } {
  const squares = grads.map((g) => op.sumAll(op.mul(g, g)));
  const norm = op.sqrt(squares.length === 1 ? squares[0]! : op.sumOf(squares));
  if (clipNorm === undefined) return { norm, clipped: [...grads] };
  // torch.nn.utils.clip_grad_norm_: coef = max_norm / (norm + 1e-6), clamped to 1.
  const coef = op.minimum(op.div(clipNorm, op.add(norm, 1e-6)), 1);
  return { norm, clipped: grads.map((g) => op.mul(g, coef)) };
}
