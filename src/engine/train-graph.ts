// The training step as one ONNX graph: forward, loss, gradients, clipping and the optimizer
// update of the flat dense parameters (several steps per graph when asked), and the inference
// graph of a model with its parameters baked in.
import { Graph, type Value } from './graph.js';
import { gradients } from './autodiff.js';
import { declareInputs, ModelContext, type InputSpecs, type ModelDefinition } from './context.js';
import type { FloatDType } from './dtype.js';
import { clipByGlobalNorm, declareHyperInputs, stateSlots, updateParameter, validateOptimizer, type OptimizerConfig } from './optim.js';
import { numelOf, type ParameterStore, type ParamSpec } from './params.js';
import * as op from './ops.js';
import type { HostLoss } from './host-losses.js';

export interface LossDefinition {
  /** Batch inputs the loss reads besides the model's (labels, teacher logits, targets). */
  inputs: InputSpecs;
  /** The scalar loss and named metrics, from the model's outputs and all batch inputs. */
  build(outputs: Record<string, Value>, inputs: Record<string, Value>, ctx: ModelContext): { loss: Value; metrics?: Record<string, Value> };
  /**
   * The same loss and metrics in closed form on the host, over the model's one output the loss reads: the host trainer
   * (bag-trainer.ts) uses it instead of running `build`'s graph in ONNX Runtime each step. It must equal the graph.
   */
  host?: HostLoss;
}

export interface TrainStepSpec {
  model: ModelDefinition;
  loss: LossDefinition;
  optimizer: OptimizerConfig;
  dtype?: FloatDType;
  /** Output the global gradient norm (always computed when clipping). */
  gradNorm?: boolean;
  /**
   * Optimizer steps per ONNX Runtime call (default 1), each on its own batch: the parameters
   * and optimizer state go in and out once per call instead of once per step, which saves
   * onnxruntime-node's copy of every output. Same results as single steps. Dense models only.
   */
  stepsPerCall?: number;
}

export interface SparseInfo {
  spec: ParamSpec;
  idsInput: string;
}

/** The built training-step graph and the names a runner needs. */
export interface TrainStepGraph {
  graph: Graph;
  bytes: Uint8Array;
  dtype: FloatDType;
  dense: ParamSpec[];
  sparse: SparseInfo[];
  /** All parameter specs in declaration order. */
  specs: ParamSpec[];
  slots: string[];
  metricNames: string[];
  usesDropout: boolean;
  hasGradNorm: boolean;
  /** Graph inputs that survive pruning. */
  inputNames: string[];
  stepsPerCall: number;
}

/** Steps per call that stepsPerCall 'auto' picks for an all-dense model (see bench engine). */
export const AUTO_STEPS_PER_CALL = 4;

/** Name of a per-step input or output of step `k` (0-based) in a graph of several steps. */
export const stepName = (name: string, k: number) => (k === 0 ? name : `${name}@${k}`);

/** Graph input of the flat dense parameter vector (aliases the p/<name> inputs' memory). */
export const FLAT_PARAMS = 'params_flat';
/** Graph input of optimizer state `slot` over the flat vector. */
export const flatState = (slot: string) => `opt/${slot}`;
/** Graph output of the clipped gradient of the rows of sparse table `name` a batch touches. */
export const sparseGradOutput = (name: string) => `grad/sparse/${name}/rows`;

/** Weight decay per element of the flat parameter vector: a scalar when all agree. */
function decayOf(g: Graph, o: OptimizerConfig, specs: readonly ParamSpec[], dtype: FloatDType): number | Value {
  const wd = o.weightDecay ?? 0;
  if (wd === 0 || specs.every((s) => !s.decay)) return 0;
  if (specs.every((s) => s.decay)) return wd;
  const mask =
    dtype === 'float64'
      ? new Float64Array(specs.reduce((n, s) => n + numelOf(s.shape), 0))
      : new Float32Array(specs.reduce((n, s) => n + numelOf(s.shape), 0));
  let offset = 0;
  for (const s of specs) {
    const n = numelOf(s.shape);
    if (s.decay) mask.fill(wd, offset, offset + n);
    offset += n;
  }
  return g.constant(mask, dtype, [mask.length], 'weight_decay');
}

