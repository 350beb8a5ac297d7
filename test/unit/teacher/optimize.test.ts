// The teacher graph optimization: computing only position 0 after the last sequence-mixing op,
// GELU put in the order ONNX Runtime fuses, and the probe check that guards both. Proven by
// running original and rewritten graphs on the same inputs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import onnxProto from 'onnx-proto';
import { Graph, type Value } from '../../../src/engine/graph.js';
import * as op from '../../../src/engine/ops.js';
import { createSession, ort } from '../../../src/engine/session.js';
import { Rng } from '../../../src/engine/rng.js';
import { optimizeTeacherGraph } from '../../../src/teacher/optimize.js';
import { rewriteForFusion } from '../../../src/teacher/fusable.js';
import { dropMaskExpands } from '../../../src/teacher/row-prune.js';
import type { ModelProto } from '../../../src/teacher/onnx-model.js';
import { TEACHER_PRESETS } from '../../../src/teacher/default-config.js';
import { ensembleModel } from '../../../src/teacher/default-model.js';
import { ParameterStore } from '../../../src/engine/params.js';
import { modelParamSpecs } from '../../../src/engine/context.js';
import { exportModel } from '../../../src/engine/train-graph.js';

const { onnx } = onnxProto;
const H = 6;
const VOCAB = 50;

function randomArray(n: number, rng: Rng): Float32Array {
  return Float32Array.from({ length: n }, () => rng.normal());
}

/** A token classifier reading position 0 of `body(embeddings)`; outputs logits and embedding. */
function tokenModel(body: (g: Graph, e: Value, mask: Value, rng: Rng) => Value): ModelProto {
  const rng = new Rng(5);
  const g = new Graph();
  const ids = g.input('input_ids', 'int64', ['B', 'T']);
  const mask = g.input('attention_mask', 'int64', ['B', 'T']);
  const e = op.gather(g.constant(randomArray(VOCAB * H, rng), 'float32', [VOCAB, H], 'table'), ids);
  const h = body(g, e, mask, rng);
  const cls = op.squeeze(op.slice(h, [0], [1], [1]), [1]);
  const logits = op.add(
    op.matmul(cls, g.constant(randomArray(H * 2, rng), 'float32', [H, 2], 'w')),
    g.constant(randomArray(2, rng), 'float32', [2], 'b'),
  );
  return onnx.ModelProto.decode(
    g.serialize({
      outputs: [
        { name: 'logits', value: logits },
        { name: 'embedding', value: cls },
      ],
    }),
  );
}

function linear(g: Graph, x: Value, rng: Rng, name: string): Value {
  return op.add(
    op.matmul(x, g.constant(randomArray(H * H, rng), 'float32', [H, H], `${name}.w`)),
    g.constant(randomArray(H, rng), 'float32', [H], `${name}.b`),
  );
}

async function run(model: ModelProto, batch: number, seq: number): Promise<Float32Array> {
  const { session } = await createSession(onnx.ModelProto.encode(model).finish());
  const rng = new Rng(9);
  const ids = BigInt64Array.from({ length: batch * seq }, () => BigInt(rng.int(VOCAB)));
  const mask = BigInt64Array.from({ length: batch * seq }, (_, i) => (i % seq < seq - (i < seq ? 0 : 3) ? 1n : 0n));
  const feeds: Record<string, ort.Tensor> = {
    input_ids: new ort.Tensor('int64', ids, [batch, seq]),
    attention_mask: new ort.Tensor('int64', mask, [batch, seq]),
  };
  if (session.inputNames.includes('token_type_ids'))
    feeds.token_type_ids = new ort.Tensor('int64', new BigInt64Array(batch * seq), [batch, seq]);
  const out = await session.run(feeds, ['logits']);
  await session.release();
  return out.logits!.data as Float32Array;
}

async function assertSameLogits(original: ModelProto, optimized: ModelProto): Promise<void> {
  for (const [batch, seq] of [
    [4, 11],
    [1, 1],
    [6, 23],
  ] as const) {
    const a = await run(original, batch, seq);
    const b = await run(optimized, batch, seq);
    a.forEach((v, i) => assert.ok(Math.abs(v - b[i]!) <= 1e-5 * Math.max(1, Math.abs(v)), `logit ${i}: ${b[i]} vs ${v}`));
  }
}

const clone = (m: ModelProto) => onnx.ModelProto.decode(onnx.ModelProto.encode(m).finish());

