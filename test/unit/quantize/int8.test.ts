// Dynamic int8 quantization proven against a plain-TypeScript int8 reference written here: ONNX
// Runtime's output of a quantized MatMul, Gemm and embedding Gather must equal it bit for bit.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import onnxProto from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import { Rng } from '../../../src/engine/rng.js';
import { createSession, quantPrecisionOptions, quantProductsSaturate } from '../../../src/engine/session.js';
import { roundHalfToEven, quantizeSymmetric } from '../../../src/quantize/int8.js';
import { quantizeGraph, AlreadyQuantizedError, NothingToQuantizeError } from '../../../src/quantize/graph.js';
import { FormatError } from '../../../src/data/errors.js';

const { onnx } = onnxProto;
type ModelProto = InstanceType<typeof onnx.ModelProto>;
const FLOAT = onnx.TensorProto.DataType.FLOAT;
const f = Math.fround;
const FILE = '/models/x/onnx/model.onnx';

// ---- The reference: ONNX's DynamicQuantizeLinear formula, symmetric int8 weights, int32 sums, float rescale.

/** Ties to even, written independently of src/quantize/int8.ts. */
function rint(x: number): number {
  const floor = Math.floor(x);
  const frac = x - floor;
  if (frac < 0.5) return floor;
  if (frac > 0.5) return floor + 1;
  return floor % 2 === 0 ? floor : floor + 1;
}

const clamp = (x: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, x));

/** DynamicQuantizeLinear (ONNX spec): uint8, scale = (max(0, max x) − min(0, min x)) / 255 in float32. */
function dynamicQuantize(x: Float32Array): { q: Uint8Array; scale: number; zeroPoint: number } {
  let lo = 0;
  let hi = 0;
  for (const v of x) {
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  const scale = hi === lo ? 1 : f(f(hi - lo) / 255);
  const zeroPoint = rint(clamp(f(0 - f(lo / scale)), 0, 255));
  return { q: Uint8Array.from(x, (v) => clamp(rint(f(v / scale)) + zeroPoint, 0, 255)), scale, zeroPoint };
}

/** Symmetric int8 of W [K, N]: scale max|w| / 127 per column (or for all of it). */
function int8Weights(w: Float32Array, k: number, n: number, perColumn: boolean): { q: Int8Array; scales: Float32Array } {
  const scales = new Float32Array(perColumn ? n : 1);
  for (let c = 0; c < n; c++) {
    let m = 0;
    for (let r = 0; r < k; r++) m = Math.max(m, Math.abs(w[r * n + c]!));
    const g = perColumn ? c : 0;
    scales[g] = Math.max(scales[g]!, f(m / 127));
  }
  const q = Int8Array.from(w, (v, i) => clamp(rint(f(v / scales[perColumn ? i % n : 0]!)), -127, 127));
  return { q, scales };
}

/** A [rows, K] · W [K, N] in int8: int32 sums of (a_q − a_zp) · w_q, cast to float, times float32(a_scale · w_scale). */
function int8MatMul(a: Float32Array, w: Float32Array, k: number, n: number, perColumn: boolean): Float32Array {
  const qa = dynamicQuantize(a);
  const qw = int8Weights(w, k, n, perColumn);
  const rows = a.length / k;
  const y = new Float32Array(rows * n);
  for (let r = 0; r < rows; r++)
    for (let c = 0; c < n; c++) {
      let acc = 0;
      for (let i = 0; i < k; i++) acc += (qa.q[r * k + i]! - qa.zeroPoint) * qw.q[i * n + c]!;
      assert.ok(Math.abs(acc) < 2 ** 31, 'int32 accumulator');
      y[r * n + c] = f(f(acc) * f(qa.scale * qw.scales[perColumn ? c : 0]!));
    }
  return y;
}

// ---- Small models built with the protobuf classes (no kd code), quantized, run by ONNX Runtime.

function floatTensor(name: string, dims: number[], data: Float32Array) {
  return onnx.TensorProto.create({ name, dataType: FLOAT, dims, rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) });
}

function valueInfo(name: string, elemType: number, dims: (number | string)[]) {
  const dim = dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d }));
  return onnx.ValueInfoProto.create({ name, type: { tensorType: { elemType, shape: { dim } } } });
}

function buildModel(g: {
  nodes: onnxProto.onnx.INodeProto[];
  initializers: onnxProto.onnx.ITensorProto[];
  inputs: onnxProto.onnx.IValueInfoProto[];
  outputs: onnxProto.onnx.IValueInfoProto[];
  opset?: number;
}): ModelProto {
  return onnx.ModelProto.create({
    irVersion: 8,
    opsetImport: [{ domain: '', version: g.opset ?? 14 }],
    graph: { name: 'g', node: g.nodes, initializer: g.initializers, input: g.inputs, output: g.outputs },
  });
}

