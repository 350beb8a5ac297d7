// Plain cross-entropy with the gold labels: the student without distillation (the baseline).
import type { DistillMethod } from '../method.js';
import { crossEntropy } from '../../engine/losses.js';
import { crossEntropyTerm } from '../../engine/host-losses.js';

export const ce: DistillMethod<Record<string, never>> = {
  name: 'ce',
  order: 1,
  summary: 'cross-entropy with the gold labels (no teacher)',
  options: [],
  parse: () => ({}),
  headSize: (_o, classes) => classes,
  create: () => ({ feeds: () => ({}) }),
  inputs: () => ({}),
  loss: (_o, head, labels, _inputs, _classes, mean) => {
    const ceTerm = mean(crossEntropy(head, labels));
    return { loss: ceTerm, terms: { ce: ceTerm } };
  },
  classLogits: (_o, head) => head,
  host: {
    loss: (_o, head, labels, _inputs, _classes, mean, scale) => {
      const ceTerm = crossEntropyTerm(head, labels, mean, scale);
      return { loss: ceTerm, terms: { ce: ceTerm } };
    },
  },
};
