// One training step as one ONNX graph (forward, loss, gradients, clipping, optimizer update)
// and the Trainer that runs it: parameters and optimizer state stay in host buffers that
// ONNX Runtime reads and writes in place (double-buffered), sparse tables send only the rows
// a batch touches through the graph and update them on the host, and checkpoints resume
// bit-identically.
import { Graph, type Value } from './graph.js';
import { gradients } from './autodiff.js';
import { declareInputs, ModelContext, PARAM_PREFIX, type InputSpecs, type ModelDefinition } from './context.js';
import type { FloatDType } from './dtype.js';
import {
  clipByGlobalNorm,
  declareHyperInputs,
  hyperValues,
  learningRate,
  stateSlots,
  updateParameter,
  updateRowsInPlace,
  validateOptimizer,
  type HyperValues,
  type OptimizerConfig,
  type ScheduleConfig,
} from './optim.js';
import { numelOf, ParameterStore, type FloatArray, type ParamSpec } from './params.js';
import { Rng } from './rng.js';
import { DamagedFileError, loadSafetensors, saveSafetensors, type NamedTensor } from './safetensors.js';
import { OptionError } from '../errors.js';
import { createSession, ort, type Device, type SessionOptions } from './session.js';
import * as op from './ops.js';
import { dirname } from 'node:path';

export interface LossDefinition {
  /** Batch inputs the loss reads besides the model's (labels, teacher logits, targets). */
  inputs: InputSpecs;
  /** The scalar loss and named metrics, from the model's outputs and all batch inputs. */
  build(outputs: Record<string, Value>, inputs: Record<string, Value>, ctx: ModelContext): { loss: Value; metrics?: Record<string, Value> };
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

const FLAT_PARAMS = 'params_flat';
const flatState = (slot: string) => `opt/${slot}`;
const stateInput = (slot: string, name: string) => `opt/${slot}/${name}`;
const sparseGradOutput = (name: string) => `grad/sparse/${name}/rows`;

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

export interface TrainerOptions extends Omit<TrainStepSpec, 'stepsPerCall'> {
  /**
   * Optimizer steps per ONNX Runtime call (see TrainStepSpec.stepsPerCall); 'auto' is
   * AUTO_STEPS_PER_CALL for a model whose parameters are all dense, else 1. Fewer batches than
   * that (an epoch's tail, up to an evaluation) run one step per call, with the same results.
   */
  stepsPerCall?: number | 'auto';
  /** Seed of parameter initialization and of dropout masks. */
  seed: number;
  schedule?: ScheduleConfig;
  /** Where its ONNX Runtime sessions run (device, threads, CPU fallback). */
  session?: SessionOptions;
  /** Start from these parameter values instead of a fresh initialization. */
  store?: ParameterStore;
}

export interface StepResult {
  loss: number;
  /** Global gradient norm before clipping (NaN unless clipping or `gradNorm` is on). */
  gradNorm: number;
  lr: number;
  /** Metric outputs: numbers for scalars, arrays for per-example values. */
  metrics: Record<string, number | FloatArray>;
}

type Feeds = Record<string, ort.Tensor>;

function tensorOf(dtype: FloatDType, data: FloatArray, dims: readonly number[]): ort.Tensor {
  return new ort.Tensor(dtype, data, dims as number[]);
}

function scalarTensor(dtype: FloatDType, v: number): ort.Tensor {
  return new ort.Tensor(dtype, dtype === 'float64' ? Float64Array.of(v) : Float32Array.of(v), []);
}

/** A host buffer pair: ONNX Runtime reads `cur` and writes `next`; then they swap. */
interface Buffered {
  cur: FloatArray;
  next: FloatArray;
  curTensor: ort.Tensor;
  nextTensor: ort.Tensor;
}

function buffered(dtype: FloatDType, data: FloatArray): Buffered {
  const next = zerosOf(dtype, data.length);
  return { cur: data, next, curTensor: tensorOf(dtype, data, [data.length]), nextTensor: tensorOf(dtype, next, [data.length]) };
}

function swap(b: Buffered): void {
  [b.cur, b.next] = [b.next, b.cur];
  [b.curTensor, b.nextTensor] = [b.nextTensor, b.curTensor];
}

/** One dense parameter: its place in the flat vector and input tensors over both buffers. */
interface DenseSlot {
  spec: ParamSpec;
  offset: number;
  length: number;
  /** Feeds for p/<name> over buffer 0 and buffer 1 of the flat vector. */
  tensors: [ort.Tensor, ort.Tensor];
}

interface SparseRuntime {
  info: SparseInfo;
  dim: number;
  /** Slot index of each table row in the current batch, -1 when absent. */
  slotOf: Int32Array;
  states: Map<string, FloatArray>;
  /** Reused buffer for the gathered parameter rows. */
  scratch: FloatArray;
}

/** Copies rows `touched` of `table` into consecutive rows of `out`. */
function gatherRows(table: FloatArray, touched: Int32Array, dim: number, out: FloatArray): void {
  for (let k = 0; k < touched.length; k++) {
    const src = touched[k]! * dim;
    out.set(table.subarray(src, src + dim), k * dim);
  }
}

/**
 * Runs a training step graph. Parameters live in `store` (read them with `store.get`, since
 * buffers swap every step); optimizer state, step count and RNG live here and in checkpoints.
 *
 * ```ts
 * const trainer = await Trainer.create({ model, loss, optimizer: { kind: 'adamw', lr: 1e-3 }, seed: 13 });
 * const { loss } = await trainer.step({ features, labels });
 * trainer.save('run/checkpoint.safetensors');
 * ```
 */
export class Trainer {
  stepCount = 0;
  private evalSession: ort.InferenceSession | null = null;
  private evalOutputs: string[] = [];
  /** Which of the flat vector's two buffers is current (0 or 1). */
  private parity = 0;

