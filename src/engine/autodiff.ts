// Reverse-mode automatic differentiation over the graph builder: every differentiable op
// has a rule that emits its vector-Jacobian product as more graph nodes.
import type { Graph, GraphNode, Value } from './graph.js';
import * as op from './ops.js';
import { isFloat } from './dtype.js';
import { broadcastAxes, normalizeAxis, sameDim, staticSize } from './shape.js';

/** Gradients of `node`'s inputs given the gradients of its outputs (null = zero / not needed). */
type GradRule = (node: GraphNode, dOut: readonly (Value | null)[], needs: readonly boolean[]) => (Value | null)[];

/** Sums a gradient of broadcast shape back to the shape of the input it came from. */
export function unbroadcast(grad: Value, input: Value): Value {
  if (grad.rank === input.rank && grad.shape.every((d, i) => sameDim(d, input.shape[i]!))) return grad;
  const { leading, kept } = broadcastAxes(input.shape, grad.shape);
  let r = grad;
  if (leading.length) r = op.reduceSum(r, leading, false);
  if (kept.length)
    r = op.reduceSum(
      r,
      kept.map((k) => k - leading.length),
      true,
    );
  return r;
}

function initializerScalar(v: Value, what: string): number {
  const init = v.graph.initializers.get(v.name);
  if (!init || init.data.length !== 1) throw new Error(`${what}: gradient needs a constant scalar, got ${v}`);
  return Number(init.data[0]);
}

function swapLast(x: Value): Value {
  const perm = x.shape.map((_, i) => i);
  perm[x.rank - 1] = x.rank - 2;
  perm[x.rank - 2] = x.rank - 1;
  return op.transpose(x, perm);
}

function matmulGrad(a: Value, b: Value, dy: Value, needs: readonly boolean[]): (Value | null)[] {
  let da: Value | null = null;
  let db: Value | null = null;
  if (b.rank === 2 && a.rank >= 2) {
    // Fold batch dims into rows: two plain GEMMs instead of batched products.
    const k = a.shape[a.rank - 1]!;
    const n = b.shape[1]!;
    const a2 = a.rank === 2 ? a : op.reshape(a, [-1, typeof k === 'number' ? k : 0]);
    const dy2 = dy.rank === 2 ? dy : op.reshape(dy, [-1, typeof n === 'number' ? n : 0]);
    if (needs[0]) {
      const g = op.gemm(dy2, b, null, { transB: true });
      da = a.rank === 2 ? g : op.reshapeLike(g, a);
    }
    if (needs[1]) db = op.gemm(a2, dy2, null, { transA: true });
    return [da, db];
  }
  if (needs[0]) da = unbroadcast(op.matmul(dy, swapLast(b)), a);
  if (needs[1]) db = unbroadcast(op.matmul(swapLast(a), dy), b);
  return [da, db];
}

function reduceGradShape(node: GraphNode, dy: Value): { dyKeep: Value; axes: number[] } {
  const x = node.inputs[0]!;
  const axesInit = x.graph.initializers.get(node.inputs[1]!.name);
  const axes = Array.from(axesInit!.data as BigInt64Array, (a) => normalizeAxis(Number(a), x.rank));
  const keep = (node.attrs.keepdims as { value: number } | undefined)?.value !== 0;
  return { dyKeep: keep ? dy : op.unsqueeze(dy, axes), axes };
}

/** Static or run-time count of elements reduced per output (float, as a scalar value). */
function reducedCount(x: Value, axes: number[]): Value {
  const dims = axes.map((a) => x.shape[a]!);
  const n = staticSize(dims);
  if (n !== null) return x.graph.scalar(n, x.dtype);
  const sizes = axes.map((a) => op.dimSize(x, a));
  let count = sizes[0]!;
  for (const s of sizes.slice(1)) count = op.mul(count, s);
  return op.cast(count, x.dtype);
}

function sliceGrad(node: GraphNode, dy: Value): Value {
  // Pad the gradient back with zeros; pads after a slice that ends early depend on the run-time dim.
  const x = node.inputs[0]!;
  const g = x.graph;
  const read = (v: Value | null) => Array.from(g.initializers.get(v!.name)!.data as BigInt64Array, Number);
  const starts = read(node.inputs[1]!);
  const ends = read(node.inputs[2]!);
  const axes = read(node.inputs[3]!);
  const before: Value[] = [];
  const after: Value[] = [];
  for (let i = 0; i < x.rank; i++) {
    const k = axes.indexOf(i);
    if (k < 0) {
      before.push(g.int64s([0]));
      after.push(g.int64s([0]));
      continue;
    }
    before.push(g.int64s([starts[k]!]));
    if (ends[k]! >= op.SLICE_END) after.push(g.int64s([0]));
    else {
      const d = x.shape[i]!;
      after.push(typeof d === 'number' ? g.int64s([d - ends[k]!]) : op.unsqueeze(op.sub(op.dimSize(x, i), ends[k]!), [0]));
    }
  }
  const pads = op.concat([...before, ...after], 0);
  return g.addNode('Pad', [dy, pads], { mode: { kind: 'string', value: 'constant' } }, [{ dtype: dy.dtype, shape: x.shape }])[0]!;
}