const random = (n: number, rng: Rng, scale = 1) => Float32Array.from({ length: n }, () => scale * rng.normal());

/**
 * Whether this CPU's unfused u8×s8 MatMulInteger saturates: x86-64 without VNNI adds pairs of products in 16 bits, so
 * 255·127 + 255·127 comes out as 32767, not 64770. kd's sessions run fused, where `session.x64quantprecision` turns
 * such products into u8×u8 ones (createSession); a graph left unfused keeps the CPU's kernel, and is checked only where
 * that kernel is exact.
 */
async function unfusedSaturates(): Promise<boolean> {
  const session = await ort.InferenceSession.create(onnx.ModelProto.encode(saturationProbe()).finish(), {
    graphOptimizationLevel: 'basic',
  });
  return (await probeProduct(session)) !== 2 * 255 * 127;
}

/** The probe's y for a = (255, 255) in `session`, which it then releases. */
async function probeProduct(session: ort.InferenceSession): Promise<number> {
  try {
    const { y } = await session.run({ a: new ort.Tensor('uint8', Uint8Array.of(255, 255), [1, 2]) });
    return (y!.data as Int32Array)[0]!;
  } finally {
    await session.release();
  }
}

/** y = a·b, a uint8 [1, 2] fed, b int8 [2, 1] = (127, 127) constant: 64770 for a = (255, 255) where nothing saturates. */
function saturationProbe(): ModelProto {
  return buildModel({
    nodes: [onnx.NodeProto.create({ opType: 'MatMulInteger', input: ['a', 'b'], output: ['y'] })],
    initializers: [
      onnx.TensorProto.create({
        name: 'b',
        dataType: onnx.TensorProto.DataType.INT8,
        dims: [2, 1],
        rawData: Int8Array.of(127, 127) as never,
      }),
    ],
    inputs: [valueInfo('a', onnx.TensorProto.DataType.UINT8, [1, 2])],
    outputs: [valueInfo('y', onnx.TensorProto.DataType.INT32, [1, 1])],
  });
}

const UNFUSED_SATURATES = await unfusedSaturates();

/** The levels a quantized graph is checked at: fused (kd's sessions), and unfused where this CPU's kernel is exact. */
const LEVELS: readonly ('basic' | 'all')[] = UNFUSED_SATURATES ? ['all'] : ['all', 'basic'];

test("kd's sessions (createSession) add u8×s8 products without saturating, on any x86-64 CPU", async (t) => {
  const { session } = await createSession(onnx.ModelProto.encode(saturationProbe()).finish());
  assert.equal(await probeProduct(session), 2 * 255 * 127);
  t.diagnostic(`this CPU's unfused kernel ${UNFUSED_SATURATES ? 'saturates (no VNNI)' : 'is exact'}`);
});

test('the entry only where products saturate: the probe agrees with a fused session without it', async (t) => {
  const session = await ort.InferenceSession.create(onnx.ModelProto.encode(saturationProbe()).finish(), { graphOptimizationLevel: 'all' });
  const saturates = (await probeProduct(session)) !== 2 * 255 * 127;
  assert.equal(await quantProductsSaturate(), saturates);
  // With VNNI the entry is not carried: it forces a slower u8×u8 kernel for the same bits.
  assert.deepEqual(await quantPrecisionOptions(), { extra: { session: saturates ? { x64quantprecision: '1' } : {} } });
  t.diagnostic(`this CPU's fused kernel ${saturates ? 'saturates without the entry: sessions carry it' : 'is exact: no entry'}`);
});

/**
 * The model's outputs from ONNX Runtime, unfused (`basic`: the quantized nodes as written) or fused (`all`), with the
 * entry kd's sessions carry (createSession): on a CPU without VNNI it keeps u8×s8 products from saturating.
 */
async function run(model: ModelProto, feeds: Record<string, ort.Tensor>, level: 'basic' | 'all'): Promise<Record<string, Float32Array>> {
  const session = await ort.InferenceSession.create(onnx.ModelProto.encode(model).finish(), {
    graphOptimizationLevel: level,
    ...(await quantPrecisionOptions()),
  });
  try {
    const out = await session.run(feeds);
    return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, v.data as Float32Array]));
  } finally {
    await session.release();
  }
}

const ops = (m: ModelProto) => (m.graph!.node ?? []).map((n) => n.opType);
const bits = (x: Float32Array) => Array.from(new Uint32Array(x.buffer, x.byteOffset, x.length));

