// The Trainer: runs the training-step graph with parameters and optimizer state in host
// buffers that ONNX Runtime reads and writes in place (double-buffered), several steps per call
// when the model is all dense, sparse table rows through sparse-rows.ts, checkpoints through
// checkpoint.ts; and adamwTrainer, the AdamW + linear warm-up set-up teacher and students share.
import { Graph } from './graph.js';
import { declareInputs, ModelContext, PARAM_PREFIX, type ModelDefinition } from './context.js';
import { hyperValues, learningRate, type HyperValues, type ScheduleConfig } from './optim.js';
import { numelOf, ParameterStore, type FloatArray } from './params.js';
import { Rng } from './rng.js';
import { createSession, ort, type Device, type SessionOptions } from './session.js';
import { buffered, scalarTensor, swap, tensorOf, zerosOf, type Buffered, type DenseSlot } from './buffers.js';
import { feedSparse, sparseRuntime, updateSparse, type SparseRuntime } from './sparse-rows.js';
import { loadCheckpoint, saveCheckpoint, type CheckpointParts } from './checkpoint.js';
import {
  AUTO_STEPS_PER_CALL,
  buildTrainStep,
  exportModel,
  FLAT_PARAMS,
  flatState,
  stepName,
  type TrainStepGraph,
  type TrainStepSpec,
} from './train-graph.js';

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

/** What the training loop and the runs read of a trainer: the ONNX Runtime Trainer and the host BagTrainer both are one. */
export interface StepTrainer {
  stepCount: number;
  readonly store: ParameterStore;
  /** Optimizer steps one call runs when given that many batches. */
  readonly stepsPerCall: number;
  /** One optimizer step on `batch` (model and loss inputs by name). */
  step(batch: Feeds): Promise<StepResult>;
  /** One optimizer step per batch, in order. */
  steps(batches: readonly Feeds[]): Promise<StepResult[]>;
  /** The model in evaluation mode with the current parameters. */
  evaluate(inputs: Feeds, outputs?: readonly string[]): Promise<Record<string, ort.Tensor>>;
  /** Saves parameters, optimizer state, step and RNG to one checkpoint file. */
  save(path: string, metadata?: Record<string, string>): void;
  /** Restores a checkpoint written by `save`; returns its metadata. */
  load(path: string): Record<string, string>;
  dispose(): Promise<void>;
}

/** The evaluation graph of a model (no dropout) over a store's live values, its session made on first use. */
export class ModelEvaluator {
  private session: ort.InferenceSession | null = null;
  private outputs: string[] = [];

  constructor(
    private readonly model: ModelDefinition,
    private readonly store: ParameterStore,
    private readonly device: Device,
    private readonly threads: number | undefined,
  ) {}

  /** The model's outputs `outputs` (default all) on `inputs`. */
  async run(inputs: Feeds, outputs?: readonly string[]): Promise<Record<string, ort.Tensor>> {
    if (!this.session) {
      const g = new Graph('eval');
      const ctx = new ModelContext(g, this.store.dtype, 'eval');
      const outs = this.model.forward(ctx, declareInputs(g, this.model.inputs));
      this.outputs = Object.keys(outs);
      const bytes = g.serialize({ outputs: Object.entries(outs).map(([name, value]) => ({ name, value })) });
      this.session = (await createSession(bytes, { device: this.device, threads: this.threads })).session;
    }
    const feeds: Feeds = {};
    for (const name of this.session.inputNames) {
      if (name.startsWith(PARAM_PREFIX)) {
        const pname = name.slice(PARAM_PREFIX.length);
        feeds[name] = tensorOf(this.store.dtype, this.store.get(pname), this.store.spec(pname).shape);
      } else {
        const t = inputs[name];
        if (!t) throw new Error(`evaluate: missing input '${name}'`);
        feeds[name] = t;
      }
    }
    return this.session.run(feeds, [...(outputs ?? this.outputs)]);
  }

