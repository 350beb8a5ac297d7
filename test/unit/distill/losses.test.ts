// Every distillation loss against golden values computed independently with PyTorch
// (scripts/golden_losses.py), and the properties METHODS.md states for KD (§1, §4).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Graph } from '../../../src/engine/graph.js';
import { declareInputs } from '../../../src/engine/context.js';
import { gradients } from '../../../src/engine/autodiff.js';
import { createSession, ort } from '../../../src/engine/session.js';
import { getMethod, parseMethodOptions } from '../../../src/distill/registry.js';
import * as op from '../../../src/engine/ops.js';
import { fixturePath } from '../../helpers.js';
import { batchMean } from '../../../src/engine/losses.js';

interface Golden {
  zs: number[][];
  zt: number[][];
  labels: number[];
  cases: { loss: string; options: Record<string, number | string>; value: number }[];
  lelp: { head: number[][]; targets: number[][]; subclasses: number; cases: { alpha: number; value: number }[]; marginal: number[][] };
}

const golden = JSON.parse(readFileSync(fixturePath('golden', 'losses.json'), 'utf8')) as Golden;
const f32 = (rows: number[][]) => new ort.Tensor('float32', Float32Array.from(rows.flat()), [rows.length, rows[0]!.length]);
const labels = () => new ort.Tensor('int64', BigInt64Array.from(golden.labels.map(BigInt)), [golden.labels.length]);

/** Builds the method's loss on a head input and runs it with the given extra feeds. */
async function lossValue(name: string, raw: Record<string, unknown>, head: number[][], extra: Record<string, ort.Tensor>): Promise<number> {
  const method = getMethod(name);
  const o = method.parse(raw);
  const g = new Graph();
  const classes = golden.zs[0]!.length;
  const inputs = declareInputs(g, {
    head: { dtype: 'float32', shape: ['batch_size', head[0]!.length] },
    labels: { dtype: 'int64', shape: ['batch_size'] },
    ...method.inputs(o, classes),
  });
  const { loss } = method.loss(o, inputs.head!, inputs.labels!, inputs, classes, batchMean);
  const { session } = await createSession(g.serialize({ outputs: [{ name: 'loss', value: loss }] }));
  const feeds: Record<string, ort.Tensor> = { head: f32(head), labels: labels(), ...extra };
  for (const n of session.inputNames) assert.ok(n in feeds, `feed ${n}`);
  return Number((await session.run(Object.fromEntries(session.inputNames.map((n) => [n, feeds[n]!])))).loss!.data[0]);
}

const scalar = (v: number) => new ort.Tensor('float32', Float32Array.of(v), []);

test('ce, kd and dtkd match the PyTorch golden values', async () => {
  for (const c of golden.cases) {
    const extra: Record<string, ort.Tensor> = { teacher_logits: f32(golden.zt) };
    if (c.loss === 'kd') extra.kd_lambda = scalar(c.options.lambda as number);
    if (c.loss === 'dtkd') extra.dtkd_weight = scalar(c.options.weight as number);
    const v = await lossValue(c.loss, c.options, golden.zs, extra);
    assert.ok(
      Math.abs(v - c.value) <= 1e-5 * Math.max(1, Math.abs(c.value)),
      `${c.loss} ${JSON.stringify(c.options)}: ${v} vs golden ${c.value}`,
    );
  }
});

test('lelp: soft cross-entropy on subclasses plus α·CE on class marginals matches the golden values', async () => {
  const L = golden.lelp;
  for (const c of L.cases) {
    const v = await lossValue('lelp', { subclasses: L.subclasses, alpha: c.alpha }, L.head, {
      lelp_targets: f32(L.targets),
      lelp_weight: scalar(1),
    });
    assert.ok(Math.abs(v - c.value) < 1e-5, `alpha ${c.alpha}: ${v} vs ${c.value}`);
  }
});

test('kd with λ = 0 is plain cross-entropy; kd_lambda 0 before the late switch does the same', async () => {
  const ceValue = golden.cases.find((c) => c.loss === 'ce')!.value;
  const v = await lossValue('kd', { lambda: 0.7, tau: 3 }, golden.zs, { teacher_logits: f32(golden.zt), kd_lambda: scalar(0) });
  assert.ok(Math.abs(v - ceValue) < 1e-6);
  const kd = getMethod('kd');
  const o = kd.parse({ lambda: 0.7, kdStart: 0.5 });
  const data = {
    classes: 3,
    teacherLogits: Float32Array.from(golden.zt.flat()),
    embedding: null,
    dim: 0,
    weight: null,
    bias: null,
    pca: null,
    labels: Int32Array.from(golden.labels),
    seed: 1,
  };
  assert.equal((kd.create(o, data).feeds([0, 1], { progress: 0.49, epoch: 1 }).kd_lambda!.data as Float32Array)[0], 0);
  assert.ok(Math.abs((kd.create(o, data).feeds([0, 1], { progress: 0.5, epoch: 2 }).kd_lambda!.data as Float32Array)[0]! - 0.7) < 1e-7);
  const ramp = kd.parse({ lambda: 0.8, lambdaSchedule: 'linear', lambdaRamp: 0.5 });
  assert.ok(Math.abs((kd.create(ramp, data).feeds([0], { progress: 0.25, epoch: 1 }).kd_lambda!.data as Float32Array)[0]! - 0.4) < 1e-6);
});

