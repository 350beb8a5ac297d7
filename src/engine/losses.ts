// Loss primitives as small pure graph functions, per example ([B]); callers average.
// Temperatures may be scalars or per-example [B, 1] values that depend on the logits
// (DTKD), and gradients flow through them.
import type { Value } from './graph.js';
import * as op from './ops.js';

/** One-hot [B, C] of int64 labels [B]. */
export function oneHot(labels: Value, classes: number, dtype: Value['dtype']): Value {
  const g = labels.graph;
  const classIds = g.int64s(
    Array.from({ length: classes }, (_, i) => i),
    'class_ids',
  );
  return op.cast(op.equal(op.unsqueeze(labels, [1]), classIds), dtype);
}

/** −log softmax(z)[y] per example. */
export function crossEntropy(logits: Value, labels: Value): Value {
  const classes = logits.shape[logits.rank - 1];
  if (typeof classes !== 'number') throw new RangeError(`crossEntropy: the class dim of ${logits} must be static`);
  return op.neg(op.reduceSum(op.mul(oneHot(labels, classes, logits.dtype), op.logSoftmax(logits, -1)), [-1], false));
}

/** −Σ_c q[c]·log softmax(z)[c] per example, for soft targets q [B, C]. */
export function softCrossEntropy(logits: Value, targets: Value): Value {
  return op.neg(op.reduceSum(op.mul(targets, op.logSoftmax(logits, -1)), [-1], false));
}

/**
 * KL(softmax(zt/τt) ‖ softmax(zs/τs)) summed over classes, per example. `tauTeacher` and
 * `tauStudent` are numbers or values broadcastable to [B, 1].
 */
export function klDivergence(
  teacherLogits: Value,
  studentLogits: Value,
  tauTeacher: Value | number,
  tauStudent: Value | number = tauTeacher,
): Value {
  const logPt = op.logSoftmax(op.div(teacherLogits, tauTeacher), -1);
  const logPs = op.logSoftmax(op.div(studentLogits, tauStudent), -1);
  return op.reduceSum(op.mul(op.exp(logPt), op.sub(logPt, logPs)), [-1], false);
}

/**
 * The temperature-scaled KD term (Hinton et al. 2015): τ²·mean over the batch of
 * KL(softmax(zt/τ) ‖ softmax(zs/τ)), a scalar; τ² keeps its gradients on the scale of CE's.
 * Used by kd and dtkd.
 */
export function distillationTerm(
  teacherLogits: Value,
  studentLogits: Value,
  tau: number,
  mean: (perExample: Value) => Value = batchMean,
): Value {
  return op.mul(mean(klDivergence(teacherLogits, studentLogits, tau)), tau * tau);
}

/** Mean over the batch (a scalar). */
export function batchMean(perExample: Value): Value {
  return op.reduceMean(
    perExample,
    perExample.shape.map((_, i) => i),
    false,
  );
}

/**
 * Σ_i w_i·x_i / max(Σ_i w_i, 1) for per-example values `x` [B] and row weights `w` [B] (0 or 1):
 * the mean over the rows of one kind, 0 when the batch has none of them.
 */
export function maskedMean(perExample: Value, weights: Value): Value {
  const total = op.reduceSum(op.mul(perExample, weights), [0], false);
  return op.div(total, op.maximum(op.reduceSum(weights, [0], false), 1));
}

/** 1 where argmax(logits) equals the label, else 0 (ties count as correct for the first max). */
export function correct(logits: Value, labels: Value): Value {
  const g = logits.graph;
  const pred = g.addNode(
    'ArgMax',
    [logits],
    { axis: { kind: 'int', value: -1 }, keepdims: { kind: 'int', value: 0 }, select_last_index: { kind: 'int', value: 0 } },
    [{ dtype: 'int64', shape: logits.shape.slice(0, -1) }],
  )[0]!;
  return op.cast(op.equal(pred, labels), logits.dtype);
}