  /** The graph of several steps per call and its session, when stepsPerCall > 1. */
  private multi: { built: TrainStepGraph; session: ort.InferenceSession } | null = null;

  private constructor(
    readonly options: TrainerOptions,
    readonly built: TrainStepGraph,
    readonly store: ParameterStore,
    readonly rng: Rng,
    private readonly session: ort.InferenceSession,
    readonly device: Device,
    private readonly flat: Buffered | null,
    private readonly flatBuffers: [FloatArray, FloatArray] | null,
    private readonly denseSlots: DenseSlot[],
    private readonly states: Map<string, Buffered>,
    private readonly sparse: SparseRuntime[],
  ) {}

  static async create(options: TrainerOptions): Promise<Trainer> {
    const built = buildTrainStep({ ...options, stepsPerCall: 1 });
    const dtype = built.dtype;
    const allDense = built.sparse.length === 0 && built.dense.length > 0;
    const stepsPerCall = options.stepsPerCall === 'auto' ? (allDense ? AUTO_STEPS_PER_CALL : 1) : (options.stepsPerCall ?? 1);
    // Built (and validated) before any session exists; one step per call stays available for
    // fewer batches than stepsPerCall.
    const multi = stepsPerCall === 1 ? null : buildTrainStep({ ...options, stepsPerCall });
    const rng = new Rng(options.seed);
    const store = options.store ?? new ParameterStore(dtype);
    if (store.dtype !== dtype) throw new TypeError(`parameter store is ${store.dtype}, training graph is ${dtype}`);
    store.initialize(built.specs, rng);
    const { session, device } = await createSession(built.bytes, options.session);
    const total = built.dense.reduce((n, p) => n + numelOf(p.shape), 0);
    const buffers: [FloatArray, FloatArray] = [zerosOf(dtype, total), zerosOf(dtype, total)];
    const denseSlots: DenseSlot[] = [];
    let offset = 0;
    for (const spec of built.dense) {
      const length = numelOf(spec.shape);
      buffers[0].set(store.get(spec.name), offset);
      const view = (b: FloatArray) => tensorOf(dtype, b.subarray(offset, offset + length), spec.shape);
      denseSlots.push({ spec, offset, length, tensors: [view(buffers[0]), view(buffers[1])] });
      store.values.set(spec.name, buffers[0].subarray(offset, offset + length));
      offset += length;
    }
    const flat =
      total > 0
        ? {
            cur: buffers[0],
            next: buffers[1],
            curTensor: tensorOf(dtype, buffers[0], [total]),
            nextTensor: tensorOf(dtype, buffers[1], [total]),
          }
        : null;
    const states = new Map<string, Buffered>();
    if (total > 0) for (const slot of built.slots) states.set(flatState(slot), buffered(dtype, zerosOf(dtype, total)));
    const sparse = built.sparse.map((info): SparseRuntime => {
      const [rows, dim] = info.spec.shape as [number, number];
      return {
        info,
        dim,
        slotOf: new Int32Array(rows).fill(-1),
        states: new Map(built.slots.map((s) => [s, zerosOf(dtype, rows * dim)])),
        scratch: zerosOf(dtype, 0),
      };
    });
    const trainer = new Trainer(options, built, store, rng, session, device, flat, total > 0 ? buffers : null, denseSlots, states, sparse);
    if (multi)
      trainer.multi = {
        built: multi,
        session: (await createSession(multi.bytes, { device, threads: options.session?.threads })).session,
      };
    return trainer;
  }

