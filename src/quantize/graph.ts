// The graph rewrite of dynamic int8 quantization, in the form onnxruntime's quantize_dynamic writes
// (QOperator, QInt8 weights): MatMul/Gemm → DynamicQuantizeLinear + MatMulInteger + Cast + Mul; Gather on
// an embedding table → Gather of int8 rows and of their scales, then Cast + Mul. Everything else stays float.
import onnxProto from 'onnx-proto';
import { FormatError } from '../data/errors.js';
import { GraphIndex, inlinedTensor, QUANTIZED_OPS, type ModelProto, type NodeProto, type TensorProto } from '../teacher/onnx-model.js';
import { quantizeSymmetric } from './int8.js';
import { findAttentionBlocks } from './attention-blocks.js';

const { onnx } = onnxProto;
const T = onnx.TensorProto.DataType;
const AT = onnx.AttributeProto.AttributeType;
type GraphProto = onnxProto.onnx.IGraphProto;

export interface QuantizeGraphOptions {
  /**
   * MatMul/Gemm weight scales: `'column'` (default), one per output column with a 1-D b_zero_point (the
   * per-channel form MatMulInteger allows); `'tensor'`, one per weight.
   */
  weightScales?: 'column' | 'tensor';
  /** Embedding tables with fewer elements stay float32 (default 10,000: a small table saves little). */
  minEmbeddingElements?: number;
  /**
   * MatMul/Gemm nodes whose first input is one of these tensors stay float32 (a teacher's classifier head, so its
   * logits are exactly W · embedding + b for the W and b the cache stores).
   */
  floatInputs?: readonly string[];
  /**
   * Full self-attention blocks (see attention-blocks.ts) become com.microsoft.QAttention: one int8 [H, 3H] product
   * (per-column weight scales as the MatMuls get) and ORT's attention kernel, without the transposes, mask and score
   * products written out (default false). Blocks whose input is in `floatInputs` stay float32.
   */
  attention?: boolean;
}

/** One float weight now stored as int8. */
export interface QuantizedWeight {
  name: string;
  /** `matmul`: a MatMul or Gemm weight (per column or per tensor); `embedding`: a Gather table (per row). */
  kind: 'matmul' | 'embedding';
  shape: number[];
}

export interface QuantizedGraph {
  /** The quantized model (a new ModelProto; every tensor inline). */
  model: ModelProto;
  /** Nodes rewritten, by op. */
  rewritten: { MatMul: number; Gemm: number; Gather: number };
  /** Attention blocks replaced by QAttention (with `attention: true`). */
  attentionBlocks: number;
  weights: QuantizedWeight[];
  /** The input graph's ops and how often each occurs (what an error names). */
  ops: Record<string, number>;
}

/** DynamicQuantizeLinear and MatMulInteger came in opset 11 and 10. */
const MIN_OPSET = 11;

/** The model has quantized ops already (`kd quantize` reads the float model). */
export class AlreadyQuantizedError extends FormatError {
  constructor(file: string, ops: string[]) {
    super(
      file,
      `already quantized (it has ${ops.join(', ')}); kd quantize reads the float model: run it on the folder's onnx/model.onnx ` +
        `as exported, not on a quantized copy`,
    );
    this.name = 'AlreadyQuantizedError';
  }
}

/** Nothing in the graph is a MatMul/Gemm with a constant float weight or a Gather on a large float table. */
export class NothingToQuantizeError extends FormatError {
  constructor(file: string, ops: Record<string, number>, minEmbedding: number) {
    const found = Object.entries(ops)
      .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
      .map(([op, n]) => `${op} ×${n}`)
      .join(', ');
    super(
      file,
      `nothing to quantize: no MatMul or Gemm with a constant 2-D float32 weight and no Gather on a float32 table of at least ` +
        `${minEmbedding} elements; the graph has ${found}. Such a model gains nothing from int8; ship model.onnx as it is`,
    );
    this.name = 'NothingToQuantizeError';
  }
}

function opCounts(g: GraphProto): Record<string, number> {
  const ops: Record<string, number> = {};
  for (const n of g.node ?? []) ops[n.opType!] = (ops[n.opType!] ?? 0) + 1;
  return ops;
}

