// The arithmetic of the host n-gram trainer's step (bag-trainer.ts) as functions over a range of examples or of touched
// rows, and the layout of a step's arrays in the SIMD rows' shared memory: the main thread and the worker
// (bag-worker.ts) run the same functions on their parts of a step. Every sum has one owner that adds its terms in the
// order one thread would (an example's sums by one thread, a row's gradient by the thread owning its slot, walking all
// positions in order), so 1 and 2 threads give the same bits.
import type { MessagePort } from 'node:worker_threads';
import type { FloatArray } from './params.js';
import type { SimdRowsHandle } from './simd-rows.js';

/** A dense layer's weight [in, out] and bias [out] (ReLU after it for a hidden layer). */
export interface LayerView {
  inDim: number;
  outDim: number;
  w: FloatArray;
  b: FloatArray;
}

/** A step's arrays: B examples of T positions each, D-wide rows, L layers. */
export interface StepArrays {
  ids: Int32Array;
  mask: Int32Array;
  /** Each position's index into the step's distinct rows (`touched`). */
  slots: Int32Array;
  touched: Int32Array;
  /** 1 / max(Σ mask, 1) per example. */
  scale: Float64Array;
  /** acts[0]: the bag [B, D]; acts[l + 1]: layer l's output [B, out] (after ReLU for a hidden layer). */
  acts: Float64Array[];
  /** grads[l]: d(loss)/d(acts[l]); grads[L]: d(loss)/d(head), the loss's. */
  grads: Float64Array[];
  /** d(loss)/d(row) per touched row [count, D]. */
  rowGrad: Float64Array;
}

/**
 * Reads one value of each 64-byte line of the first `span` values of each row of `ids` (positions [from, to) whose
 * `mask` is not 0, row r at r·`stride` of `table`), before the passes that work on them: a loop this light keeps many
 * cache misses in flight at once, where a working pass, heavy per row, takes them a row at a time. Random rows of a
 * large table cost a step more in those misses than in arithmetic. Two passes: the first value of every row, then the
 * rest of each row's lines. The first pass's loads each need the row's page in the TLB: one load a row, they are
 * far enough apart for many page walks to run at once (a row's later lines would each wait for the same walk). On
 * the 2-core Zen 4 VM, 10,240 rows of a 2^22-row table read in 2.4–3.0 ms this way, 3.0–5.1 in one pass.
 */
export function touchPositions(
  table: FloatArray,
  stride: number,
  span: number,
  ids: Int32Array,
  mask: Int32Array,
  from: number,
  to: number,
): number {
  let acc = 0;
  for (let k = from; k < to; k++) if (mask[k] !== 0) acc += table[ids[k]! * stride]!;
  const line = 64 / table.BYTES_PER_ELEMENT;
  for (let k = from; k < to; k++) {
    if (mask[k] === 0) continue;
    const row = ids[k]! * stride;
    for (let j = line; j < span; j += line) acc += table[row + j]!;
  }
  return acc;
}

/**
 * The bytes of rows one slice of the forward or of the update touches before working on them (touchAndGather,
 * touchedSlices): within a core's L2 (512 KiB on Zen 3, 1–2 MiB on Zen 4 and recent Xeons) and, in rows, within
 * its second-level TLB (1,536–3,072 pages), so that the working pass finds its rows in both. On a Zen 3 core
 * (512 KiB), 128 and 192 KiB forward slices were no faster.
 */
export const SLICE_BYTES = 384 * 1024;

/** Where the touches' sums go: a store the compiler cannot drop, so it keeps their loads. */
const touchSink = { value: 0 };

/**
 * Examples [b0, b1)'s bags through `gather` (SimdRows.gatherMean's examples, or gatherMean's), a slice of examples at a
 * time, each slice touched first (touchPositions, the rows' first `span` values: the parameters the gather reads, not
 * the moments): touching all of a step's rows before gathering any left ~10k random rows (one page each) for the
 * gather to miss in cache and TLB again; a slice's rows are still in both. Each example's sum is the gather's, so the
 * slices change no bits. `stride` floats a row (parameters, and moments where they are interleaved), T positions an
 * example.
 */
