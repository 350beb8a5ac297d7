// Finding the classifier in a foreign ONNX export: the final linear layer that produces the
// logits (Gemm, or MatMul + Add, possibly behind a Transpose, or their dynamic int8 form), its input
// (the embedding the classifier reads) and its weights W [C, D] and bias b [C].
import { UserError } from '../errors.js';
import onnxProto from 'onnx-proto';
import { GraphIndex, intAttr, type ModelProto, type NodeProto } from './onnx-model.js';

const { onnx } = onnxProto;

export interface ClassifierHead {
  /** Tensor the classifier reads (exposed as the `embedding` output). */
  embeddingTensor: string;
  /** W row-major [rows = classes, cols = embedding dim]; null when not recoverable. */
  weight: Float32Array | null;
  bias: Float32Array | null;
  rows: number;
  cols: number;
  /** How the layer was found, e.g. "Gemm(transB=1) /cls/Gemm". */
  description: string;
}

export class HeadNotFoundError extends UserError {
  constructor(message: string) {
    super(message);
    this.name = 'HeadNotFoundError';
  }
}

const PASS_THROUGH = new Set(['Identity', 'Cast']);

function transpose2d(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = data[r * cols + c]!;
  return out;
}

/** W [C, D] from the weight operand of x·B, whether B is a constant [D, C] or Transpose(W). */
function weightOfMatMulOperand(index: GraphIndex, name: string): { w: Float32Array; rows: number; cols: number; how: string } | null {
  const direct = index.constantFloats(name);
  if (direct && direct.dims.length === 2) {
    const [d, c] = direct.dims as [number, number];
    return { w: transpose2d(direct.data, d, c), rows: c, cols: d, how: 'constant [D, C]' };
  }
  const p = index.producer.get(name);
  if (p?.opType === 'Transpose') {
    const inner = index.constantFloats(p.input![0]!);
    if (inner && inner.dims.length === 2)
      return { w: inner.data, rows: inner.dims[0]!, cols: inner.dims[1]!, how: 'Transpose(constant [C, D])' };
  }
  return null;
}

/** int8 or uint8 constant values (raw or in int32Data), or null. */
function constantBytes(index: GraphIndex, name: string): { dims: number[]; data: Int32Array } | null {
  const t = index.constants.get(name);
  const T = onnx.TensorProto.DataType;
  if (!t || (t.dataType !== T.INT8 && t.dataType !== T.UINT8)) return null;
  const dims = (t.dims ?? []).map(Number);
  const n = dims.reduce((a, b) => a * b, 1);
  if (t.rawData && t.rawData.length >= n) {
    const raw = t.rawData;
    const data = new Int32Array(n);
    for (let i = 0; i < n; i++) data[i] = t.dataType === T.INT8 ? (raw[i]! << 24) >> 24 : raw[i]!;
    return { dims, data };
  }
  return { dims, data: Int32Array.from(t.int32Data ?? []) };
}

/**
 * The dynamic int8 form of x·W that onnxruntime's quantize_dynamic and kd quantize write:
 * Mul(Cast(MatMulInteger(DynamicQuantizeLinear(x), Wq, x_zp, w_zp)), Mul(x_scale, w_scale)).
 * Returns x and W [C, D] dequantized ((Wq − w_zp) · w_scale, per tensor or per column), or null.
 */
function dequantizedMatMul(
  index: GraphIndex,
  name: string,
): { x: string; w: Float32Array; rows: number; cols: number; node: NodeProto } | null {
  const mul = index.producer.get(name);
  if (mul?.opType !== 'Mul' || mul.input?.length !== 2) return null;
  const operands = mul.input.map((t) => index.producer.get(t));
  const castAt = operands.findIndex((p) => p?.opType === 'Cast' && index.producer.get(p.input![0]!)?.opType === 'MatMulInteger');
  if (castAt < 0) return null;
  const mmi = index.producer.get(operands[castAt]!.input![0]!)!;
  const scaleMul = operands[1 - castAt];
  const dql = index.producer.get(mmi.input![0]!);
  if (dql?.opType !== 'DynamicQuantizeLinear' || scaleMul?.opType !== 'Mul') return null;
  // One operand of the scale product is x's scale (DynamicQuantizeLinear's second output), the other the weight's.
  const wScaleName = scaleMul.input!.find((t) => t !== dql.output![1]);
  const wq = constantBytes(index, mmi.input![1]!);
  const wScale = wScaleName === undefined ? null : index.constantFloats(wScaleName);
  if (!wq || wq.dims.length !== 2 || !wScale || !scaleMul.input!.includes(dql.output![1]!)) return null;
  const [d, c] = wq.dims as [number, number];
  const zp = mmi.input![3] ? constantBytes(index, mmi.input![3]) : null;
  if (mmi.input![3] && !zp) return null;
  const perColumn = (v: { length: number }) => v.length === c && c !== 1;
  const w = new Float32Array(c * d);
  for (let r = 0; r < d; r++)
    for (let k = 0; k < c; k++) {
      const zero = zp ? zp.data[perColumn(zp.data) ? k : 0]! : 0;
      const scale = wScale.data[perColumn(wScale.data) ? k : 0]!;
      w[k * d + r] = (wq.data[r * c + k]! - zero) * scale;
    }
  return { x: dql.input![0]!, w, rows: c, cols: d, node: mmi };
}

function biasOf(index: GraphIndex, name: string | undefined, rows: number): Float32Array | null {
  if (!name) return new Float32Array(rows);
  const b = index.constantFloats(name);
  if (!b || b.data.length !== rows) return null;
  return b.data;
}