/**
 * Builds `trainStep(model, loss)`: one graph from (batch, parameters, optimizer state,
 * hyperparameters, dropout seed) to (loss, metrics, gradient norm, new parameters, new state).
 */
export function buildTrainStep(spec: TrainStepSpec): TrainStepGraph {
  validateOptimizer(spec.optimizer);
  const dtype = spec.dtype ?? 'float32';
  const g = new Graph('train_step');
  const ctx = new ModelContext(g, dtype, 'train');
  const overlap = Object.keys(spec.loss.inputs).filter((k) => k in spec.model.inputs);
  if (overlap.length) throw new Error(`model and loss both declare inputs ${overlap.join(', ')}`);
  const inputs = declareInputs(g, { ...spec.model.inputs, ...spec.loss.inputs });
  const outputs = spec.model.forward(ctx, inputs);
  const { loss, metrics = {} } = spec.loss.build(outputs, inputs, ctx);
  if (loss.rank !== 0) throw new RangeError(`the loss must be a scalar, got ${loss}`);

  const dense = [...ctx.params.values()];
  const sparse = [...ctx.sparse.values()];
  const wrt = [...dense.map((p) => p.value), ...sparse.map((s) => s.rows)];
  const grads = gradients(loss, wrt);
  // Dense parameters are updated as one flat vector: a dozen elementwise passes in all,
  // not a dozen per tensor. `params_flat` aliases the same host memory as the p/<name> inputs.
  const total = dense.reduce((n, p) => n + numelOf(p.spec.shape), 0);
  const flatGrads = dense.map((p) => op.reshape(grads.get(p.value)!, [-1]));
  const denseGrad = flatGrads.length === 0 ? null : flatGrads.length === 1 ? flatGrads[0]! : op.concat(flatGrads, 0);
  const rawGrads = [...(denseGrad ? [denseGrad] : []), ...sparse.map((t) => grads.get(t.rows)!)];
  const wantNorm = spec.gradNorm || spec.optimizer.clipNorm !== undefined;
  const { norm, clipped } = wantNorm ? clipByGlobalNorm(rawGrads, spec.optimizer.clipNorm) : { norm: null, clipped: rawGrads };
  const hyper = declareHyperInputs(g, dtype);
  const slots = stateSlots(spec.optimizer);

  g.output(loss, 'loss');
  if (norm) g.output(norm, 'grad_norm');
  const metricNames = Object.keys(metrics);
  for (const [name, value] of Object.entries(metrics)) g.output(value, `metric/${name}`);
  const steps = spec.stepsPerCall ?? 1;
  if (!(Number.isInteger(steps) && steps >= 1)) throw new RangeError(`stepsPerCall must be a positive integer, got ${steps}`);
  if (steps > 1 && (sparse.length > 0 || !denseGrad))
    throw new Error(
      'stepsPerCall > 1 needs a model whose parameters are all dense (sparse table rows are updated on the host between steps)',
    );
  if (denseGrad) {
    const flat = g.input(FLAT_PARAMS, dtype, [total]);
    const state = Object.fromEntries(slots.map((s) => [s, g.input(flatState(s), dtype, [total])]));
    const decay = decayOf(
      g,
      spec.optimizer,
      dense.map((p) => p.spec),
      dtype,
    );
    let upd = updateParameter(spec.optimizer, flat, clipped[0]!, state, hyper, decay);
    for (let k = 1; k < steps; k++) {
      const next = laterStep(
        spec,
        g,
        dtype,
        dense.map((p) => p.spec),
        upd.param,
        k,
      );
      if (next.norm) g.output(next.norm, stepName('grad_norm', k));
      upd = updateParameter(spec.optimizer, upd.param, next.grad, upd.state, declareHyperInputs(g, dtype, `@${k}`), decay);
    }
    g.output(upd.param, `new/${FLAT_PARAMS}`);
    for (const s of slots) g.output(upd.state[s]!, `new/${flatState(s)}`);
  }
  // Sparse tables: the graph returns the (clipped) gradient of the touched rows, and the host
  // updates those rows and their optimizer state in place (updateRowsInPlace). Passing the rows'
  // state through the graph instead meant three gathers and three scatters of random rows of
  // large tables per step, 65% of an n-gram student's step time.
  sparse.forEach((t, k) => g.output(clipped[(denseGrad ? 1 : 0) + k]!, sparseGradOutput(t.spec.name)));
  const proto = g.toProto();
  const bytes = g.serialize();
  return {
    graph: g,
    bytes,
    dtype,
    dense: dense.map((p) => p.spec),
    sparse: sparse.map((t) => ({ spec: t.spec, idsInput: t.idsInput })),
    specs: ctx.specs(),
    slots,
    metricNames,
    usesDropout: ctx.usesDropout,
    hasGradNorm: norm !== null,
    inputNames: (proto.graph?.input ?? []).map((i) => i.name ?? ''),
    stepsPerCall: steps,
  };
}

