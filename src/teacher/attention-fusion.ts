// Multi-head self-attention written out op by op (three projections, heads split by Reshape and
// Transpose, scaled scores plus a padding bias, Softmax, heads merged) becomes ONNX Runtime's
// com.microsoft.Attention: one node, one [H, 3H] projection, no transposes. ONNX Runtime's own
// attention fusion does not recognize this layout on CPU.
import onnxProto from 'onnx-proto';
import { floatInitializer, GraphIndex, int64Initializer, intsAttr, sameInts, type ModelProto, type NodeProto } from './onnx-model.js';

const { onnx } = onnxProto;

interface Projection {
  x: string;
  w: string;
  b: string;
  nodes: NodeProto[];
  heads: number;
}

/** Lookups over a graph shared by the rewrites below. */
function graphContext(model: ModelProto, modelPath: string) {
  const g = model.graph!;
  const index = new GraphIndex(model, modelPath);
  const { producer, uses } = index;
  const singleUse = (t: string) => index.singleUse(t);
  const scalar = (t: string) => index.constantScalar(t);
  /** [other operand, constant] of a binary node with one constant operand. */
  const constOperand = (n: NodeProto | undefined, op: string): [string, string] | null => {
    if (n?.opType !== op || n.input?.length !== 2) return null;
    const [a, b] = n.input as [string, string];
    if (index.constants.has(b) && !index.constants.has(a)) return [a, b];
    if (op !== 'Sub' && op !== 'Div' && index.constants.has(a) && !index.constants.has(b)) return [b, a];
    return null;
  };
  /**
   * A head split's target computed at run time as PyTorch exports `x.view(bs, -1, heads, size)`:
   * Concat(Unsqueeze(Gather(Shape(·), 0)), [-1], [heads], [size]), read as [0, 0, heads, size] (0: the batch, and
   * the one axis left, copied); null for anything else.
   */
  const runtimeHeadShape = (t: string): number[] | null => {
    const concat = producer.get(t);
    if (concat?.opType !== 'Concat' || concat.input?.length !== 4) return null;
    const unsqueeze = producer.get(concat.input[0]!);
    const gather = unsqueeze?.opType === 'Unsqueeze' ? producer.get(unsqueeze.input![0]!) : undefined;
    if (gather?.opType !== 'Gather' || producer.get(gather.input![0]!)?.opType !== 'Shape') return null;
    if (index.constantInts(gather.input![1]!)?.join() !== '0') return null;
    const rest = concat.input.slice(1).map((x) => index.constantInts(x!));
    if (rest.some((r) => r?.length !== 1) || rest[0]![0] !== -1) return null;
    return [0, 0, rest[1]![0]!, rest[2]![0]!];
  };
  /** x·W + b split into heads: [x, W, b, the nodes] from Transpose(Reshape(Add(MatMul(x, W), b))). */
  const projection = (t: string, perm: readonly number[]): Projection | null => {
    const tr = producer.get(t);
    if (tr?.opType !== 'Transpose' || !sameInts(intsAttr(tr, 'perm'), perm) || !singleUse(t)) return null;
    const rs = producer.get(tr.input![0]!);
    if (rs?.opType !== 'Reshape' || !singleUse(rs.output![0]!)) return null;
    const shape = index.constantInts(rs.input![1]!) ?? runtimeHeadShape(rs.input![1]!);
    if (!shape || shape.length !== 4 || shape[0] !== 0 || !(shape[1] === 0 || shape[1] === 1) || !(shape[2]! > 0 && shape[3]! > 0))
      return null; // [B, T or 1 (one position), heads, head size]
    const add = producer.get(rs.input![0]!);
    const bias = constOperand(add, 'Add');
    if (!bias || !singleUse(add!.output![0]!)) return null;
    const mm = producer.get(bias[0]);
    if (mm?.opType !== 'MatMul' || !singleUse(mm.output![0]!)) return null;
    const w = index.constantFloats(mm.input![1]!);
    const b = index.constantFloats(bias[1]);
    const hidden = shape[2]! * shape[3]!;
    if (!w || !sameInts(w.dims, [hidden, hidden]) || !b || b.data.length !== hidden) return null;
    return { x: mm.input![0]!, w: mm.input![1]!, b: bias[1], nodes: [tr, rs, add!, mm], heads: shape[2]! };
  };
  /** The value c of a padding bias (1 − float(attention_mask))·c, unsqueezed to [B, 1, 1, S]. */
  const maskBias = (t: string): number | null => {
    const un = producer.get(t);
    if (un?.opType !== 'Unsqueeze') return null;
    const axes = un.input?.[1] ? index.constantInts(un.input[1]) : intsAttr(un, 'axes');
    if (!sameInts(axes, [1, 2])) return null;
    const mul = constOperand(producer.get(un.input![0]!), 'Mul');
    const c = mul ? scalar(mul[1]) : null;
    const sub = mul ? producer.get(mul[0]) : undefined;
    if (c === null || sub?.opType !== 'Sub' || scalar(sub.input![0]!) !== 1) return null;
    const cast = producer.get(sub.input![1]!);
    return cast?.opType === 'Cast' && cast.input![0] === 'attention_mask' ? c : null;
  };

  return { g, index, producer, uses, singleUse, scalar, constOperand, projection, maskBias };
}

