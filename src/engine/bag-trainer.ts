// The host trainer of bag-of-rows models (a sparse table's rows averaged, an optional ReLU hidden layer, a linear head):
// forward, backward, clipping and the AdamW/SGD update in JavaScript over deduplicated rows, with the loss and its
// gradient w.r.t. the head ([B, H], small) from the loss's host form (LossDefinition.host), or, for a loss without
// one, from one ONNX Runtime call of the loss's own graph. Same steps as Trainer. On 2 threads a worker (bag-worker.ts,
// driven through bag-thread.ts) shares the SIMD rows' memory and takes part of each step; the arithmetic both run is
// bag-kernels.ts, split so that every sum keeps one thread's order: 1 and 2 threads give the same bits.
import { Graph } from './graph.js';
import { gradients } from './autodiff.js';
import { declareInputs, ModelContext } from './context.js';
import { hyperValues, learningRate, updateRowsInPlace, type HyperValues } from './optim.js';
import { numelOf, ParameterStore, type FloatArray, type ParamSpec } from './params.js';
import { Rng } from './rng.js';
import { createSession, ort } from './session.js';
import { buffered, tensorOf, zerosOf, type Buffered, type DenseSlot } from './buffers.js';
import { loadCheckpoint, saveCheckpoint, type CheckpointParts } from './checkpoint.js';
import { buildTrainStep, exportModel, flatState, type TrainStepGraph } from './train-graph.js';
import type { SparseRuntime } from './sparse-rows.js';
import type { LossDefinition } from './train-graph.js';
import type { FloatDType } from './dtype.js';
import { SimdRows, simdRowsRefusal, type AdamwScalars, type RowPart } from './simd-rows.js';
import { ModelEvaluator, type StepResult, type StepTrainer, type TrainerOptions } from './trainer.js';
import {
  arenaLayouts,
  arenaViews,
  backwardExamples,
  forwardLayers,
  gatherMean,
  scatterRows,
  touchAndGather,
  touchedSlices,
  weightGradients,
  CTRL,
  PHASE,
  type ArenaLayout,
  type ArenaShape,
  type LayerView,
  type StepArrays,
} from './bag-kernels.js';
import { BagWorker } from './bag-thread.js';
import { availableParallelism } from 'node:os';

type Feeds = Record<string, ort.Tensor>;

/**
 * Where a bag-of-rows model keeps its parts: `head = linear(relu?(linear(maskedMean(table[ids], mask))))`,
 * each linear `<name>.weight` [in, out] and `<name>.bias` [out], as layers.ts declares them.
 */
export interface BagModelSpec {
  /** The sparse table's parameter name. */
  table: string;
  /** Batch inputs of the row ids and their mask [B, T] (int64 or int32). */
  ids: string;
  mask: string;
  /** The ReLU hidden layer's name, or null for a linear model. */
  hidden: string | null;
  /** The output layer's name. */
  head: string;
  /** The model output that layer gives, the one the loss reads (default `head`). */
  output?: string;
}

export interface BagTrainerOptions extends Omit<TrainerOptions, 'stepsPerCall'> {
  bag: BagModelSpec;
  /**
   * Threads a step runs on, 1 or 2 (default: 2 where os.availableParallelism() ≥ 2, else 1): the second, a worker on
   * the same memory, takes part of each step's examples and rows. Any count gives the same bits (see bag-kernels.ts).
   * Two need the SIMD rows (float32 AdamW, a width that is a multiple of 4, a table within wasm32's 4 GiB): by default
   * a step runs on one thread where they do not apply; asked for explicitly, 2 threads are refused there.
   */
  threads?: number;
}

/** Below this many positions (B·T) a step runs on one thread: handing half of it over costs more than it saves. */
export const MIN_SPLIT_POSITIONS = 512;
/** A layer stack whose Σ in·out is at least this runs its backward on both threads; a smaller one on the main thread. */
const SPLIT_BACKWARD_WORK = 2048;
/**
 * The main thread's share of the forward's examples. The worker also takes the rows' gradients and update after it, the
 * main thread the ids, the loss and the caller's work between steps; measured on bench train's rows (2 shared cores,
 * noisy), 0.55 came out ahead of 0.4 and 0.7.
 */
const MAIN_EXAMPLE_SHARE = 0.55;