  /** Optimizer steps one call runs when given that many batches. */
  get stepsPerCall(): number {
    return this.multi?.built.stepsPerCall ?? 1;
  }

  /** One optimizer step on `batch` (model and loss inputs by name). */
  async step(batch: Feeds): Promise<StepResult> {
    return (await this.call(this.built, this.session, [batch]))[0]!;
  }

  /**
   * One optimizer step per batch, in order: `stepsPerCall` at a time in one ONNX Runtime call,
   * the rest one per call. The same results as calling `step` on each.
   */
  async steps(batches: readonly Feeds[]): Promise<StepResult[]> {
    const results: StepResult[] = [];
    const K = this.stepsPerCall;
    let i = 0;
    for (; this.multi && i + K <= batches.length; i += K)
      results.push(...(await this.call(this.multi.built, this.multi.session, batches.slice(i, i + K))));
    for (; i < batches.length; i++) results.push(await this.step(batches[i]!));
    return results;
  }

  private async call(built: TrainStepGraph, session: ort.InferenceSession, batches: readonly Feeds[]): Promise<StepResult[]> {
    const dtype = built.dtype;
    const K = built.stepsPerCall;
    if (batches.length !== K) throw new RangeError(`a call of this graph takes ${K} batch(es), got ${batches.length}`);
    const needed = new Set(built.inputNames);
    const feeds: Feeds = {};
    const lrs: number[] = [];
    const hypers: HyperValues[] = [];
    batches.forEach((batch, k) => {
      const lr = learningRate(this.options.optimizer.lr, this.options.schedule, this.stepCount + k);
      const hyper = hyperValues(this.options.optimizer, lr, this.stepCount + k + 1);
      lrs.push(lr);
      hypers.push(hyper);
      for (const [name, t] of Object.entries(batch)) if (needed.has(stepName(name, k))) feeds[stepName(name, k)] = t;
      for (const [name, v] of Object.entries(hyper)) feeds[stepName(name, k)] = scalarTensor(dtype, v);
      if (built.usesDropout) feeds[stepName('dropout_seed', k)] = new ort.Tensor('uint64', BigUint64Array.of(this.rng.nextSeed()), []);
    });
    const fetches: Record<string, ort.Tensor | null> = {};
    for (let k = 0; k < K; k++) {
      fetches[stepName('loss', k)] = null;
      if (built.hasGradNorm) fetches[stepName('grad_norm', k)] = null;
      for (const m of built.metricNames) fetches[stepName(`metric/${m}`, k)] = null;
    }
    if (this.flat) {
      feeds[FLAT_PARAMS] = this.flat.curTensor;
      fetches[`new/${FLAT_PARAMS}`] = this.flat.nextTensor;
      for (const d of this.denseSlots) feeds[`${PARAM_PREFIX}${d.spec.name}`] = d.tensors[this.parity]!;
    }
    for (const [name, b] of this.states) {
      feeds[name] = b.curTensor;
      fetches[`new/${name}`] = b.nextTensor;
    }
    // Sparse tables only occur in one-step graphs (buildTrainStep refuses them in others).
    const touched = this.sparse.map((s) => this.feedSparse(s, batches[0]!, feeds, fetches));
    for (const name of needed) if (!(name in feeds)) throw new Error(`training step: batch lacks input '${name}'`);
    const out = await session.run(feeds, fetches);
    if (this.flat) {
      swap(this.flat);
      this.parity = 1 - this.parity;
      const cur = this.flatBuffers![this.parity]!;
      for (const d of this.denseSlots) this.store.values.set(d.spec.name, cur.subarray(d.offset, d.offset + d.length));
    }
    for (const b of this.states.values()) swap(b);
    this.sparse.forEach((s, k) => this.updateSparse(s, touched[k]!, out, hypers[0]!));
    this.stepCount += K;
    return hypers.map((_, k) => {
      const metrics: Record<string, number | FloatArray> = {};
      for (const m of built.metricNames) {
        const t = out[stepName(`metric/${m}`, k)]!;
        metrics[m] = t.dims.length === 0 ? Number(t.data[0]) : (t.data as FloatArray);
      }
      const norm = out[stepName('grad_norm', k)];
      return { loss: Number(out[stepName('loss', k)]!.data[0]), gradNorm: norm ? Number(norm.data[0]) : NaN, lr: lrs[k]!, metrics };
    });
  }