export function touchAndGather(
  table: FloatArray,
  stride: number,
  span: number,
  ids: Int32Array,
  mask: Int32Array,
  T: number,
  b0: number,
  b1: number,
  gather: (from: number, to: number) => void,
): void {
  const slice = Math.max(1, Math.floor(SLICE_BYTES / (T * stride * table.BYTES_PER_ELEMENT)));
  for (let b = b0; b < b1; b += slice) {
    const e = Math.min(b1, b + slice);
    touchSink.value += touchPositions(table, stride, span, ids, mask, b * T, e * T);
    gather(b, e);
  }
}

/**
 * Distinct rows touched[s0, s1) through `work` (the update: SimdRows.adamw's rows or updateRowsInPlace's), a slice at a
 * time, each slice's lines touched first in every array of the row's parts (`arrays`, each `stride` floats a row: the
 * SIMD rows' interleaved parameters and moments, or the table and each moment apart; touchRows), as touchAndGather
 * does for the forward: the update is heavy per row and alone took its rows' cache and TLB misses one row at a time.
 * Rows are worked on independently, so the slices change no bits.
 */
export function touchedSlices(
  arrays: readonly FloatArray[],
  stride: number,
  touched: Int32Array,
  s0: number,
  s1: number,
  work: (from: number, to: number) => void,
): void {
  const rowBytes = arrays.reduce((n, a) => n + stride * a.BYTES_PER_ELEMENT, 0);
  const slice = Math.max(1, Math.floor(SLICE_BYTES / rowBytes));
  for (let k = s0; k < s1; k += slice) {
    const e = Math.min(s1, k + slice);
    touchSink.value += touchRows(arrays, touched, stride, stride, k, e);
    work(k, e);
  }
}

/**
 * touchPositions over distinct rows touched[from, to) in each of `arrays` (the first `span` of each row's `stride`
 * values): the first value of every row, then the rest of the lines.
 */
export function touchRows(
  arrays: readonly FloatArray[],
  touched: Int32Array,
  stride: number,
  span: number,
  from: number,
  to: number,
): number {
  let acc = 0;
  for (const a of arrays) for (let k = from; k < to; k++) acc += a[touched[k]! * stride]!;
  for (const a of arrays) {
    const line = 64 / a.BYTES_PER_ELEMENT;
    for (let k = from; k < to; k++) {
      const row = touched[k]! * stride;
      for (let j = line; j < span; j += line) acc += a[row + j]!;
    }
  }
  return acc;
}

/**
 * Examples [b0, b1)'s bags: bag[b] = Σ_k mask[b,k]·table[ids[b,k]] / max(Σ_k mask[b,k], 1) (layers.ts maskedMean),
 * row r of the table at r·stride, scale[b] = that divisor's inverse. SimdRows.gatherMean does the same in WebAssembly.
 */
