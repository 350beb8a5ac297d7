// Vanilla KD (Hinton et al. 2015): (1 − λ)·CE(zs, y) + λ·τ²·KL(softmax(zt/τ) ‖ softmax(zs/τ)),
// KL summed over classes and averaged over the batch. λ follows a schedule and the late switch.
// On transfer rows (no gold label used): τ²·KL alone, after the late switch.
import type { DistillMethod, LambdaSchedule, MethodOption } from '../method.js';
import { distillWeight, LAMBDA_SCHEDULE_OPTIONS, readOptions, rowsFeed, scalarFeed } from '../method.js';
import { crossEntropy, distillationTerm } from '../../engine/losses.js';
import * as op from '../../engine/ops.js';
import { crossEntropyTerm, klTerm } from '../../engine/host-losses.js';

export interface KdOptions {
  lambda: number;
  tau: number;
  schedule: LambdaSchedule;
  /** Fraction of training run with CE alone before distilling (the late switch). */
  kdStart: number;
}

/** The late switch: a fraction of training run with CE alone first (kd, dtkd, lelp). */
export const KD_START = {
  key: 'kdStart',
  help: 'late switch: train with CE alone for this fraction of training first',
  default: 0,
  range: [0, 1],
} as const satisfies MethodOption;

const OPTIONS = [
  { key: 'lambda', help: 'weight of the distillation term (1−λ on CE)', default: 0.5, range: [0, 1] },
  { key: 'tau', help: 'temperature of the teacher and student softmax', default: 2, range: [1e-3, 100] },
  ...LAMBDA_SCHEDULE_OPTIONS,
  KD_START,
] as const satisfies readonly MethodOption[];

export const kd: DistillMethod<KdOptions> = {
  name: 'kd',
  order: 2,
  summary: 'temperature-scaled KD: (1-λ)·CE + λ·τ²·KL(teacher ‖ student)',
  options: OPTIONS,
  parse: (raw) => {
    const v = readOptions(OPTIONS, raw);
    return { lambda: v.lambda, tau: v.tau, schedule: { kind: v.lambdaSchedule, rampFraction: v.lambdaRamp }, kdStart: v.kdStart };
  },
  headSize: (_o, classes) => classes,
  inputs: (_o, classes) => ({
    teacher_logits: { dtype: 'float32', shape: ['batch_size', classes] },
    kd_lambda: { dtype: 'float32', shape: [] },
  }),
  create: (o, data) => ({
    feeds: (rows, s) => ({
      teacher_logits: rowsFeed(data.teacherLogits, data.classes, rows),
      kd_lambda: scalarFeed(distillWeight(o.lambda, o.schedule, o.kdStart, s.progress)),
    }),
  }),
  loss: (o, head, labels, inputs, _classes, mean) => {
    const lambda = inputs.kd_lambda!;
    const ceTerm = mean(crossEntropy(head, labels));
    const kdTerm = distillationTerm(inputs.teacher_logits!, head, o.tau, mean);
    return { loss: op.add(op.mul(ceTerm, op.sub(1, lambda)), op.mul(kdTerm, lambda)), terms: { ce: ceTerm, kd: kdTerm } };
  },
  transfer: {
    summary: 'τ²·KL(teacher ‖ student) alone',
    weight: (o, s) => (s.progress < o.kdStart ? 0 : 1),
    loss: (o, head, inputs, _classes, mean) => {
      const kdTerm = distillationTerm(inputs.teacher_logits!, head, o.tau, mean);
      return { loss: kdTerm, terms: { kd: kdTerm } };
    },
  },
  classLogits: (_o, head) => head,
  host: {
    loss: (o, head, labels, inputs, _classes, mean, scale) => {
      const lambda = inputs.kd_lambda![0]!;
      const t2 = o.tau * o.tau;
      const ceTerm = crossEntropyTerm(head, labels, mean, scale * (1 - lambda));
      const kdTerm = t2 * klTerm(head, inputs.teacher_logits!, o.tau, mean, scale * lambda * t2);
      return { loss: ceTerm * (1 - lambda) + kdTerm * lambda, terms: { ce: ceTerm, kd: kdTerm } };
    },
    transfer: (o, head, inputs, _classes, mean, scale) => {
      const t2 = o.tau * o.tau;
      const kdTerm = t2 * klTerm(head, inputs.teacher_logits!, o.tau, mean, scale * t2);
      return { loss: kdTerm, terms: { kd: kdTerm } };
    },
  },
};