/** Graph output of d(loss)/d(head) in the loss graph. */
const HEAD_GRAD = 'grad/head';

/**
 * The loss graph over the head: (head [B, H], loss inputs) → loss, metrics (`metric/<name>`) and d(loss)/d(head)
 * (`grad/head`), the loss read from the model's `output` and the batch axis named `batchDim`.
 */
export function lossGraph(
  loss: LossDefinition,
  dtype: FloatDType,
  batchDim: string | number,
  output: string,
  headSize: number,
): Uint8Array {
  const g = new Graph('bag_loss');
  const ctx = new ModelContext(g, dtype, 'train');
  const head = g.input('head', dtype, [batchDim, headSize]);
  const outputs = new Proxy({} as Record<string, typeof head>, {
    get: (_t, k) => {
      if (k !== output)
        throw new Error(`the host trainer's loss reads the model's '${output}' output only, this loss reads '${String(k)}'`);
      return head;
    },
  });
  const { loss: value, metrics = {} } = loss.build(outputs, declareInputs(g, loss.inputs), ctx);
  if (ctx.params.size || ctx.sparse.size || ctx.usesDropout) throw new Error('the host trainer needs a loss without parameters or dropout');
  g.output(value, 'loss');
  for (const [name, m] of Object.entries(metrics)) g.output(m, `metric/${name}`);
  g.output(gradients(value, [head]).get(head)!, HEAD_GRAD);
  return g.serialize();
}

/** A dense layer's weight [in, out] and bias [out] as views of the flat parameter and gradient vectors. */
interface Layer extends LayerView {
  gw: Float64Array;
  gb: Float64Array;
}

/** Growable scratch arrays, reused across steps. */
class Scratch {
  private f64 = new Map<string, Float64Array>();
  private i32 = new Map<string, Int32Array>();
  /** A zeroed Float64Array of `n` values. */
  zeros(key: string, n: number): Float64Array {
    let a = this.f64.get(key);
    if (!a || a.length < n) this.f64.set(key, (a = new Float64Array(Math.max(n, 2 * (a?.length ?? 0)))));
    const view = a.subarray(0, n);
    view.fill(0);
    return view;
  }
  /** A Float64Array of `n` values, not cleared (the step's passes write every value they read). */
  floats(key: string, n: number): Float64Array {
    let a = this.f64.get(key);
    if (!a || a.length < n) this.f64.set(key, (a = new Float64Array(Math.max(n, 2 * (a?.length ?? 0)))));
    return a.subarray(0, n);
  }
  ints(key: string, n: number, fill?: number): Int32Array {
    let a = this.i32.get(key);
    if (!a || a.length < n) this.i32.set(key, (a = new Int32Array(Math.max(n, 2 * (a?.length ?? 0))).fill(fill ?? 0)));
    return a.subarray(0, n);
  }
}

/**
 * Trains a bag-of-rows model on the host, step for step what Trainer's ONNX Runtime step does (same parameters, same
 * optimizer state and checkpoint layout, same clipping over all gradients, rows a batch names updated lazily as
 * torch.optim.SparseAdam does, the padding ids included), in float64 arithmetic stored to the store's dtype. With the
 * SIMD rows it runs on 2 threads where the machine has 2 cores (`threads`), with the same results as on 1.
 *
 * ```ts
 * const trainer = await BagTrainer.create({ model, loss, optimizer: { kind: 'adamw', lr: 5e-3 }, seed: 13, bag });
 * const { loss } = await trainer.step({ ngram_ids, ngram_mask, labels });
 * ```
 */
export class BagTrainer implements StepTrainer {
  stepCount = 0;
  readonly stepsPerCall = 1;
  private readonly scratch = new Scratch();
  private evaluator: ModelEvaluator | null = null;
  /** With the SIMD rows: a step changed the rows since the store's flat table was last brought up to date. */
  private rowsAhead = false;
  /** With the SIMD rows: the store's table was handed out (`store`) and may have been written: it goes back before a step. */
  private storeOut = false;