  private feedSparse(s: SparseRuntime, batch: Feeds, feeds: Feeds, fetches: Record<string, ort.Tensor | null>): Int32Array {
    const name = s.info.spec.name;
    const ids = batch[s.info.idsInput];
    if (!ids) throw new Error(`training step: batch lacks '${s.info.idsInput}', the ids of sparse table '${name}'`);
    const raw = ids.data as BigInt64Array | Int32Array;
    const rowsTotal = s.info.spec.shape[0]!;
    const local = ids.type === 'int64' ? new BigInt64Array(raw.length) : new Int32Array(raw.length);
    const order: number[] = [];
    // int64 ids are read through their low 32-bit words (ids are < 2^31): no BigInt per element.
    const words = ids.type === 'int64' ? new Int32Array(raw.buffer, raw.byteOffset, raw.length * 2) : null;
    const localWords = ids.type === 'int64' ? new Int32Array(local.buffer, 0, raw.length * 2) : null;
    for (let i = 0; i < raw.length; i++) {
      const id = words ? (words[2 * i + 1] === 0 ? words[2 * i]! : -1) : (raw as Int32Array)[i]!;
      if (!(id >= 0 && id < rowsTotal))
        throw new RangeError(`sparse table '${name}': id ${Number(raw[i]!)} at position ${i} is outside [0, ${rowsTotal})`);
      let slot = s.slotOf[id]!;
      if (slot < 0) {
        slot = order.length;
        s.slotOf[id] = slot;
        order.push(id);
      }
      if (localWords) localWords[2 * i] = slot;
      else (local as Int32Array)[i] = slot;
    }
    const touched = Int32Array.from(order);
    for (const id of touched) s.slotOf[id] = -1;
    const dim = s.dim;
    const need = touched.length * dim;
    if (s.scratch.length < need) s.scratch = zerosOf(this.built.dtype, Math.max(need, 2 * s.scratch.length));
    const rows = s.scratch.subarray(0, need);
    gatherRows(this.store.get(name), touched, dim, rows);
    feeds[`sparse/${name}/rows`] = tensorOf(this.built.dtype, rows, [touched.length, dim]);
    feeds[`sparse/${name}/local`] = new ort.Tensor(ids.type as 'int64' | 'int32', local, ids.dims);
    fetches[sparseGradOutput(name)] = null;
    return touched;
  }

  private updateSparse(s: SparseRuntime, touched: Int32Array, out: ort.InferenceSession.ReturnType, hyper: HyperValues): void {
    const spec = s.info.spec;
    const grad = out[sparseGradOutput(spec.name)]!.data as FloatArray;
    const weightDecay = spec.decay ? (this.options.optimizer.weightDecay ?? 0) : 0;
    updateRowsInPlace(
      this.options.optimizer,
      this.store.get(spec.name),
      Object.fromEntries(s.states),
      touched,
      s.dim,
      grad,
      hyper,
      weightDecay,
    );
  }

  /** Runs the model in evaluation mode (no dropout) with the current parameters. */
  async evaluate(inputs: Feeds, outputs?: readonly string[]): Promise<Record<string, ort.Tensor>> {
    if (!this.evalSession) {
      const g = new Graph('eval');
      const ctx = new ModelContext(g, this.built.dtype, 'eval');
      const outs = this.options.model.forward(ctx, declareInputs(g, this.options.model.inputs));
      this.evalOutputs = Object.keys(outs);
      const bytes = g.serialize({ outputs: Object.entries(outs).map(([name, value]) => ({ name, value })) });
      this.evalSession = (await createSession(bytes, { device: this.device, threads: this.options.session?.threads })).session;
    }
    const feeds: Feeds = {};
    for (const name of this.evalSession.inputNames) {
      if (name.startsWith(PARAM_PREFIX)) {
        const pname = name.slice(PARAM_PREFIX.length);
        feeds[name] = tensorOf(this.built.dtype, this.store.get(pname), this.store.spec(pname).shape);
      } else {
        const t = inputs[name];
        if (!t) throw new Error(`evaluate: missing input '${name}'`);
        feeds[name] = t;
      }
    }
    const wanted = outputs ?? this.evalOutputs;
    return this.evalSession.run(feeds, [...wanted]);
  }

