// Typed ONNX operator constructors with static shape inference. Autodiff (autodiff.ts)
// has a gradient rule for every differentiable op built here.
import { float, int, ints, str, type Graph, type Value } from './graph.js';
import type { DType } from './dtype.js';
import { broadcastShapes, dimProduct, formatShape, normalizeAxis, sameDim, type Dim, type Shape } from './shape.js';

/** A value, or a number taken as a scalar of the other operand's type. */
export type Operand = Value | number;

function graphOf(...xs: Operand[]): Graph {
  for (const x of xs) if (typeof x !== 'number') return x.graph;
  throw new TypeError('at least one operand must be a graph value');
}

function dtypeOf(...xs: Operand[]): DType {
  for (const x of xs) if (typeof x !== 'number') return x.dtype;
  throw new TypeError('at least one operand must be a graph value');
}

function lift(x: Operand, g: Graph, dtype: DType): Value {
  return typeof x === 'number' ? g.scalar(x, dtype) : x;
}

function checkSameType(op: string, values: Value[]): void {
  const d = values[0]!.dtype;
  for (const v of values)
    if (v.dtype !== d) throw new TypeError(`${op}: operand types differ (${values.map((x) => x.toString()).join(', ')})`);
}

function binary(op: string, a: Operand, b: Operand, outDtype?: DType): Value {
  const g = graphOf(a, b);
  const dtype = dtypeOf(a, b);
  const va = lift(a, g, dtype);
  const vb = lift(b, g, dtype);
  checkSameType(op, [va, vb]);
  const shape = broadcastShapes(va.shape, vb.shape, op);
  return g.addNode(op, [va, vb], {}, [{ dtype: outDtype ?? dtype, shape }])[0]!;
}

function unary(op: string, x: Value, attrs: Record<string, ReturnType<typeof int>> = {}): Value {
  return x.graph.addNode(op, [x], attrs, [{ dtype: x.dtype, shape: x.shape }])[0]!;
}

export const add = (a: Operand, b: Operand) => binary('Add', a, b);
export const sub = (a: Operand, b: Operand) => binary('Sub', a, b);
export const mul = (a: Operand, b: Operand) => binary('Mul', a, b);
export const div = (a: Operand, b: Operand) => binary('Div', a, b);
export const pow = (a: Value, exponent: number) => binary('Pow', a, exponent);
export const maximum = (a: Operand, b: Operand) => binary('Max', a, b);
export const minimum = (a: Operand, b: Operand) => binary('Min', a, b);
export const equal = (a: Operand, b: Operand) => binary('Equal', a, b, 'bool');
export const greater = (a: Operand, b: Operand) => binary('Greater', a, b, 'bool');
export const less = (a: Operand, b: Operand) => binary('Less', a, b, 'bool');
export const lessOrEqual = (a: Operand, b: Operand) => binary('LessOrEqual', a, b, 'bool');
export const and = (a: Value, b: Value) => binary('And', a, b, 'bool');
export const bitwiseXor = (a: Operand, b: Operand) => binary('BitwiseXor', a, b);

export function shiftRight(a: Value, bits: number): Value {
  const g = a.graph;
  const b = g.scalar(bits, a.dtype);
  return g.addNode('BitShift', [a, b], { direction: str('RIGHT') }, [{ dtype: a.dtype, shape: a.shape }])[0]!;
}

export const neg = (x: Value) => unary('Neg', x);
export const exp = (x: Value) => unary('Exp', x);
export const log = (x: Value) => unary('Log', x);
export const sqrt = (x: Value) => unary('Sqrt', x);
export const tanh = (x: Value) => unary('Tanh', x);
export const sigmoid = (x: Value) => unary('Sigmoid', x);
export const relu = (x: Value) => unary('Relu', x);
export const erf = (x: Value) => unary('Erf', x);
export const abs = (x: Value) => unary('Abs', x);
export const sign = (x: Value) => unary('Sign', x);
export const reciprocal = (x: Value) => unary('Reciprocal', x);
export const identity = (x: Value) => unary('Identity', x);
export const not = (x: Value) => unary('Not', x);