  private constructor(
    readonly options: BagTrainerOptions,
    readonly built: TrainStepGraph,
    private readonly params: ParameterStore,
    readonly rng: Rng,
    /** The loss graph's session, for a loss without a host form. */
    private readonly lossSession: ort.InferenceSession | null,
    private readonly flat: FloatArray,
    private readonly flatGrad: Float64Array,
    private readonly denseSlots: DenseSlot[],
    private readonly states: Map<string, Buffered>,
    private readonly sparse: SparseRuntime,
    private readonly layers: Layer[],
    private readonly simd: SimdRows | null,
    /** The second thread, when the step runs on 2. */
    private readonly worker: BagWorker | null,
  ) {
    this.threads = worker ? 2 : 1;
  }

  /** Threads a step runs on (1 or 2; see BagTrainerOptions.threads). */
  readonly threads: number;
  /** With the SIMD rows: the step's arrays in their memory's arena, and their capacities. */
  private arena: { shape: ArenaShape; arenas: { layout: ArenaLayout; arrays: StepArrays; weights: LayerView[] }[] } | null = null;

  /**
   * Builds the step (checking that `model` is the bag model `bag` describes) and initializes the parameters as
   * Trainer.create does with the same seed.
   * @throws {Error} The model is not a bag-of-rows model as `bag` names it, uses dropout, or the loss reads more than `head`.
   */
  static async create(options: BagTrainerOptions): Promise<BagTrainer> {
    const built = buildTrainStep({ ...options, stepsPerCall: 1 });
    const { bag } = options;
    const dtype = built.dtype;
    const table = built.sparse[0];
    if (built.sparse.length !== 1 || table!.spec.name !== bag.table || table!.idsInput !== bag.ids)
      throw new Error(`the host trainer needs one sparse table '${bag.table}' indexed by '${bag.ids}'`);
    if (built.usesDropout) throw new Error('the host trainer does not apply dropout: use Trainer for a model with dropout');
    const names = [...(bag.hidden ? [bag.hidden] : []), bag.head].flatMap((l) => [`${l}.weight`, `${l}.bias`]);
    if (built.dense.map((s) => s.name).join() !== names.join())
      throw new Error(
        `the host trainer expects dense parameters ${names.join(', ')}, the model has ${built.dense.map((s) => s.name).join(', ')}`,
      );
    const rng = new Rng(options.seed);
    const store = options.store ?? new ParameterStore(dtype);
    if (store.dtype !== dtype) throw new TypeError(`parameter store is ${store.dtype}, training graph is ${dtype}`);
    store.initialize(built.specs, rng);
    // The dense parameters in one flat vector, as Trainer keeps them (the checkpoint reads them through denseSlots).
    const total = built.dense.reduce((n, p) => n + numelOf(p.shape), 0);
    const flat = zerosOf(dtype, total);
    const flatGrad = new Float64Array(total);
    const denseSlots: DenseSlot[] = [];
    const offsets = new Map<string, { spec: ParamSpec; offset: number; length: number }>();
    let offset = 0;
    for (const spec of built.dense) {
      const length = numelOf(spec.shape);
      flat.set(store.get(spec.name), offset);
      const view = tensorOf(dtype, flat.subarray(offset, offset + length), spec.shape);
      denseSlots.push({ spec, offset, length, tensors: [view, view] });
      store.values.set(spec.name, flat.subarray(offset, offset + length));
      offsets.set(spec.name, { spec, offset, length });
      offset += length;
    }
    const layers = [...(bag.hidden ? [bag.hidden] : []), bag.head].map((name): Layer => {
      const w = offsets.get(`${name}.weight`)!;
      const b = offsets.get(`${name}.bias`)!;
      const [inDim, outDim] = w.spec.shape as [number, number];
      return {
        inDim,
        outDim,
        w: flat.subarray(w.offset, w.offset + w.length),
        b: flat.subarray(b.offset, b.offset + b.length),
        gw: flatGrad.subarray(w.offset, w.offset + w.length),
        gb: flatGrad.subarray(b.offset, b.offset + b.length),
      };
    });
    // One buffer per slot (both sides of the pair: the host updates it in place).
    const states = new Map<string, Buffered>(
      built.slots.map((s) => {
        const state = zerosOf(dtype, total);
        return [flatState(s), buffered(dtype, state, state)];
      }),
    );
    const [rows, dim] = table!.spec.shape as [number, number];
    // AdamW on float32 rows in WebAssembly SIMD where it applies: the table and its moments move into its memory,
    // interleaved by row; the store keeps a flat copy of the table, brought up to date when it is read (see `store`).
    // With 2 threads that memory is shared with the worker.
    const simdApplies = dtype === 'float32' && options.optimizer.kind === 'adamw';
    const threads = resolveThreads(options.threads, simdApplies ? simdRowsRefusal(rows, dim, true) : 'it trains float32 AdamW only');
    const simd = simdApplies ? SimdRows.create(rows, dim, threads === 2) : null;
    if (simd) simd.write('table', store.get(table!.spec.name) as Float32Array);
    const sparse: SparseRuntime = {
      info: table!,
      dim,
      slotOf: new Int32Array(0),
      // The moments live in the SIMD rows when there are some (checkpoints read them out, see checkpointParts).
      states: new Map(simd ? [] : built.slots.map((s) => [s, zerosOf(dtype, rows * dim)])),
      scratch: zerosOf(dtype, 0),
    };
    const headSize = layers.at(-1)!.outDim;
    // The batch axis named as the model names it (shape checks match symbolic names).
    const graph = lossGraph(options.loss, dtype, options.model.inputs[bag.ids]?.shape[0] ?? 'batch_size', bag.output ?? 'head', headSize);
    // One thread: the graph is [B, H] small, and a pool's threads waiting for work only take CPU from the host's loops.
    const session = options.loss.host ? null : (await createSession(graph, { ...options.session, device: 'cpu', threads: 1 })).session;
    const worker =
      threads === 2
        ? await BagWorker.start(
            simd!.handle,
            layers.map((l) => [l.inDim, l.outDim]),
          )
        : null;
    return new BagTrainer(options, built, store, rng, session, flat, flatGrad, denseSlots, states, sparse, layers, simd, worker);
  }

