// LELP (Loo et al. 2024): a student head of C·S pseudo-subclasses trained with soft
// cross-entropy against targets split from the teacher's class probabilities along directions
// of its embedding space the classifier does not use; class probability p(c) = Σ_s p(c, s).
// The paper uses no gold-label term (α = 0); here α weights CE on the class marginals.
// Transfer rows (no gold label) are grouped by the teacher's label and learn the subclass targets alone.
import type { Value } from '../../engine/graph.js';
import type { DistillMethod, MethodData, MethodOption } from '../method.js';
import { MethodOptionError, readOptions, rowsFeed, scalarFeed } from '../method.js';
import { KD_START } from './kd.js';
import { crossEntropy, softCrossEntropy } from '../../engine/losses.js';
import * as op from '../../engine/ops.js';
import { marginalCrossEntropyTerm, softCrossEntropyTerm } from '../../engine/host-losses.js';
import { argmaxRow } from '../../util/stats.js';
import { lelpDirections, lelpTargets, type LelpConfig } from '../lelp-targets.js';

export interface LelpOptions extends LelpConfig {
  alpha: number;
  kdStart: number;
}

/** log Σ_s exp(head[c·S + s]) per class: the marginal class logits [B, C]. */
export function marginalLogits(head: Value, classes: number, subclasses: number): Value {
  if (subclasses === 1) return head;
  const h3 = op.reshape(head, [0, classes, subclasses]);
  const m = op.reduceMax(h3, [2], true);
  const lse = op.add(m, op.log(op.reduceSum(op.exp(op.sub(h3, m)), [2], true)));
  return op.squeeze(lse, [2]);
}

/** Reconstructs full-width embeddings from PCA-reduced cache rows: h ≈ mean + z·components. */
function fullEmbeddings(data: MethodData): { h: Float64Array; d: number } {
  const n = data.labels.length;
  if (!data.embedding)
    throw new MethodOptionError(
      'LELP needs teacher embeddings; the cache was built with --embedding none. Rebuild it with --embedding full or pca:K',
    );
  if (!data.pca) return { h: Float64Array.from(data.embedding), d: data.dim };
  const d = data.pca.mean.length;
  const k = data.dim;
  const h = new Float64Array(n * d);
  for (let i = 0; i < n; i++)
    for (let t = 0; t < d; t++) {
      let v = data.pca.mean[t]!;
      for (let j = 0; j < k; j++) v += data.embedding[i * k + j]! * data.pca.components[j * d + t]!;
      h[i * d + t] = v;
    }
  return { h, d };
}

const OPTIONS = [
  { key: 'lelpVariant', help: 'lelp | pca | random | kmeans', default: 'lelp', choices: ['lelp', 'pca', 'random', 'kmeans'] },
  { key: 'groupBy', help: 'gold | teacher labels group the embeddings', default: 'gold', choices: ['gold', 'teacher'] },
  { key: 'subclasses', help: 'pseudo-subclasses S per class', default: 4, range: [1, 256], integer: true },
  { key: 'beta', help: 'temperature of the subclass split', default: 1, range: [1e-6, 1e12] },
  { key: 'tau', help: "temperature of the teacher's class softmax", default: 1, range: [1e-3, 100] },
  { key: 'alpha', help: 'weight of gold-label CE', default: 0, range: [0, 1] },
  { key: 'lelpSeed', help: 'seed of the rotations', default: 13 },
  { key: 'center', help: 'centre class rows before PCA', default: true },
  KD_START,
] as const satisfies readonly MethodOption[];

/** The subclass targets [n, C·S] and the directions they were split along. */
export interface LelpPrepared {
  targets: Float32Array;
  directions: ReturnType<typeof lelpDirections>;
}

