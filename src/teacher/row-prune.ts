// Computing only the position the classifier reads. A BERT-style classifier reads one position
// of the last hidden state (the [CLS] token: Gather or Slice at index 0 of the sequence axis), so
// after the last attention has formed its keys and values, every per-position operation (the
// query, the attention output, the feed-forward block, the layer norms) matters at that one
// position only. This pass moves the selection up the graph as far as that holds, which removes
// most of the last layer's work; a plain export computes it for every position.
//
// Which axes of a tensor follow the batch size and which the sequence length is learnt by running
// the original graph on two small probe batches with every intermediate tensor exposed; the
// rewritten graph is then checked against the original on those batches before it is used.
import onnxProto from 'onnx-proto';
import { GraphIndex, int64Initializer, intAttr, intsAttr, type ModelProto, type NodeProto } from './onnx-model.js';

const { onnx } = onnxProto;

/** What an axis of a tensor follows across the two probe batches. */
type AxisKind = 'batch' | 'seq' | 'other' | number;

/** Concrete dims of tensors under each probe batch (same order as `PROBE_SHAPES`). */
export type ProbeDims = Map<string, number[][]>;

/** [batch, sequence] of the two probe batches: distinct, and no dim of a model should equal them by chance. */
export const PROBE_SHAPES: readonly (readonly [number, number])[] = [
  [2, 5],
  [3, 7],
];

/** What `pruneToSelectedRows` did to the model it rewrote in place. */
export interface RowPruneResult {
  /** Nodes that now compute one position instead of all. */
  prunedNodes: number;
  /** Nodes removed because nothing reads them any more. */
  removedNodes: number;
}

const ELEMENTWISE = new Set([
  'Add',
  'Sub',
  'Mul',
  'Div',
  'Pow',
  'Max',
  'Min',
  'Where',
  'Erf',
  'Tanh',
  'Relu',
  'Sigmoid',
  'Sqrt',
  'Exp',
  'Log',
  'Neg',
  'Reciprocal',
  'Abs',
  'Cast',
  'Identity',
  'Softplus',
  'Clip',
  'Equal',
  'Greater',
  'Less',
  'Not',
  'And',
  'Or',
  'LeakyRelu',
  'Elu',
  'HardSigmoid',
  'Gelu',
  'FastGelu',
  'BiasGelu',
  'QuickGelu',
]);
const REDUCE = new Set(['ReduceMean', 'ReduceSum', 'ReduceMax', 'ReduceMin', 'ReduceSumSquare', 'ReduceL2']);

/** Per axis of `dims` (one row per probe), what it follows. */
function kindsOf(dims: number[][]): AxisKind[] {
  const [a, b] = dims as [number[], number[]];
  return a.map((d, i) => {
    const e = b[i]!;
    if (d === e) return d;
    if (d === PROBE_SHAPES[0]![0] && e === PROBE_SHAPES[1]![0]) return 'batch';
    if (d === PROBE_SHAPES[0]![1] && e === PROBE_SHAPES[1]![1]) return 'seq';
    return 'other';
  });
}

const product = (xs: readonly number[]) => xs.reduce((p, x) => p * x, 1);

/** A node rewritten to compute one position: its inputs by position (null: read as is) and a new Reshape target. */
interface Conversion {
  /** Axis to slice each input on, or null to read it whole. */
  inputs: (number | null)[];
  reshapeTarget?: number[];
}

/** What the pass knows of the graph: constants, probe dims, opset and each tensor's axis kinds. */
interface PruneContext {
  index: GraphIndex;
  dims: ProbeDims;
  opset: number;
  kinds: (t: string) => AxisKind[] | null;
}

