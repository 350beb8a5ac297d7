// kd quantize end to end: both shared PyTorch exports (and one with its weights in model.onnx_data)
// become int8 files that match their fp32 logits and that transformers.js loads as its default q8;
// the refusals name the file and what they found.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import onnxProto from 'onnx-proto';
import { runKd, tempDir } from '../helpers.js';
import { copyFixture, moveToExternalData, readModel, writeModel } from '../teacher-folders.js';
import { quantPrecisionOptions } from '../../src/engine/session.js';

const { onnx } = onnxProto;
const sha = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');
const quantizedModel = (dir: string) => onnx.ModelProto.decode(readFileSync(join(dir, 'onnx', 'model_quantized.onnx')));
const opCount = (m: InstanceType<typeof onnx.ModelProto>, op: string) => (m.graph!.node ?? []).filter((n) => n.opType === op).length;

/** The stated tolerance: int8 logits of the tiny fixtures (|logits| < 1) lie within this of fp32. */
const LOGIT_TOLERANCE = 0.02;

for (const name of ['tiny-random-bert', 'tiny-random-distilbert']) {
  test(`${name}: int8 agrees with fp32 on every check text, within ${LOGIT_TOLERANCE}, and transformers.js loads it as q8`, async () => {
    const dir = copyFixture(name);
    const before = sha(join(dir, 'onnx', 'model.onnx'));
    const r = runKd(['quantize', dir, '--json']);
    assert.equal(r.status, 0, r.stderr);
    const j = r.json();
    assert.equal(j.file, join(dir, 'onnx', 'model_quantized.onnx'));
    assert.deepEqual(j.rewritten, { MatMul: 12, Gemm: 2, Gather: 0 }); // 2 layers × 6 weight MatMuls; pooler and classifier
    assert.equal(j.check.inputs, 'tokenizer');
    assert.equal(j.check.rows, 64);
    assert.equal(j.check.agreement, 1);
    assert.ok(j.check.maxDiff > 0 && j.check.maxDiff < LOGIT_TOLERANCE, `max logit difference ${j.check.maxDiff}`);
    assert.ok(j.bytes.int8 < 0.45 * j.bytes.fp32, `${j.bytes.int8} of ${j.bytes.fp32} bytes`);
    assert.equal(sha(join(dir, 'onnx', 'model.onnx')), before, 'model.onnx is left as it is');
    assert.match(r.stdout, /argmax agreement 100\.00%/);
    // The graph: the same inputs, outputs and opset; every weight MatMul in int8; no float weight left behind.
    const fp32 = readModel(dir);
    const int8 = quantizedModel(dir);
    assert.deepEqual(int8.graph!.input, fp32.graph!.input);
    assert.deepEqual(int8.graph!.output, fp32.graph!.output);
    assert.deepEqual(int8.opsetImport, fp32.opsetImport);
    assert.equal(opCount(int8, 'MatMulInteger'), 14);
    assert.equal(opCount(int8, 'MatMul'), 4, 'the attention products (two run-time inputs) stay float');
    assert.equal(opCount(int8, 'Gemm'), 0);
    const names = new Set((int8.graph!.initializer ?? []).map((t) => t.name));
    assert.ok(!names.has('cls.weight') && names.has('cls.weight_quantized'));
    // transformers.js (its default dtype in a browser is q8) reads model_quantized.onnx: its scores are
    // not fp32's to the bit, and within the tolerance of them.
    const { pipeline, env } = await import('@huggingface/transformers');
    env.allowRemoteModels = false;
    env.localModelPath = `${dirname(dir)}/`;
    const texts = ['what a wonderful morning', 'my phone broke again, so annoying', 'going to work'];
    const scores = async (dtype: 'fp32' | 'q8') => {
      // The entry kd's own sessions carry: on a CPU without VNNI, u8×s8 products that do not saturate (createSession).
      const classify = await pipeline('text-classification', basename(dir), { dtype, session_options: await quantPrecisionOptions() });
      const out = (await classify(texts, { top_k: null })) as unknown as { label: string; score: number }[][];
      await classify.dispose();
      return out.map((row) => row.find((x) => x.label === 'POSITIVE')!.score);
    };
    const [q8, full] = [await scores('q8'), await scores('fp32')];
    assert.notDeepEqual(q8, full);
    q8.forEach((s, i) => assert.ok(Math.abs(s - full[i]!) < LOGIT_TOLERANCE / 2, `${s} vs ${full[i]}`));
  });
}

test('a model whose weights are in model.onnx_data quantizes into one self-contained file', () => {
  const dir = copyFixture('tiny-random-distilbert');
  assert.ok(moveToExternalData(dir) > 0);
  const r = runKd(['quantize', dir, '--json']);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.json().check.agreement, 1);
  const int8 = quantizedModel(dir);
  const external = (int8.graph!.initializer ?? []).filter((t) => t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL);
  assert.deepEqual(external, []);
  assert.ok(r.json().bytes.fp32 > 400_000, 'the float size counts model.onnx_data');
});