  /** The parameters, the table's brought up to date from the interleaved rows first (writes to them are kept). */
  get store(): ParameterStore {
    this.storeOut = this.simd !== null;
    return this.current();
  }

  /** The parameters, brought up to date, for reading here (evaluation, export, checkpoints). */
  private current(): ParameterStore {
    // The worker's update of the last step's rows ends first.
    this.worker?.waitSync();
    if (this.simd && this.rowsAhead) {
      this.simd.read('table', this.params.get(this.options.bag.table) as Float32Array);
      this.rowsAhead = false;
    }
    return this.params;
  }

  /**
   * One step. With 2 threads the worker takes examples [bSplit, B) of the forward (and of the backward where the layers
   * are wide), and the touched rows' gradients and AdamW update, which it finishes after step() returns: the rows of
   * step k are done before step k + 1 reads the table (that step fills the other arena meanwhile) and before anything
   * reads the parameters. Each value is computed by one thread in one thread's order, so the split (any split) leaves
   * the bits as one thread makes them.
   * @throws {Error} The worker thread failed (in this step, or in the update it finished for the step before).
   */
  async step(batch: Feeds): Promise<StepResult> {
    const { bag, optimizer } = this.options;
    const simd = this.simd;
    const idsT = batch[bag.ids];
    const maskT = batch[bag.mask];
    if (!idsT || !maskT) throw new Error(`training step: batch lacks '${idsT ? bag.mask : bag.ids}'`);
    const [B, T] = idsT.dims as [number, number];
    const n = B * T;
    const D = this.sparse.dim;
    const L = this.layers.length;
    const rowsTotal = this.sparse.info.spec.shape[0]!;
    // The step's arrays: in the SIMD rows' arena (which the worker sees), else JavaScript scratch.
    const parity = this.stepCount & 1;
    const {
      arrays: a,
      layout,
      weights,
    } = simd ? this.arenaFor(B, n, parity) : { ...this.scratchArrays(B, n), layout: null, weights: null };
    const ids = int32Words(idsT, a.ids.subarray(0, n), (i, raw) => {
      throw new RangeError(`sparse table '${bag.table}': id ${raw} at position ${i} is outside [0, ${rowsTotal})`);
    });
    for (let i = 0; i < n; i++)
      if (!(ids[i]! >= 0 && ids[i]! < rowsTotal))
        throw new RangeError(`sparse table '${bag.table}': id ${ids[i]} at position ${i} is outside [0, ${rowsTotal})`);
    int32Words(maskT, a.mask, (i, raw) => {
      throw new RangeError(`'${bag.mask}' at position ${i} is ${raw}, not a 32-bit integer`);
    });
    const count = this.dedup(ids, a.slots, a.touched);
    const touched = a.touched.subarray(0, count);
    const worker = n >= MIN_SPLIT_POSITIONS ? this.worker : null;
    const ctrl = worker?.ctrl;
    const bSplit = worker ? Math.max(1, Math.round(B * MAIN_EXAMPLE_SHARE)) : B;
    if (worker)
      for (let l = 0; l < L; l++) {
        weights![l]!.w.set(this.layers[l]!.w);
        weights![l]!.b.set(this.layers[l]!.b);
      }
    // The rows of the step before are updated from here on.
    const settling = this.worker?.wait();
    if (settling) await settling;
    if (simd && this.storeOut) {
      simd.write('table', this.params.get(bag.table) as Float32Array);
      this.storeOut = false;
    }
    this.rowsAhead = simd !== null;
    const table = this.params.get(bag.table);
    // The rows' values: the interleaved rows (parameters at row·stride), or the flat table.
    const rowData = simd ? simd.data : table;
    const stride = simd ? simd.stride : D;

    // Forward: the masked mean of each example's rows, the hidden layer, the head.
    if (worker) {
      ctrl![CTRL.ARENA] = parity;
      ctrl![CTRL.B] = B;
      ctrl![CTRL.T] = T;
      ctrl![CTRL.B0] = bSplit;
      ctrl![CTRL.B1] = B;
      worker.post(PHASE.FORWARD);
    }
    // The rows' lines start loading before they are read (see touchPositions, touchAndGather); the update touches
    // its rows again, their moments with them (touchedSlices).
    if (simd)
      touchAndGather(simd.data, stride, D, ids, a.mask, T, 0, bSplit, (b0, b1) =>
        simd.gatherMean(layout!.ids, layout!.mask, layout!.acts[0]!, layout!.scale, T, b0, b1),
      );
    else touchAndGather(table, D, D, ids, a.mask, T, 0, bSplit, (b0, b1) => gatherMean(rowData, stride, D, T, a, b0, b1));
    forwardLayers(this.layers, a, 0, bSplit);
    if (worker) await worker.wait();
    const H = this.layers.at(-1)!.outDim;

    // The loss and d(loss)/d(head) (into grads[L]): the loss's host form, or its graph.
    const { loss, metrics } = await this.lossAndGradient(a.acts[L]!.subarray(0, B * H), B, H, batch, a.grads[L]!.subarray(0, B * H));

    // Backward through the layers (ReLU where the activation was positive), then onto the rows.
    const splitBackward = worker && this.layers.reduce((w, l) => w + l.inDim * l.outDim, 0) >= SPLIT_BACKWARD_WORK;
    if (splitBackward) worker.post(PHASE.BACKWARD);
    backwardExamples(this.layers, a, 0, splitBackward ? bSplit : B);
    if (splitBackward) await worker.wait();
    const clip = optimizer.clipNorm;
    const norm = clip !== undefined || this.built.hasGradNorm;
    const lr = learningRate(optimizer.lr, this.options.schedule, this.stepCount);
    const hyper: HyperValues = hyperValues(optimizer, lr, this.stepCount + 1);
    const wd = optimizer.weightDecay ?? 0;
    const tableDecay = this.sparse.info.spec.decay ? wd : 0;
    const adam: AdamwScalars | null = simd
      ? {
          b1: optimizer.kind === 'adamw' ? (optimizer.beta1 ?? 0.9) : 0,
          b2: optimizer.kind === 'adamw' ? (optimizer.beta2 ?? 0.999) : 0,
          step: hyper['hyper/step_size'],
          eps: hyper['hyper/eps'],
          decay: tableDecay * lr,
        }
      : null;
    // The rows' gradients: without a norm to wait for, the worker takes them all and goes on to the update; for the
    // norm, half each (the norm needs them all here).
    const sSplit = worker ? (norm ? count >> 1 : 0) : count;
    if (worker) {
      ctrl![CTRL.S0] = sSplit;
      ctrl![CTRL.S1] = count;
      if (!norm) this.postScalars(worker, 1, adam!, 0, count);
      worker.post(norm ? PHASE.SCATTER : PHASE.SCATTER | PHASE.UPDATE);
    }
    if (simd) simd.scatterRows(layout!.slots, layout!.mask, layout!.scale, layout!.grads[0]!, layout!.rowGrad, B, T, 0, sSplit);
    else scatterRows(a, B, T, D, 0, sSplit);
    this.flatGrad.fill(0);
    weightGradients(this.layers, a, B);

    // Global-norm clipping over every gradient, as clipByGlobalNorm does (torch's coefficient), then the update. The
    // norm's sum runs on this thread in one order: the dense gradients, then the rows'.
    let gradNorm = NaN;
    let coef = 1;
    if (norm) {
      if (worker) await worker.wait();
      let sq = 0;
      for (let i = 0; i < this.flatGrad.length; i++) sq += this.flatGrad[i]! * this.flatGrad[i]!;
      const rowGrad = a.rowGrad;
      for (let i = 0; i < count * D; i++) sq += rowGrad[i]! * rowGrad[i]!;
      gradNorm = Math.sqrt(sq);
      if (clip !== undefined) {
        coef = Math.min(clip / (gradNorm + 1e-6), 1);
        if (coef < 1) for (let i = 0; i < this.flatGrad.length; i++) this.flatGrad[i] *= coef;
      }
      if (worker) {
        this.postScalars(worker, coef, adam!, 0, count);
        worker.post(PHASE.UPDATE);
      }
    }
    if (!worker && simd)
      touchedSlices([simd.data], stride, a.touched, 0, count, (s0, s1) =>
        simd.adamw(layout!.touched, layout!.rowGrad, s0, s1, coef, adam!),
      );
    else if (!simd) {
      const rowGrad = a.rowGrad.subarray(0, count * D);
      if (coef < 1) for (let i = 0; i < rowGrad.length; i++) rowGrad[i] *= coef;
      const states = Object.fromEntries(this.sparse.states);
      touchedSlices([table, ...this.sparse.states.values()], D, touched, 0, count, (s0, s1) =>
        updateRowsInPlace(optimizer, table, states, touched.subarray(s0, s1), D, rowGrad.subarray(s0 * D, s1 * D), hyper, tableDecay),
      );
    }
    // Each dense parameter as a table of one row that the step touches.
    const one = Int32Array.of(0);
    for (const d of this.denseSlots) {
      const at = (x: FloatArray) => x.subarray(d.offset, d.offset + d.length);
      const state = Object.fromEntries(this.built.slots.map((s) => [s, at(this.states.get(flatState(s))!.cur)]));
      updateRowsInPlace(
        optimizer,
        at(this.flat),
        state,
        one,
        d.length,
        this.flatGrad.subarray(d.offset, d.offset + d.length),
        hyper,
        d.spec.decay ? wd : 0,
      );
    }
    this.stepCount += 1;

    return { loss, gradNorm, lr, metrics };
  }