  /** Saves parameters, optimizer state, step and RNG atomically to one safetensors file. */
  save(path: string, metadata: Record<string, string> = {}): void {
    const dtype = this.built.dtype;
    const tensors = new Map<string, NamedTensor>();
    for (const spec of this.store.specs) tensors.set(`param/${spec.name}`, { dtype, shape: spec.shape, data: this.store.get(spec.name) });
    for (const slot of this.built.slots) {
      const state = this.states.get(flatState(slot));
      if (state)
        for (const d of this.denseSlots)
          tensors.set(stateInput(slot, d.spec.name), {
            dtype,
            shape: d.spec.shape,
            data: state.cur.subarray(d.offset, d.offset + d.length),
          });
    }
    for (const s of this.sparse)
      for (const [slot, table] of s.states)
        tensors.set(stateInput(slot, s.info.spec.name), { dtype, shape: s.info.spec.shape, data: table });
    tensors.set('trainer/rng', { dtype: 'int32', shape: [4], data: new Int32Array(this.rng.state.buffer.slice(0)) });
    saveSafetensors(
      path,
      tensors,
      {
        ...metadata,
        format: 'kd-checkpoint',
        version: '1',
        step: String(this.stepCount),
        dtype,
        optimizer: JSON.stringify(this.options.optimizer),
        schedule: JSON.stringify(this.options.schedule ?? null),
      },
      { checksum: true },
    );
  }

  /**
   * Restores a checkpoint written by `save` (same model and optimizer). A damaged file (its
   * checksum fails) is a DamagedFileError; another model or optimizer is an OptionError.
   */
  load(path: string): Record<string, string> {
    const remedy = `Delete the run folder (or ${dirname(path)}) and start the run anew without --resume`;
    const { tensors, metadata } = loadSafetensors(path, { requireChecksum: true, remedy });
    if (metadata.format !== 'kd-checkpoint')
      throw new DamagedFileError(path, `not a kd checkpoint (format ${metadata.format ?? 'missing'})`, remedy);
    const changed = (what: string) =>
      new OptionError(`${path}: ${what}. Resume with the options the run was started with, or start a new run in another folder`);
    if (metadata.optimizer !== JSON.stringify(this.options.optimizer))
      throw changed(`saved with optimizer ${metadata.optimizer}, this run asks for ${JSON.stringify(this.options.optimizer)}`);
    if (metadata.schedule !== JSON.stringify(this.options.schedule ?? null))
      throw changed(
        `saved with learning-rate schedule ${metadata.schedule}, this run asks for ${JSON.stringify(this.options.schedule ?? null)}`,
      );
    const take = (key: string, into: FloatArray) => {
      const t = tensors.get(key);
      if (!t) throw changed(`the checkpoint has no tensor '${key}': it was saved from another model`);
      if (t.data.length !== into.length || t.dtype !== this.built.dtype)
        throw changed(`tensor '${key}' has ${t.data.length} ${t.dtype} values, this model has ${into.length} ${this.built.dtype}`);
      into.set(t.data as FloatArray);
    };
    for (const spec of this.store.specs) take(`param/${spec.name}`, this.store.get(spec.name));
    for (const slot of this.built.slots) {
      const state = this.states.get(flatState(slot));
      if (state) for (const d of this.denseSlots) take(stateInput(slot, d.spec.name), state.cur.subarray(d.offset, d.offset + d.length));
    }
    for (const s of this.sparse) for (const [slot, table] of s.states) take(stateInput(slot, s.info.spec.name), table);
    const rng = tensors.get('trainer/rng');
    if (!rng) throw new DamagedFileError(path, "no tensor 'trainer/rng' (the RNG state)", remedy);
    this.rng.state.set(new Uint32Array((rng.data as Int32Array).buffer.slice(0)));
    this.stepCount = Number(metadata.step);
    return metadata;
  }

  /** A standalone inference model (parameters as initializers) with the chosen outputs. */
  exportInference(outputs?: readonly string[], metadata: Record<string, string> = {}): Uint8Array {
    return exportModel(this.options.model, this.store, { ...(outputs ? { outputs } : {}), metadata });
  }

  async dispose(): Promise<void> {
    await this.session.release();
    await this.multi?.session.release();
    await this.evalSession?.release();
  }
}

function zerosOf(dtype: FloatDType, n: number): FloatArray {
  return dtype === 'float64' ? new Float64Array(n) : new Float32Array(n);
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
