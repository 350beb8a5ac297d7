// Rewriting equivalent node patterns into the forms ONNX Runtime's own fusions recognize:
// - LayerNormalization with unused mean / inverse-std outputs (a training export) keeps only its
//   first output, so Add + LayerNormalization fuses into SkipLayerNormalization;
// - GELU written as 0.5·x · (1 + erf(x·(1/√2))) becomes x · (1 + erf(x/√2)) · 0.5, the order
//   PyTorch exports and ONNX Runtime fuses into Gelu / BiasGelu.
import onnxProto from 'onnx-proto';
import { floatInitializer, GraphIndex, type ModelProto, type NodeProto } from './onnx-model.js';

const { onnx } = onnxProto;

/** Returns how many patterns were rewritten (0: the model is unchanged). */
export function rewriteForFusion(model: ModelProto, modelPath: string): number {
  const g = model.graph!;
  const index = new GraphIndex(model, modelPath);
  const uses = new Map<string, number>();
  for (const n of g.node ?? []) for (const t of n.input ?? []) if (t) uses.set(t, (uses.get(t) ?? 0) + 1);
  for (const o of g.output ?? []) uses.set(o.name!, (uses.get(o.name!) ?? 0) + 1);
  const unused = (t: string | undefined | null) => !t || !uses.get(t);
  let changes = 0;

  for (const n of g.node ?? []) {
    if (n.opType === 'LayerNormalization' && (n.output?.length ?? 0) > 1 && n.output!.slice(1).every(unused)) {
      n.output = [n.output![0]!];
      changes++;
    }
  }

  const near = (v: number | null, want: number) => v !== null && Math.abs(v - want) <= 1e-6 * Math.abs(want);
  /** For Mul/Add/Div with one constant scalar operand: [the other operand, the constant]. */
  const withConstant = (n: NodeProto | undefined, op: string): [string, number] | null => {
    if (n?.opType !== op || (n.input?.length ?? 0) !== 2) return null;
    const [a, b] = n.input as [string, string];
    const vb = index.constantScalar(b);
    if (vb !== null) return [a, vb];
    const va = index.constantScalar(a);
    return va !== null && op !== 'Div' ? [b, va] : null;
  };
  const producer = index.producer;
  const replaced = new Map<NodeProto, NodeProto[]>();
  const removed = new Set<NodeProto>();
  const extraInits: onnxProto.onnx.ITensorProto[] = [];
  for (const y of g.node ?? []) {
    if (y.opType !== 'Mul' || (y.input?.length ?? 0) !== 2) continue;
    // y = half · onePlus, half = x·0.5, onePlus = erf(x·(1/√2)) + 1
    for (const [hi, oi] of [
      [0, 1],
      [1, 0],
    ] as const) {
      const half = producer.get(y.input![hi]!);
      const onePlus = producer.get(y.input![oi]!);
      const h = withConstant(half, 'Mul');
      const p = withConstant(onePlus, 'Add');
      if (!h || !p || !near(h[1], 0.5) || !near(p[1], 1)) continue;
      const erf = producer.get(p[0]);
      if (erf?.opType !== 'Erf') continue;
      const scaled = withConstant(producer.get(erf.input![0]!), 'Mul');
      if (!scaled || !near(scaled[1], Math.SQRT1_2) || scaled[0] !== h[0]) continue;
      const inner = [half!, onePlus!, erf, producer.get(erf.input![0]!)!];
      if (inner.some((n) => removed.has(n) || (uses.get(n.output![0]!) ?? 0) !== 1)) continue;
      const x = h[0];
      const base = `${y.output![0]}__kd_gelu`;
      extraInits.push(
        floatInitializer(`${base}/sqrt2`, [], Float32Array.of(Math.SQRT2)),
        floatInitializer(`${base}/one`, [], Float32Array.of(1)),
        floatInitializer(`${base}/half`, [], Float32Array.of(0.5)),
      );
      const node = (opType: string, input: string[], output: string) =>
        onnx.NodeProto.create({ opType, input, output: [output], name: `${base}/${opType}_${output.split('/').pop()}` });
      replaced.set(y, [
        node('Div', [x, `${base}/sqrt2`], `${base}/div`),
        node('Erf', [`${base}/div`], `${base}/erf`),
        node('Add', [`${base}/erf`, `${base}/one`], `${base}/add`),
        node('Mul', [x, `${base}/add`], `${base}/mul`),
        node('Mul', [`${base}/mul`, `${base}/half`], y.output![0]!),
      ]);
      for (const n of inner) removed.add(n);
      changes++;
      break;
    }
  }
  if (replaced.size > 0) {
    g.node = (g.node ?? []).flatMap((n) => (removed.has(n) ? [] : (replaced.get(n) ?? [n])));
    g.initializer = [...(g.initializer ?? []), ...extraInits];
  }
  return changes;
}