/** How to compute output 0 of `n` sliced on `axis`, or null when this pass does not know. */
function convertNode(c: PruneContext, n: NodeProto, axis: number): Conversion | null {
  const out = c.kinds(n.output![0]!);
  if (!out) return null;
  const r = out.length;
  const inputs = n.input ?? [];
  const inKinds = inputs.map((t) => (t ? c.kinds(t) : null));
  /** Slice axis of each input under numpy broadcasting, null where the input broadcasts along it. */
  const broadcast = (): (number | null)[] | null => {
    const res: (number | null)[] = [];
    for (const k of inKinds) {
      if (!k) {
        res.push(null);
        continue;
      }
      const a = axis - (r - k.length);
      if (a < 0 || k[a] === 1) res.push(null);
      else if (k[a] === 'seq') res.push(a);
      else return null;
    }
    return res;
  };
  const op = n.opType!;
  if (ELEMENTWISE.has(op)) {
    const b = broadcast();
    return b ? { inputs: b } : null;
  }
  if (op === 'MatMul') {
    const [ka, kb] = inKinds as [AxisKind[] | null, AxisKind[] | null];
    if (!ka || !kb || ka.length < 2 || kb.length < 2) return null;
    if (axis === r - 2) return ka[ka.length - 2] === 'seq' ? { inputs: [ka.length - 2, null] } : null;
    if (axis === r - 1) return kb[kb.length - 1] === 'seq' ? { inputs: [null, kb.length - 1] } : null;
    const b = broadcast();
    return b ? { inputs: b } : null;
  }
  if (op === 'Softmax' || op === 'LogSoftmax' || op === 'LayerNormalization') {
    // Before opset 13 Softmax's default axis was 1, over everything from it on.
    const a0 = intAttr(n, 'axis', op !== 'LayerNormalization' && c.opset < 13 ? 1 : -1);
    const a = a0 < 0 ? a0 + r : a0;
    if (axis >= a) return null;
    return inKinds[0]?.[axis] === 'seq' ? { inputs: inputs.map((_, j) => (j === 0 ? axis : null)) } : null;
  }
  if (REDUCE.has(op)) {
    if (intAttr(n, 'keepdims', 1) !== 1) return null;
    const axes = intsAttr(n, 'axes') ?? (inputs[1] ? c.index.constantInts(inputs[1]) : null);
    if (!axes || axes.length === 0 || axes.map((a) => (a < 0 ? a + r : a)).includes(axis)) return null;
    return inKinds[0]?.[axis] === 'seq' ? { inputs: inputs.map((_, j) => (j === 0 ? axis : null)) } : null;
  }
  if (op === 'Transpose') {
    const perm = intsAttr(n, 'perm') ?? Array.from({ length: r }, (_, i) => r - 1 - i);
    const a = perm[axis]!;
    return inKinds[0]?.[a] === 'seq' ? { inputs: [a] } : null;
  }
  if (op === 'Concat') {
    const c0 = intAttr(n, 'axis', 0);
    if ((c0 < 0 ? c0 + r : c0) === axis) return null;
    return inKinds.every((k) => k?.[axis] === 'seq') ? { inputs: inputs.map(() => axis) } : null;
  }
  if (op === 'Reshape') {
    if (intAttr(n, 'allowzero', 0) !== 0) return null;
    const x = inKinds[0];
    const xd = c.dims.get(inputs[0]!);
    const od = c.dims.get(n.output![0]!);
    if (!x || !xd || !od) return null;
    const seqAxes = x.flatMap((k, i) => (k === 'seq' ? [i] : []));
    if (seqAxes.length !== 1) return null;
    const j = seqAxes[0]!;
    // The sequence axis must survive as one axis: same extent, same product of the axes before it.
    for (let p = 0; p < PROBE_SHAPES.length; p++) {
      if (od[p]![axis] !== xd[p]![j] || product(od[p]!.slice(0, axis)) !== product(xd[p]!.slice(0, j))) return null;
    }
    const target: number[] = [];
    for (let a = 0; a < r; a++) {
      const k = out[a]!;
      if (a === axis) target.push(1);
      else if (typeof k === 'number') target.push(k);
      else if (k === 'batch') target.push(a < x.length && x[a] === 'batch' ? 0 : -1);
      else return null;
    }
    if (target.filter((v) => v === -1).length > 1) return null;
    return { inputs: [j, null], reshapeTarget: target };
  }
  return null;
}

/** Requests position 0 on axis 1 of each [batch, seq, ...] tensor a Gather or Slice selects it from. */
function findSelections(
  c: PruneContext,
  nodes: readonly NodeProto[],
  request: (t: string, axis: number, node: number, input: number) => void,
): void {
  nodes.forEach((n, i) => {
    const x = n.input?.[0];
    if (!x) return;
    const k = c.kinds(x);
    if (!k || k[0] !== 'batch' || k[1] !== 'seq') return;
    if (n.opType === 'Gather' && intAttr(n, 'axis', 0) === 1) {
      const idx = c.index.constantInts(n.input![1]!);
      if (idx && idx.length === 1 && idx[0] === 0) request(x, 1, i, 0);
    } else if (n.opType === 'Slice') {
      const [starts, ends, axes, steps] = [1, 2, 3, 4].map((j) => (n.input![j] ? c.index.constantInts(n.input![j]!) : undefined));
      const ok =
        starts?.length === 1 &&
        starts[0] === 0 &&
        ends?.length === 1 &&
        ends[0] === 1 &&
        (axes ? axes.length === 1 && (axes[0] === 1 || axes[0] === 1 - k.length) : false) &&
        (!steps || (steps.length === 1 && steps[0] === 1));
      if (ok) request(x, 1, i, 0);
    }
  });
}

