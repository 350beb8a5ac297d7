// Element types: ONNX codes, ONNX Runtime names and the typed arrays that hold them.
import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;
const T = onnx.TensorProto.DataType;

export type DType = 'float32' | 'float64' | 'float16' | 'int64' | 'int32' | 'uint64' | 'uint8' | 'bool';
export type FloatDType = 'float32' | 'float64';

export type TypedArray = Float32Array | Float64Array | Uint16Array | BigInt64Array | Int32Array | BigUint64Array | Uint8Array;

export const ONNX_DTYPE: Record<DType, number> = {
  float32: T.FLOAT,
  float64: T.DOUBLE,
  float16: T.FLOAT16,
  int64: T.INT64,
  int32: T.INT32,
  uint64: T.UINT64,
  uint8: T.UINT8,
  bool: T.BOOL,
};

const FROM_ONNX = new Map<number, DType>(Object.entries(ONNX_DTYPE).map(([k, v]) => [v, k as DType]));

export function dtypeFromOnnx(code: number): DType {
  const d = FROM_ONNX.get(code);
  if (!d) throw new RangeError(`Unsupported ONNX element type ${code}. Supported: ${[...FROM_ONNX.values()].join(', ')}`);
  return d;
}

export const BYTES_PER_ELEMENT: Record<DType, number> = {
  float32: 4,
  float64: 8,
  float16: 2,
  int64: 8,
  int32: 4,
  uint64: 8,
  uint8: 1,
  bool: 1,
};

export function isFloat(d: DType): d is FloatDType | 'float16' {
  return d === 'float32' || d === 'float64' || d === 'float16';
}

/** A new zeroed typed array of `n` elements of `dtype`. */
export function allocate(dtype: DType, n: number): TypedArray {
  switch (dtype) {
    case 'float32':
      return new Float32Array(n);
    case 'float64':
      return new Float64Array(n);
    case 'float16':
      return new Uint16Array(n);
    case 'int64':
      return new BigInt64Array(n);
    case 'int32':
      return new Int32Array(n);
    case 'uint64':
      return new BigUint64Array(n);
    case 'uint8':
    case 'bool':
      return new Uint8Array(n);
  }
}

/** A typed array of `dtype` from plain numbers. */
export function fromNumbers(dtype: DType, values: ArrayLike<number | bigint>): TypedArray {
  const out = allocate(dtype, values.length);
  if (out instanceof BigInt64Array || out instanceof BigUint64Array) {
    for (let i = 0; i < values.length; i++) out[i] = BigInt(values[i]!);
  } else {
    for (let i = 0; i < values.length; i++) out[i] = Number(values[i]!);
  }
  return out;
}

/** Little-endian bytes of a typed array (no copy). */
export function bytesOf(data: TypedArray): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}