/**
 * Finds the linear layer producing `logitsName`. Throws HeadNotFoundError saying what was
 * looked for and what was found instead.
 */
export function findClassifierHead(model: ModelProto, modelPath: string, logitsName: string): ClassifierHead {
  const index = new GraphIndex(model, modelPath);
  let name = logitsName;
  let node = index.producer.get(name);
  while (node && PASS_THROUGH.has(node.opType!)) {
    name = node.input![0]!;
    node = index.producer.get(name);
  }
  const fail = (found: string): never => {
    throw new HeadNotFoundError(
      `could not find the classifier layer that produces '${logitsName}': looked for Gemm, or MatMul (+ Add) with constant ` +
        `weights (possibly behind Identity, Cast or Transpose, or in int8 as MatMulInteger), and found ${found}. ` +
        `Name the tensor the classifier reads with ` +
        `--embedding-output NAME`,
    );
  };
  if (!node) return fail('no node producing it');
  if (node.opType === 'Gemm') {
    if (intAttr(node, 'transA', 0) !== 0) return fail(`Gemm '${node.name}' with transA=1`);
    const b = index.constantFloats(node.input![1]!);
    if (!b || b.dims.length !== 2) return fail(`Gemm '${node.name}' whose weight '${node.input![1]}' is not a constant matrix`);
    const transB = intAttr(node, 'transB', 0) === 1;
    const [rows, cols] = transB ? [b.dims[0]!, b.dims[1]!] : [b.dims[1]!, b.dims[0]!];
    const w = transB ? b.data : transpose2d(b.data, b.dims[0]!, b.dims[1]!);
    const alpha = (node.attribute ?? []).find((a) => a.name === 'alpha')?.f ?? 1;
    const beta = (node.attribute ?? []).find((a) => a.name === 'beta')?.f ?? 1;
    const bias = biasOf(index, node.input![2] || undefined, rows);
    if (!bias) return fail(`Gemm '${node.name}' whose bias is not a constant vector of ${rows}`);
    if (alpha !== 1) for (let i = 0; i < w.length; i++) w[i]! *= alpha;
    if (beta !== 1) for (let i = 0; i < bias.length; i++) bias[i]! *= beta;
    return { embeddingTensor: node.input![0]!, weight: w, bias, rows, cols, description: `Gemm(transB=${transB ? 1 : 0}) '${node.name}'` };
  }
  let biasName: string | undefined;
  let matmul: NodeProto | undefined = node;
  if (node.opType === 'Add') {
    const [x, y] = node.input as [string, string];
    const constFirst = index.constants.has(x);
    biasName = constFirst ? x : y;
    matmul = index.producer.get(constFirst ? y : x);
    if (!index.constants.has(biasName)) return fail(`Add '${node.name}' without a constant bias`);
  }
  const int8 = dequantizedMatMul(index, matmul?.output?.[0] ?? '');
  if (int8) {
    const bias = biasOf(index, biasName, int8.rows);
    if (!bias) return fail(`Add '${node.name}' whose bias does not have ${int8.rows} values`);
    return {
      embeddingTensor: int8.x,
      weight: int8.w,
      bias,
      rows: int8.rows,
      cols: int8.cols,
      description: `MatMulInteger(int8, dequantized)${biasName ? ' + Add' : ''} '${int8.node.name}'`,
    };
  }
  if (matmul?.opType !== 'MatMul') return fail(`${node.opType} '${node.name}'`);
  const wInfo = weightOfMatMulOperand(index, matmul.input![1]!);
  if (!wInfo) return fail(`MatMul '${matmul.name}' whose weight '${matmul.input![1]}' is not constant`);
  const bias = biasOf(index, biasName, wInfo.rows);
  if (!bias) return fail(`Add '${node.name}' whose bias does not have ${wInfo.rows} values`);
  return {
    embeddingTensor: matmul.input![0]!,
    weight: wInfo.w,
    bias,
    rows: wInfo.rows,
    cols: wInfo.cols,
    description: `MatMul(${wInfo.how})${biasName ? ' + Add' : ''} '${matmul.name}'`,
  };
}

/** The head that reads a user-named tensor: W and b when it feeds a linear layer, else null. */
export function headForNamedEmbedding(model: ModelProto, modelPath: string, tensor: string, logitsName: string): ClassifierHead {
  const exists =
    (model.graph?.node ?? []).some((n) => (n.output ?? []).includes(tensor)) || (model.graph?.input ?? []).some((i) => i.name === tensor);
  if (!exists) throw new HeadNotFoundError(`--embedding-output ${tensor}: no tensor of that name in the graph`);
  try {
    const head = findClassifierHead(model, modelPath, logitsName);
    if (head.embeddingTensor === tensor) return head;
  } catch {
    /* fall through: W and b unknown */
  }
  return {
    embeddingTensor: tensor,
    weight: null,
    bias: null,
    rows: 0,
    cols: 0,
    description: `named tensor '${tensor}' (classifier weights not recovered)`,
  };
}

/** Adds `tensor` as a graph output named `outputName` (via Identity), with float rows [batch, dim]. */
export function exposeTensor(model: ModelProto, tensor: string, outputName: string, elemType: number): void {
  const g = model.graph!;
  if ((g.output ?? []).some((o) => o.name === outputName)) return;
  g.node!.push(onnx.NodeProto.create({ opType: 'Identity', input: [tensor], output: [outputName], name: `kd_expose_${outputName}` }));
  g.output!.push(onnx.ValueInfoProto.create({ name: outputName, type: { tensorType: { elemType } } }));
}