  async release(): Promise<void> {
    await this.session?.release();
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
export class Trainer implements StepTrainer {
  stepCount = 0;
  private evaluator: ModelEvaluator | null = null;
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
    const flat = total > 0 ? buffered(dtype, buffers[0], buffers[1]) : null;
    const states = new Map<string, Buffered>();
    if (total > 0) for (const slot of built.slots) states.set(flatState(slot), buffered(dtype, zerosOf(dtype, total)));
    const sparse = built.sparse.map((info) => sparseRuntime(info, dtype, built.slots));
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
    const touched = this.sparse.map((s) => feedSparse(s, this.store, dtype, batches[0]!, feeds, fetches));
    for (const name of needed) if (!(name in feeds)) throw new Error(`training step: batch lacks input '${name}'`);
    const out = await session.run(feeds, fetches);
    if (this.flat) {
      swap(this.flat);
      this.parity = 1 - this.parity;
      const cur = this.flatBuffers![this.parity]!;
      for (const d of this.denseSlots) this.store.values.set(d.spec.name, cur.subarray(d.offset, d.offset + d.length));
    }
    for (const b of this.states.values()) swap(b);
    this.sparse.forEach((s, k) => updateSparse(s, this.store, this.options.optimizer, touched[k]!, out, hypers[0]!));
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

  /** Runs the model in evaluation mode (no dropout) with the current parameters. */
  async evaluate(inputs: Feeds, outputs?: readonly string[]): Promise<Record<string, ort.Tensor>> {
    this.evaluator ??= new ModelEvaluator(this.options.model, this.store, this.device, this.options.session?.threads);
    return this.evaluator.run(inputs, outputs);
  }

  /** Saves parameters, optimizer state, step and RNG atomically to one safetensors file (see checkpoint.ts). */
  save(path: string, metadata: Record<string, string> = {}): void {
    saveCheckpoint(path, this.checkpointParts(), metadata);
  }

  /**
   * Restores a checkpoint written by `save` (same model and optimizer). A damaged file (its
   * checksum fails) is a DamagedFileError; another model or optimizer is an OptionError.
   */
  load(path: string): Record<string, string> {
    const { metadata, step } = loadCheckpoint(path, this.checkpointParts());
    this.stepCount = step;
    return metadata;
  }

  private checkpointParts(): CheckpointParts {
    return {
      dtype: this.built.dtype,
      store: this.store,
      optimizer: this.options.optimizer,
      schedule: this.options.schedule,
      slots: this.built.slots,
      states: this.states,
      denseSlots: this.denseSlots,
      sparse: this.sparse,
      rng: this.rng,
      stepCount: this.stepCount,
    };
  }

  /** A standalone inference model (parameters as initializers) with the chosen outputs. */
  exportInference(outputs?: readonly string[], metadata: Record<string, string> = {}): Uint8Array {
    return exportModel(this.options.model, this.store, { ...(outputs ? { outputs } : {}), metadata });
  }

  async dispose(): Promise<void> {
    await this.session.release();
    await this.multi?.session.release();
    await this.evaluator?.release();
  }
}

/** The training set-up the teacher, its pretraining and the students share. */
export interface AdamwTrainerOptions extends Pick<TrainerOptions, 'model' | 'loss' | 'seed' | 'store' | 'session'> {
  lr: number;
  weightDecay: number;
  /** Fraction of `totalSteps` over which the learning rate warms up linearly (at least one step). */
  warmupRatio: number;
  totalSteps: number;
}

/** The TrainerOptions of adamwTrainer: AdamW (gradients clipped to global norm 1), linear warm-up then decay. */
export function adamwTrainerOptions(o: AdamwTrainerOptions): TrainerOptions {
  return {
    model: o.model,
    ...(o.store ? { store: o.store } : {}),
    loss: o.loss,
    optimizer: { kind: 'adamw', lr: o.lr, weightDecay: o.weightDecay, clipNorm: 1 },
    schedule: { kind: 'linear', warmupSteps: Math.max(1, Math.round(o.warmupRatio * o.totalSteps)), totalSteps: o.totalSteps },
    seed: o.seed,
    ...(o.session ? { session: o.session } : {}),
  };
}

/**
 * A Trainer with AdamW (gradients clipped to global norm 1), a linear warm-up then linear decay
 * over `totalSteps`, and stepsPerCall 'auto'.
 */
export function adamwTrainer(o: AdamwTrainerOptions): Promise<Trainer> {
  return Trainer.create({ ...adamwTrainerOptions(o), stepsPerCall: 'auto' });
}