/** Every tensor name a graph reads (subgraphs included: they may read the outer graph's names), with counts. */
function useCounts(g: GraphProto, nodes: readonly NodeProto[]): Map<string, number> {
  const uses = new Map<string, number>();
  const add = (name: string | null | undefined) => name && uses.set(name, (uses.get(name) ?? 0) + 1);
  const visit = (ns: readonly NodeProto[]) => {
    for (const n of ns) {
      for (const i of n.input ?? []) add(i);
      for (const a of n.attribute ?? []) for (const sub of [a.g, ...(a.graphs ?? [])]) if (sub) visit(sub.node ?? []);
    }
  };
  visit(nodes);
  for (const o of g.output ?? []) add(o.name);
  return uses;
}

function floatAttr(n: NodeProto, name: string, fallback: number): number {
  const a = (n.attribute ?? []).find((x) => x.name === name);
  return a ? Number(a.f) : fallback;
}

function intAttr(n: NodeProto, name: string, fallback: number): number {
  const a = (n.attribute ?? []).find((x) => x.name === name);
  return a ? Number(a.i) : fallback;
}

function int8Tensor(name: string, dims: number[], values: Int8Array): TensorProto {
  return onnx.TensorProto.create({
    name,
    dataType: T.INT8,
    dims,
    rawData: new Uint8Array(values.buffer, values.byteOffset, values.length),
  });
}

function floatTensor(name: string, dims: number[], values: Float32Array): TensorProto {
  return onnx.TensorProto.create({
    name,
    dataType: T.FLOAT,
    dims,
    rawData: new Uint8Array(values.buffer, values.byteOffset, values.byteLength),
  });
}

function node(opType: string, input: string[], output: string[], name: string, attrs: Record<string, number> = {}): NodeProto {
  const attribute = Object.entries(attrs).map(([k, v]) => ({ name: k, type: AT.INT, i: v }));
  return onnx.NodeProto.create({ opType, input, output, name, attribute });
}

/** The int8 form of a weight: its tensor names (made once, shared by every node that reads it). */
interface Int8Weight {
  values: string;
  scale: string;
  zeroPoint: string;
}

/**
 * Rewrites a float ONNX model for dynamic int8 inference, as onnxruntime's `quantize_dynamic` with QInt8
 * weights does: each MatMul (and Gemm) whose weight is a constant 2-D float32 tensor becomes
 * `DynamicQuantizeLinear(A)` (uint8 activations, one scale and zero point per call, shared by every
 * MatMul reading A) → `MatMulInteger(A_q, W_q, a_zp, w_zp)` with W symmetric int8 → `Cast` to float →
 * `Mul` by a_scale · w_scale; each Gather on a float32 table of at least `minEmbeddingElements` becomes
 * a Gather of int8 rows and one of their per-row scales, then `Cast` + `Mul`. Inputs, outputs, tensor
 * names and the opset stay as they are.
 *
 * @param model - The decoded float model (not modified).
 * @param modelPath - Its file (external data is read beside it; the result has every tensor inline).
 * @throws {AlreadyQuantizedError} The graph has quantized ops.
 * @throws {NothingToQuantizeError} No node can be quantized (the message lists the ops found).
 * @throws {FormatError} The default opset is below 11 (DynamicQuantizeLinear's).
 *
 * @example
 * ```ts
 * import { quantizeGraph } from 'kd-toolkit';
 * import onnxProto from 'onnx-proto';
 * const file = 'models/tiny-random-bert/onnx/model.onnx';
 * const model = onnxProto.onnx.ModelProto.decode(readFileSync(file));
 * const { model: int8, rewritten, weights } = quantizeGraph(model, file, { weightScales: 'column' });
 * console.log(rewritten, weights[0]);
 * // { MatMul: 12, Gemm: 2, Gather: 0 } { name: 'onnx::MatMul_306', kind: 'matmul', shape: [ 64, 64 ] }
 * writeFileSync('models/tiny-random-bert/onnx/model_quantized.onnx', onnxProto.onnx.ModelProto.encode(int8).finish());
 * ```
 */