/** Sets the graph's nodes and initializers to those some graph output reads; returns how many nodes were dropped. */
function keepRead(
  g: onnxProto.onnx.IGraphProto,
  newNodes: NodeProto[],
  newInits: onnxProto.onnx.ITensorProto[],
  graphOutputs: ReadonlySet<string>,
): number {
  const needed = new Set(graphOutputs);
  const keep: boolean[] = new Array(newNodes.length).fill(false);
  for (let i = newNodes.length - 1; i >= 0; i--) {
    const n = newNodes[i]!;
    if ((n.output ?? []).some((o) => needed.has(o))) {
      keep[i] = true;
      for (const t of n.input ?? []) if (t) needed.add(t);
    }
  }
  g.node = newNodes.filter((_, i) => keep[i]);
  g.initializer = [...(g.initializer ?? []), ...newInits].filter((t) => needed.has(t.name!));
  return newNodes.length - g.node.length;
}

/** A slice of position 0 of `tensor` on `axis`, named `name`, placed after node `after` (-1: at the top). */
interface PositionSlice {
  after: number;
  tensor: string;
  axis: number;
  name: string;
}

/** The graph's nodes with the slices inserted, sliced uses reading them and converted Reshapes given a fixed target. */
function rewriteWithSlices(
  nodes: readonly NodeProto[],
  slices: readonly PositionSlice[],
  conversions: ReadonlyMap<number, Conversion>,
  slicedUses: ReadonlyMap<string, Set<string>>,
): { newNodes: NodeProto[]; newInits: onnxProto.onnx.ITensorProto[] } {
  const renamed = new Map<string, string>();
  for (const s of slices) renamed.set(s.tensor, s.name);
  const newNodes: NodeProto[] = [];
  const newInits: onnxProto.onnx.ITensorProto[] = [];
  const emitSlices = (after: number) => {
    for (const s of slices.filter((x) => x.after === after)) {
      const p = `${s.name}/`;
      newInits.push(int64Initializer(`${p}starts`, [0]), int64Initializer(`${p}ends`, [1]), int64Initializer(`${p}axes`, [s.axis]));
      newNodes.push(
        onnx.NodeProto.create({
          opType: 'Slice',
          name: `kd_pos0_${s.tensor}`,
          input: [s.tensor, `${p}starts`, `${p}ends`, `${p}axes`],
          output: [s.name],
        }),
      );
    }
  };
  emitSlices(-1);
  nodes.forEach((n, i) => {
    const uses = (n.input ?? []).map((t, j) => (t && renamed.has(t) && slicedUses.get(t)?.has(`${i}:${j}`) ? renamed.get(t)! : t));
    const conv = conversions.get(i);
    if (conv?.reshapeTarget) {
      const name = `${n.output![0]}__kd_shape`;
      newInits.push(int64Initializer(name, conv.reshapeTarget));
      uses[1] = name;
    }
    n.input = uses;
    newNodes.push(n);
    emitSlices(i);
  });
  return { newNodes, newInits };
}

/**
 * Rewrites `model` so that everything feeding a selection of position 0 along the sequence axis
 * and nothing else is computed for that position only. Returns null when no selection is found
 * or nothing can be saved (the model is then untouched). `dims` must hold the probe dims of every
 * node output.
 */