const RULES: Record<string, GradRule> = {
  Identity: (_n, [dy]) => [dy!],
  Add: (n, [dy], needs) => [needs[0] ? unbroadcast(dy!, n.inputs[0]!) : null, needs[1] ? unbroadcast(dy!, n.inputs[1]!) : null],
  Sub: (n, [dy], needs) => [needs[0] ? unbroadcast(dy!, n.inputs[0]!) : null, needs[1] ? unbroadcast(op.neg(dy!), n.inputs[1]!) : null],
  Mul: (n, [dy], needs) => {
    const [a, b] = n.inputs as [Value, Value];
    return [needs[0] ? unbroadcast(op.mul(dy!, b), a) : null, needs[1] ? unbroadcast(op.mul(dy!, a), b) : null];
  },
  Div: (n, [dy], needs) => {
    const [a, b] = n.inputs as [Value, Value];
    const y = n.outputs[0]!;
    return [needs[0] ? unbroadcast(op.div(dy!, b), a) : null, needs[1] ? unbroadcast(op.neg(op.div(op.mul(dy!, y), b)), b) : null];
  },
  Pow: (n, [dy], needs) => {
    const [x, e] = n.inputs as [Value, Value];
    if (needs[1]) throw new Error('Pow: gradient for the exponent is not supported (use exp/log)');
    const c = initializerScalar(e, 'Pow');
    return [op.mul(dy!, op.mul(c, c === 2 ? x : op.pow(x, c - 1))), null];
  },
  Neg: (_n, [dy]) => [op.neg(dy!)],
  Exp: (n, [dy]) => [op.mul(dy!, n.outputs[0]!)],
  Log: (n, [dy]) => [op.div(dy!, n.inputs[0]!)],
  Sqrt: (n, [dy]) => [op.div(op.mul(dy!, 0.5), n.outputs[0]!)],
  Tanh: (n, [dy]) => {
    const y = n.outputs[0]!;
    return [op.mul(dy!, op.sub(1, op.mul(y, y)))];
  },
  Sigmoid: (n, [dy]) => {
    const y = n.outputs[0]!;
    return [op.mul(dy!, op.mul(y, op.sub(1, y)))];
  },
  Relu: (n, [dy]) => [op.where(op.greater(n.inputs[0]!, 0), dy!, 0)],
  Erf: (n, [dy]) => {
    const x = n.inputs[0]!;
    return [op.mul(dy!, op.mul(2 / Math.sqrt(Math.PI), op.exp(op.neg(op.mul(x, x)))))];
  },
  Abs: (n, [dy]) => [op.mul(dy!, op.sign(n.inputs[0]!))],
  Reciprocal: (n, [dy]) => {
    const y = n.outputs[0]!;
    return [op.neg(op.mul(dy!, op.mul(y, y)))];
  },
  Cast: (n, [dy]) => {
    const x = n.inputs[0]!;
    return [isFloat(x.dtype) ? op.cast(dy!, x.dtype) : null];
  },
  Max: (n, [dy], needs) => minMaxGrad(n, dy!, needs, op.greater),
  Min: (n, [dy], needs) => minMaxGrad(n, dy!, needs, op.less),
  Clip: (n, [dy]) => {
    const [x, lo, hi] = n.inputs as [Value, Value, Value];
    const inside = op.and(op.lessOrEqual(lo, x), op.lessOrEqual(x, hi));
    return [op.where(inside, dy!, 0), null, null];
  },
  Where: (n, [dy], needs) => {
    const [c, a, b] = n.inputs as [Value, Value, Value];
    return [null, needs[1] ? unbroadcast(op.where(c, dy!, 0), a) : null, needs[2] ? unbroadcast(op.where(c, 0, dy!), b) : null];
  },
  MatMul: (n, [dy], needs) => matmulGrad(n.inputs[0]!, n.inputs[1]!, dy!, needs),
  Gemm: (n, [dy], needs) => {
    const [a, b, c] = n.inputs as [Value, Value, Value | undefined];
    const tA = (n.attrs.transA as { value: number } | undefined)?.value === 1;
    const tB = (n.attrs.transB as { value: number } | undefined)?.value === 1;
    const alpha = (n.attrs.alpha as { value: number } | undefined)?.value ?? 1;
    const beta = (n.attrs.beta as { value: number } | undefined)?.value ?? 1;
    let da: Value | null = null;
    let db: Value | null = null;
    if (needs[0]) da = tA ? op.gemm(b, dy!, null, { transA: tB, transB: true, alpha }) : op.gemm(dy!, b, null, { transB: !tB, alpha });
    if (needs[1]) db = tB ? op.gemm(dy!, a, null, { transA: true, transB: tA, alpha }) : op.gemm(a, dy!, null, { transA: !tA, alpha });
    const dc = c && needs[2] ? unbroadcast(beta === 1 ? dy! : op.mul(dy!, beta), c) : null;
    return [da, db, dc];
  },
  Softmax: (n, [dy]) => {
    const y = n.outputs[0]!;
    const axis = (n.attrs.axis as { value: number }).value;
    return [op.mul(y, op.sub(dy!, op.reduceSum(op.mul(dy!, y), [axis], true)))];
  },
  LogSoftmax: (n, [dy]) => {
    const y = n.outputs[0]!;
    const axis = (n.attrs.axis as { value: number }).value;
    return [op.sub(dy!, op.mul(op.exp(y), op.reduceSum(dy!, [axis], true)))];
  },
  LayerNormalization: (n, [dy], needs) => {
    const [x, gamma, beta] = n.inputs as [Value, Value, Value];
    if (!dy) return [null, null, null];
    // Reuse the saved float32 statistics; recompute them in float64 graphs.
    let [, mean, invStd] = n.outputs as [Value, Value, Value];
    if (x.dtype !== mean.dtype) {
      const eps = (n.attrs.epsilon as { value: number } | undefined)?.value ?? 1e-5;
      mean = op.reduceMean(x, [-1], true);
      const centered = op.sub(x, mean);
      invStd = op.reciprocal(op.sqrt(op.add(op.reduceMean(op.mul(centered, centered), [-1], true), eps)));
    }
    const xhat = op.mul(op.sub(x, mean), invStd);
    const dxhat = op.mul(dy, gamma);
    const dx = needs[0]
      ? op.mul(
          invStd,
          op.sub(op.sub(dxhat, op.reduceMean(dxhat, [-1], true)), op.mul(xhat, op.reduceMean(op.mul(dxhat, xhat), [-1], true))),
        )
      : null;
    return [dx, needs[1] ? unbroadcast(op.mul(dy, xhat), gamma) : null, needs[2] ? unbroadcast(dy, beta) : null];
  },
  Gather: (n, [dy], needs) => {
    const [data, idx] = n.inputs as [Value, Value];
    if (!needs[0]) return [null, null];
    const indices = op.unsqueeze(op.cast(idx, 'int64'), [-1]);
    return [op.scatterNDAdd(op.zerosLike(data), indices, dy!), null];
  },
  ScatterND: (n, [dy], needs) => {
    const [, indices] = n.inputs as [Value, Value, Value];
    const reduction = (n.attrs.reduction as { value: string } | undefined)?.value ?? 'none';
    if (reduction !== 'add') throw new Error(`ScatterND: gradient supports reduction "add" only, got "${reduction}"`);
    const dUpdates = needs[2]
      ? n.inputs[0]!.graph.addNode('GatherND', [dy!, indices], {}, [{ dtype: dy!.dtype, shape: n.inputs[2]!.shape }])[0]!
      : null;
    return [needs[0] ? dy! : null, null, dUpdates];
  },
  ReduceSum: (n, [dy]) => {
    const { dyKeep } = reduceGradShape(n, dy!);
    return [op.expandLike(dyKeep, n.inputs[0]!), null];
  },
  ReduceMean: (n, [dy]) => {
    const x = n.inputs[0]!;
    const { dyKeep, axes } = reduceGradShape(n, dy!);
    return [op.expandLike(op.div(dyKeep, reducedCount(x, axes)), x), null];
  },
  ReduceMax: (n, [dy]) => {
    // Ties share the gradient equally, as torch.amax does.
    const x = n.inputs[0]!;
    const { dyKeep, axes } = reduceGradShape(n, dy!);
    const keepNode = (n.attrs.keepdims as { value: number } | undefined)?.value !== 0;
    const yKeep = keepNode ? n.outputs[0]! : op.unsqueeze(n.outputs[0]!, axes);
    const mask = op.cast(op.equal(x, yKeep), x.dtype);
    const count = op.reduceSum(mask, axes, true);
    return [op.mul(mask, op.div(dyKeep, count)), null];
  },
  Reshape: (n, [dy]) => [op.reshapeLike(dy!, n.inputs[0]!), null],
  Unsqueeze: (n, [dy]) => [op.reshapeLike(dy!, n.inputs[0]!), null],
  Squeeze: (n, [dy]) => [op.reshapeLike(dy!, n.inputs[0]!), null],
  Transpose: (n, [dy]) => {
    const perm = (n.attrs.perm as { value: readonly number[] }).value;
    const inv = new Array<number>(perm.length);
    perm.forEach((p, i) => (inv[p] = i));
    return [op.transpose(dy!, inv)];
  },
  Concat: (n, [dy], needs) => {
    const axis = (n.attrs.axis as { value: number }).value;
    let offset = 0;
    return n.inputs.map((x, i) => {
      const size = x!.shape[axis]!;
      if (typeof size !== 'number') throw new Error(`Concat: gradient needs static sizes on the concat axis, got ${x}`);
      const part = needs[i] ? op.slice(dy!, [offset], [offset + size], [axis]) : null;
      offset += size;
      return part;
    });
  },
  Slice: (n, [dy]) => [sliceGrad(n, dy!), null, null, null],
  Expand: (n, [dy]) => [unbroadcast(dy!, n.inputs[0]!), null],
  Sum: (n, [dy], needs) => n.inputs.map((x, i) => (needs[i] ? unbroadcast(dy!, x!) : null)),
};