export function cast(x: Value, to: DType): Value {
  if (x.dtype === to) return x;
  const codes: Record<DType, number> = { float32: 1, uint8: 2, int32: 6, int64: 7, bool: 9, float16: 10, float64: 11, uint64: 13 };
  return x.graph.addNode('Cast', [x], { to: int(codes[to]) }, [{ dtype: to, shape: x.shape }])[0]!;
}

/** Cast to the dtype of `like`. */
export const castLike = (x: Value, like: Value) => cast(x, like.dtype);

/** Numpy-style matmul for ranks >= 2, broadcasting batch dims. */
export function matmul(a: Value, b: Value): Value {
  checkSameType('MatMul', [a, b]);
  if (a.rank < 2 || b.rank < 2) throw new RangeError(`MatMul: both operands need rank >= 2, got ${a} and ${b}`);
  const k1 = a.shape[a.rank - 1]!;
  const k2 = b.shape[b.rank - 2]!;
  if (!sameDim(k1, k2)) throw new RangeError(`MatMul: inner dims differ: ${a} × ${b}`);
  const batch = broadcastShapes(a.shape.slice(0, -2), b.shape.slice(0, -2), 'MatMul batch');
  return a.graph.addNode('MatMul', [a, b], {}, [{ dtype: a.dtype, shape: [...batch, a.shape[a.rank - 2]!, b.shape[b.rank - 1]!] }])[0]!;
}

/** Gemm: alpha·op(A)·op(B) + beta·C on 2-D operands. */
export function gemm(
  a: Value,
  b: Value,
  c: Value | null,
  opts: { transA?: boolean; transB?: boolean; alpha?: number; beta?: number } = {},
): Value {
  if (a.rank !== 2 || b.rank !== 2) throw new RangeError(`Gemm: operands must be 2-D, got ${a} and ${b}`);
  const [m, ka] = opts.transA ? [a.shape[1]!, a.shape[0]!] : [a.shape[0]!, a.shape[1]!];
  const [kb, n] = opts.transB ? [b.shape[1]!, b.shape[0]!] : [b.shape[0]!, b.shape[1]!];
  if (!sameDim(ka, kb)) throw new RangeError(`Gemm: inner dims differ: ${a} × ${b}`);
  if (c) broadcastShapes(c.shape, [m, n], 'Gemm bias');
  const attrs = {
    transA: int(opts.transA ? 1 : 0),
    transB: int(opts.transB ? 1 : 0),
    alpha: float(opts.alpha ?? 1),
    beta: float(opts.beta ?? 1),
  };
  return a.graph.addNode('Gemm', c ? [a, b, c] : [a, b], attrs, [{ dtype: a.dtype, shape: [m, n] }])[0]!;
}

export function softmax(x: Value, axis = -1): Value {
  normalizeAxis(axis, x.rank);
  return x.graph.addNode('Softmax', [x], { axis: int(axis) }, [{ dtype: x.dtype, shape: x.shape }])[0]!;
}

export function logSoftmax(x: Value, axis = -1): Value {
  normalizeAxis(axis, x.rank);
  return x.graph.addNode('LogSoftmax', [x], { axis: int(axis) }, [{ dtype: x.dtype, shape: x.shape }])[0]!;
}

/** LayerNormalization over the last axis; also returns the saved mean and 1/std. */
export function layerNorm(x: Value, scale: Value, bias: Value, epsilon = 1e-12): { y: Value; mean: Value; invStd: Value } {
  checkSameType('LayerNormalization', [x, scale, bias]);
  const stat = [...x.shape.slice(0, -1), 1];
  const [y, mean, invStd] = x.graph.addNode('LayerNormalization', [x, scale, bias], { axis: int(-1), epsilon: float(epsilon) }, [
    { dtype: x.dtype, shape: x.shape },
    // ONNX Runtime keeps the statistics in float32 (stash_type 1) whatever the input type.
    { dtype: 'float32', shape: stat, name: 'ln_mean' },
    { dtype: 'float32', shape: stat, name: 'ln_invstd' },
  ]);
  return { y: y!, mean: mean!, invStd: invStd! };
}