test('an attention-like block: only what position 0 needs after the keys and values is computed, same logits', async () => {
  // Scores mix positions (keys over all of them); the query, output and feed-forward are per position.
  const model = tokenModel((g, e, mask, rng) => {
    const q = linear(g, e, rng, 'q');
    const k = linear(g, e, rng, 'k');
    const v = linear(g, e, rng, 'v');
    const bias = op.unsqueeze(op.mul(op.sub(1, op.cast(mask, 'float32')), -1e4), [1]);
    const p = op.softmax(op.add(op.matmul(q, op.transpose(k, [0, 2, 1])), bias));
    const a = op.add(e, linear(g, op.matmul(p, v), rng, 'o'));
    return op.tanh(op.add(a, linear(g, op.relu(linear(g, a, rng, 'f1')), rng, 'f2')));
  });
  const result = await optimizeTeacherGraph(clone(model), '/nonexistent/model.onnx', {
    vocabSize: VOCAB,
    outputs: ['logits', 'embedding'],
  });
  assert.ok(result.applied, result.note);
  const m = /(\d+) nodes compute position 0 only/.exec(result.note);
  assert.ok(m && Number(m[1]) >= 12, result.note);
  // The embeddings feed keys and values, so they are computed whole and sliced once.
  const slices = result.model.graph!.node!.filter((n) => n.name?.startsWith('kd_pos0_'));
  assert.equal(slices.length, 1);
  assert.equal(slices[0]!.input![0], model.graph!.node!.find((n) => n.opType === 'Gather')!.output![0]);
  await assertSameLogits(model, result.model);
});

test('a sum over positions after the selection point is not moved past: same logits', async () => {
  const model = tokenModel((g, e, _mask, rng) => {
    const h = op.relu(linear(g, e, rng, 'l1'));
    return op.add(h, op.reduceSum(h, [1], true)); // position 0 depends on every position of h
  });
  const result = await optimizeTeacherGraph(clone(model), '/nonexistent/model.onnx', {
    vocabSize: VOCAB,
    outputs: ['logits', 'embedding'],
  });
  assert.ok(result.applied, result.note);
  assert.match(result.note, /^graph optimized: 1 nodes compute position 0 only/); // only the final Add
  await assertSameLogits(model, result.model);
});

test('a graph that does not select a position is left unchanged, with the reason', async () => {
  const rng = new Rng(1);
  const g = new Graph();
  const ids = g.input('input_ids', 'int64', ['B', 'T']);
  g.input('attention_mask', 'int64', ['B', 'T']);
  const e = op.gather(g.constant(randomArray(VOCAB * H, rng), 'float32', [VOCAB, H], 'table'), ids);
  const pooled = op.reduceMean(e, [1]);
  const model = onnx.ModelProto.decode(
    g.serialize({
      outputs: [
        { name: 'logits', value: pooled },
        { name: 'embedding', value: pooled },
      ],
    }),
  );
  const result = await optimizeTeacherGraph(model, '/nonexistent/model.onnx', { vocabSize: VOCAB, outputs: ['logits', 'embedding'] });
  assert.equal(result.applied, false);
  assert.equal(result.note, 'graph not optimized: nothing found to rewrite');
  assert.equal(result.model, model);
});

function geluModel(extraUse: boolean): ModelProto {
  const g = new Graph();
  const x = g.input('x', 'float32', ['B', 4]);
  const half = op.mul(x, 0.5);
  const onePlus = op.add(op.erf(op.mul(x, Math.SQRT1_2)), 1);
  const y = op.mul(half, onePlus);
  const outputs = [{ name: 'y', value: y }];
  if (extraUse) outputs.push({ name: 'half', value: half });
  return onnx.ModelProto.decode(g.serialize({ outputs }));
}

test('GELU as 0.5·x·(1 + erf(x/√2)) is reordered to the form ONNX Runtime fuses, same values', async () => {
  const model = geluModel(false);
  const rewritten = clone(model);
  assert.equal(rewriteForFusion(rewritten, '/nonexistent/model.onnx'), 1);
  assert.deepEqual(
    rewritten.graph!.node!.map((n) => n.opType),
    ['Div', 'Erf', 'Add', 'Mul', 'Mul'],
  );
  const x = new ort.Tensor(
    'float32',
    Float32Array.from({ length: 12 }, (_, i) => (i - 6) / 2),
    [3, 4],
  );
  const outputs = async (m: ModelProto) => {
    const { session } = await createSession(onnx.ModelProto.encode(m).finish());
    const out = (await session.run({ x }, ['y'])).y!.data as Float32Array;
    await session.release();
    return out;
  };
  const [a, b] = [await outputs(model), await outputs(rewritten)];
  a.forEach((v, i) => assert.ok(Math.abs(v - b[i]!) < 1e-6, `${b[i]} vs ${v}`));
  // An intermediate read elsewhere keeps the pattern as it is.
  assert.equal(rewriteForFusion(geluModel(true), '/nonexistent/model.onnx'), 0);
});

test("kd's own teacher export (2 layers): attention fused in the first layer, the last one folded to one query; same logits", async () => {
  const tiny = TEACHER_PRESETS.tiny!;
  const cfg = {
    ...tiny,
    vocabSize: VOCAB,
    members: [{ ...tiny.members[0]!, layers: 2, hidden: 16, heads: 2, intermediate: 32 }, tiny.members[1]!],
  };
  const model = ensembleModel(cfg, 2);
  const store = new ParameterStore('float32');
  store.initialize(modelParamSpecs(model), new Rng(4));
  const rng = new Rng(8);
  for (const spec of store.specs) {
    // biases and layer-norm parameters too: none stays at its 0 or 1
    const v = store.get(spec.name);
    for (let i = 0; i < v.length; i++) v[i]! += 0.1 * rng.normal();
  }
  const original = onnx.ModelProto.decode(exportModel(model, store, { outputs: ['logits', 'embedding'] }));
  const result = await optimizeTeacherGraph(clone(original), '/nonexistent/model.onnx', {
    vocabSize: VOCAB,
    outputs: ['logits', 'embedding'],
  });
  assert.match(
    result.note,
    new RegExp(
      String.raw`^graph optimized: \d+ nodes compute position 0 only, 0 removed; 1 single-query attention blocks without key\/value p` +
        String.raw`rojections; \d+ patterns put in fusable form; 1 attention blocks fused$`,
    ),
  );
  const ops = result.model.graph!.node!.map((n) => n.opType);
  assert.equal(ops.filter((o) => o === 'Attention').length, 1);
  assert.equal(ops.filter((o) => o === 'Softmax').length, 1); // the folded last layer keeps its own
  await assertSameLogits(original, result.model);
});