test('§4: for a linear student at τ = 1 the logit gradient of (1−λ)CE + λKL is (p_s − y) − λ(p_t − y)', async () => {
  const kd = getMethod('kd');
  const o = kd.parse({ lambda: 0.3, tau: 1 });
  const g = new Graph();
  const inputs = declareInputs(g, {
    x: { dtype: 'float32', shape: ['batch_size', 5] },
    w: { dtype: 'float32', shape: [5, 3] },
    labels: { dtype: 'int64', shape: ['batch_size'] },
    ...kd.inputs(o, 3),
  });
  const logits = op.matmul(inputs.x!, inputs.w!);
  const { loss } = kd.loss(o, logits, inputs.labels!, inputs, 3, batchMean);
  const grads = gradients(loss, [inputs.w!]);
  const { session } = await createSession(
    g.serialize({
      outputs: [
        { name: 'dw', value: grads.get(inputs.w!)! },
        { name: 'zs', value: logits },
      ],
    }),
  );
  const x = Array.from({ length: 20 }, (_, i) => Math.sin(i + 1));
  const w = Array.from({ length: 15 }, (_, i) => Math.cos(2 * i + 1) * 0.5);
  const out = await session.run({
    x: f32([x.slice(0, 5), x.slice(5, 10), x.slice(10, 15), x.slice(15, 20)]),
    w: f32([w.slice(0, 3), w.slice(3, 6), w.slice(6, 9), w.slice(9, 12), w.slice(12, 15)]),
    labels: labels(),
    teacher_logits: f32(golden.zt),
    kd_lambda: scalar(0.3),
  });
  const zs = out.zs!.data as Float32Array;
  const softmax = (row: number[]) => {
    const m = Math.max(...row);
    const e = row.map((v) => Math.exp(v - m));
    const s = e.reduce((a, b) => a + b, 0);
    return e.map((v) => v / s);
  };
  const expected = new Float64Array(15);
  for (let i = 0; i < 4; i++) {
    const ps = softmax(Array.from(zs.subarray(i * 3, i * 3 + 3)));
    const pt = softmax(golden.zt[i]!);
    for (let c = 0; c < 3; c++) {
      const y = golden.labels[i] === c ? 1 : 0;
      const gz = (ps[c]! - y - 0.3 * (pt[c]! - y)) / 4;
      for (let k = 0; k < 5; k++) expected[k * 3 + c]! += x[i * 5 + k]! * gz;
    }
  }
  const dw = out.dw!.data as Float32Array;
  for (let k = 0; k < 15; k++) assert.ok(Math.abs(dw[k]! - expected[k]!) < 1e-6, `dW[${k}]: ${dw[k]} vs ${expected[k]}`);
});

test('unknown loss names say what exists; options name themselves in errors', () => {
  assert.throws(() => getMethod('dtk'), { message: "Unknown loss 'dtk'. Known: ce, kd, dtkd, lelp" });
  assert.throws(() => getMethod('kd').parse({ lambda: 2 }), { message: `'--lambda' must be a number in [0, 1], got 2` });
  assert.throws(() => getMethod('lelp').parse({ lelpVariant: 'svd' }), {
    message: `'--lelp-variant' must be lelp, pca, random or kmeans, got "svd"`,
  });
});

test('an option the method does not read is an error, not silently ignored', () => {
  assert.throws(() => parseMethodOptions('kd', { lamda: 0.5 }), {
    name: 'ConfigError',
    message:
      "loss 'kd' does not use option 'lamda' (--lamda) with these settings; it reads kdStart, lambda, lambdaRamp, " +
      'lambdaSchedule, tau. Remove it or pick the loss that takes it',
  });
  assert.throws(() => parseMethodOptions('ce', { subclasses: 4, kdStart: 0.5 }), {
    message:
      /^loss 'ce' does not use options 'subclasses' \(--subclasses\), 'kdStart' \(--kd-start\) with these settings; it reads no options\./,
  });
  assert.deepEqual(
    parseMethodOptions('kd', { lambda: 0.25, tau: 4, kdStart: 0.5, missing: undefined }),
    getMethod('kd').parse({ lambda: 0.25, tau: 4, kdStart: 0.5 }),
  );
  assert.equal((parseMethodOptions('lelp', { subclasses: 2, alpha: 0.5 }) as { subclasses: number }).subclasses, 2);
});
