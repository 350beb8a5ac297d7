// The engine's training step against an independent reference, sparse tables, checkpoints,
// export, memory and devices.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { writeFileSync, readFileSync } from 'node:fs';
import { Trainer, type StepResult } from '../../../src/engine/trainer.js';
import { exportModel, type LossDefinition } from '../../../src/engine/train-graph.js';
import type { ModelDefinition } from '../../../src/engine/context.js';
import { linear } from '../../../src/engine/layers.js';
import * as op from '../../../src/engine/ops.js';
import { batchMean, correct, crossEntropy } from '../../../src/engine/losses.js';
import { learningRate, type OptimizerConfig } from '../../../src/engine/optim.js';
import { createSession, DeviceError, deviceProblem, ort, resetFallbackWarnings } from '../../../src/engine/session.js';
import { Rng } from '../../../src/engine/rng.js';
import { normal } from '../../../src/engine/params.js';
import { adamwStep, mlpLossAndGrads, sgdStep, type MlpParams } from './reference.js';
import { tempDir } from '../../helpers.js';

const N = 8;
const D = 4;
const H = 5;
const C = 3;

function mlp(dtype: 'float32' | 'float64', hidden = H, dropout = 0): ModelDefinition {
  return {
    inputs: { x: { dtype, shape: ['B', D] } },
    forward(ctx, { x }) {
      const h = ctx.dropout(op.relu(linear(ctx, x!, D, hidden, 'l1', { init: normal(0.5) })), dropout);
      return { logits: linear(ctx, h, hidden, C, 'l2', { init: normal(0.5) }) };
    },
  };
}

const ceLoss: LossDefinition = {
  inputs: { labels: { dtype: 'int64', shape: ['B'] } },
  build: (outputs, inputs) => ({
    loss: batchMean(crossEntropy(outputs.logits!, inputs.labels!)),
    metrics: { correct: correct(outputs.logits!, inputs.labels!) },
  }),
};

function data(seed = 3) {
  const rng = new Rng(seed);
  const x = Float64Array.from({ length: N * D }, () => rng.normal());
  const labels = Array.from({ length: N }, () => rng.int(C));
  return { x, labels };
}

function batch(dtype: 'float32' | 'float64', x: Float64Array, labels: number[]) {
  return {
    x: new ort.Tensor(dtype, dtype === 'float64' ? x : Float32Array.from(x), [labels.length, D]),
    labels: new ort.Tensor('int64', BigInt64Array.from(labels.map(BigInt)), [labels.length]),
  };
}

function snapshot(trainer: Trainer): MlpParams {
  return Object.fromEntries(['l1.weight', 'l1.bias', 'l2.weight', 'l2.bias'].map((n) => [n, Float64Array.from(trainer.store.get(n))]));
}

function maxDiff(a: MlpParams, b: MlpParams): number {
  let m = 0;
  for (const k of Object.keys(a)) for (let i = 0; i < a[k]!.length; i++) m = Math.max(m, Math.abs(a[k]![i]! - b[k]![i]!));
  return m;
}

test('MLP with AdamW, weight decay groups, clipping and a warm-up schedule matches the hand-written reference', async () => {
  const optimizer: OptimizerConfig = { kind: 'adamw', lr: 0.05, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.1, clipNorm: 0.5 };
  const schedule = { kind: 'linear' as const, warmupSteps: 2, totalSteps: 12 };
  const trainer = await Trainer.create({ model: mlp('float64'), loss: ceLoss, optimizer, schedule, dtype: 'float64', seed: 11 });
  const { x, labels } = data();
  const ref = snapshot(trainer);
  const zeros = () => Object.fromEntries(Object.entries(ref).map(([k, v]) => [k, new Float64Array(v.length)]));
  const m = zeros();
  const v = zeros();
  let clipped = 0;
  for (let t = 1; t <= 12; t++) {
    const lr = learningRate(0.05, schedule, t - 1);
    const { loss: refLoss, grads } = mlpLossAndGrads(ref, x, labels, N, D, H, C);
    const out = await trainer.step(batch('float64', x, labels));
    assert.ok(Math.abs(out.loss - refLoss) < 1e-10, `step ${t}: loss ${out.loss} vs reference ${refLoss}`);
    assert.equal(out.lr, lr);
    if (out.gradNorm > 0.5) clipped += 1;
    adamwStep(ref, grads, m, v, t, lr, { b1: 0.9, b2: 0.99, eps: 1e-8, wd: 0.1, clip: 0.5, decay: (n) => n.endsWith('weight') });
    assert.ok(maxDiff(snapshot(trainer), ref) < 1e-9, `step ${t}: parameters differ by ${maxDiff(snapshot(trainer), ref)}`);
  }
  assert.ok(clipped > 0, 'clipping was exercised');
  await trainer.dispose();
});

