// The host trainer of bag-of-rows models (a sparse table's rows averaged, an optional ReLU hidden layer, a linear head):
// forward, backward, clipping and the AdamW/SGD update in JavaScript over deduplicated rows, with the loss and its
// gradient w.r.t. the head ([B, H], small) from the loss's host form (LossDefinition.host), or, for a loss without
// one, from one ONNX Runtime call of the loss's own graph. Same steps as Trainer.
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
import { SimdRows, type RowPart } from './simd-rows.js';
import { ModelEvaluator, type StepResult, type StepTrainer, type TrainerOptions } from './trainer.js';

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
}

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
interface Layer {
  inDim: number;
  outDim: number;
  w: FloatArray;
  b: FloatArray;
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
  ints(key: string, n: number, fill?: number): Int32Array {
    let a = this.i32.get(key);
    if (!a || a.length < n) this.i32.set(key, (a = new Int32Array(Math.max(n, 2 * (a?.length ?? 0))).fill(fill ?? 0)));
    return a.subarray(0, n);
  }
}

/**
 * Trains a bag-of-rows model on the host, step for step what Trainer's ONNX Runtime step does (same parameters, same
 * optimizer state and checkpoint layout, same clipping over all gradients, rows a batch names updated lazily as
 * torch.optim.SparseAdam does, the padding ids included), in float64 arithmetic stored to the store's dtype.
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
  ) {}

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
    const simd = dtype === 'float32' && options.optimizer.kind === 'adamw' ? SimdRows.create(rows, dim) : null;
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
    return new BagTrainer(options, built, store, rng, session, flat, flatGrad, denseSlots, states, sparse, layers, simd);
  }

  /** The parameters, the table's brought up to date from the interleaved rows first (writes to them are kept). */
  get store(): ParameterStore {
    this.storeOut = this.simd !== null;
    return this.current();
  }

  /** The parameters, brought up to date, for reading here (evaluation, export, checkpoints). */
  private current(): ParameterStore {
    if (this.simd && this.rowsAhead) {
      this.simd.read('table', this.params.get(this.options.bag.table) as Float32Array);
      this.rowsAhead = false;
    }
    return this.params;
  }

  async step(batch: Feeds): Promise<StepResult> {
    const { bag, optimizer } = this.options;
    if (this.simd && this.storeOut) {
      this.simd.write('table', this.params.get(bag.table) as Float32Array);
      this.storeOut = false;
    }
    this.rowsAhead = this.simd !== null;
    const idsT = batch[bag.ids];
    const maskT = batch[bag.mask];
    if (!idsT || !maskT) throw new Error(`training step: batch lacks '${idsT ? bag.mask : bag.ids}'`);
    const [B, T] = idsT.dims as [number, number];
    const n = B * T;
    const rowsTotal = this.sparse.info.spec.shape[0]!;
    const ids = int32Words(idsT, this.scratch.ints('ids', n), (i, raw) => {
      throw new RangeError(`sparse table '${bag.table}': id ${raw} at position ${i} is outside [0, ${rowsTotal})`);
    });
    for (let i = 0; i < n; i++)
      if (!(ids[i]! >= 0 && ids[i]! < rowsTotal))
        throw new RangeError(`sparse table '${bag.table}': id ${ids[i]} at position ${i} is outside [0, ${rowsTotal})`);
    const mask = int32Words(maskT, this.scratch.ints('mask', n), (i, raw) => {
      throw new RangeError(`'${bag.mask}' at position ${i} is ${raw}, not a 32-bit integer`);
    });
    // Room for every position's row before any view is taken (growing the memory replaces the views).
    this.simd?.scratch(n);
    const { touched, slots } = this.dedup(ids);
    const D = this.sparse.dim;
    const table = this.params.get(bag.table);
    // The rows' values: the interleaved rows (parameters at row·stride), or the flat table.
    const rowData = this.simd ? this.simd.data : table;
    const stride = this.simd ? this.simd.stride : D;

    // Forward: the masked mean of each example's rows, the hidden layer, the head.
    const bagOut = this.scratch.zeros('bag', B * D);
    const scale = this.scratch.zeros('scale', B);
    // The rows' lines, and their moments' for the update at the end, start loading now (see touchRows).
    if (this.simd) touchRows([rowData], touched, stride, stride);
    else touchRows([table, ...this.sparse.states.values()], touched, D, D);
    gatherMean(rowData, stride, ids, mask, B, T, D, bagOut, scale);
    const acts: Float64Array[] = [bagOut];
    for (let l = 0; l < this.layers.length; l++) {
      const layer = this.layers[l]!;
      const y = dense(acts[l]!, B, layer, this.scratch.zeros(`act${l}`, B * layer.outDim));
      if (l < this.layers.length - 1) for (let i = 0; i < y.length; i++) y[i] = Math.max(0, y[i]!);
      acts.push(y);
    }
    const head = acts.at(-1)!;
    const H = this.layers.at(-1)!.outDim;

    // The loss and d(loss)/d(head): the loss's host form, or its graph.
    const { loss, metrics, headGrad } = await this.lossAndGradient(head, B, H, batch);
    let grad: Float64Array = headGrad;

    // Backward through the layers (ReLU where the activation was positive), then onto the rows.
    this.flatGrad.fill(0);
    for (let l = this.layers.length - 1; l >= 0; l--) {
      const layer = this.layers[l]!;
      const x = acts[l]!;
      const { inDim, outDim, w, gw, gb } = layer;
      const dx = this.scratch.zeros(`dx${l}`, B * inDim);
      for (let b = 0; b < B; b++) {
        const dyRow = b * outDim;
        const xRow = b * inDim;
        for (let o = 0; o < outDim; o++) gb[o] += grad[dyRow + o]!;
        for (let i = 0; i < inDim; i++) {
          const xi = x[xRow + i]!;
          let s = 0;
          for (let o = 0; o < outDim; o++) {
            const dy = grad[dyRow + o]!;
            gw[i * outDim + o] += xi * dy;
            s += dy * w[i * outDim + o]!;
          }
          dx[xRow + i] = l > 0 && xi <= 0 ? 0 : s;
        }
      }
      grad = dx;
    }
    const rowGrad = this.scratch.zeros('rowGrad', touched.length * D);
    scatterRows(grad, slots, mask, scale, B, T, D, rowGrad);

    // Global-norm clipping over every gradient, as clipByGlobalNorm does (torch's coefficient), then the update.
    const clip = optimizer.clipNorm;
    let gradNorm = NaN;
    if (clip !== undefined || this.built.hasGradNorm) {
      let sq = 0;
      for (let i = 0; i < this.flatGrad.length; i++) sq += this.flatGrad[i]! * this.flatGrad[i]!;
      for (let i = 0; i < rowGrad.length; i++) sq += rowGrad[i]! * rowGrad[i]!;
      gradNorm = Math.sqrt(sq);
      if (clip !== undefined) {
        const coef = Math.min(clip / (gradNorm + 1e-6), 1);
        if (coef < 1) {
          for (let i = 0; i < this.flatGrad.length; i++) this.flatGrad[i] *= coef;
          for (let i = 0; i < rowGrad.length; i++) rowGrad[i] *= coef;
        }
      }
    }
    const lr = learningRate(optimizer.lr, this.options.schedule, this.stepCount);
    const hyper: HyperValues = hyperValues(optimizer, lr, this.stepCount + 1);
    const wd = optimizer.weightDecay ?? 0;
    // Each dense parameter as a table of one row that the step touches.
    const one = Int32Array.of(0);
    for (const d of this.denseSlots) {
      const at = (a: FloatArray) => a.subarray(d.offset, d.offset + d.length);
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
    const spec = this.sparse.info.spec;
    const tableDecay = spec.decay ? wd : 0;
    if (this.simd) {
      const scratch = this.simd.scratch(touched.length);
      scratch.touched.set(touched);
      scratch.grad.set(rowGrad);
      const b1 = optimizer.kind === 'adamw' ? (optimizer.beta1 ?? 0.9) : 0;
      const b2 = optimizer.kind === 'adamw' ? (optimizer.beta2 ?? 0.999) : 0;
      this.simd.adamw(touched.length, b1, b2, hyper['hyper/step_size'], hyper['hyper/eps'], tableDecay * lr);
    } else updateRowsInPlace(optimizer, table, Object.fromEntries(this.sparse.states), touched, D, rowGrad, hyper, tableDecay);
    this.stepCount += 1;

    return { loss, gradNorm, lr, metrics };
  }

  /** The loss, its metrics (in the graph's order) and d(loss)/d(head) [B, H] of this step's head. */
  private async lossAndGradient(
    head: Float64Array,
    B: number,
    H: number,
    batch: Feeds,
  ): Promise<{ loss: number; metrics: Record<string, number | FloatArray>; headGrad: Float64Array }> {
    const metrics: Record<string, number | FloatArray> = {};
    const host = this.options.loss.host;
    if (host) {
      const headGrad = this.scratch.zeros('headGrad', B * H);
      const r = host({ z: head, B, H, grad: headGrad }, batch);
      for (const m of this.built.metricNames) {
        const v = r.metrics[m];
        if (v === undefined) throw new Error(`the loss's host form gives no metric '${m}' (its graph does)`);
        metrics[m] = v;
      }
      return { loss: r.loss, metrics, headGrad };
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
    return { loss: Number(out.loss!.data[0]), metrics, headGrad: Float64Array.from(out[HEAD_GRAD]!.data as FloatArray) };
  }

  async steps(batches: readonly Feeds[]): Promise<StepResult[]> {
    const results: StepResult[] = [];
    for (const b of batches) results.push(await this.step(b));
    return results;
  }

  /**
   * The distinct ids in first-seen order and each position's index into them, through an open-addressing table sized
   * to the batch (not the table: the cost stays the batch's whatever the table's size).
   */
  private dedup(ids: Int32Array): { touched: Int32Array; slots: Int32Array } {
    const n = ids.length;
    let bits = 4;
    while (1 << bits < 2 * n) bits++;
    const size = 1 << bits;
    const keys = this.scratch.ints('keys', size);
    keys.fill(-1);
    const vals = this.scratch.ints(`vals${bits}`, size);
    const slots = this.scratch.ints('slots', n);
    const order = this.scratch.ints('order', n);
    let count = 0;
    const mask = size - 1;
    for (let i = 0; i < n; i++) {
      const id = ids[i]!;
      let h = Math.imul(id, 0x9e3779b1) >>> (32 - bits);
      while (keys[h] !== -1 && keys[h] !== id) h = (h + 1) & mask;
      if (keys[h] === -1) {
        keys[h] = id;
        vals[h] = count;
        order[count++] = id;
      }
      slots[i] = vals[h]!;
    }
    return { touched: order.subarray(0, count), slots };
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
    const simd = this.simd;
    const n = this.sparse.info.spec.shape[0]! * this.sparse.dim;
    const sparse: SparseRuntime = simd
      ? { ...this.sparse, states: new Map(this.built.slots.map((s) => [s, simd.read(s as RowPart, new Float32Array(n))])) }
      : this.sparse;
    return {
      dtype: this.built.dtype,
      store: this.current(),
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

  async dispose(): Promise<void> {
    await this.lossSession?.release();
    await this.evaluator?.release();
  }
}

/**
 * Reads one value of each 64-byte line of the first `span` values of each row in `touched` (rows `stride` apart) of
 * each array, before the passes that work on them: a loop this light keeps many cache misses in flight at once, where a
 * working pass, heavy per row, takes them a row at a time. Random rows of a large table cost a step more in those
 * misses than in arithmetic.
 */
function touchRows(arrays: readonly FloatArray[], touched: Int32Array, stride: number, span: number): number {
  let acc = 0;
  for (const a of arrays) {
    const line = 64 / a.BYTES_PER_ELEMENT;
    for (let k = 0; k < touched.length; k++) {
      const row = touched[k]! * stride;
      for (let j = 0; j < span; j += line) acc += a[row + j]!;
    }
  }
  return acc;
}

/**
 * bag[b] = Σ_k mask[b,k]·table[ids[b,k]] / max(Σ_k mask[b,k], 1) (layers.ts maskedMean), row r of the table at
 * r·stride; `scale[b]` = that divisor's inverse.
 */
function gatherMean(
  table: FloatArray,
  stride: number,
  ids: Int32Array,
  mask: Int32Array,
  B: number,
  T: number,
  D: number,
  bag: Float64Array,
  scale: Float64Array,
): void {
  for (let b = 0; b < B; b++) {
    let count = 0;
    const out = b * D;
    for (let k = b * T; k < (b + 1) * T; k++) {
      const w = mask[k]!;
      if (w === 0) continue;
      count += w;
      const row = ids[k]! * stride;
      // Four at a time where D allows (the same sums, in the same order: fewer loop and bounds checks).
      let j = 0;
      for (; j + 4 <= D; j += 4) {
        bag[out + j] += w * table[row + j]!;
        bag[out + j + 1] += w * table[row + j + 1]!;
        bag[out + j + 2] += w * table[row + j + 2]!;
        bag[out + j + 3] += w * table[row + j + 3]!;
      }
      for (; j < D; j++) bag[out + j] += w * table[row + j]!;
    }
    const s = 1 / Math.max(count, 1);
    scale[b] = s;
    for (let j = 0; j < D; j++) bag[out + j] *= s;
  }
}

/** The rows' gradient from the bag's: row slots[b,k] gains mask[b,k]·scale[b]·dBag[b]. */
function scatterRows(
  dBag: Float64Array,
  slots: Int32Array,
  mask: Int32Array,
  scale: Float64Array,
  B: number,
  T: number,
  D: number,
  rowGrad: Float64Array,
): void {
  for (let b = 0; b < B; b++) {
    const s = scale[b]!;
    for (let k = b * T; k < (b + 1) * T; k++) {
      const w = mask[k]!;
      if (w === 0) continue;
      const f = w * s;
      const at = slots[k]! * D;
      const src = b * D;
      let j = 0;
      for (; j + 4 <= D; j += 4) {
        rowGrad[at + j] += f * dBag[src + j]!;
        rowGrad[at + j + 1] += f * dBag[src + j + 1]!;
        rowGrad[at + j + 2] += f * dBag[src + j + 2]!;
        rowGrad[at + j + 3] += f * dBag[src + j + 3]!;
      }
      for (; j < D; j++) rowGrad[at + j] += f * dBag[src + j]!;
    }
  }
}

/** y = x·W + b for x [B, in] (float64), the layer's W [in, out] and b [out]. */
function dense(x: Float64Array, B: number, layer: Layer, y: Float64Array): Float64Array {
  const { inDim, outDim, w, b } = layer;
  for (let r = 0; r < B; r++) {
    const yRow = r * outDim;
    for (let o = 0; o < outDim; o++) y[yRow + o] = b[o]!;
    for (let i = 0; i < inDim; i++) {
      const xi = x[r * inDim + i]!;
      if (xi === 0) continue;
      for (let o = 0; o < outDim; o++) y[yRow + o] += xi * w[i * outDim + o]!;
    }
  }
  return y;
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