/**
 * One self-attention layer written as PyTorch exports Hugging Face's DistilBERT: biases behind Identity (the exporter's
 * shared zero biases), head splits to Concat(batch, -1, heads, size) computed at run time, q divided by √d, and the
 * mask as Where(Cast(Expand(Equal(mask, 0), Shape(scores))), min, scores).
 */
function pytorchAttention(g: Graph, x: Value, mask: Value, rng: Rng, name: string): Value {
  const heads = 2;
  const d = H / heads;
  const projection = (p: string) => {
    const bias = g.constant(randomArray(H, rng), 'float32', [H], `${name}.${p}.b`);
    const viaIdentity = g.addNode('Identity', [bias], {}, [{ dtype: 'float32', shape: [H] }])[0]!;
    return op.add(viaIdentity, op.matmul(x, g.constant(randomArray(H * H, rng), 'float32', [H, H], `${name}.${p}.w`)));
  };
  const batch = op.unsqueeze(op.gather(op.shapeOf(x), g.constant([0], 'int64', [], `${name}.zero`)), [0]);
  const headShape = op.concat([batch, g.int64s([-1]), g.int64s([heads]), g.int64s([d])], 0);
  const split = (t: Value, perm: number[]) =>
    op.transpose(g.addNode('Reshape', [t, headShape], {}, [{ dtype: 'float32', shape: [x.shape[0]!, x.shape[1]!, heads, d] }])[0]!, perm);
  const q = op.div(split(projection('q'), [0, 2, 1, 3]), Math.sqrt(d));
  const k = split(projection('k'), [0, 2, 3, 1]);
  const v = split(projection('v'), [0, 2, 1, 3]);
  const scores = op.matmul(q, k);
  const masked = op.cast(op.expandLike(op.unsqueeze(op.equal(mask, 0), [1, 2]), scores), 'bool');
  const p = op.softmax(op.where(masked, -3.4028234663852886e38, scores));
  const merged = op.reshape(op.transpose(op.matmul(p, v), [0, 2, 1, 3]), [0, 0, H]);
  return op.tanh(op.add(x, linear(g, merged, rng, `${name}.o`)));
}

test('PyTorch-exported attention (Identity biases, run-time shapes, Div-scaled q, Where mask): the last layer folds', async () => {
  const model = tokenModel((g, e, mask, rng) => pytorchAttention(g, pytorchAttention(g, e, mask, rng, 'l0'), mask, rng, 'l1'));
  const result = await optimizeTeacherGraph(clone(model), '/nonexistent/model.onnx', {
    vocabSize: VOCAB,
    outputs: ['logits', 'embedding'],
  });
  assert.match(
    result.note,
    new RegExp(
      "^graph optimized: 2 mask Expands left to Where's broadcasting; \\d+ nodes compute position 0 only, \\d+ removed; " +
        '1 single-query attention blocks without key/value projections',
    ),
  );
  const ops = result.model.graph!.node!.map((n) => n.opType);
  assert.equal(ops.filter((o) => o === 'Expand').length, 0);
  // The first layer projects q, k, v and the output; the folded last one q and the output only.
  const projections = result.model.graph!.node!.filter((n) => n.opType === 'MatMul' && /\.w$/.test(n.input![1]!)).map((n) => n.input![1]);
  assert.deepEqual(projections.sort(), ['l0.k.w', 'l0.o.w', 'l0.q.w', 'l0.v.w', 'l1.o.w', 'l1.q.w']);
  await assertSameLogits(model, result.model);
});

test('an Expand whose Where does not read the tensor it was expanded to is kept: its shape may be larger than the Where’s', () => {
  const g = new Graph();
  const mask = g.input('attention_mask', 'int64', ['B', 'T']);
  const s = g.input('s', 'float32', ['B', 2, 'T', 'T']);
  const other = g.input('o', 'float32', ['B', 1, 1, 'T']);
  const y = op.where(op.expandLike(op.unsqueeze(op.equal(mask, 0), [1, 2]), s), 0, other);
  const model = onnx.ModelProto.decode(g.serialize({ outputs: [{ name: 'y', value: y }] }));
  assert.equal(dropMaskExpands(model, new Map()), 0);
  assert.equal(model.graph!.node!.filter((n) => n.opType === 'Expand').length, 1);
});