/** Returns the number of attention blocks replaced (0: the model is unchanged). */
export function fuseAttention(model: ModelProto, modelPath: string): number {
  const { g, index, producer, uses, singleUse, scalar, constOperand, projection, maskBias } = graphContext(model, modelPath);
  const removed = new Set<NodeProto>();
  const replaced = new Map<NodeProto, NodeProto>();
  const inits: onnxProto.onnx.ITensorProto[] = [];
  const MASK = 'attention_mask__kd_int32';
  for (const softmax of g.node ?? []) {
    if (softmax.opType !== 'Softmax' || Number((softmax.attribute ?? []).find((a) => a.name === 'axis')?.i ?? -1) !== -1) continue;
    const sum = producer.get(softmax.input![0]!);
    if (sum?.opType !== 'Add' || !singleUse(sum.output![0]!)) continue;
    const [s0, s1] = sum.input as [string, string];
    const [scoresName, filter] = maskBias(s1) !== null ? [s0, maskBias(s1)!] : maskBias(s0) !== null ? [s1, maskBias(s0)!] : [null, null];
    if (!scoresName || filter === null) continue;
    const scaled = constOperand(producer.get(scoresName), 'Mul');
    const scale = scaled ? scalar(scaled[1]) : null;
    if (!scaled || scale === null || !singleUse(scoresName)) continue;
    const qk = producer.get(scaled[0]);
    if (qk?.opType !== 'MatMul' || !singleUse(qk.output![0]!)) continue;
    const q = projection(qk.input![0]!, [0, 2, 1, 3]);
    const k = projection(qk.input![1]!, [0, 2, 3, 1]);
    const pv = uses.get(softmax.output![0]!);
    if (!q || !k || pv?.length !== 1 || pv[0]!.opType !== 'MatMul' || pv[0]!.input![0] !== softmax.output![0]) continue;
    const v = projection(pv[0]!.input![1]!, [0, 2, 1, 3]);
    if (!v || q.x !== k.x || q.x !== v.x || q.heads !== k.heads || q.heads !== v.heads) continue;
    const merge = uses.get(pv[0]!.output![0]!);
    if (merge?.length !== 1 || merge[0]!.opType !== 'Transpose' || !sameInts(intsAttr(merge[0]!, 'perm'), [0, 2, 1, 3])) continue;
    const out = uses.get(merge[0]!.output![0]!);
    const outShape = out?.length === 1 && out[0]!.opType === 'Reshape' ? index.constantInts(out[0]!.input![1]!) : null;
    if (!sameInts(outShape, [0, 0, index.constantFloats(q.w)!.dims[0]!])) continue;
    const block = [...q.nodes, ...k.nodes, ...v.nodes, qk, producer.get(scoresName)!, sum, softmax, pv[0]!, merge[0]!, out![0]!];
    if (block.some((n) => removed.has(n))) continue;

    const [wq, wk, wv] = [q.w, k.w, v.w].map((w) => index.constantFloats(w)!.data);
    const [bq, bk, bv] = [q.b, k.b, v.b].map((b) => index.constantFloats(b)!.data);
    const hidden = bq!.length;
    const w = new Float32Array(hidden * 3 * hidden);
    for (let r = 0; r < hidden; r++) {
      w.set(wq!.subarray(r * hidden, (r + 1) * hidden), r * 3 * hidden);
      w.set(wk!.subarray(r * hidden, (r + 1) * hidden), r * 3 * hidden + hidden);
      w.set(wv!.subarray(r * hidden, (r + 1) * hidden), r * 3 * hidden + 2 * hidden);
    }
    const b = new Float32Array(3 * hidden);
    b.set(bq!, 0);
    b.set(bk!, hidden);
    b.set(bv!, 2 * hidden);
    const y = out![0]!.output![0]!;
    inits.push(
      floatInitializer(`${y}__kd_attention/qkv_weight`, [hidden, 3 * hidden], w),
      floatInitializer(`${y}__kd_attention/qkv_bias`, [3 * hidden], b),
    );
    const A = onnx.AttributeProto.AttributeType;
    replaced.set(
      out![0]!,
      onnx.NodeProto.create({
        opType: 'Attention',
        domain: 'com.microsoft',
        name: `${y}__kd_attention`,
        input: [q.x, `${y}__kd_attention/qkv_weight`, `${y}__kd_attention/qkv_bias`, MASK],
        output: [y],
        attribute: [
          onnx.AttributeProto.create({ name: 'num_heads', type: A.INT, i: q.heads }),
          onnx.AttributeProto.create({ name: 'scale', type: A.FLOAT, f: scale }),
          onnx.AttributeProto.create({ name: 'mask_filter_value', type: A.FLOAT, f: filter }),
        ],
      }),
    );
    for (const n of block) if (n !== out![0]) removed.add(n);
  }
  if (replaced.size === 0) return 0;
  const cast = onnx.NodeProto.create({
    opType: 'Cast',
    name: MASK,
    input: ['attention_mask'],
    output: [MASK],
    attribute: [
      onnx.AttributeProto.create({ name: 'to', type: onnx.AttributeProto.AttributeType.INT, i: onnx.TensorProto.DataType.INT32 }),
    ],
  });
  g.node = [cast, ...(g.node ?? []).flatMap((n) => (removed.has(n) ? [] : [replaced.get(n) ?? n]))];
  g.initializer = [...(g.initializer ?? []), ...inits];
  if (!(model.opsetImport ?? []).some((o) => o.domain === 'com.microsoft'))
    model.opsetImport = [...(model.opsetImport ?? []), onnx.OperatorSetIdProto.create({ domain: 'com.microsoft', version: 1 })];
  return replaced.size;
}

