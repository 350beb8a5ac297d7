// DTKD temperatures (METHODS.md §2): T_t + T_s = 2τ, equal maxima give τ, a larger max gives a
// larger temperature, shapes [B, 1], and the guard keeps everything finite when x + y ≤ 0.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Graph } from '../../../src/engine/graph.js';
import { gradients } from '../../../src/engine/autodiff.js';
import { createSession, ort } from '../../../src/engine/session.js';
import { dtkdTemperatures } from '../../../src/distill/methods/dtkd.js';
import { getMethod } from '../../../src/distill/registry.js';
import { declareInputs } from '../../../src/engine/context.js';
import { batchMean } from '../../../src/engine/losses.js';

async function temps(zt: number[][], zs: number[][], tau: number, guard: 'clamp' | 'fallback' = 'clamp') {
  const g = new Graph();
  const t = g.input('zt', 'float32', ['batch_size', 2]);
  const s = g.input('zs', 'float32', ['batch_size', 2]);
  const { teacher, student } = dtkdTemperatures(t, s, tau, guard);
  assert.deepEqual(teacher.shape, ['batch_size', 1]);
  assert.deepEqual(student.shape, ['batch_size', 1]);
  const { session } = await createSession(
    g.serialize({
      outputs: [
        { name: 'tt', value: teacher },
        { name: 'ts', value: student },
      ],
    }),
  );
  const f = (r: number[][]) => new ort.Tensor('float32', Float32Array.from(r.flat()), [r.length, 2]);
  const out = await session.run({ zt: f(zt), zs: f(zs) });
  return { tt: Array.from(out.tt!.data as Float32Array), ts: Array.from(out.ts!.data as Float32Array), dims: out.tt!.dims };
}

test('T_t + T_s = 2τ, equal maxima give τ for both, and the larger max gets the larger temperature', async () => {
  const { tt, ts, dims } = await temps(
    [
      [3, 1],
      [2, 0],
      [1.5, -1],
    ],
    [
      [1, 2],
      [0, 2],
      [1, 0.5],
    ],
    4,
  );
  assert.deepEqual(dims, [3, 1]);
  tt.forEach((t, i) => assert.ok(Math.abs(t + ts[i]! - 8) < 1e-5, `row ${i}: ${t} + ${ts[i]}`));
  assert.ok(Math.abs(tt[1]! - 4) < 1e-6 && Math.abs(ts[1]! - 4) < 1e-6);
  assert.ok(tt[0]! > ts[0]!, 'teacher max 3 > student max 2');
  assert.ok(tt[2]! > ts[2]!, 'teacher max 1.5 > student max 1');
  // x / T_t = y / T_s
  assert.ok(Math.abs(3 / tt[0]! - 2 / ts[0]!) < 1e-5);
});

test('the guard: x + y ≤ 0 falls back to τ, extreme ratios are clamped to [τ/4, 4τ], loss and gradients stay finite', async () => {
  const { tt, ts } = await temps(
    [
      [-2, -3],
      [0.5, -1],
      [5, 4],
    ],
    [
      [-1, -4],
      [-0.49, -2],
      [-4.99, -6],
    ],
    2,
  );
  assert.deepEqual([tt[0], ts[0]], [2, 2], 'x + y = -3 ≤ 0');
  // x = 0.5, y = -0.49: raw temperatures 200 and −196 are clamped.
  assert.deepEqual([tt[1], ts[1]], [8, 0.5]);
  assert.ok([...tt, ...ts].every((v) => Number.isFinite(v) && v > 0));
  const fallback = await temps([[-2, -3]], [[-1, -4]], 2, 'fallback');
  assert.deepEqual([fallback.tt[0], fallback.ts[0]], [2, 2]);
  // The whole loss and its gradient are finite on these rows.
  const method = getMethod('dtkd');
  const o = method.parse({});
  const g = new Graph();
  const inputs = declareInputs(g, {
    head: { dtype: 'float32', shape: ['batch_size', 2] },
    labels: { dtype: 'int64', shape: ['batch_size'] },
    ...method.inputs(o, 2),
  });
  const { loss } = method.loss(o, inputs.head!, inputs.labels!, inputs, 2, batchMean);
  const grad = gradients(loss, [inputs.head!]).get(inputs.head!)!;
  const { session } = await createSession(
    g.serialize({
      outputs: [
        { name: 'loss', value: loss },
        { name: 'grad', value: grad },
      ],
    }),
  );
  const out = await session.run({
    head: new ort.Tensor('float32', Float32Array.of(-1, -4, -0.49, -2, -4.99, -6), [3, 2]),
    labels: new ort.Tensor('int64', BigInt64Array.of(0n, 1n, 0n), [3]),
    teacher_logits: new ort.Tensor('float32', Float32Array.of(-2, -3, 0.5, -1, 5, 4), [3, 2]),
    dtkd_weight: new ort.Tensor('float32', Float32Array.of(1), []),
  });
  assert.ok(Number.isFinite(Number(out.loss!.data[0])));
  assert.ok(Array.from(out.grad!.data as Float32Array).every(Number.isFinite));
});

test('the DTKD warm-up weight is min(epoch / warm-up, 1), and 0 before the late switch', () => {
  const m = getMethod('dtkd');
  const o = m.parse({ warmupEpochs: 20, kdStart: 0.25 });
  const data = {
    classes: 2,
    teacherLogits: new Float32Array(4),
    embedding: null,
    dim: 0,
    weight: null,
    bias: null,
    pca: null,
    labels: new Int32Array(2),
    seed: 1,
  };
  const w = (progress: number, epoch: number) => (m.create(o, data).feeds([0], { progress, epoch }).dtkd_weight!.data as Float32Array)[0];
  assert.equal(w(0.1, 5), 0);
  assert.equal(w(0.3, 5), 0.25);
  assert.equal(w(0.9, 40), 1);
});
