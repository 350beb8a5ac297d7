// LELP targets (METHODS.md §3) on synthetic embeddings with a known classifier.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { lelpDirections, lelpTargets, projectOutClassifier, type LelpConfig } from '../../../src/distill/lelp-targets.js';
import { getMethod } from '../../../src/distill/registry.js';
import { marginalLogits } from '../../../src/distill/methods/lelp.js';
import { Rng } from '../../../src/engine/rng.js';
import { Graph } from '../../../src/engine/graph.js';
import { createSession, ort } from '../../../src/engine/session.js';

const N = 300;
const D = 12;
const C = 3;

function synthetic(seed = 5) {
  const rng = new Rng(seed);
  const w = Float64Array.from({ length: C * D }, () => rng.normal());
  const labels = Int32Array.from({ length: N }, (_, i) => i % C);
  const h = Float64Array.from(
    { length: N * D },
    (_, k) => rng.normal() * (1 + (k % D) / 4) + (labels[Math.floor(k / D)]! === k % C ? 2 : 0),
  );
  const logits = new Float32Array(N * C);
  for (let i = 0; i < N; i++)
    for (let c = 0; c < C; c++) {
      let s = 0;
      for (let d = 0; d < D; d++) s += h[i * D + d]! * w[c * D + d]!;
      logits[i * C + c] = s / 4;
    }
  return { w, labels, h, logits };
}

const base: LelpConfig = { subclasses: 3, beta: 1, tau: 2, groupBy: 'gold', variant: 'lelp', seed: 13, center: true };