/**
 * Attention with one query (the position the classifier reads, after row pruning) no longer
 * projects every position to keys and values. Per head, with q the query and x the positions:
 * q·(x·Wk + bk)ᵀ = (q·Wkᵀ)·xᵀ + q·bk, and q·bk shifts every score of the row equally, which
 * Softmax ignores; p·(x·Wv + bv) = (p·x)·Wv + bv since the probabilities p sum to 1. Two
 * [T, H]×[H, H] products become four small ones. Returns the number of blocks rewritten.
 */
export function foldSingleQueryAttention(model: ModelProto, modelPath: string): number {
  const { g, index, producer, uses, singleUse, scalar, constOperand, projection } = graphContext(model, modelPath);
  const opset = Number((model.opsetImport ?? []).find((o) => !o.domain)?.version ?? 13);
  const removed = new Set<NodeProto>();
  const replaced = new Map<NodeProto, NodeProto[]>();
  const inits: onnxProto.onnx.ITensorProto[] = [];
  const node = (opType: string, input: string[], output: string, attrs: Record<string, number[]> = {}) =>
    onnx.NodeProto.create({
      opType,
      input,
      output: [output],
      name: `${output}/${opType}`,
      attribute: Object.entries(attrs).map(([name, v]) =>
        onnx.AttributeProto.create({ name, type: onnx.AttributeProto.AttributeType.INTS, ints: v }),
      ),
    });
  for (const qk of g.node ?? []) {
    if (qk.opType !== 'MatMul') continue;
    // PyTorch's exports scale the query (q / √d) before the product; the fold reads q as it is, scaled or not.
    const scaledQuery = constOperand(producer.get(qk.input![0]!), 'Div') ?? constOperand(producer.get(qk.input![0]!), 'Mul');
    const queryHeads = scaledQuery && scalar(scaledQuery[1]) !== null && singleUse(scaledQuery[0]) ? scaledQuery[0] : qk.input![0]!;
    const q = projection(queryHeads, [0, 2, 1, 3]);
    const k = projection(qk.input![1]!, [0, 2, 3, 1]);
    if (!q || !k || q.x !== `${k.x}__kd_pos0` || q.heads !== k.heads) continue;
    // scores → (scale) → (+ mask, or Where(mask, min, scores)) → Softmax → p·v
    let t = qk.output![0]!;
    let softmax: NodeProto | undefined;
    for (let hops = 0; hops < 4 && !softmax; hops++) {
      const next = uses.get(t);
      if (next?.length !== 1) break;
      const op = next[0]!.opType;
      if (op === 'Softmax') softmax = next[0];
      else if (op === 'Mul' || op === 'Add' || op === 'Div' || (op === 'Where' && next[0]!.input![0] !== t)) t = next[0]!.output![0]!;
      else break;
    }
    const pv = softmax ? uses.get(softmax.output![0]!) : undefined;
    if (!softmax || pv?.length !== 1 || pv[0]!.opType !== 'MatMul' || pv[0]!.input![0] !== softmax.output![0]) continue;
    const v = projection(pv[0]!.input![1]!, [0, 2, 1, 3]);
    if (!v || v.x !== k.x || v.heads !== k.heads) continue;
    if ([...k.nodes, ...v.nodes, qk, pv[0]!].some((n) => removed.has(n))) continue;

    const wk = index.constantFloats(k.w)!.data;
    const wv = index.constantFloats(v.w)!.data;
    const bv = index.constantFloats(v.b)!.data;
    const hidden = bv.length;
    const heads = k.heads;
    const dh = hidden / heads;
    // WkH[i, j, :] = Wk[:, i·dh + j] ([heads, dh, H]); WvH[i, :, j] = Wv[:, i·dh + j] ([heads, H, dh]).
    const wkH = new Float32Array(heads * dh * hidden);
    const wvH = new Float32Array(heads * hidden * dh);
    for (let r = 0; r < hidden; r++) {
      for (let c = 0; c < hidden; c++) {
        const i = Math.floor(c / dh);
        const j = c % dh;
        wkH[(i * dh + j) * hidden + r] = wk[r * hidden + c]!;
        wvH[(i * hidden + r) * dh + j] = wv[r * hidden + c]!;
      }
    }
    const base = `${qk.output![0]}__kd_1q`;
    inits.push(
      floatInitializer(`${base}/wk_heads`, [heads, dh, hidden], wkH),
      floatInitializer(`${base}/wv_heads`, [heads, hidden, dh], wvH),
      floatInitializer(`${base}/bv_heads`, [heads, 1, dh], bv.slice()),
    );
    const unsqueeze =
      opset >= 13
        ? (inits.push(int64Initializer(`${base}/axis1`, [1])), node('Unsqueeze', [k.x, `${base}/axis1`], `${base}/x`))
        : node('Unsqueeze', [k.x], `${base}/x`, { axes: [1] });
    replaced.set(qk, [
      node('MatMul', [qk.input![0]!, `${base}/wk_heads`], `${base}/q_wk`),
      unsqueeze,
      node('Transpose', [`${base}/x`], `${base}/x_t`, { perm: [0, 1, 3, 2] }),
      node('MatMul', [`${base}/q_wk`, `${base}/x_t`], qk.output![0]!),
    ]);
    replaced.set(pv[0]!, [
      node('MatMul', [softmax.output![0]!, `${base}/x`], `${base}/p_x`),
      node('MatMul', [`${base}/p_x`, `${base}/wv_heads`], `${base}/p_x_wv`),
      node('Add', [`${base}/p_x_wv`, `${base}/bv_heads`], pv[0]!.output![0]!),
    ]);
    for (const n of [...k.nodes, ...v.nodes]) removed.add(n);
  }
  if (replaced.size === 0) return 0;
  g.node = (g.node ?? []).flatMap((n) => (removed.has(n) ? [] : (replaced.get(n) ?? [n])));
  g.initializer = [...(g.initializer ?? []), ...inits];
  return replaced.size / 2;
}
