// --device webgpu. Without a WebGPU adapter (CI has none; elsewhere the Vulkan loader is pointed at no driver), every
// command refuses it in one line that says what to install, or runs on CPU after one warning with --allow-cpu-fallback.
// With an adapter (a GPU's Vulkan driver, or Mesa's lavapipe, a CPU one), the teacher and a training run on WebGPU give
// the CPU's numbers; without one those cases are skipped, saying so.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Teacher } from '../../src/teacher/teacher.js';
import { Trainer } from '../../src/engine/trainer.js';
import { createSession, DeviceError, ort, providerFailure } from '../../src/engine/session.js';
import { exportModel, type LossDefinition } from '../../src/engine/train-graph.js';
import type { ModelDefinition } from '../../src/engine/context.js';
import { linear } from '../../src/engine/layers.js';
import * as op from '../../src/engine/ops.js';
import { batchMean, crossEntropy } from '../../src/engine/losses.js';
import { normal } from '../../src/engine/params.js';
import { Rng } from '../../src/engine/rng.js';
import { readAllExamples } from '../../src/data/read.js';
import { runKd, S140_RANDOM, sharedPath } from '../helpers.js';

const TEACHER = () => sharedPath('fixtures', 'hf', 'tiny-random-bert');
/** The Vulkan loader's driver list pointed at a file that does not exist: no adapter, whatever the machine has. */
const NO_DRIVER = { VK_DRIVER_FILES: '/nonexistent/kd-no-driver.json', VK_ICD_FILENAMES: '/nonexistent/kd-no-driver.json' };

const mlp: ModelDefinition = {
  inputs: { x: { dtype: 'float32', shape: ['B', 16] } },
  forward(ctx, { x }) {
    const h = op.relu(linear(ctx, x!, 16, 32, 'l1', { init: normal(0.5) }));
    return { logits: linear(ctx, h, 32, 3, 'l2', { init: normal(0.5) }) };
  },
};
const ceLoss: LossDefinition = {
  inputs: { labels: { dtype: 'int64', shape: ['B'] } },
  build: (outputs, inputs) => ({ loss: batchMean(crossEntropy(outputs.logits!, inputs.labels!)) }),
};

/** Why this machine has no WebGPU adapter (the DeviceError's line), or null when a session starts on one. */
async function noAdapter(): Promise<string | null> {
  const store = (await Trainer.create({ model: mlp, loss: ceLoss, optimizer: { kind: 'sgd', lr: 0.1 }, seed: 1 })).store;
  try {
    const h = await createSession(exportModel(mlp, store), { device: 'webgpu' });
    await h.session.release();
    return null;
  } catch (e) {
    if (e instanceof DeviceError) return e.message;
    throw e;
  }
}
const missing = await noAdapter();
const skip = missing ? `no WebGPU adapter on this machine (${missing.split(';')[0]})` : false;

test("providerFailure keeps the last sentence of ONNX Runtime's C++ assertion, and for WebGPU says what to install", () => {
  const assertion = (what: string) =>
    '/onnxruntime_src/onnxruntime/core/providers/webgpu/webgpu_context.cc:136 onnxruntime::webgpu::WebGpuContext::Initialize(' +
    'const onnxruntime::webgpu::WebGpuContextConfig&)::<lambda()> adapter_result.status == wgpu::RequestAdapterStatus::Success ' +
    `was false. ${what}\nstack line`;
  const reason = providerFailure('webgpu', assertion('Failed to get a WebGPU adapter: No supported adapters.'));
  assert.match(
    reason,
    /^no WebGPU adapter \("No supported adapters"\); on \S+ ONNX Runtime reaches the GPU through (Vulkan|D3D12|Metal): /,
  );
  const cuda = providerFailure('cuda', assertion('CUDA failure 100: no CUDA-capable device is detected.'));
  assert.equal(cuda, 'CUDA failure 100: no CUDA-capable device is detected');
  assert.equal(
    providerFailure('cuda', 'libcudnn.so.9: cannot open shared object file\nmore'),
    'libcudnn.so.9: cannot open shared object file',
  );
});

