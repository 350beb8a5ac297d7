// Full self-attention blocks of PyTorch-exported BERT and DistilBERT graphs, found for the int8 rewrite to replace by
// com.microsoft.QAttention: three projections of one input, heads split by Reshape + Transpose, the scores scaled
// (q / √d before the product or scores / √d after it), padded positions masked (an additive (1 − mask)·c bias or
// Where(mask == 0, c, scores)), Softmax, the product with v and the heads merged by Transpose + Reshape.
import onnxProto from 'onnx-proto';
import { GraphIndex, intsAttr, sameInts, type ModelProto, type NodeProto } from '../teacher/onnx-model.js';

/** One attention block: what QAttention needs, and the nodes it replaces. */
export interface AttentionBlock {
  /** The block input (the tensor the three projections read). */
  x: string;
  /** Weight and bias names of the q, k and v projections ([H, H] and [H], constant). */
  weights: [string, string, string];
  biases: [string, string, string];
  heads: number;
  /** What the scores are multiplied by (1/√d for these exports). */
  scale: number;
  /** The value masked scores take (or are shifted by). */
  maskFilter: number;
  /** The merging Reshape, whose output QAttention writes. */
  output: NodeProto;
  /** Every node the block replaces, `output` included. */
  nodes: NodeProto[];
}

/**
 * The attention blocks of `model` that read the graph input `attention_mask` as their padding mask; none when the
 * graph has another layout (the caller then leaves it as it is).
 */
