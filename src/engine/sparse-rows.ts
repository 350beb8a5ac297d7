// Sparse tables on the host: a batch's ids become slots of the rows it touches, only those
// rows go through the training graph, and their update (and optimizer state) is applied here.
import type { FloatDType } from './dtype.js';
import { updateRowsInPlace, type HyperValues, type OptimizerConfig } from './optim.js';
import type { FloatArray, ParameterStore } from './params.js';
import { ort } from './session.js';
import { tensorOf, zerosOf } from './buffers.js';
import { sparseGradOutput, type SparseInfo } from './train-graph.js';

type Feeds = Record<string, ort.Tensor>;

export interface SparseRuntime {
  info: SparseInfo;
  dim: number;
  /** Slot index of each table row in the current batch, -1 when absent. */
  slotOf: Int32Array;
  states: Map<string, FloatArray>;
  /** Reused buffer for the gathered parameter rows. */
  scratch: FloatArray;
}

/** The host side of sparse table `info`: zero optimizer state for each of `slots`. */
export function sparseRuntime(info: SparseInfo, dtype: FloatDType, slots: readonly string[]): SparseRuntime {
  const [rows, dim] = info.spec.shape as [number, number];
  return {
    info,
    dim,
    slotOf: new Int32Array(rows).fill(-1),
    states: new Map(slots.map((s) => [s, zerosOf(dtype, rows * dim)])),
    scratch: zerosOf(dtype, 0),
  };
}

/** Copies rows `touched` of `table` into consecutive rows of `out`. */
function gatherRows(table: FloatArray, touched: Int32Array, dim: number, out: FloatArray): void {
  for (let k = 0; k < touched.length; k++) {
    const src = touched[k]! * dim;
    out.set(table.subarray(src, src + dim), k * dim);
  }
}

/**
 * Feeds the rows of table `s` that `batch` touches (and the batch's ids as local slots) and
 * asks for their gradient; returns the touched row ids in slot order.
 */
export function feedSparse(
  s: SparseRuntime,
  store: ParameterStore,
  dtype: FloatDType,
  batch: Feeds,
  feeds: Feeds,
  fetches: Record<string, ort.Tensor | null>,
): Int32Array {
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
  if (s.scratch.length < need) s.scratch = zerosOf(dtype, Math.max(need, 2 * s.scratch.length));
  const rows = s.scratch.subarray(0, need);
  gatherRows(store.get(name), touched, dim, rows);
  feeds[`sparse/${name}/rows`] = tensorOf(dtype, rows, [touched.length, dim]);
  feeds[`sparse/${name}/local`] = new ort.Tensor(ids.type as 'int64' | 'int32', local, ids.dims);
  fetches[sparseGradOutput(name)] = null;
  return touched;
}

/** Applies the optimizer to rows `touched` of table `s` (and their state) from the step's gradient output. */
export function updateSparse(
  s: SparseRuntime,
  store: ParameterStore,
  optimizer: OptimizerConfig,
  touched: Int32Array,
  out: ort.InferenceSession.ReturnType,
  hyper: HyperValues,
): void {
  const spec = s.info.spec;
  const grad = out[sparseGradOutput(spec.name)]!.data as FloatArray;
  const weightDecay = spec.decay ? (optimizer.weightDecay ?? 0) : 0;
  updateRowsInPlace(optimizer, store.get(spec.name), Object.fromEntries(s.states), touched, s.dim, grad, hyper, weightDecay);
}