/**
 * Step `k` (≥ 1) of a graph of several steps: the forward pass and loss on step k's inputs with
 * parameters sliced from `flat` (the previous step's update), and the clipped flat gradient.
 */
function laterStep(
  spec: TrainStepSpec,
  g: Graph,
  dtype: FloatDType,
  dense: readonly ParamSpec[],
  flat: Value,
  k: number,
): { grad: Value; norm: Value | null } {
  const offsets = new Map<string, number>();
  let offset = 0;
  for (const p of dense) {
    offsets.set(p.name, offset);
    offset += numelOf(p.shape);
  }
  const suffix = `@${k}`;
  const ctx = new ModelContext(g, dtype, 'train', undefined, {
    suffix,
    paramValue: (p) => {
      const at = offsets.get(p.name);
      if (at === undefined) throw new Error(`step ${k} declares parameter '${p.name}', which step 0 did not`);
      return op.reshape(op.slice(flat, [at], [at + numelOf(p.shape)], [0]), p.shape);
    },
  });
  const named = Object.fromEntries(Object.entries({ ...spec.model.inputs, ...spec.loss.inputs }).map(([n, v]) => [stepName(n, k), v]));
  const declared = declareInputs(g, named);
  const inputs = Object.fromEntries(Object.keys({ ...spec.model.inputs, ...spec.loss.inputs }).map((n) => [n, declared[stepName(n, k)]!]));
  const outputs = spec.model.forward(ctx, inputs);
  const { loss, metrics = {} } = spec.loss.build(outputs, inputs, ctx);
  const params = [...ctx.params.values()];
  if (params.length !== dense.length) throw new Error(`step ${k} declares ${params.length} parameters, step 0 declared ${dense.length}`);
  const grads = gradients(
    loss,
    params.map((p) => p.value),
  );
  const byName = new Map(params.map((p) => [p.spec.name, grads.get(p.value)!]));
  const flatGrads = dense.map((p) => op.reshape(byName.get(p.name)!, [-1]));
  const grad = flatGrads.length === 1 ? flatGrads[0]! : op.concat(flatGrads, 0);
  const wantNorm = spec.gradNorm || spec.optimizer.clipNorm !== undefined;
  const { norm, clipped } = wantNorm ? clipByGlobalNorm([grad], spec.optimizer.clipNorm) : { norm: null, clipped: [grad] };
  g.output(loss, stepName('loss', k));
  for (const [name, value] of Object.entries(metrics)) g.output(value, stepName(`metric/${name}`, k));
  return { grad: clipped[0]!, norm };
}

/** Builds the inference subgraph of `model` with `store`'s values baked in. */
export function exportModel(
  model: ModelDefinition,
  store: ParameterStore,
  opts: { outputs?: readonly string[]; metadata?: Record<string, string>; rename?: Record<string, string> } = {},
): Uint8Array {
  const g = new Graph('model');
  const ctx = new ModelContext(g, store.dtype, 'export', store);
  const outs = model.forward(ctx, declareInputs(g, model.inputs));
  const names = opts.outputs ?? Object.keys(outs);
  for (const n of names)
    if (!outs[n]) throw new Error(`exportModel: the model has no output '${n}'. Known: ${Object.keys(outs).join(', ')}`);
  return g.serialize({
    outputs: names.map((name) => ({ name: opts.rename?.[name] ?? name, value: outs[name]! })),
    ...(opts.metadata ? { metadata: opts.metadata } : {}),
  });
}