  /** The update's fields: the clipping coefficient, AdamW's scalars, the worker's touched rows [s0, s1). */
  private postScalars(worker: BagWorker, coef: number, adam: AdamwScalars, s0: number, s1: number): void {
    worker.ctrl[CTRL.S0] = s0;
    worker.ctrl[CTRL.S1] = s1;
    const f = worker.scalars;
    f[CTRL.COEF] = coef;
    f[CTRL.ADAM_B1] = adam.b1;
    f[CTRL.ADAM_B2] = adam.b2;
    f[CTRL.ADAM_STEP] = adam.step;
    f[CTRL.ADAM_EPS] = adam.eps;
    f[CTRL.ADAM_DECAY] = adam.decay;
  }

  /**
   * Arena `parity`'s arrays in the SIMD rows' memory, for B examples of n positions (capacities double when they grow;
   * the worker's last update is waited for first then, as the arrays move).
   */
  private arenaFor(B: number, n: number, parity: number): { arrays: StepArrays; layout: ArenaLayout; weights: LayerView[] } {
    const simd = this.simd!;
    let arena = this.arena;
    if (!arena || arena.shape.positions < n || arena.shape.examples < B) {
      this.worker?.waitSync();
      const old = arena?.shape;
      const grown = (have: number | undefined, need: number) =>
        have !== undefined && need <= have ? have : Math.max(need, 2 * (have ?? 0));
      const shape: ArenaShape = {
        positions: grown(old?.positions, n),
        examples: grown(old?.examples, B),
        dim: this.sparse.dim,
        layers: this.layers.map((l) => [l.inDim, l.outDim] as const),
      };
      const { layouts, bytes } = arenaLayouts(simd.arenaOffset, shape);
      // Growing the memory replaces its buffer: the views are taken after.
      simd.arena(bytes);
      const buffer = simd.buffer;
      this.arena = arena = { shape, arenas: layouts.map((layout) => ({ layout, ...arenaViews(buffer, layout, shape) })) };
      if (this.worker) {
        this.worker.ctrl[CTRL.POSITIONS] = shape.positions;
        this.worker.ctrl[CTRL.EXAMPLES] = shape.examples;
      }
    }
    return arena.arenas[parity]!;
  }

