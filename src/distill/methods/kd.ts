// Vanilla KD (Hinton et al. 2015): (1 − λ)·CE(zs, y) + λ·τ²·KL(softmax(zt/τ) ‖ softmax(zs/τ)),
// KL summed over classes and averaged over the batch. λ follows a schedule and the late switch.
import type { DistillMethod, LambdaSchedule } from '../method.js';
import { distillWeight, mean, num, parseLambdaSchedule, rowsFeed, scalarFeed } from '../method.js';
import { crossEntropy, klDivergence } from '../../engine/losses.js';
import * as op from '../../engine/ops.js';

export interface KdOptions {
  lambda: number;
  tau: number;
  schedule: LambdaSchedule;
  /** Fraction of training run with CE alone before distilling (the late switch). */
  kdStart: number;
}

export const kd: DistillMethod<KdOptions> = {
  name: 'kd',
  summary: 'temperature-scaled KD: (1-λ)·CE + λ·τ²·KL(teacher ‖ student)',
  parse: (raw) => ({
    lambda: num(raw, 'lambda', 0.5, [0, 1]),
    tau: num(raw, 'tau', 2, [1e-3, 100]),
    schedule: parseLambdaSchedule(raw),
    kdStart: num(raw, 'kdStart', 0, [0, 1]),
  }),
  headSize: (_o, classes) => classes,
  prepare: () => null,
  inputs: (_o, classes) => ({
    teacher_logits: { dtype: 'float32', shape: ['batch_size', classes] },
    kd_lambda: { dtype: 'float32', shape: [] },
  }),
  feeds: (o, _p, data, rows, s) => ({
    teacher_logits: rowsFeed(data.teacherLogits, data.classes, rows),
    kd_lambda: scalarFeed(distillWeight(o.lambda, o.schedule, o.kdStart, s.progress)),
  }),
  loss: (o, head, labels, inputs) => {
    const lambda = inputs.kd_lambda!;
    const ceTerm = mean(crossEntropy(head, labels));
    const kdTerm = op.mul(mean(klDivergence(inputs.teacher_logits!, head, o.tau)), o.tau * o.tau);
    return { loss: op.add(op.mul(ceTerm, op.sub(1, lambda)), op.mul(kdTerm, lambda)), terms: { ce: ceTerm, kd: kdTerm } };
  },
  classLogits: (_o, head) => head,
};