/** Gather rows (axis 0): out shape = indices.shape ++ data.shape[1:]. */
export function gather(data: Value, indices: Value): Value {
  if (indices.dtype !== 'int64' && indices.dtype !== 'int32') throw new TypeError(`Gather: indices must be int64 or int32, got ${indices}`);
  return data.graph.addNode('Gather', [data, indices], { axis: int(0) }, [
    { dtype: data.dtype, shape: [...indices.shape, ...data.shape.slice(1)] },
  ])[0]!;
}

function reduce(op: string, x: Value, axes: readonly number[], keepdims: boolean): Value {
  const norm = [...new Set(axes.map((a) => normalizeAxis(a, x.rank)))].sort((a, b) => a - b);
  const shape: Dim[] = [];
  x.shape.forEach((d, i) => {
    if (!norm.includes(i)) shape.push(d);
    else if (keepdims) shape.push(1);
  });
  return x.graph.addNode(op, [x, x.graph.int64s(norm, 'axes')], { keepdims: int(keepdims ? 1 : 0) }, [{ dtype: x.dtype, shape }])[0]!;
}

export const reduceSum = (x: Value, axes: readonly number[], keepdims = false) => reduce('ReduceSum', x, axes, keepdims);
export const reduceMean = (x: Value, axes: readonly number[], keepdims = false) => reduce('ReduceMean', x, axes, keepdims);
export const reduceMax = (x: Value, axes: readonly number[], keepdims = false) => reduce('ReduceMax', x, axes, keepdims);

/** Sum of all elements, as a scalar. */
export const sumAll = (x: Value) =>
  reduceSum(
    x,
    x.shape.map((_, i) => i),
    false,
  );

/**
 * Reshape to a static target: entries are sizes, 0 (copy the input dim) or -1 (infer one
 * dim). Symbolic dims come from the input through 0 or -1.
 */
export function reshape(x: Value, target: readonly number[]): Value {
  const out: Dim[] = target.map((t, i) => (t === 0 ? x.shape[i]! : t));
  const inferAt = target.indexOf(-1);
  if (inferAt >= 0) {
    if (target.lastIndexOf(-1) !== inferAt) throw new RangeError(`Reshape: at most one -1 in ${formatShape(target)}`);
    const known = out.filter((_, i) => i !== inferAt);
    out[inferAt] = divideDims(dimProduct(x.shape), dimProduct(known), x, target);
  } else if (dimProduct(out) !== dimProduct(x.shape)) {
    throw new RangeError(`Reshape: ${x} cannot become ${formatShape(out)}`);
  }
  return x.graph.addNode('Reshape', [x, x.graph.int64s(target, 'shape')], {}, [{ dtype: x.dtype, shape: out }])[0]!;
}

function divideDims(total: Dim, known: Dim, x: Value, target: readonly number[]): Dim {
  if (typeof total === 'number' && typeof known === 'number') {
    if (total % known !== 0) throw new RangeError(`Reshape: ${x} cannot become ${formatShape(target)}`);
    return total / known;
  }
  const totalParts = String(total).split('*');
  const knownParts = String(known).split('*');
  let num = 1;
  const syms: string[] = [];
  for (const p of totalParts)
    if (/^\d+$/.test(p)) num *= Number(p);
    else syms.push(p);
  let knownNum = 1;
  for (const p of knownParts) {
    if (/^\d+$/.test(p)) knownNum *= Number(p);
    else {
      const k = syms.indexOf(p);
      if (k < 0) throw new RangeError(`Reshape: cannot infer -1 for ${x} → ${formatShape(target)}`);
      syms.splice(k, 1);
    }
  }
  if (num % knownNum !== 0) throw new RangeError(`Reshape: ${x} cannot become ${formatShape(target)}`);
  return dimProduct([num / knownNum, ...syms]);
}

/** Reshape to the run-time shape of `like` (static shape taken from it). */
export function reshapeLike(x: Value, like: Value): Value {
  if (dimProduct(x.shape) !== dimProduct(like.shape)) throw new RangeError(`Reshape: ${x} cannot take the shape of ${like}`);
  return x.graph.addNode('Reshape', [x, shapeOf(like)], {}, [{ dtype: x.dtype, shape: like.shape }])[0]!;
}