test('roundHalfToEven sends ties to the even neighbour and everything else to the nearest integer', () => {
  assert.deepEqual(
    [0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.49, -3.51, 126.5, -126.5].map(roundHalfToEven),
    [0, 2, 2, 0, -2, -2, 3, -4, 126, -126],
  );
  for (const x of [0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 7.5, -7.5, 0.3, -0.7]) assert.equal(roundHalfToEven(x), rint(x), String(x));
});

test('quantizeSymmetric: scale max|w| / 127 per column, row or tensor; ties to even; an all-zero group keeps scale 1', () => {
  // Columns [1, 0.5] and [-2, 0.25] of [[1, -2], [0.5, 0.25]]: scales 1/127 and 2/127.
  const w = Float32Array.of(1, -2, 0.5, 0.25);
  const cols = quantizeSymmetric(w, 2, 2, 'column');
  assert.deepEqual(Array.from(cols.scales), [f(1 / 127), f(2 / 127)]);
  // 0.5 / (1/127) = 63.5 → 64 (even); 0.25 / (2/127) = 15.875 → 16.
  assert.deepEqual(Array.from(cols.values), [127, -127, 64, 16]);
  assert.deepEqual(Array.from(quantizeSymmetric(w, 2, 2, 'row').scales), [f(2 / 127), f(0.5 / 127)]);
  assert.deepEqual(Array.from(quantizeSymmetric(w, 2, 2, 'tensor').values), [64, -127, 32, 16]);
  const zero = quantizeSymmetric(new Float32Array(4), 2, 2, 'row');
  assert.deepEqual(
    [Array.from(zero.scales), Array.from(zero.values)],
    [
      [1, 1],
      [0, 0, 0, 0],
    ],
  );
  const rng = new Rng(5);
  const big = random(40 * 9, rng);
  for (const perColumn of [true, false]) {
    const ours = quantizeSymmetric(big, 40, 9, perColumn ? 'column' : 'tensor');
    const ref = int8Weights(big, 40, 9, perColumn);
    assert.deepEqual(Array.from(ours.values), Array.from(ref.q));
    assert.deepEqual(Array.from(ours.scales), Array.from(ref.scales));
  }
  assert.throws(() => quantizeSymmetric(w, 3, 2, 'row'), /'w' has 4 values, not rows × cols = 6/);
});

test('a quantized MatMul equals the int8 reference bit for bit (per column and per tensor, 2-D and 3-D, fused or not)', async () => {
  const rng = new Rng(11);
  const K = 48;
  const N = 10;
  const w = random(K * N, rng, 0.2);
  for (const [shape, weightScales] of [
    [[7, K], 'column'],
    [[2, 3, K], 'tensor'],
    [[2, 3, K], 'column'],
  ] as const) {
    const rows = shape.slice(0, -1).reduce((a, b) => a * b, 1);
    const model = buildModel({
      nodes: [onnx.NodeProto.create({ opType: 'MatMul', input: ['x', 'W'], output: ['y'], name: 'mm' })],
      initializers: [floatTensor('W', [K, N], w)],
      inputs: [valueInfo('x', FLOAT, [...shape.slice(0, -1).map((_, i) => `d${i}`), K])],
      outputs: [valueInfo('y', FLOAT, [...shape.slice(0, -1).map((_, i) => `d${i}`), N])],
    });
    const q = quantizeGraph(model, FILE, { weightScales });
    assert.deepEqual(ops(q.model), ['DynamicQuantizeLinear', 'MatMulInteger', 'Cast', 'Mul', 'Mul']);
    assert.deepEqual(q.rewritten, { MatMul: 1, Gemm: 0, Gather: 0 });
    const names = (q.model.graph!.initializer ?? []).map((t) => `${t.name}:${t.dataType}[${(t.dims ?? []).join(',')}]`);
    const zpDims = weightScales === 'column' ? `${N}` : '';
    assert.deepEqual(names, [`W_quantized:3[${K},${N}]`, `W_scale:1[${zpDims}]`, `W_zero_point:3[${zpDims}]`]);
    // Inputs and outputs as they were.
    assert.deepEqual(q.model.graph!.input, model.graph!.input);
    assert.deepEqual(q.model.graph!.output, model.graph!.output);
    // Activations spanning both signs, with a large one so the uint8 range is used end to end.
    const x = random(rows * K, rng);
    x[3] = 4.5;
    x[5] = 0;
    const ref = int8MatMul(x, w, K, N, weightScales === 'column');
    const feeds = { x: new ort.Tensor('float32', x, [...shape]) };
    for (const level of LEVELS) {
      const { y } = await run(q.model, feeds, level);
      assert.deepEqual(bits(y!), bits(ref), `${shape} ${weightScales} ${level}`);
    }
    // And int8 is close to the float product it replaces.
    const { y: exact } = await run(model, feeds, 'basic');
    for (let i = 0; i < ref.length; i++) assert.ok(Math.abs(ref[i]! - exact![i]!) < 0.05, `${ref[i]} vs ${exact![i]}`);
  }
});