export function findAttentionBlocks(model: ModelProto, modelPath: string): AttentionBlock[] {
  const g = model.graph!;
  const index = new GraphIndex(model, modelPath);
  const { producer, uses } = index;
  const singleUse = (t: string) => index.singleUse(t);
  const isConst = (t: string) => index.constants.has(t);
  /** A one-element constant's value (integer or float), or null. */
  const scalar = (t: string): number | null => {
    const ints = index.constantInts(t);
    if (ints) return ints.length === 1 ? ints[0]! : null;
    const T = onnxProto.onnx.TensorProto.DataType;
    const type = index.constants.get(t)?.dataType;
    return type === T.FLOAT || type === T.FLOAT16 || type === T.DOUBLE ? index.constantScalar(t) : null;
  };
  /** [other operand, scalar] of a binary node with one constant scalar operand (only the second for Sub and Div). */
  const scalarOperand = (n: NodeProto | undefined, op: string): [string, number] | null => {
    if (n?.opType !== op || n.input?.length !== 2) return null;
    const [a, b] = n.input as [string, string];
    if (isConst(b) && !isConst(a) && scalar(b) !== null) return [a, scalar(b)!];
    if (op !== 'Sub' && op !== 'Div' && isConst(a) && !isConst(b) && scalar(a) !== null) return [b, scalar(a)!];
    return null;
  };
  /** The tensor under shape-only and type-only ops (Unsqueeze, Reshape, Expand, Cast). */
  const strip = (t: string): string => {
    for (let hops = 0; hops < 6; hops++) {
      const n = producer.get(t);
      if (!n || !['Unsqueeze', 'Reshape', 'Expand', 'Cast'].includes(n.opType!)) break;
      t = n.input![0]!;
    }
    return t;
  };
  /** c of an additive padding bias (1 − mask)·c on `attention_mask`, or null. */
  const additiveMask = (t: string): number | null => {
    const mul = scalarOperand(producer.get(strip(t)), 'Mul');
    const sub = mul ? producer.get(mul[0]) : undefined;
    if (!mul || sub?.opType !== 'Sub' || scalar(sub.input![0]!) !== 1) return null;
    return strip(sub.input![1]!) === 'attention_mask' ? mul[1] : null;
  };
  /** Whether `t` is attention_mask == 0 (reshaped or cast). */
  const maskIsZero = (t: string): boolean => {
    const eq = producer.get(strip(t));
    if (eq?.opType !== 'Equal') return false;
    const [a, b] = eq.input as [string, string];
    return (strip(a) === 'attention_mask' && scalar(b) === 0) || (strip(b) === 'attention_mask' && scalar(a) === 0);
  };
  /** The head count of a split's target shape: constant [0 or B, 0 or S or -1, heads, size] or a run-time Concat. */
  const headsOf = (shape: string, hidden: number): number | null => {
    const c = index.constantInts(shape);
    if (c) return c.length === 4 && c[2]! > 0 ? c[2]! : null;
    const concat = producer.get(shape);
    if (concat?.opType !== 'Concat' || concat.input?.length !== 4) return null;
    const heads = index.constantInts(concat.input[2]!);
    return heads?.length === 1 && heads[0]! > 0 && hidden % heads[0]! === 0 ? heads[0]! : null;
  };
  /** x·W + b split into heads by Transpose(Reshape(Add(MatMul(x, W), b))) with `perm`. */
  const projection = (t: string, perm: readonly number[]) => {
    const tr = producer.get(t);
    if (tr?.opType !== 'Transpose' || !sameInts(intsAttr(tr, 'perm'), perm) || !singleUse(t)) return null;
    const rs = producer.get(tr.input![0]!);
    if (rs?.opType !== 'Reshape' || !singleUse(rs.output![0]!)) return null;
    const add = producer.get(rs.input![0]!);
    if (add?.opType !== 'Add' || !singleUse(add.output![0]!)) return null;
    const [a0, a1] = add.input as [string, string];
    const [mmOut, b] = isConst(a1) ? [a0, a1] : [a1, a0];
    const mm = producer.get(mmOut);
    if (mm?.opType !== 'MatMul' || !singleUse(mmOut) || isConst(mm.input![0]!)) return null;
    const w = index.constantFloats(mm.input![1]!);
    const bias = index.constantFloats(b);
    if (!w || w.dims.length !== 2 || w.dims[0] !== w.dims[1] || !bias || bias.data.length !== w.dims[1]) return null;
    const heads = headsOf(rs.input![1]!, w.dims[1]!);
    if (!heads) return null;
    return { x: mm.input![0]!, w: mm.input![1]!, b, hidden: w.dims[1]!, heads, nodes: [tr, rs, add, mm] };
  };

  const blocks: AttentionBlock[] = [];
  const claimed = new Set<NodeProto>();
  for (const softmax of g.node ?? []) {
    if (softmax.opType !== 'Softmax' || Number((softmax.attribute ?? []).find((a) => a.name === 'axis')?.i ?? -1) !== -1) continue;
    // Back from Softmax: the mask (Where or an additive bias) and scalings of the scores, in any order.
    const nodes: NodeProto[] = [softmax];
    let scale = 1;
    let maskFilter: number | null = null;
    let t = softmax.input![0]!;
    let qk: NodeProto | undefined;
    for (let hops = 0; hops < 4 && !qk; hops++) {
      const n = producer.get(t);
      if (!n || !singleUse(t)) break;
      nodes.push(n);
      const mul = scalarOperand(n, 'Mul');
      const div = scalarOperand(n, 'Div');
      if (n.opType === 'MatMul') qk = n;
      else if (mul) [t, scale] = [mul[0], scale * mul[1]];
      else if (div) [t, scale] = [div[0], scale / div[1]];
      else if (n.opType === 'Where' && maskFilter === null && maskIsZero(n.input![0]!) && scalar(n.input![1]!) !== null)
        [t, maskFilter] = [n.input![2]!, scalar(n.input![1]!)!];
      else if (n.opType === 'Add' && maskFilter === null && additiveMask(n.input![1]!) !== null)
        [t, maskFilter] = [n.input![0]!, additiveMask(n.input![1]!)!];
      else if (n.opType === 'Add' && maskFilter === null && additiveMask(n.input![0]!) !== null)
        [t, maskFilter] = [n.input![1]!, additiveMask(n.input![0]!)!];
      else break;
    }
    if (!qk || maskFilter === null) continue;
    // The query may be scaled before the product (q / √d).
    let qHeads = qk.input![0]!;
    const qScale = scalarOperand(producer.get(qHeads), 'Div') ?? scalarOperand(producer.get(qHeads), 'Mul');
    if (qScale && singleUse(qHeads)) {
      nodes.push(producer.get(qHeads)!);
      scale = producer.get(qHeads)!.opType === 'Div' ? scale / qScale[1] : scale * qScale[1];
      qHeads = qScale[0];
    }
    const q = projection(qHeads, [0, 2, 1, 3]);
    const k = projection(qk.input![1]!, [0, 2, 3, 1]);
    const pv = uses.get(softmax.output![0]!);
    if (!q || !k || pv?.length !== 1 || pv[0]!.opType !== 'MatMul' || pv[0]!.input![0] !== softmax.output![0]) continue;
    const v = projection(pv[0]!.input![1]!, [0, 2, 1, 3]);
    if (!v || q.x !== k.x || q.x !== v.x || q.heads !== k.heads || q.heads !== v.heads || q.hidden !== k.hidden || q.hidden !== v.hidden)
      continue;
    // Heads merged: Transpose(0, 2, 1, 3), then Reshape to [B, S, H].
    const merge = singleUse(pv[0]!.output![0]!) ? uses.get(pv[0]!.output![0]!)![0]! : undefined;
    if (merge?.opType !== 'Transpose' || !sameInts(intsAttr(merge, 'perm'), [0, 2, 1, 3]) || !singleUse(merge.output![0]!)) continue;
    const out = uses.get(merge.output![0]!)![0]!;
    if (out.opType !== 'Reshape') continue;
    const outShape = index.constantInts(out.input![1]!);
    const outConcat = producer.get(out.input![1]!);
    const last = outConcat?.opType === 'Concat' && outConcat.input?.length === 3 ? index.constantInts(outConcat.input[2]!) : null;
    const runtimeLast = outConcat?.opType === 'Concat' && outConcat.input?.length === 3 && !last;
    if (!(outShape ? sameInts(outShape, [0, 0, q.hidden]) : runtimeLast || sameInts(last, [q.hidden]))) continue;
    const all = [...nodes, ...q.nodes, ...k.nodes, ...v.nodes, pv[0]!, merge, out];
    if (all.some((n) => claimed.has(n))) continue;
    for (const n of all) claimed.add(n);
    blocks.push({ x: q.x, weights: [q.w, k.w, v.w], biases: [q.b, k.b, v.b], heads: q.heads, scale, maskFilter, output: out, nodes: all });
  }
  return blocks;
}