function minMaxGrad(n: GraphNode, dy: Value, needs: readonly boolean[], wins: (a: Value, b: Value) => Value): (Value | null)[] {
  // The larger (smaller) operand takes the gradient; ties split it evenly.
  const [a, b] = n.inputs as [Value, Value];
  const half = op.mul(op.cast(op.equal(a, b), a.dtype), 0.5);
  const maskA = op.add(op.cast(wins(a, b), a.dtype), half);
  return [needs[0] ? unbroadcast(op.mul(dy, maskA), a) : null, needs[1] ? unbroadcast(op.mul(dy, op.sub(1, maskA)), b) : null];
}

/** Op types without a gradient: integer, boolean and shape computations. */
const NON_DIFFERENTIABLE = new Set([
  'Shape',
  'Equal',
  'Greater',
  'Less',
  'LessOrEqual',
  'GreaterOrEqual',
  'Not',
  'And',
  'Or',
  'Range',
  'BitShift',
  'BitwiseXor',
  'ReduceProd',
  'Sign',
  'ArgMax',
  'OneHot',
  'GatherND',
]);

export function hasGradRule(opType: string): boolean {
  return opType in RULES;
}

export const differentiableOps = (): string[] => Object.keys(RULES).sort();

/**
 * Gradients of the scalar `loss` with respect to each of `wrt`, added to the loss's graph.
 * A value in `wrt` that the loss does not depend on gets a zero gradient.
 */