test('MatMuls reading one activation share one DynamicQuantizeLinear; a weight read elsewhere stays float', async () => {
  const rng = new Rng(12);
  const [K, N] = [16, 16];
  const wq = random(K * N, rng, 0.3);
  const wk = random(K * N, rng, 0.3);
  const model = buildModel({
    nodes: [
      onnx.NodeProto.create({ opType: 'MatMul', input: ['x', 'Wq'], output: ['q'], name: 'mq' }),
      onnx.NodeProto.create({ opType: 'MatMul', input: ['x', 'Wk'], output: ['k'], name: 'mk' }),
      onnx.NodeProto.create({ opType: 'Add', input: ['k', 'Wk'], output: ['kw'], name: 'add' }),
    ],
    initializers: [floatTensor('Wq', [K, N], wq), floatTensor('Wk', [K, N], wk)],
    inputs: [valueInfo('x', FLOAT, ['B', K])],
    outputs: [valueInfo('q', FLOAT, ['B', N]), valueInfo('kw', FLOAT, ['B', N])],
  });
  const q = quantizeGraph(model, FILE);
  assert.equal(ops(q.model).filter((o) => o === 'DynamicQuantizeLinear').length, 1);
  assert.equal(ops(q.model).filter((o) => o === 'MatMulInteger').length, 2);
  const inits = (q.model.graph!.initializer ?? []).map((t) => t.name);
  assert.ok(!inits.includes('Wq'), 'Wq is read only by its MatMul: dropped');
  assert.ok(inits.includes('Wk'), 'Wk is also read by Add: kept');
  // K rows, so that k (rows × N) and Wk (K × N) add element by element.
  const x = random(K * K, rng);
  const kRef = int8MatMul(x, wk, K, N, true).map((v, i) => f(v + wk[i]!));
  for (const level of LEVELS) {
    const out = await run(q.model, { x: new ort.Tensor('float32', x, [K, K]) }, level);
    assert.deepEqual(bits(out.q!), bits(int8MatMul(x, wq, K, N, true)), level);
    assert.deepEqual(bits(out.kw!), bits(kRef), level);
  }
});

test('a Gemm (transB, alpha, beta, bias) becomes MatMulInteger + rescale + Add and equals the reference', async () => {
  const rng = new Rng(13);
  const [K, N] = [24, 5];
  const b = random(N * K, rng, 0.4); // [N, K], transB = 1, as PyTorch exports nn.Linear
  const c = random(N, rng);
  const alpha = 0.5;
  const beta = 2;
  const model = buildModel({
    nodes: [
      onnx.NodeProto.create({
        opType: 'Gemm',
        input: ['x', 'B', 'C'],
        output: ['logits'],
        name: 'cls',
        attribute: [
          { name: 'transB', type: onnx.AttributeProto.AttributeType.INT, i: 1 },
          { name: 'alpha', type: onnx.AttributeProto.AttributeType.FLOAT, f: alpha },
          { name: 'beta', type: onnx.AttributeProto.AttributeType.FLOAT, f: beta },
        ],
      }),
    ],
    initializers: [floatTensor('B', [N, K], b), floatTensor('C', [N], c)],
    inputs: [valueInfo('x', FLOAT, ['B', K])],
    outputs: [valueInfo('logits', FLOAT, ['B', N])],
  });
  const q = quantizeGraph(model, FILE);
  assert.deepEqual(ops(q.model), ['DynamicQuantizeLinear', 'MatMulInteger', 'Cast', 'Mul', 'Mul', 'Add']);
  const w = new Float32Array(K * N);
  for (let r = 0; r < K; r++) for (let col = 0; col < N; col++) w[r * N + col] = f(alpha * b[col * K + r]!);
  const x = random(4 * K, rng);
  const ref = int8MatMul(x, w, K, N, true).map((v, i) => f(v + f(beta * c[i % N]!)));
  const feeds = { x: new ort.Tensor('float32', x, [4, K]) };
  if (LEVELS.includes('basic')) assert.deepEqual(bits((await run(q.model, feeds, 'basic')).logits!), bits(ref));
  // Fused (MatMulIntegerToFloat with its bias) ONNX Runtime may round the bias add once less.
  const fused = (await run(q.model, feeds, 'all')).logits!;
  for (let i = 0; i < ref.length; i++) assert.ok(Math.abs(fused[i]! - ref[i]!) <= 1e-6 * Math.max(1, Math.abs(ref[i]!)));
});