export function gatherMean(table: FloatArray, stride: number, D: number, T: number, a: StepArrays, b0: number, b1: number): void {
  const { ids, mask, scale } = a;
  const bag = a.acts[0]!;
  for (let b = b0; b < b1; b++) {
    let count = 0;
    const out = b * D;
    bag.fill(0, out, out + D);
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

/** Examples [b0, b1) through the layers from their bags (acts[0]), ReLU after all but the last. */
export function forwardLayers(layers: readonly LayerView[], a: StepArrays, b0: number, b1: number): void {
  for (let l = 0; l < layers.length; l++) {
    const { inDim, outDim, w, b: bias } = layers[l]!;
    const x = a.acts[l]!;
    const y = a.acts[l + 1]!;
    const relu = l < layers.length - 1;
    for (let r = b0; r < b1; r++) {
      const yRow = r * outDim;
      for (let o = 0; o < outDim; o++) y[yRow + o] = bias[o]!;
      for (let i = 0; i < inDim; i++) {
        const xi = x[r * inDim + i]!;
        if (xi === 0) continue;
        for (let o = 0; o < outDim; o++) y[yRow + o] += xi * w[i * outDim + o]!;
      }
      if (relu) for (let o = yRow; o < yRow + outDim; o++) y[o] = Math.max(0, y[o]!);
    }
  }
}

/**
 * Examples [b0, b1) backward through the layers, from grads[L] (the loss's) to grads[0], d(loss)/d(bag): an example's
 * gradient depends on its own rows only. ReLU's where the hidden activation was positive.
 */
export function backwardExamples(layers: readonly LayerView[], a: StepArrays, b0: number, b1: number): void {
  for (let l = layers.length - 1; l >= 0; l--) {
    const { inDim, outDim, w } = layers[l]!;
    const x = a.acts[l]!;
    const dy = a.grads[l + 1]!;
    const dx = a.grads[l]!;
    for (let b = b0; b < b1; b++) {
      const dyRow = b * outDim;
      const xRow = b * inDim;
      for (let i = 0; i < inDim; i++) {
        let s = 0;
        for (let o = 0; o < outDim; o++) s += dy[dyRow + o]! * w[i * outDim + o]!;
        dx[xRow + i] = l > 0 && x[xRow + i]! <= 0 ? 0 : s;
      }
    }
  }
}

/** The layers' weight and bias gradients (`gw`, `gb`, zeroed) over the B examples, each sum in example order. */
export function weightGradients(layers: readonly (LayerView & { gw: Float64Array; gb: Float64Array })[], a: StepArrays, B: number): void {
  for (let l = 0; l < layers.length; l++) {
    const { inDim, outDim, gw, gb } = layers[l]!;
    const x = a.acts[l]!;
    const dy = a.grads[l + 1]!;
    for (let b = 0; b < B; b++) {
      const dyRow = b * outDim;
      const xRow = b * inDim;
      for (let o = 0; o < outDim; o++) gb[o] += dy[dyRow + o]!;
      for (let i = 0; i < inDim; i++) {
        const xi = x[xRow + i]!;
        for (let o = 0; o < outDim; o++) gw[i * outDim + o] += xi * dy[dyRow + o]!;
      }
    }
  }
}

/**
 * The gradients of touched rows [s0, s1) from the bag's: row slots[b,k] gains mask[b,k]·scale[b]·dBag[b], walking every
 * position in order and taking those whose slot is in the range (a row's sum keeps position order whoever owns it).
 * SimdRows.scatterRows does the same in WebAssembly.
 */
export function scatterRows(a: StepArrays, B: number, T: number, D: number, s0: number, s1: number): void {
  const { slots, mask, scale, rowGrad } = a;
  const dBag = a.grads[0]!;
  rowGrad.fill(0, s0 * D, s1 * D);
  for (let b = 0; b < B; b++) {
    const s = scale[b]!;
    for (let k = b * T; k < (b + 1) * T; k++) {
      const w = mask[k]!;
      const slot = slots[k]!;
      if (w === 0 || slot < s0 || slot >= s1) continue;
      const f = w * s;
      const at = slot * D;
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

/** The shape of a step's arrays in the arena: capacities (positions, examples) and the layers' widths. */
export interface ArenaShape {
  positions: number;
  examples: number;
  dim: number;
  /** [in, out] of each layer, first to last. */
  layers: readonly (readonly [number, number])[];
}

/** Byte offsets of a step's arrays in the arena (see arenaViews), and its length. */
export interface ArenaLayout {
  ids: number;
  mask: number;
  slots: number;
  touched: number;
  /** Each layer's weight and bias copies (float32, what the worker reads; the main thread reads the store's). */
  weights: { w: number; b: number }[];
  scale: number;
  acts: number[];
  grads: number[];
  rowGrad: number;
  bytes: number;
}

/** Where each array of `shape` lies from byte `base` (8-byte aligned where float64). */
export function arenaLayout(base: number, shape: ArenaShape): ArenaLayout {
  let at = base;
  const take = (bytes: number, align: number) => {
    at = Math.ceil(at / align) * align;
    const start = at;
    at += bytes;
    return start;
  };
  const { positions: n, examples: B, dim: D } = shape;
  const ids = take(4 * n, 16);
  const mask = take(4 * n, 16);
  const slots = take(4 * n, 16);
  const touched = take(4 * n, 16);
  const weights = shape.layers.map(([i, o]) => ({ w: take(4 * i * o, 16), b: take(4 * o, 16) }));
  const scale = take(8 * B, 16);
  const acts = [take(8 * B * D, 16), ...shape.layers.map(([, o]) => take(8 * B * o, 16))];
  const grads = [...shape.layers.map(([i]) => take(8 * B * i, 16)), take(8 * B * shape.layers.at(-1)![1], 16)];
  const rowGrad = take(8 * n * D, 16);
  return { ids, mask, slots, touched, weights, scale, acts, grads, rowGrad, bytes: at - base };
}

/**
 * The two arenas' layouts from byte `base`, one after the other: consecutive steps alternate between them, so that a
 * step fills one while the worker still updates the rows of the step before from the other.
 */
export function arenaLayouts(base: number, shape: ArenaShape): { layouts: [ArenaLayout, ArenaLayout]; bytes: number } {
  const first = arenaLayout(base, shape);
  const size = Math.ceil(first.bytes / 16) * 16;
  return { layouts: [first, arenaLayout(base + size, shape)], bytes: 2 * size };
}

/** Views of a step's arrays over `buffer` at `layout`, and of the layers' weight copies. */
export function arenaViews(buffer: ArrayBufferLike, layout: ArenaLayout, shape: ArenaShape): { arrays: StepArrays; weights: LayerView[] } {
  const { positions: n, examples: B, dim: D } = shape;
  const i32 = (at: number, len: number) => new Int32Array(buffer, at, len);
  const f64 = (at: number, len: number) => new Float64Array(buffer, at, len);
  const arrays: StepArrays = {
    ids: i32(layout.ids, n),
    mask: i32(layout.mask, n),
    slots: i32(layout.slots, n),
    touched: i32(layout.touched, n),
    scale: f64(layout.scale, B),
    acts: layout.acts.map((at, l) => f64(at, B * (l === 0 ? D : shape.layers[l - 1]![1]))),
    grads: layout.grads.map((at, l) => f64(at, B * (l < shape.layers.length ? shape.layers[l]![0] : shape.layers.at(-1)![1]))),
    rowGrad: f64(layout.rowGrad, n * D),
  };
  const weights = shape.layers.map(([inDim, outDim], l): LayerView => ({
    inDim,
    outDim,
    w: new Float32Array(buffer, layout.weights[l]!.w, inDim * outDim),
    b: new Float32Array(buffer, layout.weights[l]!.b, outDim),
  }));
  return { arrays, weights };
}

/**
 * The control block the two threads share (Int32 words, then Float64 words from byte FLOAT_AT): the main thread writes
 * a command's fields, then bumps SEQ and notifies; the worker runs it and stores SEQ's value in DONE.
 */
export const CTRL = {
  SEQ: 0,
  DONE: 1,
  /** 0, or 1 when the worker's last command threw (its message on the error port). */
  FAILED: 2,
  /** What to run: a sum of PHASE bits, or PHASE.QUIT. */
  PHASE: 3,
  B: 4,
  T: 5,
  /** The worker's examples [B0, B1) and touched rows [S0, S1). */
  B0: 6,
  B1: 7,
  S0: 8,
  S1: 9,
  /** Capacities of the arena's arrays (positions, examples): the worker takes new views when they change. */
  POSITIONS: 10,
  EXAMPLES: 11,
  /** The worker's spin before it sleeps, in microseconds. */
  SPIN_US: 12,
  /** Which of the two arenas (0, 1) the command works on (see arenaLayouts). */
  ARENA: 13,
  INTS: 16,
  FLOAT_AT: 64,
  /** Float64 words: the clipping coefficient, then AdamW's scalars. */
  COEF: 0,
  ADAM_B1: 1,
  ADAM_B2: 2,
  ADAM_STEP: 3,
  ADAM_EPS: 4,
  ADAM_DECAY: 5,
  FLOATS: 8,
} as const;

export const PHASE = { FORWARD: 1, BACKWARD: 2, SCATTER: 4, UPDATE: 8, QUIT: 1 << 20 } as const;

/** What the worker is started with (structured-cloned). */
export interface BagWorkerData {
  handle: SimdRowsHandle;
  control: SharedArrayBuffer;
  /** [in, out] of each layer. */
  layers: [number, number][];
  port: MessagePort;
}