export function pruneToSelectedRows(model: ModelProto, modelPath: string, dims: ProbeDims): RowPruneResult | null {
  const g = model.graph!;
  const index = new GraphIndex(model, modelPath);
  const nodes = g.node ?? [];
  const opset = Number((model.opsetImport ?? []).find((o) => !o.domain)?.version ?? 13);
  const kinds = (t: string): AxisKind[] | null => {
    const k = index.constants.get(t);
    if (k) return (k.dims ?? []).map(Number);
    const d = dims.get(t);
    return d ? kindsOf(d) : null;
  };
  const c: PruneContext = { index, dims, opset, kinds };
  const consumers = new Map<string, { node: number; input: number }[]>();
  nodes.forEach((n, i) =>
    (n.input ?? []).forEach((t, j) => t && (consumers.get(t) ?? consumers.set(t, []).get(t)!).push({ node: i, input: j })),
  );
  const graphOutputs = new Set((g.output ?? []).map((o) => o.name!));

  // Requests: tensor → axis it is wanted sliced on, and which (node, input) uses want it so.
  const want = new Map<string, number>();
  const slicedUses = new Map<string, Set<string>>();
  let conflict = false;
  const request = (t: string, axis: number, node: number, input: number) => {
    const prev = want.get(t);
    if (prev !== undefined && prev !== axis) conflict = true;
    want.set(t, axis);
    (slicedUses.get(t) ?? slicedUses.set(t, new Set()).get(t)!).add(`${node}:${input}`);
  };

  findSelections(c, nodes, request);
  if (want.size === 0) return null;

  const conversions = new Map<number, Conversion>();
  const slices: PositionSlice[] = [];
  for (let i = nodes.length - 1; i >= 0 && !conflict; i--) {
    const n = nodes[i]!;
    const wantedOutputs = (n.output ?? []).filter((o) => want.has(o));
    if (wantedOutputs.length === 0) continue;
    const o = n.output![0]!;
    const axis = want.get(o);
    const onlySlicedUses = (t: string) =>
      !graphOutputs.has(t) && (consumers.get(t) ?? []).every((u) => slicedUses.get(t)?.has(`${u.node}:${u.input}`));
    const othersUnused = (n.output ?? []).slice(1).every((t) => !t || (!graphOutputs.has(t) && !consumers.get(t)?.length));
    const conv = wantedOutputs.length === 1 && axis !== undefined && onlySlicedUses(o) && othersUnused ? convertNode(c, n, axis) : null;
    if (conv) {
      conversions.set(i, conv);
      conv.inputs.forEach((a, j) => a !== null && request(n.input![j]!, a, i, j));
    } else {
      for (const t of wantedOutputs) slices.push({ after: i, tensor: t, axis: want.get(t)!, name: `${t}__kd_pos0` });
    }
  }
  if (conflict || conversions.size === 0) return null;
  // Requested graph inputs and constants (nothing produces them) are sliced at the top.
  const produced = new Set(nodes.flatMap((n) => n.output ?? []));
  for (const [t, axis] of want) if (!produced.has(t)) slices.push({ after: -1, tensor: t, axis, name: `${t}__kd_pos0` });

  // Rewrite: sliced uses of a materialized tensor read its slice; converted Reshapes get a fixed target.
  const { newNodes, newInits } = rewriteWithSlices(nodes, slices, conversions, slicedUses);
  const removedNodes = keepRead(g, newNodes, newInits, graphOutputs);
  return { prunedNodes: conversions.size, removedNodes };
}

/**
 * Drops the Expand of an attention mask to the scores' run-time shape when a Where reads it as its condition
 * beside those scores (PyTorch's `masked_fill(mask.view(bs, 1, 1, k).expand_as(scores), min)`): Where broadcasts
 * its condition itself, to the same shape and the same values, so `Where(Expand(m, Shape(s)), c, s)` is
 * `Where(m, c, s)`, also through a Cast between them. Without the Expand, nothing reads the full scores' shape
 * and the selection of position 0 can move up through the scores into the query. `dims` gets the probe dims of
 * a Cast output that now reads the mask itself. Returns the number of Expands dropped.
 */
export function dropMaskExpands(model: ModelProto, dims: ProbeDims): number {
  const g = model.graph!;
  const nodes = g.node ?? [];
  const producer = new Map<string, NodeProto>();
  const consumers = new Map<string, NodeProto[]>();
  for (const n of nodes) {
    for (const o of n.output ?? []) producer.set(o, n);
    for (const t of n.input ?? []) if (t) (consumers.get(t) ?? consumers.set(t, []).get(t)!).push(n);
  }
  const graphOutputs = new Set((g.output ?? []).map((o) => o.name!));
  /** The Where reading `t` as its condition, with the tensor whose shape `t` was expanded to as a data input. */
  const conditionOf = (t: string, target: string): NodeProto | null => {
    const uses = consumers.get(t) ?? [];
    const w = uses[0];
    if (graphOutputs.has(t) || uses.length !== 1 || w?.opType !== 'Where' || w.input![0] !== t) return null;
    return w.input![1] === target || w.input![2] === target ? w : null;
  };
  const dropped = new Set<NodeProto>();
  for (const expand of nodes) {
    if (expand.opType !== 'Expand') continue;
    const shape = producer.get(expand.input![1]!);
    if (shape?.opType !== 'Shape' || (shape.attribute ?? []).length > 0) continue; // start/end would take part of it
    const [mask, target] = [expand.input![0]!, shape.input![0]!];
    const e = expand.output![0]!;
    const cast = consumers.get(e)?.[0];
    if (conditionOf(e, target)) {
      for (const w of consumers.get(e)!) w.input![0] = mask;
    } else if (cast?.opType === 'Cast' && consumers.get(e)!.length === 1 && !graphOutputs.has(e) && conditionOf(cast.output![0]!, target)) {
      cast.input![0] = mask;
      const d = dims.get(mask);
      if (d) dims.set(cast.output![0]!, d);
    } else continue;
    dropped.add(expand);
    // The Shape goes too unless something else reads it.
    if ((consumers.get(shape.output![0]!) ?? []).every((n) => n === expand) && !graphOutputs.has(shape.output![0]!)) dropped.add(shape);
  }
  if (dropped.size) g.node = nodes.filter((n) => !dropped.has(n));
  return [...dropped].filter((n) => n.opType === 'Expand').length;
}