test('logistic regression with SGD, momentum and coupled weight decay matches the reference to 1e-5 (float32)', async () => {
  const model: ModelDefinition = {
    inputs: { x: { dtype: 'float32', shape: ['B', D] } },
    forward: (ctx, { x }) => ({ logits: linear(ctx, x!, D, C, 'l2', { init: normal(0.3) }) }),
  };
  const optimizer: OptimizerConfig = { kind: 'sgd', lr: 0.2, momentum: 0.9, nesterov: true, weightDecay: 0.01 };
  const trainer = await Trainer.create({ model, loss: ceLoss, optimizer, dtype: 'float32', seed: 5 });
  const { x, labels } = data(9);
  const ref: MlpParams = {
    'l2.weight': Float64Array.from(trainer.store.get('l2.weight')),
    'l2.bias': Float64Array.from(trainer.store.get('l2.bias')),
  };
  const buf: MlpParams = { 'l2.weight': new Float64Array(D * C), 'l2.bias': new Float64Array(C) };
  for (let t = 1; t <= 20; t++) {
    // A linear model is the MLP reference with an identity hidden layer; reuse its pieces.
    const logits = new Float64Array(N * C);
    for (let i = 0; i < N; i++)
      for (let j = 0; j < C; j++) {
        let s = ref['l2.bias']![j]!;
        for (let k = 0; k < D; k++) s += x[i * D + k]! * ref['l2.weight']![k * C + j]!;
        logits[i * C + j] = s;
      }
    const { crossEntropyGrad } = await import('./reference.js');
    const { loss, dz } = crossEntropyGrad(logits, labels, N, C);
    const dW = new Float64Array(D * C);
    const db = new Float64Array(C);
    for (let i = 0; i < N; i++)
      for (let j = 0; j < C; j++) {
        db[j]! += dz[i * C + j]!;
        for (let k = 0; k < D; k++) dW[k * C + j]! += x[i * D + k]! * dz[i * C + j]!;
      }
    const out = await trainer.step(batch('float32', x, labels));
    assert.ok(Math.abs(out.loss - loss) < 1e-5, `step ${t}: loss ${out.loss} vs ${loss}`);
    sgdStep(ref, { 'l2.weight': dW, 'l2.bias': db }, buf, 0.2, {
      momentum: 0.9,
      wd: 0.01,
      nesterov: true,
      decay: (n) => n.endsWith('weight'),
    });
  }
  const got = {
    'l2.weight': Float64Array.from(trainer.store.get('l2.weight')),
    'l2.bias': Float64Array.from(trainer.store.get('l2.bias')),
  };
  assert.ok(maxDiff(got, ref) < 1e-5, `parameters differ by ${maxDiff(got, ref)}`);
  await trainer.dispose();
});

function bagModel(sparse: boolean, decay = false): ModelDefinition {
  return {
    inputs: { ids: { dtype: 'int64', shape: ['B', 'L'] } },
    forward(ctx, { ids }) {
      const e = ctx.embedding('table', 50, 4, ids!, { init: normal(0.1), sparse, decay });
      return { logits: linear(ctx, op.reduceMean(e, [1], false), 4, C, 'head', { init: normal(0.3) }) };
    },
  };
}