function softmax(row: ArrayLike<number>, tau: number): number[] {
  const xs = Array.from(row, (v) => v / tau);
  const m = Math.max(...xs);
  const e = xs.map((v) => Math.exp(v - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

test('directions: orthonormal U_c (U_cᵀU_c = I) inside the null space of W (‖W·U_c‖ ≈ 0)', () => {
  const { w, labels, h } = synthetic();
  const dirs = lelpDirections(h, N, D, labels, C, w, base);
  assert.equal(dirs.directions.length, C);
  for (const u of dirs.directions) {
    assert.deepEqual([u.rows, u.cols], [D, 3]);
    for (let a = 0; a < 3; a++)
      for (let b = 0; b < 3; b++) {
        let dot = 0;
        for (let d = 0; d < D; d++) dot += u.data[d * 3 + a]! * u.data[d * 3 + b]!;
        assert.ok(Math.abs(dot - (a === b ? 1 : 0)) < 1e-9, `UᵀU[${a},${b}] = ${dot}`);
      }
    for (let c = 0; c < C; c++)
      for (let s = 0; s < 3; s++) {
        let wu = 0;
        for (let d = 0; d < D; d++) wu += w[c * D + d]! * u.data[d * 3 + s]!;
        assert.ok(Math.abs(wu) < 1e-8, `(W·U)[${c},${s}] = ${wu}`);
      }
  }
  // H·P has no component along W's rows.
  const h0 = projectOutClassifier(h, N, D, w, C);
  let worst = 0;
  for (let i = 0; i < N; i++)
    for (let c = 0; c < C; c++) {
      let s = 0;
      for (let d = 0; d < D; d++) s += h0[i * D + d]! * w[c * D + d]!;
      worst = Math.max(worst, Math.abs(s));
    }
  assert.ok(worst < 1e-8);
});

test('targets: Σ_s q[c][s] = p_T[c], Σ q = 1; S = 1 gives KD targets; β → ∞ gives p_T[c]/S', () => {
  const { w, labels, h, logits } = synthetic();
  const dirs = lelpDirections(h, N, D, labels, C, w, base);
  const q = lelpTargets(h, N, D, logits, C, w, dirs, base);
  assert.equal(q.length, N * C * 3);
  for (let i = 0; i < N; i++) {
    const pt = softmax(logits.subarray(i * C, (i + 1) * C), base.tau);
    let total = 0;
    for (let c = 0; c < C; c++) {
      const sum = q[i * 9 + c * 3]! + q[i * 9 + c * 3 + 1]! + q[i * 9 + c * 3 + 2]!;
      assert.ok(Math.abs(sum - pt[c]!) < 1e-6);
      total += sum;
    }
    assert.ok(Math.abs(total - 1) < 1e-6);
  }
  const one = { ...base, subclasses: 1 };
  const q1 = lelpTargets(h, N, D, logits, C, w, lelpDirections(h, N, D, labels, C, w, one), one);
  for (let i = 0; i < N; i++)
    softmax(logits.subarray(i * C, (i + 1) * C), base.tau).forEach((p, c) => assert.ok(Math.abs(q1[i * C + c]! - p) < 1e-6));
  const hot = { ...base, beta: 1e12 };
  const qInf = lelpTargets(h, N, D, logits, C, w, dirs, hot);
  for (let i = 0; i < 20; i++) {
    const pt = softmax(logits.subarray(i * C, (i + 1) * C), base.tau);
    for (let c = 0; c < C; c++) for (let s = 0; s < 3; s++) assert.ok(Math.abs(qInf[i * 9 + c * 3 + s]! - pt[c]! / 3) < 1e-6);
  }
});

test('the same seed gives identical targets; another seed rotates differently; every variant builds', () => {
  const { w, labels, h, logits } = synthetic();
  const a = lelpTargets(h, N, D, logits, C, w, lelpDirections(h, N, D, labels, C, w, base), base);
  const b = lelpTargets(h, N, D, logits, C, w, lelpDirections(h, N, D, labels, C, w, base), base);
  assert.deepEqual(a, b);
  const other = { ...base, seed: 14 };
  assert.notDeepEqual(lelpTargets(h, N, D, logits, C, w, lelpDirections(h, N, D, labels, C, w, other), other), a);
  for (const variant of ['pca', 'random', 'kmeans'] as const) {
    const cfg = { ...base, variant };
    const q = lelpTargets(h, N, D, logits, C, w, lelpDirections(h, N, D, labels, C, w, cfg), cfg);
    let total = 0;
    for (let k = 0; k < 9; k++) total += q[k]!;
    assert.ok(Math.abs(total - 1) < 1e-6, variant);
  }
});

test('the student head has C·S outputs, and the marginal argmax is the argmax of per-class logsumexp', async () => {
  const m = getMethod('lelp');
  const o = m.parse({ subclasses: 4 });
  assert.equal(m.headSize(o, 2), 8);
  const g = new Graph();
  const head = g.input('head', 'float32', ['batch_size', 8]);
  const { session } = await createSession(g.serialize({ outputs: [{ name: 'm', value: marginalLogits(head, 2, 4) }] }));
  const rng = new Rng(3);
  const rows = Array.from({ length: 50 * 8 }, () => rng.normal() * 3);
  const out = (await session.run({ head: new ort.Tensor('float32', Float32Array.from(rows), [50, 8]) })).m!.data as Float32Array;
  for (let i = 0; i < 50; i++) {
    const lse = [0, 1].map((c) => {
      const xs = rows.slice(i * 8 + c * 4, i * 8 + c * 4 + 4);
      const mx = Math.max(...xs);
      return mx + Math.log(xs.reduce((s, v) => s + Math.exp(v - mx), 0));
    });
    assert.ok(Math.abs(out[i * 2]! - lse[0]!) < 1e-4 && Math.abs(out[i * 2 + 1]! - lse[1]!) < 1e-4);
    assert.equal(out[i * 2 + 1]! > out[i * 2]!, lse[1]! > lse[0]!);
  }
});

test('lelp is refused at config time for a cache without embeddings or without W', () => {
  const m = getMethod('lelp');
  assert.throws(() => m.check!(m.parse({}), { embeddingMode: 'none', hasClassifier: true }), {
    message:
      "'--loss lelp' needs teacher embeddings, but the cache was built with --embedding none. Rebuild it with --embedding full (or pca:K)",
  });
  assert.throws(() => m.check!(m.parse({}), { embeddingMode: 'full', hasClassifier: false }), /needs the teacher's classifier W/);
  m.check!(m.parse({ lelpVariant: 'pca' }), { embeddingMode: 'full', hasClassifier: false });
});