test(
  '--device webgpu without an adapter: one line naming what to install, or one warning and CPU',
  { skip: process.platform !== 'linux' },
  () => {
    const args = ['teacher', 'predict', '--model', TEACHER(), '--text', 'great product', '--json', '--device', 'webgpu'];
    const refused = runKd(args, { env: NO_DRIVER });
    assert.equal(refused.status, 2, refused.stderr);
    // Before, the line was ONNX Runtime's C++ assertion: a source path, a lambda, a condition.
    assert.equal(
      refused.stderr.trimEnd().split('\n').at(-1)!,
      'kd: error: --device webgpu: no WebGPU adapter ("No supported adapters"); on Linux ONNX Runtime reaches the GPU through ' +
        "Vulkan: install the GPU's Vulkan driver, or Mesa's lavapipe (a CPU one) to try the path. Use --device cpu, or pass " +
        '--allow-cpu-fallback to run on CPU with a warning',
    );
    const allowed = runKd([...args, '--allow-cpu-fallback'], { env: NO_DRIVER });
    assert.equal(allowed.status, 0, allowed.stderr);
    const warnings = allowed.stderr.split('\n').filter((l) => l.startsWith('warning: --device webgpu'));
    assert.equal(warnings.length, 1, JSON.stringify(warnings));
    assert.match(warnings[0]!, /^warning: --device webgpu is not available \(no WebGPU adapter .*\); running on CPU$/);
    assert.equal(allowed.json().device, 'cpu');
  },
);

test('a teacher on WebGPU: the same optimized graph, logits and embeddings within 1e-4 of the CPU on 64 tweets', { skip }, async () => {
  const { examples } = await readAllExamples([S140_RANDOM()], { progress: false });
  const texts = examples.slice(0, 64).map((e) => e.text);
  const quiet = { warn: () => undefined };
  const [cpu, gpu] = [await Teacher.load(TEACHER(), quiet), await Teacher.load(TEACHER(), { ...quiet, session: { device: 'webgpu' } })];
  try {
    assert.equal(gpu.device, 'webgpu');
    assert.equal(gpu.optimization, cpu.optimization);
    const [a, b] = [await cpu.predict(texts), await gpu.predict(texts)];
    for (const [name, x, y] of [
      ['logits', a.logits, b.logits],
      ['embedding', a.embedding, b.embedding],
    ] as const) {
      assert.equal(x.length, y.length);
      for (let i = 0; i < x.length; i++) assert.ok(Math.abs(x[i]! - y[i]!) <= 1e-4, `${name}[${i}]: ${x[i]} on CPU, ${y[i]} on WebGPU`);
    }
  } finally {
    await cpu.dispose();
    await gpu.dispose();
  }
});

test('training on WebGPU: 20 AdamW steps (one ONNX graph each) give the CPU losses and weights within 1e-4', { skip }, async () => {
  const rng = new Rng(7);
  const batches = Array.from({ length: 4 }, () => ({
    x: new ort.Tensor(
      'float32',
      Float32Array.from({ length: 8 * 16 }, () => rng.normal()),
      [8, 16],
    ),
    labels: new ort.Tensor(
      'int64',
      BigInt64Array.from({ length: 8 }, () => BigInt(rng.int(3))),
      [8],
    ),
  }));
  const run = async (device: 'cpu' | 'webgpu') => {
    const trainer = await Trainer.create({
      model: mlp,
      loss: ceLoss,
      optimizer: { kind: 'adamw', lr: 1e-2 },
      seed: 3,
      session: { device },
    });
    assert.equal(trainer.device, device);
    const losses: number[] = [];
    for (let s = 0; s < 20; s++) losses.push((await trainer.step(batches[s % batches.length]!)).loss);
    const weights = Float64Array.from(trainer.store.get('l1.weight'));
    await trainer.dispose();
    return { losses, weights };
  };
  const [cpu, gpu] = [await run('cpu'), await run('webgpu')];
  assert.ok(cpu.losses[19]! < cpu.losses[0]!, 'the loss falls');
  for (let s = 0; s < 20; s++)
    assert.ok(Math.abs(cpu.losses[s]! - gpu.losses[s]!) <= 1e-4, `step ${s}: ${cpu.losses[s]} vs ${gpu.losses[s]}`);
  for (let i = 0; i < cpu.weights.length; i++)
    assert.ok(Math.abs(cpu.weights[i]! - gpu.weights[i]!) <= 1e-4, `l1.weight[${i}]: ${cpu.weights[i]} vs ${gpu.weights[i]}`);
});
