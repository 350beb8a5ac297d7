// Classifier-head detection on graph shapes that exporters produce, proven by running the
// edited model: embedding·Wᵀ + b must equal the logits.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Graph, type Value } from '../../../src/engine/graph.js';
import * as op from '../../../src/engine/ops.js';
import { createSession, ort } from '../../../src/engine/session.js';
import { Rng } from '../../../src/engine/rng.js';
import { findClassifierHead, exposeTensor, HeadNotFoundError } from '../../../src/teacher/head.js';
import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;
const D = 5;
const C = 3;

function randomArray(n: number, rng: Rng): Float32Array {
  return Float32Array.from({ length: n }, () => rng.normal());
}

async function check(build: (g: Graph, x: Value, rng: Rng) => Value): Promise<string> {
  const rng = new Rng(3);
  const g = new Graph();
  const x = g.input('x', 'float32', ['B', 4]);
  const features = op.tanh(op.matmul(x, g.constant(randomArray(4 * D, rng), 'float32', [4, D], 'pre')));
  const logits = build(g, features, rng);
  const model = onnx.ModelProto.decode(g.serialize({ outputs: [{ name: 'logits', value: logits }] }));
  const head = findClassifierHead(model, '/nonexistent/model.onnx', 'logits');
  assert.equal(head.rows, C);
  assert.equal(head.cols, D);
  exposeTensor(model, head.embeddingTensor, 'embedding', 1);
  const { session } = await createSession(onnx.ModelProto.encode(model).finish());
  const xs = randomArray(2 * 4, rng);
  const out = await session.run({ x: new ort.Tensor('float32', xs, [2, 4]) });
  const e = out.embedding!.data as Float32Array;
  const l = out.logits!.data as Float32Array;
  for (let i = 0; i < 2; i++) {
    for (let c = 0; c < C; c++) {
      let s = head.bias![c]!;
      for (let d = 0; d < D; d++) s += e[i * D + d]! * head.weight![c * D + d]!;
      assert.ok(Math.abs(s - l[i * C + c]!) < 1e-5, `row ${i} class ${c}: ${s} vs ${l[i * C + c]}`);
    }
  }
  return head.description;
}

test('Gemm with transB=1 (PyTorch Linear), with alpha and beta', async () => {
  const d = await check((g, x, rng) =>
    op.gemm(
      x,
      g.constant(randomArray(C * D, rng), 'float32', [C, D], 'cls.weight'),
      g.constant(randomArray(C, rng), 'float32', [C], 'cls.bias'),
      { transB: true, alpha: 0.5, beta: 2 },
    ),
  );
  assert.match(d, /^Gemm\(transB=1\)/);
});

test('Gemm with transB=0 behind Identity and Cast', async () => {
  await check((g, x, rng) =>
    op.cast(
      op.identity(
        op.gemm(x, g.constant(randomArray(D * C, rng), 'float32', [D, C], 'w'), g.constant(randomArray(C, rng), 'float32', [C], 'b')),
      ),
      'float32',
    ),
  );
});

test('MatMul with a [D, C] constant plus Add (TF and our own exports), bias first or second', async () => {
  const d = await check((g, x, rng) =>
    op.add(op.matmul(x, g.constant(randomArray(D * C, rng), 'float32', [D, C], 'w')), g.constant(randomArray(C, rng), 'float32', [C], 'b')),
  );
  assert.match(d, /^MatMul\(constant \[D, C\]\) \+ Add/);
  await check((g, x, rng) =>
    op.add(g.constant(randomArray(C, rng), 'float32', [C], 'b'), op.matmul(x, g.constant(randomArray(D * C, rng), 'float32', [D, C], 'w'))),
  );
});

test('MatMul with Transpose of a [C, D] constant, and MatMul without bias', async () => {
  const d = await check((g, x, rng) =>
    op.add(
      op.matmul(x, op.transpose(g.constant(randomArray(C * D, rng), 'float32', [C, D], 'w'), [1, 0])),
      g.constant(randomArray(C, rng), 'float32', [C], 'b'),
    ),
  );
  assert.match(d, /Transpose\(constant \[C, D\]\)/);
  await check((g, x, rng) => op.matmul(x, g.constant(randomArray(D * C, rng), 'float32', [D, C], 'w')));
});

test('a graph with no linear layer before the logits is a clear error', () => {
  const g = new Graph();
  const x = g.input('x', 'float32', ['B', C]);
  const model = onnx.ModelProto.decode(g.serialize({ outputs: [{ name: 'logits', value: op.softmax(op.tanh(x)) }] }));
  assert.throws(
    () => findClassifierHead(model, 'm.onnx', 'logits'),
    (e: Error) =>
      e instanceof HeadNotFoundError &&
      new RegExp(
        String.raw`^could not find the classifier layer that produces 'logits': looked for Gemm, or MatMul \(\+ Add\) with constant w` +
          String.raw`eights \(possibly behind Identity, Cast or Transpose, or in int8 as MatMulInteger\), and found Softmax '.*'\. ` +
          String.raw`Name the tensor the classifier re` +
          String.raw`ads with --embedding-output NAME$`,
      ).test(e.message),
  );
});