test('a sparse table updates only the rows a batch touches, and equals dense training under SGD', async () => {
  const optimizer: OptimizerConfig = { kind: 'sgd', lr: 0.5 };
  const sparse = await Trainer.create({ model: bagModel(true), loss: ceLoss, optimizer, dtype: 'float64', seed: 4 });
  const dense = await Trainer.create({ model: bagModel(false), loss: ceLoss, optimizer, dtype: 'float64', seed: 4 });
  assert.equal(sparse.built.sparse.length, 1);
  assert.equal(sparse.built.inputNames.includes('p/table'), false, 'the whole table is not a graph input');
  const initial = Float64Array.from(sparse.store.get('table'));
  assert.deepEqual(initial, dense.store.get('table'));
  const rng = new Rng(2);
  const used = new Set<number>();
  for (let s = 0; s < 5; s++) {
    const ids = Array.from({ length: 4 * 3 }, () => rng.int(20)); // rows 20..49 never used
    ids.forEach((i) => used.add(i));
    const labels = Array.from({ length: 4 }, () => rng.int(C));
    const b = {
      ids: new ort.Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [4, 3]),
      labels: new ort.Tensor('int64', BigInt64Array.from(labels.map(BigInt)), [4]),
    };
    const a = await sparse.step(b);
    const d = await dense.step(b);
    assert.ok(Math.abs(a.loss - d.loss) < 1e-12);
  }
  const table = sparse.store.get('table');
  let maxDelta = 0;
  for (let k = 0; k < table.length; k++) maxDelta = Math.max(maxDelta, Math.abs(table[k]! - dense.store.get('table')[k]!));
  assert.ok(maxDelta < 1e-12, `sparse and dense tables differ by ${maxDelta}`);
  for (let row = 20; row < 50; row++) for (let c = 0; c < 4; c++) assert.equal(table[row * 4 + c], initial[row * 4 + c]);
  assert.ok([...used].some((row) => table[row * 4] !== initial[row * 4]));
  await sparse.dispose();
  await dense.dispose();
});

test('the host update of touched sparse rows equals the graph optimizer: AdamW and SGD, decay, clipping, schedule', async () => {
  // Every batch touches every row, so the lazy sparse update and the dense graph update coincide;
  // the table is weight-decayed (embeddings are not by default) so the decay terms are compared too.
  const cases: OptimizerConfig[] = [
    { kind: 'adamw', lr: 0.05, weightDecay: 0.1, clipNorm: 0.5 },
    { kind: 'sgd', lr: 0.3, momentum: 0.9, nesterov: true, weightDecay: 0.01 },
  ];
  for (const optimizer of cases) {
    const schedule = { kind: 'linear' as const, warmupSteps: 2, totalSteps: 6 };
    const sparse = await Trainer.create({ model: bagModel(true, true), loss: ceLoss, optimizer, schedule, dtype: 'float64', seed: 5 });
    const dense = await Trainer.create({ model: bagModel(false, true), loss: ceLoss, optimizer, schedule, dtype: 'float64', seed: 5 });
    const rng = new Rng(3);
    for (let s = 0; s < 6; s++) {
      const ids = Array.from({ length: 50 }, (_, i) => i);
      for (let i = ids.length - 1; i > 0; i--) {
        const j = rng.int(i + 1);
        [ids[i], ids[j]] = [ids[j]!, ids[i]!];
      }
      const labels = Array.from({ length: 10 }, () => rng.int(C));
      const b = {
        ids: new ort.Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [10, 5]),
        labels: new ort.Tensor('int64', BigInt64Array.from(labels.map(BigInt)), [10]),
      };
      const a = await sparse.step(b);
      const d = await dense.step(b);
      assert.ok(Math.abs(a.loss - d.loss) < 1e-12, `${optimizer.kind} step ${s}: losses ${a.loss} and ${d.loss}`);
    }
    for (const name of ['table', 'head.weight', 'head.bias']) {
      const x = sparse.store.get(name);
      const y = dense.store.get(name);
      let maxDelta = 0;
      for (let k = 0; k < x.length; k++) maxDelta = Math.max(maxDelta, Math.abs(x[k]! - y[k]!));
      assert.ok(maxDelta < 1e-12, `${optimizer.kind}: '${name}' differs by ${maxDelta} between sparse and dense training`);
    }
    await sparse.dispose();
    await dense.dispose();
  }
});