  /** The step's arrays in JavaScript scratch (a table without the SIMD rows: one thread). */
  private scratchArrays(B: number, n: number): { arrays: StepArrays } {
    const D = this.sparse.dim;
    const f = (key: string, len: number) => this.scratch.floats(key, len);
    return {
      arrays: {
        ids: this.scratch.ints('ids', n),
        mask: this.scratch.ints('mask', n),
        slots: this.scratch.ints('slots', n),
        touched: this.scratch.ints('order', n),
        scale: f('scale', B),
        acts: [f('bag', B * D), ...this.layers.map((l, i) => f(`act${i}`, B * l.outDim))],
        grads: [...this.layers.map((l, i) => f(`dx${i}`, B * l.inDim)), f('headGrad', B * this.layers.at(-1)!.outDim)],
        rowGrad: f('rowGrad', n * D),
      },
    };
  }

  /** The loss, its metrics (in the graph's order), and d(loss)/d(head) [B, H] of this step's head into `headGrad`. */
  private async lossAndGradient(
    head: Float64Array,
    B: number,
    H: number,
    batch: Feeds,
    headGrad: Float64Array,
  ): Promise<{ loss: number; metrics: Record<string, number | FloatArray> }> {
    const metrics: Record<string, number | FloatArray> = {};
    const host = this.options.loss.host;
    if (host) {
      headGrad.fill(0);
      const r = host({ z: head, B, H, grad: headGrad }, batch);
      for (const m of this.built.metricNames) {
        const v = r.metrics[m];
        if (v === undefined) throw new Error(`the loss's host form gives no metric '${m}' (its graph does)`);
        metrics[m] = v;
      }
      return { loss: r.loss, metrics };
    }
    const dtype = this.built.dtype;
    const feeds: Feeds = { head: tensorOf(dtype, dtype === 'float64' ? Float64Array.from(head) : Float32Array.from(head), [B, H]) };
    for (const name of this.lossSession!.inputNames) {
      if (name === 'head') continue;
      const t = batch[name];
      if (!t) throw new Error(`training step: batch lacks input '${name}'`);
      feeds[name] = t;
    }
    const out = await this.lossSession!.run(feeds);
    for (const m of this.built.metricNames) {
      const t = out[`metric/${m}`]!;
      metrics[m] = t.dims.length === 0 ? Number(t.data[0]) : (t.data as FloatArray);
    }
    headGrad.set(out[HEAD_GRAD]!.data as FloatArray);
    return { loss: Number(out.loss!.data[0]), metrics };
  }