test('an embedding table is quantized per row and dequantized after Gather, equal to the reference; a small one stays float', async () => {
  const rng = new Rng(14);
  const [V, D] = [300, 40]; // 12,000 elements: at least the default 10,000
  const table = random(V * D, rng, 0.1);
  table[7 * D + 3] = 0.9; // one large value: row 7's scale is its own
  const model = (rows: number) =>
    buildModel({
      nodes: [onnx.NodeProto.create({ opType: 'Gather', input: ['E', 'ids'], output: ['h'], name: 'emb' })],
      initializers: [floatTensor('E', [rows, D], table.subarray(0, rows * D))],
      inputs: [valueInfo('ids', onnx.TensorProto.DataType.INT64, ['B', 'T'])],
      outputs: [valueInfo('h', FLOAT, ['B', 'T', D])],
    });
  const q = quantizeGraph(model(V), FILE);
  assert.deepEqual(ops(q.model), ['Gather', 'Gather', 'Cast', 'Mul']);
  assert.deepEqual(q.weights, [{ name: 'E', kind: 'embedding', shape: [V, D] }]);
  const ids = [0, 7, 299, 7, 7, 1];
  const out = await run(q.model, { ids: new ort.Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [2, 3]) }, 'all');
  const ref = new Float32Array(ids.length * D);
  ids.forEach((id, t) => {
    let m = 0;
    for (let d = 0; d < D; d++) m = Math.max(m, Math.abs(table[id * D + d]!));
    const scale = f(m / 127);
    for (let d = 0; d < D; d++) ref[t * D + d] = f(clamp(rint(f(table[id * D + d]! / scale)), -127, 127) * scale);
  });
  assert.deepEqual(bits(out.h!), bits(ref));
  // 249 × 40 = 9,960 < 10,000: nothing else in the graph, so nothing to quantize; with a lower bar it is.
  assert.throws(() => quantizeGraph(model(249), FILE), NothingToQuantizeError);
  assert.equal(quantizeGraph(model(249), FILE, { minEmbeddingElements: 5000 }).rewritten.Gather, 1);
});

test('refusals: an already quantized graph, a graph with nothing to quantize, an opset before DynamicQuantizeLinear', () => {
  const rng = new Rng(15);
  const mm = buildModel({
    nodes: [onnx.NodeProto.create({ opType: 'MatMul', input: ['x', 'W'], output: ['y'], name: 'mm' })],
    initializers: [floatTensor('W', [4, 4], random(16, rng))],
    inputs: [valueInfo('x', FLOAT, ['B', 4])],
    outputs: [valueInfo('y', FLOAT, ['B', 4])],
  });
  const once = quantizeGraph(mm, FILE).model;
  assert.throws(
    () => quantizeGraph(once, FILE),
    (e: unknown) =>
      e instanceof AlreadyQuantizedError &&
      e.message.startsWith(`${FILE}: already quantized (it has DynamicQuantizeLinear, MatMulInteger);`) &&
      !e.message.includes('\n'),
  );
  const plain = buildModel({
    nodes: [
      onnx.NodeProto.create({ opType: 'Add', input: ['x', 'x'], output: ['a'], name: 'add' }),
      onnx.NodeProto.create({ opType: 'Relu', input: ['a'], output: ['r'], name: 'relu' }),
      onnx.NodeProto.create({ opType: 'Relu', input: ['r'], output: ['y'], name: 'relu2' }),
      // A MatMul of two run-time tensors has no weight to quantize.
      onnx.NodeProto.create({ opType: 'MatMul', input: ['y', 'x'], output: ['z'], name: 'mm' }),
    ],
    initializers: [],
    inputs: [valueInfo('x', FLOAT, [4, 4])],
    outputs: [valueInfo('z', FLOAT, [4, 4])],
  });
  assert.throws(
    () => quantizeGraph(plain, FILE),
    (e: unknown) => e instanceof NothingToQuantizeError && e.message.includes('the graph has Relu ×2, Add ×1, MatMul ×1.'),
  );
  const old = buildModel({ ...{ nodes: mm.graph!.node!, initializers: mm.graph!.initializer!, inputs: [], outputs: [] }, opset: 10 });
  assert.throws(
    () => quantizeGraph(old, FILE),
    (e: unknown) => e instanceof FormatError && /opset 10: int8 needs DynamicQuantizeLinear \(opset 11\)/.test(e.message),
  );
});