/** The last stderr line of a refused run (exit 2, one line). */
function refusal(args: string[]): string {
  const r = runKd(args);
  assert.equal(r.status, 2, r.stderr);
  const lines = r.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, r.stderr);
  return lines[0]!;
}

test('refusals: no onnx/model.onnx, an already quantized model, nothing to quantize', () => {
  const root = tempDir('kd-quantize-');
  assert.equal(
    refusal(['quantize', root]),
    `kd: error: ${root}: no onnx/model.onnx (kd quantize reads a Hugging Face-layout folder: config.json, tokenizer.json, ` +
      'onnx/model.onnx)',
  );
  // model.onnx that is a quantized file.
  const dir = copyFixture('tiny-random-bert');
  assert.equal(runKd(['quantize', dir]).status, 0);
  writeFileSync(join(dir, 'onnx', 'model.onnx'), readFileSync(join(dir, 'onnx', 'model_quantized.onnx')));
  assert.match(
    refusal(['quantize', dir]),
    new RegExp(
      `^kd: error: ${join(dir, 'onnx', 'model.onnx')}: already quantized \\(it has DynamicQuantizeLinear, MatMulInteger\\); ` +
        'kd quantize reads the float model',
    ),
  );
  // A graph of Add and Relu only.
  const plain = join(root, 'plain');
  mkdirSync(join(plain, 'onnx'), { recursive: true });
  const T = onnx.TensorProto.DataType.FLOAT;
  const vi = (name: string) => ({ name, type: { tensorType: { elemType: T, shape: { dim: [{ dimParam: 'B' }, { dimValue: 4 }] } } } });
  writeModel(
    plain,
    onnx.ModelProto.create({
      irVersion: 8,
      opsetImport: [{ domain: '', version: 14 }],
      graph: {
        name: 'g',
        node: [
          { opType: 'Add', input: ['x', 'x'], output: ['a'], name: 'add' },
          { opType: 'Relu', input: ['a'], output: ['logits'], name: 'relu' },
        ],
        input: [vi('x')],
        output: [vi('logits')],
      },
    }),
  );
  assert.equal(
    refusal(['quantize', plain]),
    `kd: error: ${join(plain, 'onnx', 'model.onnx')}: nothing to quantize: no MatMul or Gemm with a constant 2-D float32 ` +
      'weight and no Gather on a float32 table of at least 10000 elements; the graph has Add ×1, Relu ×1. Such a model ' +
      'gains nothing from int8; ship model.onnx as it is',
  );
  assert.ok(!existsSync(join(plain, 'onnx', 'model_quantized.onnx')));
});

test('an int8 model that disagrees with fp32 on the check batch is not written, and the message says by how much', () => {
  // Two logits that differ by 1e-4 · x·d: fp32 tells them apart, int8 (one scale per column, the same for both) cannot.
  const dir = join(tempDir('kd-quantize-'), 'tied');
  mkdirSync(join(dir, 'onnx'), { recursive: true });
  const K = 32;
  const w = new Float32Array(K * 2);
  for (let k = 0; k < K; k++) {
    w[2 * k] = Math.sin(k + 1);
    w[2 * k + 1] = Math.sin(k + 1) + 1e-4 * Math.cos(3 * k);
  }
  const T = onnx.TensorProto.DataType.FLOAT;
  const vi = (name: string, n: number) => ({
    name,
    type: { tensorType: { elemType: T, shape: { dim: [{ dimParam: 'B' }, { dimValue: n }] } } },
  });
  writeModel(
    dir,
    onnx.ModelProto.create({
      irVersion: 8,
      opsetImport: [{ domain: '', version: 14 }],
      graph: {
        name: 'g',
        node: [{ opType: 'MatMul', input: ['x', 'W'], output: ['logits'], name: 'head' }],
        initializer: [{ name: 'W', dataType: T, dims: [K, 2], rawData: new Uint8Array(w.buffer) }],
        input: [vi('x', K)],
        output: [vi('logits', 2)],
      },
    }),
  );
  const line = refusal(['quantize', dir, '--weight-scales', 'tensor']);
  const m = new RegExp(
    "^kd: error: (.+): not written: the int8 model picks the float model's class on (\\d+) of 64 check inputs \\(([\\d.]+)%\\), " +
      '([\\d.]+) points below the 99\\.0% required \\(largest logit difference [\\d.e-]+\\); ship onnx/model\\.onnx as it is, ' +
      'or pass --min-agreement ([\\d.]+) to write it anyway$',
  ).exec(line);
  assert.ok(m, line);
  assert.equal(m[1], join(dir, 'onnx', 'model_quantized.onnx'));
  const agreed = Number(m[2]);
  assert.ok(agreed < 63, `${agreed} of 64 agree`);
  assert.equal(m[4], (100 * (0.99 - agreed / 64)).toFixed(1));
  assert.ok(!existsSync(join(dir, 'onnx', 'model_quantized.onnx')));
  // The way out the message names works.
  const forced = runKd(['quantize', dir, '--weight-scales', 'tensor', '--min-agreement', m[5]!, '--json']);
  assert.equal(forced.status, 0, forced.stderr);
  assert.equal(forced.json().check.agreement, agreed / 64);
});
