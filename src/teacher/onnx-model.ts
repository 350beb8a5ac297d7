// Reading foreign ONNX models: constant tensors (initializers, Constant nodes, external data)
// and the producer of every tensor, for graph edits such as exposing the embedding.
import { readFileSync, openSync, readSync, closeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;
export type ModelProto = InstanceType<typeof onnx.ModelProto>;
export type NodeProto = onnxProto.onnx.INodeProto;
export type TensorProto = onnxProto.onnx.ITensorProto;

export function decodeModel(path: string): ModelProto {
  return onnx.ModelProto.decode(readFileSync(path));
}

export function encodeModel(model: ModelProto): Uint8Array {
  return onnx.ModelProto.encode(model).finish();
}

/** Index of a graph: which node produces each tensor, and its constant tensors. */
export class GraphIndex {
  readonly producer = new Map<string, NodeProto>();
  readonly constants = new Map<string, TensorProto>();

  constructor(
    readonly model: ModelProto,
    readonly modelPath: string,
  ) {
    const g = model.graph!;
    for (const t of g.initializer ?? []) this.constants.set(t.name!, t);
    for (const n of g.node ?? []) {
      for (const o of n.output ?? []) this.producer.set(o, n);
      if (n.opType === 'Constant') {
        const value = (n.attribute ?? []).find((a) => a.name === 'value')?.t;
        if (value) this.constants.set(n.output![0]!, value);
      }
    }
  }

  /** A constant tensor's values as float32 (from float32, float16 or float64 data), or null. */
  constantFloats(name: string): { dims: number[]; data: Float32Array } | null {
    const t = this.constants.get(name);
    if (!t) return null;
    return { dims: (t.dims ?? []).map(Number), data: tensorToFloat32(t, dirname(this.modelPath)) };
  }

  /** The value of a one-element float constant, or null. */
  constantScalar(name: string): number | null {
    const c = this.constantFloats(name);
    return c && c.data.length === 1 ? c.data[0]! : null;
  }

  /** An integer constant's values (INT64 or INT32), or null. */
  constantInts(name: string): number[] | null {
    const t = this.constants.get(name);
    return t ? tensorToInts(t, dirname(this.modelPath)) : null;
  }
}

function numel(dims: number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

function tensorBytes(t: TensorProto, baseDir: string): Uint8Array | null {
  if (t.dataLocation === 1) {
    const entries = Object.fromEntries((t.externalData ?? []).map((e) => [e.key, e.value]));
    const fd = openSync(join(baseDir, entries.location!), 'r');
    try {
      const offset = Number(entries.offset ?? 0);
      const length = Number(entries.length ?? 0);
      const buf = Buffer.alloc(length);
      readSync(fd, buf, 0, length, offset);
      return buf;
    } finally {
      closeSync(fd);
    }
  }
  return t.rawData && t.rawData.length > 0 ? t.rawData : null;
}

function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * 2 ** -14 * (f / 1024);
  if (e === 31) return f ? NaN : s * Infinity;
  return s * 2 ** (e - 15) * (1 + f / 1024);
}

/** Converts a float tensor (FLOAT, FLOAT16, DOUBLE) to Float32Array. */
export function tensorToFloat32(t: TensorProto, baseDir: string): Float32Array {
  const n = numel((t.dims ?? []).map(Number));
  const raw = tensorBytes(t, baseDir);
  const T = onnx.TensorProto.DataType;
  const copy = (bytes: Uint8Array) => new Uint8Array(bytes).buffer;
  switch (t.dataType) {
    case T.FLOAT:
      return raw ? new Float32Array(copy(raw), 0, n) : Float32Array.from(t.floatData ?? []);
    case T.DOUBLE:
      return Float32Array.from(raw ? new Float64Array(copy(raw), 0, n) : (t.doubleData ?? []));
    case T.FLOAT16: {
      const halves = raw ? new Uint16Array(copy(raw), 0, n) : Uint16Array.from(t.int32Data ?? []);
      return Float32Array.from(halves, halfToFloat);
    }
    default:
      throw new Error(`tensor '${t.name}' has element type ${t.dataType}, not a float type`);
  }
}

/** An integer constant tensor (INT64 or INT32) as numbers, or null when `t` is another type. */
export function tensorToInts(t: TensorProto, baseDir: string): number[] | null {
  const T = onnx.TensorProto.DataType;
  const raw = tensorBytes(t, baseDir);
  const n = numel((t.dims ?? []).map(Number));
  if (t.dataType === T.INT64) {
    if (raw) return Array.from(new BigInt64Array(new Uint8Array(raw).buffer, 0, n), Number);
    return (t.int64Data ?? []).map((v) => Number(v));
  }
  if (t.dataType === T.INT32) {
    if (raw) return Array.from(new Int32Array(new Uint8Array(raw).buffer, 0, n));
    return (t.int32Data ?? []).map(Number);
  }
  return null;
}

export function decodeModelBytes(bytes: Uint8Array): ModelProto {
  return onnx.ModelProto.decode(bytes);
}

/** A float32 initializer (a scalar when `dims` is []). */
export function floatInitializer(name: string, dims: readonly number[], data: Float32Array): TensorProto {
  return onnx.TensorProto.create({ name, dataType: onnx.TensorProto.DataType.FLOAT, dims: [...dims], rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) });
}

/** A 1-D int64 initializer. */
export function int64Initializer(name: string, values: readonly number[]): TensorProto {
  return onnx.TensorProto.create({ name, dataType: onnx.TensorProto.DataType.INT64, dims: [values.length], rawData: new Uint8Array(BigInt64Array.from(values.map(BigInt)).buffer) });
}

/** An integer attribute of a node, or `fallback` when absent. */
export function intAttr(n: NodeProto, name: string, fallback: number): number {
  const a = (n.attribute ?? []).find((x) => x.name === name);
  return a ? Number(a.i) : fallback;
}

/** An integer-list attribute of a node, or null when absent. */
export function intsAttr(n: NodeProto, name: string): number[] | null {
  const a = (n.attribute ?? []).find((x) => x.name === name);
  return a ? (a.ints ?? []).map(Number) : null;
}