  async steps(batches: readonly Feeds[]): Promise<StepResult[]> {
    const results: StepResult[] = [];
    for (const b of batches) results.push(await this.step(b));
    return results;
  }

  /**
   * The distinct ids in first-seen order (into `touched`; their count returned) and each position's index into them
   * (into `slots`), through an open-addressing table sized to the batch (not the table: the cost stays the batch's
   * whatever the table's size).
   */
  private dedup(ids: Int32Array, slots: Int32Array, touched: Int32Array): number {
    const n = ids.length;
    let bits = 4;
    while (1 << bits < 2 * n) bits++;
    const size = 1 << bits;
    const keys = this.scratch.ints('keys', size);
    keys.fill(-1);
    const vals = this.scratch.ints(`vals${bits}`, size);
    let count = 0;
    const mask = size - 1;
    for (let i = 0; i < n; i++) {
      const id = ids[i]!;
      let h = Math.imul(id, 0x9e3779b1) >>> (32 - bits);
      while (keys[h] !== -1 && keys[h] !== id) h = (h + 1) & mask;
      if (keys[h] === -1) {
        keys[h] = id;
        vals[h] = count;
        touched[count++] = id;
      }
      slots[i] = vals[h]!;
    }
    return count;
  }

  /** Runs the model in evaluation mode with the current parameters (ONNX Runtime, as Trainer does). */
  async evaluate(inputs: Feeds, outputs?: readonly string[]): Promise<Record<string, ort.Tensor>> {
    const store = this.current();
    this.evaluator ??= new ModelEvaluator(this.options.model, store, 'cpu', this.options.session?.threads);
    return this.evaluator.run(inputs, outputs);
  }