export function quantizeGraph(model: ModelProto, modelPath: string, opts: QuantizeGraphOptions = {}): QuantizedGraph {
  const weightScales = opts.weightScales ?? 'column';
  const minEmbedding = opts.minEmbeddingElements ?? 10_000;
  const g = model.graph!;
  const ops = opCounts(g);
  const quantizedOps = Object.keys(ops).filter((op) => QUANTIZED_OPS.has(op));
  if (quantizedOps.length) throw new AlreadyQuantizedError(modelPath, quantizedOps);
  const opset = Number((model.opsetImport ?? []).find((o) => !o.domain || o.domain === 'ai.onnx')?.version ?? 0);
  if (opset < MIN_OPSET)
    throw new FormatError(
      modelPath,
      `opset ${opset}: int8 needs DynamicQuantizeLinear (opset ${MIN_OPSET}); export the model with opset 11 or later`,
    );

  const index = new GraphIndex(model, modelPath);
  const graphInputs = new Set((g.input ?? []).map((i) => i.name!));
  const taken = new Set<string>([...graphInputs, ...(g.output ?? []).map((o) => o.name!), ...index.constants.keys()]);
  for (const n of g.node ?? []) for (const x of [...(n.input ?? []), ...(n.output ?? []), n.name ?? '']) taken.add(x);
  const fresh = (base: string): string => {
    let name = base;
    for (let k = 1; taken.has(name); k++) name = `${base}_${k}`;
    taken.add(name);
    return name;
  };

  /** A constant float32 tensor of rank 2 that is not a run-time input, or null. */
  const floatMatrix = (name: string): { rows: number; cols: number; data: Float32Array } | null => {
    const t = index.constants.get(name);
    if (!t || t.dataType !== T.FLOAT || (t.dims ?? []).length !== 2) return null;
    const c = index.constantFloats(name)!;
    return { rows: c.dims[0]!, cols: c.dims[1]!, data: c.data };
  };

  const initializers: TensorProto[] = [];
  const weights: QuantizedWeight[] = [];
  const replaced = new Set<string>();
  const int8Weights = new Map<string, Int8Weight>();
  const activations = new Map<string, { q: string; scale: string; zeroPoint: string }>();
  const out: NodeProto[] = [];
  const rewritten = { MatMul: 0, Gemm: 0, Gather: 0 };
  let attentionBlocks = 0;

  /** W ([K, N], row-major) as int8 with its scales and zero points, under names derived from `base`. */
  const matmulWeight = (key: string, base: string, w: Float32Array, k: number, n: number): Int8Weight => {
    let q = int8Weights.get(key);
    if (q) return q;
    const { values, scales } = quantizeSymmetric(w, k, n, weightScales);
    const perColumn = weightScales === 'column';
    q = { values: fresh(`${base}_quantized`), scale: fresh(`${base}_scale`), zeroPoint: fresh(`${base}_zero_point`) };
    initializers.push(
      int8Tensor(q.values, [k, n], values),
      floatTensor(q.scale, perColumn ? [n] : [], scales),
      int8Tensor(q.zeroPoint, perColumn ? [n] : [], new Int8Array(perColumn ? n : 1)),
    );
    int8Weights.set(key, q);
    weights.push({ name: base, kind: 'matmul', shape: [k, n] });
    return q;
  };

  /** A (float) → uint8 with its scale and zero point: one DynamicQuantizeLinear per tensor, placed before its first reader. */
  const quantizedActivation = (a: string) => {
    let q = activations.get(a);
    if (q) return q;
    q = { q: fresh(`${a}_quantized`), scale: fresh(`${a}_scale`), zeroPoint: fresh(`${a}_zero_point`) };
    out.push(node('DynamicQuantizeLinear', [a], [q.q, q.scale, q.zeroPoint], fresh(`${a}_QuantizeLinear`)));
    activations.set(a, q);
    return q;
  };

  /** The nodes of A · W in int8, writing `output`. */
  const int8MatMul = (a: string, w: Int8Weight, output: string, name: string) => {
    const qa = quantizedActivation(a);
    const integer = fresh(`${output}_output_quantized`);
    const cast = fresh(`${integer}_cast_output`);
    const scales = fresh(`${name}_scales_mul:0`);
    out.push(
      node('MatMulInteger', [qa.q, w.values, qa.zeroPoint, w.zeroPoint], [integer], fresh(`${name}_quant`)),
      node('Cast', [integer], [cast], fresh(`${integer}_cast`), { to: T.FLOAT }),
      node('Mul', [qa.scale, w.scale], [scales], fresh(`${name}_scales_mul`)),
      node('Mul', [cast, scales], [output], fresh(`${name}_output_scale_mul`)),
    );
  };

  /** MatMul(A, W) with W a constant [K, N] float32 matrix and A not constant → int8. */
  const rewriteMatMul = (n: NodeProto): boolean => {
    const [a, b] = n.input ?? [];
    const w = index.constants.has(a!) ? null : floatMatrix(b!);
    if (!w) return false;
    int8MatMul(a!, matmulWeight(b!, b!, w.data, w.rows, w.cols), n.output![0]!, n.name || n.output![0]!);
    replaced.add(b!);
    return true;
  };

  /** Gemm(A, B, C) with B constant and transA = 0 → int8 A · (alpha · B or Bᵀ), then + beta · C in float. */
  const rewriteGemm = (n: NodeProto): boolean => {
    const [a, bName, c] = n.input ?? [];
    const b = intAttr(n, 'transA', 0) === 0 && !index.constants.has(a!) ? floatMatrix(bName!) : null;
    if (!b) return false;
    const name = n.name || n.output![0]!;
    const transB = intAttr(n, 'transB', 0) === 1;
    const alpha = floatAttr(n, 'alpha', 1);
    const beta = floatAttr(n, 'beta', 1);
    const [k, cols] = transB ? [b.cols, b.rows] : [b.rows, b.cols];
    // W = alpha · (transB ? Bᵀ : B), [K, N]: alpha folded into the weight scales it would multiply anyway.
    const w = new Float32Array(k * cols);
    for (let r = 0; r < k; r++)
      for (let col = 0; col < cols; col++) w[r * cols + col] = alpha * (transB ? b.data[col * b.cols + r]! : b.data[r * b.cols + col]!);
    const weight = matmulWeight(`${bName}|${transB}|${alpha}`, bName!, w, k, cols);
    const hasBias = Boolean(c) && beta !== 0;
    const product = hasBias ? fresh(`${n.output![0]}_MatMul`) : n.output![0]!;
    int8MatMul(a!, weight, product, name);
    if (hasBias) {
      let bias = c!;
      if (beta !== 1) {
        const constant = index.constantFloats(c!);
        bias = fresh(`${c}_beta`);
        if (constant)
          initializers.push(
            floatTensor(
              bias,
              constant.dims,
              constant.data.map((x) => beta * x),
            ),
          );
        else {
          const betaName = fresh(`${name}_beta`);
          initializers.push(floatTensor(betaName, [], Float32Array.of(beta)));
          out.push(node('Mul', [c!, betaName], [bias], fresh(`${name}_bias_beta_mul`)));
        }
      }
      out.push(node('Add', [product, bias], [n.output![0]!], fresh(`${name}_bias_add`)));
    }
    replaced.add(bName!);
    return true;
  };

  /** Gather(E, ids) on axis 0 of a constant float32 table of at least minEmbedding elements → int8 rows + row scales. */
  const rewriteGather = (n: NodeProto): boolean => {
    const [tableName, ids] = n.input ?? [];
    const table = intAttr(n, 'axis', 0) === 0 && !index.constants.has(ids!) ? floatMatrix(tableName!) : null;
    if (!table || table.rows * table.cols < minEmbedding) return false;
    let q = int8Weights.get(`${tableName}|rows`);
    if (!q) {
      const { values, scales } = quantizeSymmetric(table.data, table.rows, table.cols, 'row');
      q = { values: fresh(`${tableName}_quantized`), scale: fresh(`${tableName}_scale`), zeroPoint: '' };
      initializers.push(int8Tensor(q.values, [table.rows, table.cols], values), floatTensor(q.scale, [table.rows, 1], scales));
      int8Weights.set(`${tableName}|rows`, q);
      weights.push({ name: tableName!, kind: 'embedding', shape: [table.rows, table.cols] });
    }
    const name = n.name || n.output![0]!;
    const output = n.output![0]!;
    const rows = fresh(`${output}_quantized`);
    const rowScales = fresh(`${output}_scale`);
    const cast = fresh(`${rows}_cast_output`);
    out.push(
      node('Gather', [q.values, ids!], [rows], fresh(`${name}_quant`)),
      node('Gather', [q.scale, ids!], [rowScales], fresh(`${name}_scale_gather`)),
      node('Cast', [rows], [cast], fresh(`${rows}_cast`), { to: T.FLOAT }),
      node('Mul', [cast, rowScales], [output], fresh(`${name}_dequantize_mul`)),
    );
    replaced.add(tableName!);
    return true;
  };

  const keepFloat = new Set(opts.floatInputs ?? []);
  // Attention blocks: the merging Reshape becomes QAttention on the block input's DynamicQuantizeLinear; the rest goes.
  const blocks = opts.attention ? findAttentionBlocks(model, modelPath).filter((b) => !keepFloat.has(b.x)) : [];
  const blockAt = new Map(blocks.map((b) => [b.output, b]));
  const inBlock = new Set(blocks.flatMap((b) => b.nodes));
  let mask32 = '';
  const rewriteAttention = (n: NodeProto) => {
    const b = blockAt.get(n)!;
    const [w, bias] = [b.weights.map((x) => floatMatrix(x)!), b.biases.map((x) => index.constantFloats(x)!.data)];
    const hidden = w[0]!.cols;
    const rows = w[0]!.rows;
    const qkv = new Float32Array(rows * 3 * hidden);
    for (let r = 0; r < rows; r++)
      for (let j = 0; j < 3; j++) qkv.set(w[j]!.data.subarray(r * hidden, (r + 1) * hidden), (3 * r + j) * hidden);
    const y = n.output![0]!;
    const weight = matmulWeight(b.weights.join('|'), `${y}_qkv`, qkv, rows, 3 * hidden);
    const biasName = fresh(`${y}_qkv_bias`);
    const qkvBias = new Float32Array(3 * hidden);
    bias.forEach((x, j) => qkvBias.set(x, j * hidden));
    initializers.push(floatTensor(biasName, [3 * hidden], qkvBias));
    if (!mask32) {
      mask32 = fresh('attention_mask_int32');
      out.push(node('Cast', ['attention_mask'], [mask32], fresh(`${mask32}_cast`), { to: T.INT32 }));
    }
    const qa = quantizedActivation(b.x);
    const attention = onnx.NodeProto.create({
      opType: 'QAttention',
      domain: 'com.microsoft',
      name: fresh(`${y}_QAttention`),
      input: [qa.q, weight.values, biasName, qa.scale, weight.scale, mask32, qa.zeroPoint, weight.zeroPoint],
      output: [y],
      attribute: [
        { name: 'num_heads', type: AT.INT, i: b.heads },
        { name: 'scale', type: AT.FLOAT, f: b.scale },
        { name: 'mask_filter_value', type: AT.FLOAT, f: b.maskFilter },
      ],
    });
    out.push(attention);
    for (const x of [...b.weights, ...b.biases]) replaced.add(x);
  };

  const rewrites = { MatMul: rewriteMatMul, Gemm: rewriteGemm, Gather: rewriteGather };
  for (const n of g.node ?? []) {
    if (blockAt.has(n)) {
      rewriteAttention(n);
      attentionBlocks += 1;
      continue;
    }
    if (inBlock.has(n)) continue;
    const op = n.opType as keyof typeof rewrites;
    const kept = op !== 'Gather' && keepFloat.has(n.input?.[0] ?? '');
    if (!kept && Object.hasOwn(rewrites, op) && rewrites[op](n)) rewritten[op] += 1;
    else out.push(n);
  }
  if (rewritten.MatMul + rewritten.Gemm + rewritten.Gather + attentionBlocks === 0)
    throw new NothingToQuantizeError(modelPath, ops, minEmbedding);

  // The float weights nothing reads any more go (initializers, their Constant nodes, their IR < 4 input entries).
  const uses = useCounts(g, out);
  const unused = new Set([...replaced].filter((name) => !uses.has(name)));
  // The new file lies elsewhere than the external data it would name: every tensor kept is written inline.
  const nodes = out
    .filter((n) => !(n.opType === 'Constant' && unused.has(n.output![0]!)))
    .map((n) =>
      n.opType === 'Constant' && (n.attribute ?? []).some((a) => a.t?.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL)
        ? onnx.NodeProto.create({ ...n, attribute: (n.attribute ?? []).map((a) => (a.t ? { ...a, t: inlinedTensor(a.t, modelPath) } : a)) })
        : n,
    );
  const msOpset = (model.opsetImport ?? []).some((o) => o.domain === 'com.microsoft');
  const quantized = onnx.ModelProto.create({
    ...model,
    ...(attentionBlocks && !msOpset
      ? { opsetImport: [...(model.opsetImport ?? []), onnx.OperatorSetIdProto.create({ domain: 'com.microsoft', version: 1 })] }
      : {}),
    graph: onnx.GraphProto.create({
      ...g,
      node: nodes,
      initializer: [...(g.initializer ?? []).filter((t) => !unused.has(t.name!)).map((t) => inlinedTensor(t, modelPath)), ...initializers],
      input: (g.input ?? []).filter((i) => !unused.has(i.name!)),
      valueInfo: (g.valueInfo ?? []).filter((v) => !unused.has(v.name!)),
    }),
  });
  return { model: quantized, rewritten, attentionBlocks, weights, ops };
}