export function shapeOf(x: Value): Value {
  return x.graph.addNode('Shape', [x], {}, [{ dtype: 'int64', shape: [x.rank] }])[0]!;
}

export function transpose(x: Value, perm: readonly number[]): Value {
  if (perm.length !== x.rank || [...perm].sort().some((p, i) => p !== i))
    throw new RangeError(`Transpose: perm ${formatShape(perm)} does not fit ${x}`);
  return x.graph.addNode('Transpose', [x], { perm: ints(perm) }, [{ dtype: x.dtype, shape: perm.map((p) => x.shape[p]!) }])[0]!;
}

export function concat(xs: readonly Value[], axis: number): Value {
  checkSameType('Concat', [...xs]);
  const rank = xs[0]!.rank;
  const a = normalizeAxis(axis, rank);
  const shape: Dim[] = [...xs[0]!.shape];
  const parts: Dim[] = xs.map((x) => x.shape[a]!);
  shape[a] = sumDims(parts);
  for (const x of xs) {
    if (x.rank !== rank || x.shape.some((d, i) => i !== a && !sameDim(d, xs[0]!.shape[i]!)))
      throw new RangeError(`Concat: ${xs.map(String).join(', ')} differ off axis ${axis}`);
  }
  return xs[0]!.graph.addNode('Concat', xs, { axis: int(a) }, [{ dtype: xs[0]!.dtype, shape }])[0]!;
}

/** Sum of concatenated dims; "T-1" + 1 simplifies back to "T" (a slice-to-end plus its complement). */
function sumDims(parts: readonly Dim[]): Dim {
  let num = 0;
  const syms: string[] = [];
  for (const p of parts) {
    if (typeof p === 'number') num += p;
    else {
      const m = /^(.*)-(\d+)$/.exec(p);
      if (m) {
        syms.push(m[1]!);
        num -= Number(m[2]);
      } else syms.push(p);
    }
  }
  if (syms.length === 0) return num;
  if (syms.length === 1 && num === 0) return syms[0]!;
  return parts.join('+');
}

export const SLICE_END = 2 ** 62;

/** Slice with non-negative starts and ends (ends may be SLICE_END for "to the end"). */
export function slice(x: Value, starts: readonly number[], ends: readonly number[], axes: readonly number[]): Value {
  const shape: Dim[] = [...x.shape];
  axes.forEach((ax, k) => {
    const a = normalizeAxis(ax, x.rank);
    const s = starts[k]!;
    const e = ends[k]!;
    if (s < 0 || e < 0) throw new RangeError('Slice: use non-negative starts and ends');
    const d = x.shape[a]!;
    if (e >= SLICE_END) shape[a] = s === 0 ? d : typeof d === 'number' ? Math.max(0, d - s) : `${d}-${s}`;
    else shape[a] = typeof d === 'number' ? Math.max(0, Math.min(d, e) - s) : e - s;
  });
  const g = x.graph;
  return g.addNode(
    'Slice',
    [
      x,
      g.int64s(starts, 'starts'),
      g.int64s(ends, 'ends'),
      g.int64s(
        axes.map((a) => normalizeAxis(a, x.rank)),
        'axes',
      ),
    ],
    {},
    [{ dtype: x.dtype, shape }],
  )[0]!;
}

export function unsqueeze(x: Value, axes: readonly number[]): Value {
  const rank = x.rank + axes.length;
  const norm = axes.map((a) => normalizeAxis(a, rank)).sort((a, b) => a - b);
  const shape: Dim[] = [];
  let k = 0;
  for (let i = 0; i < rank; i++) shape.push(norm.includes(i) ? 1 : x.shape[k++]!);
  return x.graph.addNode('Unsqueeze', [x, x.graph.int64s(norm, 'axes')], {}, [{ dtype: x.dtype, shape }])[0]!;
}