export function gradients(loss: Value, wrt: readonly Value[]): Map<Value, Value> {
  const g: Graph = loss.graph;
  if (loss.rank !== 0) throw new RangeError(`gradients: the loss must be a scalar, got ${loss}`);
  if (!isFloat(loss.dtype)) throw new TypeError(`gradients: the loss must be floating point, got ${loss}`);
  // Values that depend on a wrt value (forward reachability).
  const depends = new Set<Value>(wrt);
  const path = g.nodesFor([loss]);
  for (const n of path) {
    if (n.inputs.some((i) => i && depends.has(i))) for (const o of n.outputs) if (isFloat(o.dtype)) depends.add(o);
  }
  const contributions = new Map<Value, Value[]>();
  const push = (v: Value, grad: Value) => {
    const list = contributions.get(v);
    if (list) list.push(grad);
    else contributions.set(v, [grad]);
  };
  const total = (v: Value): Value | null => {
    const list = contributions.get(v);
    if (!list || list.length === 0) return null;
    if (list.length > 1) {
      const sum = op.sumOf(list);
      contributions.set(v, [sum]);
      return sum;
    }
    return list[0]!;
  };
  push(loss, g.scalar(1, loss.dtype));
  for (let k = path.length - 1; k >= 0; k--) {
    const node = path[k]!;
    const dOut = node.outputs.map((o) => total(o));
    if (dOut.every((d) => d === null)) continue;
    const needs = node.inputs.map((i) => i !== null && depends.has(i) && isFloat(i.dtype));
    if (!needs.some(Boolean)) continue;
    if (NON_DIFFERENTIABLE.has(node.opType)) continue;
    const rule = RULES[node.opType];
    if (!rule)
      throw new Error(
        `gradients: no gradient rule for op ${node.opType} (node ${node.opType}_${node.id}). Known: ${differentiableOps().join(', ')}`,
      );
    // Outputs without a gradient count as zero; rules that read dOut[0] need it present.
    const filled = dOut.map((d, i) => (d === null && i === 0 && isFloat(node.outputs[0]!.dtype) ? op.zerosLike(node.outputs[0]!) : d));
    const dIn = rule(node, filled, needs);
    dIn.forEach((d, i) => {
      const input = node.inputs[i];
      if (d && input && needs[i]) push(input, d);
    });
  }
  const result = new Map<Value, Value>();
  for (const w of wrt) result.set(w, total(w) ?? op.zerosLike(w));
  return result;
}