test('a run saved and resumed gives the bit-identical result of an uninterrupted one (dropout on)', async () => {
  const options = {
    model: mlp('float32', 16, 0.3),
    loss: ceLoss,
    optimizer: { kind: 'adamw', lr: 0.01, weightDecay: 0.01, clipNorm: 1 } as OptimizerConfig,
    dtype: 'float32' as const,
    seed: 21,
    schedule: { kind: 'cosine' as const, warmupSteps: 2, totalSteps: 8 },
  };
  const batches = Array.from({ length: 8 }, (_, s) => data(100 + s));
  const straight = await Trainer.create(options);
  for (const d of batches) await straight.step(batch('float32', d.x, d.labels));
  const first = await Trainer.create(options);
  for (const d of batches.slice(0, 4)) await first.step(batch('float32', d.x, d.labels));
  const path = join(tempDir(), 'ckpt.safetensors');
  first.save(path, { note: 'halfway' });
  await first.dispose();
  const resumed = await Trainer.create(options);
  const meta = resumed.load(path);
  assert.equal(meta.note, 'halfway');
  assert.equal(resumed.stepCount, 4);
  for (const d of batches.slice(4)) await resumed.step(batch('float32', d.x, d.labels));
  for (const name of ['l1.weight', 'l1.bias', 'l2.weight', 'l2.bias']) {
    assert.equal(
      Buffer.compare(Buffer.from(resumed.store.get(name).buffer), Buffer.from(straight.store.get(name).buffer)),
      0,
      `${name} differs after resume`,
    );
  }
  // A corrupted checkpoint is refused with its name.
  const bytes = readFileSync(path);
  writeFileSync(path, bytes.subarray(0, bytes.length - 10));
  const again = await Trainer.create(options);
  assert.throws(() => again.load(path), /truncated or inconsistent/);
  await Promise.all([straight.dispose(), resumed.dispose(), again.dispose()]);
});

for (const dtype of ['float64', 'float32'] as const) {
  test(
    `several optimizer steps per call give the results of single steps (${dtype}; dropout, clipping, decay ` + `groups, schedule)`,
    async () => {
      const options = {
        model: mlp(dtype, 16, 0.3),
        loss: ceLoss,
        optimizer: { kind: 'adamw', lr: 0.01, weightDecay: 0.01, clipNorm: 1 } as OptimizerConfig,
        dtype,
        seed: 21,
        schedule: { kind: 'cosine' as const, warmupSteps: 2, totalSteps: 10 },
      };
      const batches = Array.from({ length: 10 }, (_, s) => data(100 + s)).map((d) => batch(dtype, d.x, d.labels));
      const single = await Trainer.create(options);
      const singleResults: StepResult[] = [];
      for (const b of batches) singleResults.push(await single.step(b));
      const fused = await Trainer.create({ ...options, stepsPerCall: 'auto' });
      assert.equal(fused.stepsPerCall, 4);
      // 4 in one call and 2 single; then 4 in one call.
      const fusedResults = [...(await fused.steps(batches.slice(0, 6))), ...(await fused.steps(batches.slice(6)))];
      assert.equal(fused.stepCount, 10);
      const tol = dtype === 'float64' ? 1e-12 : 1e-5;
      fusedResults.forEach((r, k) => {
        assert.ok(Math.abs(r.loss - singleResults[k]!.loss) <= tol, `step ${k} loss ${r.loss} vs ${singleResults[k]!.loss}`);
        assert.ok(Math.abs(r.gradNorm - singleResults[k]!.gradNorm) <= tol * 10, `step ${k} grad norm`);
        assert.equal(r.lr, singleResults[k]!.lr);
        assert.deepEqual(r.metrics.correct, singleResults[k]!.metrics.correct);
      });
      assert.ok(maxDiff(snapshot(fused), snapshot(single)) <= tol, `parameters differ by ${maxDiff(snapshot(fused), snapshot(single))}`);
      // Checkpoints are interchangeable: a single-step trainer resumes a fused run's checkpoint.
      const half = await Trainer.create({ ...options, stepsPerCall: 4 });
      await half.steps(batches.slice(0, 4));
      const path = join(tempDir(), 'ckpt.safetensors');
      half.save(path);
      const resumed = await Trainer.create(options);
      resumed.load(path);
      for (const b of batches.slice(4)) await resumed.step(b);
      assert.equal(resumed.stepCount, 10);
      assert.ok(maxDiff(snapshot(resumed), snapshot(single)) <= tol);
      await Promise.all([single.dispose(), fused.dispose(), half.dispose(), resumed.dispose()]);
    },
  );
}