export function squeeze(x: Value, axes: readonly number[]): Value {
  const norm = axes.map((a) => normalizeAxis(a, x.rank));
  for (const a of norm) if (x.shape[a] !== 1) throw new RangeError(`Squeeze: axis ${a} of ${x} is not 1`);
  return x.graph.addNode('Squeeze', [x, x.graph.int64s(norm, 'axes')], {}, [
    { dtype: x.dtype, shape: x.shape.filter((_, i) => !norm.includes(i)) },
  ])[0]!;
}

/** Broadcast `x` to the run-time shape of `like`. */
export function expandLike(x: Value, like: Value): Value {
  const shape = broadcastShapes(x.shape, like.shape, 'Expand');
  return x.graph.addNode('Expand', [x, shapeOf(like)], {}, [{ dtype: x.dtype, shape }])[0]!;
}

export function where(cond: Value, a: Operand, b: Operand): Value {
  if (cond.dtype !== 'bool') throw new TypeError(`Where: condition must be bool, got ${cond}`);
  const g = cond.graph;
  const dtype = dtypeOf(a, b);
  const va = lift(a, g, dtype);
  const vb = lift(b, g, dtype);
  checkSameType('Where', [va, vb]);
  const shape = broadcastShapes(broadcastShapes(cond.shape, va.shape, 'Where'), vb.shape, 'Where');
  return g.addNode('Where', [cond, va, vb], {}, [{ dtype, shape }])[0]!;
}

/** A tensor filled with `value`, with the run-time shape `shape` (an int64 1-D value). */
export function constantOfShape(shape: Value, staticShape: Shape, value: number, dtype: DType): Value {
  const g = shape.graph;
  const v = g.constant([value], dtype, [1], 'fill');
  return g.addNode('Expand', [v, shape], {}, [{ dtype, shape: staticShape }])[0]!;
}

export const zerosLike = (x: Value) => constantOfShape(shapeOf(x), x.shape, 0, x.dtype);
export const onesLike = (x: Value) => constantOfShape(shapeOf(x), x.shape, 1, x.dtype);

/** ScatterND with reduction "add": data[indices[i]] += updates[i]. */
export function scatterNDAdd(data: Value, indices: Value, updates: Value): Value {
  return data.graph.addNode('ScatterND', [data, indices, updates], { reduction: str('add') }, [
    { dtype: data.dtype, shape: data.shape },
  ])[0]!;
}

/** 0..n-1 as int64, n an int64 scalar value. */
export function range(n: Value, staticLength: Dim): Value {
  const g = n.graph;
  return g.addNode('Range', [g.scalar(0, 'int64'), n, g.scalar(1, 'int64')], {}, [{ dtype: 'int64', shape: [staticLength] }])[0]!;
}

/** Run-time number of elements of `x`, as an int64 scalar. */
export function numel(x: Value): Value {
  const g = x.graph;
  const s = shapeOf(x);
  return g.addNode('ReduceProd', [s], { keepdims: int(0) }, [{ dtype: 'int64', shape: [] }])[0]!;
}

/** Run-time size of one axis of `x`, as an int64 scalar. */
export function dimSize(x: Value, axis: number): Value {
  const a = normalizeAxis(axis, x.rank);
  const s = slice(shapeOf(x), [a], [a + 1], [0]);
  return squeeze(s, [0]);
}

export function clip(x: Value, min: number, max: number): Value {
  const g = x.graph;
  return g.addNode('Clip', [x, g.scalar(min, x.dtype), g.scalar(max, x.dtype)], {}, [{ dtype: x.dtype, shape: x.shape }])[0]!;
}

/** Elementwise sum of several values of one shape (gradient accumulation). */
export function sumOf(xs: readonly Value[]): Value {
  if (xs.length === 1) return xs[0]!;
  checkSameType('Sum', [...xs]);
  let shape: Dim[] = [...xs[0]!.shape];
  for (const x of xs.slice(1)) shape = broadcastShapes(shape, x.shape, 'Sum');
  return xs[0]!.graph.addNode('Sum', xs, {}, [{ dtype: xs[0]!.dtype, shape }])[0]!;
}