  save(path: string, metadata: Record<string, string> = {}): void {
    saveCheckpoint(path, this.checkpointParts(), metadata);
  }

  load(path: string): Record<string, string> {
    const parts = this.checkpointParts();
    const { metadata, step } = loadCheckpoint(path, parts);
    // The loaded table and moments into the interleaved rows.
    if (this.simd) {
      this.simd.write('table', this.params.get(this.options.bag.table) as Float32Array);
      for (const [slot, values] of parts.sparse[0]!.states) this.simd.write(slot as RowPart, values as Float32Array);
    }
    this.stepCount = step;
    return metadata;
  }

  /** What a checkpoint holds; with the SIMD rows, the moments de-interleaved into arrays of the checkpoint's layout. */
  private checkpointParts(): CheckpointParts {
    // The table and, before the moments are read, the worker's update of the last step.
    const store = this.current();
    const simd = this.simd;
    const n = this.sparse.info.spec.shape[0]! * this.sparse.dim;
    const sparse: SparseRuntime = simd
      ? { ...this.sparse, states: new Map(this.built.slots.map((s) => [s, simd.read(s as RowPart, new Float32Array(n))])) }
      : this.sparse;
    return {
      dtype: this.built.dtype,
      store,
      optimizer: this.options.optimizer,
      schedule: this.options.schedule,
      slots: this.built.slots,
      states: this.states,
      denseSlots: this.denseSlots,
      sparse: [sparse],
      rng: this.rng,
      stepCount: this.stepCount,
    };
  }

  /** A standalone inference model (parameters as initializers) with the chosen outputs. */
  exportInference(outputs?: readonly string[], metadata: Record<string, string> = {}): Uint8Array {
    return exportModel(this.options.model, this.current(), { ...(outputs ? { outputs } : {}), metadata });
  }

  /** Releases the loss session and the evaluator, and stops the worker thread. */
  async dispose(): Promise<void> {
    // A failed worker has nothing to finish: disposing goes on.
    await Promise.resolve()
      .then(() => this.worker?.wait())
      .catch(() => undefined);
    await this.worker?.dispose();
    await this.lossSession?.release();
    await this.evaluator?.release();
  }
}

/**
 * The step's thread count: `asked` (1 or 2), else 2 where the machine has 2 cores or more; 1 where the second thread
 * cannot work (`refusal` says why), refused if 2 were asked for.
 */
function resolveThreads(asked: number | undefined, refusal: string | null): number {
  if (asked !== undefined && asked !== 1 && asked !== 2) throw new RangeError(`'threads' must be 1 or 2, got ${asked}`);
  const threads = asked ?? (availableParallelism() >= 2 ? 2 : 1);
  if (threads === 2 && refusal !== null) {
    if (asked === 2) throw new Error(`the host trainer cannot run on 2 threads here: ${refusal}. Use threads: 1`);
    return 1;
  }
  return threads;
}

/**
 * The values of an int64 or int32 tensor as int32 (int64 read through its low 32-bit words, no BigInt per element);
 * `outside(i, raw)` is called for an int64 value that does not fit.
 */
function int32Words(t: ort.Tensor, out: Int32Array, outside: (i: number, raw: string) => never): Int32Array {
  if (t.type === 'int32') {
    out.set(t.data as Int32Array);
    return out;
  }
  if (t.type !== 'int64') throw new TypeError(`expected an int64 or int32 tensor, got ${t.type}`);
  const raw = t.data as BigInt64Array;
  const words = new Int32Array(raw.buffer, raw.byteOffset, raw.length * 2);
  for (let i = 0; i < raw.length; i++) {
    const lo = words[2 * i]!;
    if (words[2 * i + 1] !== lo >> 31) outside(i, String(raw[i]));
    out[i] = lo;
  }
  return out;
}
