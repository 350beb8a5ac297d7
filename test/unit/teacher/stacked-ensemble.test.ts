// The stacked ensemble fit (member weights ≥ 0, lexicon rows, bias) is the minimum of its
// objective: no coordinate step of ±1e-4 lowers it (finite differences), a weight pinned at 0
// has a non-negative derivative, and it recovers the scale of a lexicon that generated the labels.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fitStackedEnsemble, stackedAccuracy, type StackedEnsemble } from '../../../src/teacher/ensemble.js';
import { Rng } from '../../../src/engine/rng.js';

/** Mean NLL + (l2/2)|θ|², computed here from the definition (log-softmax of the members' logits). */
function objective(
  fit: Pick<StackedEnsemble, 'weights' | 'lexiconRows' | 'bias'>,
  logits: Float32Array[],
  s: Float64Array[],
  y: Int32Array,
) {
  let nll = 0;
  for (let i = 0; i < y.length; i++) {
    const z = [0, 1].map((c) => {
      let v = fit.bias[c]!;
      fit.weights.forEach((w, k) => {
        const a = logits[k]![2 * i]!;
        const b = logits[k]![2 * i + 1]!;
        const m = Math.max(a, b);
        v += w * (logits[k]![2 * i + c]! - m - Math.log(Math.exp(a - m) + Math.exp(b - m)));
      });
      fit.lexiconRows.forEach((u, l) => (v += u[c]! * s[l]![i]!));
      return v;
    });
    const m = Math.max(...z);
    nll += m + Math.log(z.reduce((acc, v) => acc + Math.exp(v - m), 0)) - z[y[i]!]!;
  }
  const all = [...fit.weights, ...fit.lexiconRows.flat(), ...fit.bias];
  return nll / y.length + (1e-3 / 2) * all.reduce((acc, v) => acc + v * v, 0);
}

function data(n: number, seed: number) {
  const rng = new Rng(seed);
  const y = new Int32Array(n);
  const score = new Float64Array(n);
  const good = new Float32Array(2 * n);
  const noise = new Float32Array(2 * n);
  for (let i = 0; i < n; i++) {
    score[i] = 4 * (rng.uniform() - 0.5);
    // Labels drawn from a logistic model in the lexicon score: P(positive) = σ(1.5·s).
    y[i] = rng.uniform() < 1 / (1 + Math.exp(-1.5 * score[i]!)) ? 1 : 0;
    good[2 * i + y[i]!] = 0.8 + rng.uniform() * 0.4; // a member that is informative
    noise[2 * i] = rng.uniform(); // and one that is not
    noise[2 * i + 1] = rng.uniform();
  }
  return { y, score, logits: [good, noise] };
}

test('fitStackedEnsemble: a minimum of its objective (coordinate finite differences), weights ≥ 0', () => {
  const { y, score, logits } = data(600, 5);
  const fit = fitStackedEnsemble(logits, [score], y, 2);
  assert.ok(fit.weights.every((w) => w >= 0));
  const base = objective(fit, logits, [score], y);
  const flat = [...fit.weights, ...fit.lexiconRows[0]!, ...fit.bias];
  const unflat = (v: number[]) => ({ weights: v.slice(0, 2), lexiconRows: [v.slice(2, 4)], bias: v.slice(4, 6) });
  for (let j = 0; j < flat.length; j++)
    for (const h of [1e-4, -1e-4]) {
      const v = [...flat];
      v[j]! += h;
      if (j < 2 && v[j]! < 0) continue; // outside the feasible set
      assert.ok(objective(unflat(v), logits, [score], y) >= base - 1e-9, `parameter ${j}, step ${h}`);
    }
  // The informative member gets weight, and the accuracy reported is the fitted model's on these rows.
  assert.ok(fit.weights[0]! > 0.5, `${fit.weights}`);
  assert.equal(stackedAccuracy(fit, logits, [score], y, 2), fit.accuracy);
});

test('fitStackedEnsemble: recovers the logistic scale of a lexicon that generated the labels', () => {
  const { y, score } = data(20000, 9);
  const fit = fitStackedEnsemble([], [score], y, 2, 1e-6);
  // logit difference = u1·s − u0·s = 1.5·s; the rows are symmetric under a tiny l2.
  const slope = fit.lexiconRows[0]![1]! - fit.lexiconRows[0]![0]!;
  assert.ok(Math.abs(slope - 1.5) < 0.1, `slope ${slope}`);
  assert.ok(Math.abs(fit.bias[1]! - fit.bias[0]!) < 0.1, `bias ${fit.bias}`);
});
