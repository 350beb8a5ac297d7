// The loss inputs of a random training batch for every method (labels, teacher logits, the methods' weights, LELP's
// subclass targets, transfer rows), shared by the host trainer's tests.
import { Rng } from '../../../src/engine/rng.js';
import { ort } from '../../../src/engine/session.js';

export const f32 = (data: number[], dims: number[]) => new ort.Tensor('float32', Float32Array.from(data), dims);

/**
 * Feeds for `B` rows of `classes` classes: labels, teacher logits in (−1.5, 1.5), kd/dtkd/lelp weights; for `lelp`,
 * softmax targets over `headSize` subclasses; with `transfer`, the rows `labelled(i)` says (1 labelled, 0 transfer).
 */
export function lossFeeds(
  rng: Rng,
  c: { name: string; transfer?: boolean },
  B: number,
  classes: number,
  headSize: number,
  labelled: (i: number) => number,
): Record<string, ort.Tensor> {
  const normal = (n: number) => Array.from({ length: n }, () => 3 * (rng.uniform() - 0.5));
  const feeds: Record<string, ort.Tensor> = {
    labels: new ort.Tensor(
      'int64',
      BigInt64Array.from({ length: B }, () => BigInt(rng.int(classes))),
      [B],
    ),
    teacher_logits: f32(normal(B * classes), [B, classes]),
    kd_lambda: f32([0.6], []),
    dtkd_weight: f32([0.7], []),
    lelp_weight: f32([1], []),
  };
  if (c.name === 'lelp') {
    const q = Array.from({ length: B }, () => {
      const e = normal(headSize).map(Math.exp);
      const s = e.reduce((a, v) => a + v, 0);
      return e.map((v) => v / s);
    });
    feeds.lelp_targets = f32(q.flat(), [B, headSize]);
  }
  if (c.transfer) {
    feeds.labelled = f32(
      Array.from({ length: B }, (_, i) => labelled(i)),
      [B],
    );
    feeds.transfer_weight = f32([0.8], []);
  }
  return feeds;
}