/** The subclass targets of the training rows [n, C·S] and the directions they were split along. */
export function lelpPrepare(o: LelpOptions, data: MethodData): LelpPrepared {
  const { h, d } = fullEmbeddings(data);
  const n = data.labels.length;
  // Transfer rows (label NO_LABEL) are grouped by the teacher's label whatever --group-by says.
  const groups = Int32Array.from({ length: n }, (_, i) =>
    o.groupBy === 'gold' && data.labels[i]! >= 0 ? data.labels[i]! : argmaxRow(data.teacherLogits, i * data.classes, data.classes),
  );
  const w = data.weight ? Float64Array.from(data.weight) : null;
  const dirs = lelpDirections(h, n, d, groups, data.classes, w, o);
  return { targets: lelpTargets(h, n, d, data.teacherLogits, data.classes, w, dirs, o), directions: dirs };
}

export const lelp: DistillMethod<LelpOptions> = {
  name: 'lelp',
  order: 4,
  summary: 'pseudo-subclass targets from the teacher embedding (null space of W, rotated per-class PCA)',
  options: OPTIONS,
  parse: (raw) => {
    const v = readOptions(OPTIONS, raw);
    return {
      subclasses: v.subclasses,
      beta: v.beta,
      tau: v.tau,
      alpha: v.alpha,
      groupBy: v.groupBy,
      variant: v.lelpVariant,
      seed: v.lelpSeed,
      center: v.center,
      kdStart: v.kdStart,
    };
  },
  check: (o, cache) => {
    if (cache.embeddingMode === 'none')
      throw new MethodOptionError(
        "'--loss lelp' needs teacher embeddings, but the cache was built with --embedding none. Rebuild it with --embedding " +
          'full (or pca:K)',
      );
    if (o.variant !== 'pca' && !cache.hasClassifier)
      throw new MethodOptionError(
        "'--loss lelp' needs the teacher's classifier W for the null-space projection; the cache has none. Use --lelp-variant " +
          'pca, or a teacher whose head kd can find',
      );
  },
  headSize: (o, classes) => classes * o.subclasses,
  create: (o, data) => {
    const { targets } = lelpPrepare(o, data);
    return {
      feeds: (rows, s) => ({
        lelp_targets: rowsFeed(targets, data.classes * o.subclasses, rows),
        lelp_weight: scalarFeed(s.progress < o.kdStart ? 0 : 1),
      }),
    };
  },
  inputs: (o, classes) => ({
    lelp_targets: { dtype: 'float32', shape: ['batch_size', classes * o.subclasses] },
    lelp_weight: { dtype: 'float32', shape: [] },
  }),
  loss: (o, head, labels, inputs, classes, mean) => {
    const w = inputs.lelp_weight!;
    const soft = mean(softCrossEntropy(head, inputs.lelp_targets!));
    const gold = mean(crossEntropy(marginalLogits(head, classes, o.subclasses), labels));
    // weight w·(1−α) on the subclass targets, the rest on gold labels (all of it before the late switch)
    const onTargets = op.mul(w, 1 - o.alpha);
    return { loss: op.add(op.mul(soft, onTargets), op.mul(gold, op.sub(1, onTargets))), terms: { lelp: soft, ce: gold } };
  },
  transfer: {
    summary: 'soft cross-entropy on the pseudo-subclass targets alone (grouped by the teacher label)',
    weight: (o, s) => (s.progress < o.kdStart ? 0 : 1),
    loss: (o, head, inputs, _classes, mean) => {
      const soft = mean(softCrossEntropy(head, inputs.lelp_targets!));
      return { loss: soft, terms: { lelp: soft } };
    },
  },
  classLogits: (o, head, classes) => marginalLogits(head, classes, o.subclasses),
  host: {
    loss: (o, head, labels, inputs, classes, mean, scale) => {
      const onTargets = inputs.lelp_weight![0]! * (1 - o.alpha);
      const soft = softCrossEntropyTerm(head, inputs.lelp_targets!, mean, scale * onTargets);
      const gold = marginalCrossEntropyTerm(head, labels, classes, mean, scale * (1 - onTargets));
      return { loss: soft * onTargets + gold * (1 - onTargets), terms: { lelp: soft, ce: gold } };
    },
    transfer: (_o, head, inputs, _classes, mean, scale) => {
      const soft = softCrossEntropyTerm(head, inputs.lelp_targets!, mean, scale);
      return { loss: soft, terms: { lelp: soft } };
    },
  },
};
