// Host buffers of a running training step: tensors over Float32/Float64 arrays, and the
// double-buffered pairs ONNX Runtime reads from and writes into in place.
import type { FloatDType } from './dtype.js';
import type { FloatArray, ParamSpec } from './params.js';
import { ort } from './session.js';

export function zerosOf(dtype: FloatDType, n: number): FloatArray {
  return dtype === 'float64' ? new Float64Array(n) : new Float32Array(n);
}

export function tensorOf(dtype: FloatDType, data: FloatArray, dims: readonly number[]): ort.Tensor {
  return new ort.Tensor(dtype, data, dims as number[]);
}

export function scalarTensor(dtype: FloatDType, v: number): ort.Tensor {
  return new ort.Tensor(dtype, dtype === 'float64' ? Float64Array.of(v) : Float32Array.of(v), []);
}

/** A host buffer pair: ONNX Runtime reads `cur` and writes `next`; then they swap. */
export interface Buffered {
  cur: FloatArray;
  next: FloatArray;
  curTensor: ort.Tensor;
  nextTensor: ort.Tensor;
}

/** A buffer pair over `data` (current) and a fresh zero buffer (next). */
export function buffered(dtype: FloatDType, data: FloatArray, next: FloatArray = zerosOf(dtype, data.length)): Buffered {
  return { cur: data, next, curTensor: tensorOf(dtype, data, [data.length]), nextTensor: tensorOf(dtype, next, [data.length]) };
}

export function swap(b: Buffered): void {
  [b.cur, b.next] = [b.next, b.cur];
  [b.curTensor, b.nextTensor] = [b.nextTensor, b.curTensor];
}

/** One dense parameter: its place in the flat vector and input tensors over both buffers. */
export interface DenseSlot {
  spec: ParamSpec;
  offset: number;
  length: number;
  /** Feeds for p/<name> over buffer 0 and buffer 1 of the flat vector. */
  tensors: [ort.Tensor, ort.Tensor];
}