test("several steps per call refuse a model with a sparse table, saying why; 'auto' picks one", async () => {
  const model: ModelDefinition = {
    inputs: { ids: { dtype: 'int64', shape: ['B', 3] } },
    forward: (ctx, { ids }) => ({ logits: op.reduceMean(ctx.embedding('table', 10, C, ids!, { init: normal(0.1), sparse: true }), [1]) }),
  };
  await assert.rejects(
    Trainer.create({ model, loss: ceLoss, optimizer: { kind: 'sgd', lr: 0.1 }, seed: 1, stepsPerCall: 2 }),
    /stepsPerCall > 1 needs a model whose parameters are all dense/,
  );
  const auto = await Trainer.create({ model, loss: ceLoss, optimizer: { kind: 'sgd', lr: 0.1 }, seed: 1, stepsPerCall: 'auto' });
  assert.equal(auto.stepsPerCall, 1);
  await auto.dispose();
});

test("the exported inference model gives the training graph's logits", async () => {
  const trainer = await Trainer.create({
    model: mlp('float32'),
    loss: ceLoss,
    optimizer: { kind: 'adamw', lr: 0.01 },
    dtype: 'float32',
    seed: 8,
  });
  const { x, labels } = data();
  for (let i = 0; i < 3; i++) await trainer.step(batch('float32', x, labels));
  const evalOut = await trainer.evaluate({ x: batch('float32', x, labels).x });
  const bytes = trainer.exportInference(['logits']);
  const { session } = await createSession(bytes);
  assert.deepEqual(session.inputNames, ['x']);
  assert.deepEqual(session.outputNames, ['logits']);
  const out = await session.run({ x: batch('float32', x, labels).x });
  assert.deepEqual(Array.from(out.logits!.data as Float32Array), Array.from(evalOut.logits!.data as Float32Array));
  assert.throws(() => exportModel(mlp('float32'), trainer.store, { outputs: ['embedding'] }), /has no output 'embedding'. Known: logits/);
  await trainer.dispose();
});

test('resident memory stays flat over 2,000 steps', async () => {
  const trainer = await Trainer.create({
    model: mlp('float32', 32),
    loss: ceLoss,
    optimizer: { kind: 'adamw', lr: 1e-3 },
    dtype: 'float32',
    seed: 1,
  });
  const { x, labels } = data();
  const b = batch('float32', x, labels);
  let rssAt300 = 0;
  for (let s = 1; s <= 2000; s++) {
    await trainer.step(b);
    if (s === 300) {
      (globalThis as { gc?: () => void }).gc?.();
      rssAt300 = process.memoryUsage().rss;
    }
  }
  (globalThis as { gc?: () => void }).gc?.();
  const growth = (process.memoryUsage().rss - rssAt300) / 2 ** 20;
  assert.ok(growth < 20, `RSS grew by ${growth.toFixed(1)} MiB between step 300 and 2000`);
  await trainer.dispose();
});

test('a missing execution provider is a clear error, or a warned CPU fallback when allowed', async () => {
  const bytes = exportModel(
    mlp('float32'),
    (await Trainer.create({ model: mlp('float32'), loss: ceLoss, optimizer: { kind: 'sgd', lr: 0.1 }, seed: 1 })).store,
  );
  if (deviceProblem('cuda') !== null) {
    await assert.rejects(
      createSession(bytes, { device: 'cuda' }),
      (e: Error) =>
        e instanceof DeviceError &&
        new RegExp(
          String.raw`^--device cuda: the CUDA execution provider is not installed in onnxruntime-node\. ` +
            String.raw`On a machine with CUDA 12 and cuDNN 9 run ` +
            String.raw`\x60ONNXRUNTIME_NODE_INSTALL=cuda12 node node_modules\/onnxruntime-node\/script\/install\.js\x60\. ` +
            String.raw`Use --device cpu, or pass --allow-cpu-fallback to run on CPU with a warning$`,
        ).test(e.message),
    );
    resetFallbackWarnings();
    const warnings: string[] = [];
    const h = await createSession(bytes, { device: 'cuda', allowFallback: true, warn: (m) => warnings.push(m) });
    assert.equal(h.device, 'cpu');
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /^warning: --device cuda is not available \(the CUDA execution provider is not installed/);
  }
  await assert.rejects(createSession(bytes, { device: 'tpu' as never }), /Unknown device 'tpu'. Known: cpu, cuda, webgpu/);
  assert.equal((await createSession(bytes, { device: 'cpu' })).device, 'cpu');
});
