// DTKD (Wei & Bai 2024): per-sample temperatures from the sharpness of each model, taken as
// the max logit: x = max(zt), y = max(zs), T_t = 2τ·x/(x+y), T_s = 2τ·y/(x+y), so
// T_t + T_s = 2τ and x/T_t = y/T_s. L_dt = mean[KL(zt/T_t ‖ zs/T_s)·T_t·T_s];
// loss = CE + w·(α·L_dt + β·τ²·KL(zt/τ ‖ zs/τ)), w = min(epoch/warm-up, 1). The temperatures
// are not detached (as in the reference code).
//
// Deviation from the reference (documented): when x + y ≤ ε — common with 2-class heads —
// the rule gives negative or infinite temperatures, so both fall back to τ; and every
// temperature is clamped to [τ/4, 4τ] (`--dtkd-guard clamp`, the default; `fallback` only
// does the first). On transfer rows (no gold label used): α·L_dt + β·τ²·KL, after the late switch.
import type { Value } from '../../engine/graph.js';
import type { DistillMethod, MethodOption } from '../method.js';
import { readOptions, rowsFeed, scalarFeed, type RowMean } from '../method.js';
import { crossEntropy, distillationTerm, klDivergence } from '../../engine/losses.js';
import { KD_START } from './kd.js';
import * as op from '../../engine/ops.js';
import { crossEntropyTerm, dtkdDtTerm, klTerm, type HostHead, type HostMean } from '../../engine/host-losses.js';

export interface DtkdOptions {
  alpha: number;
  beta: number;
  tau: number;
  warmupEpochs: number;
  guard: 'clamp' | 'fallback';
  kdStart: number;
}

const EPS = 1e-6;

/** Per-example temperatures [B, 1] of teacher and student, guarded. */
export function dtkdTemperatures(
  teacherLogits: Value,
  studentLogits: Value,
  tau: number,
  guard: 'clamp' | 'fallback' = 'clamp',
): { teacher: Value; student: Value } {
  const x = op.reduceMax(teacherLogits, [-1], true);
  const y = op.reduceMax(studentLogits, [-1], true);
  const sum = op.add(x, y);
  const ok = op.greater(sum, EPS);
  // A safe denominator keeps the unused branch finite, so gradients stay finite too.
  const safe = op.where(ok, sum, 1);
  const temperature = (v: Value) => {
    const t = op.where(ok, op.div(op.mul(v, 2 * tau), safe), tau);
    return guard === 'clamp' ? op.clip(t, tau / 4, 4 * tau) : t;
  };
  return { teacher: temperature(x), student: temperature(y) };
}

/** The teacher terms: L_dt, τ²·KL and α·L_dt + β·τ²·KL, each averaged with `mean`. */
function dtkdTerms(o: DtkdOptions, zt: Value, head: Value, mean: RowMean): { distill: Value; dt: Value; kd: Value } {
  const { teacher, student } = dtkdTemperatures(zt, head, o.tau, o.guard);
  const dt = mean(op.mul(klDivergence(zt, head, teacher, student), op.squeeze(op.mul(teacher, student), [1])));
  const kd = distillationTerm(zt, head, o.tau, mean);
  return { distill: op.add(op.mul(dt, o.alpha), op.mul(kd, o.beta)), dt, kd };
}

/** dtkdTerms on the host, adding `scale`·d(α·L_dt + β·τ²·KL)/d(head) into head.grad. */
function hostDtkdTerms(o: DtkdOptions, zt: Float32Array, head: HostHead, mean: HostMean, scale: number) {
  const t2 = o.tau * o.tau;
  const dt = dtkdDtTerm(head, zt, o.tau, o.guard, mean, scale * o.alpha);
  const kd = t2 * klTerm(head, zt, o.tau, mean, scale * o.beta * t2);
  return { distill: o.alpha * dt + o.beta * kd, dt, kd };
}

const OPTIONS = [
  {
    key: 'dtkdGuard',
    help: 'clamp (fallback + clamp to [τ/4, 4τ]) | fallback',
    default: 'clamp',
    choices: ['clamp', 'fallback'],
  },
  { key: 'alpha', help: 'weight of L_dt', default: 3, range: [0, 100] },
  { key: 'beta', help: 'weight of the vanilla KD term', default: 1, range: [0, 100] },
  { key: 'tau', help: 'base temperature τ', default: 4, range: [1e-3, 100] },
  { key: 'warmupEpochs', help: 'w = min(epoch / this, 1)', default: 20, range: [0, 1e6] },
  KD_START,
] as const satisfies readonly MethodOption[];

export const dtkd: DistillMethod<DtkdOptions> = {
  name: 'dtkd',
  order: 3,
  summary: 'dynamic-temperature KD: CE + w·(α·L_dt + β·τ²·KL), per-sample temperatures from max logits',
  options: OPTIONS,
  parse: (raw) => {
    const v = readOptions(OPTIONS, raw);
    return { alpha: v.alpha, beta: v.beta, tau: v.tau, warmupEpochs: v.warmupEpochs, guard: v.dtkdGuard, kdStart: v.kdStart };
  },
  headSize: (_o, classes) => classes,
  inputs: (_o, classes) => ({
    teacher_logits: { dtype: 'float32', shape: ['batch_size', classes] },
    dtkd_weight: { dtype: 'float32', shape: [] },
  }),
  create: (o, data) => ({
    feeds: (rows, s) => {
      const warm = o.warmupEpochs > 0 ? Math.min(s.epoch / o.warmupEpochs, 1) : 1;
      return {
        teacher_logits: rowsFeed(data.teacherLogits, data.classes, rows),
        dtkd_weight: scalarFeed(s.progress < o.kdStart ? 0 : warm),
      };
    },
  }),
  loss: (o, head, labels, inputs, _classes, mean) => {
    const ceTerm = mean(crossEntropy(head, labels));
    const { distill, dt, kd } = dtkdTerms(o, inputs.teacher_logits!, head, mean);
    return { loss: op.add(ceTerm, op.mul(distill, inputs.dtkd_weight!)), terms: { ce: ceTerm, dt, kd } };
  },
  transfer: {
    summary: 'α·L_dt + β·τ²·KL alone',
    weight: (o, s) => (s.progress < o.kdStart ? 0 : 1),
    loss: (o, head, inputs, _classes, mean) => {
      const { distill, dt, kd } = dtkdTerms(o, inputs.teacher_logits!, head, mean);
      return { loss: distill, terms: { dt, kd } };
    },
  },
  classLogits: (_o, head) => head,
  host: {
    loss: (o, head, labels, inputs, _classes, mean, scale) => {
      const w = inputs.dtkd_weight![0]!;
      const ceTerm = crossEntropyTerm(head, labels, mean, scale);
      const { distill, dt, kd } = hostDtkdTerms(o, inputs.teacher_logits!, head, mean, scale * w);
      return { loss: ceTerm + distill * w, terms: { ce: ceTerm, dt, kd } };
    },
    transfer: (o, head, inputs, _classes, mean, scale) => {
      const { distill, dt, kd } = hostDtkdTerms(o, inputs.teacher_logits!, head, mean, scale);
      return { loss: distill, terms: { dt, kd } };
    },
  },
};
