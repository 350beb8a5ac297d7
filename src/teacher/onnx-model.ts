// Reading foreign ONNX models: constant tensors (initializers, Constant nodes, external data)
// and the producer of every tensor, for graph edits such as exposing the embedding.
import { readFileSync, openSync, readSync, closeSync, realpathSync, statSync } from 'node:fs';
import { dirname, isAbsolute, relative, resolve, sep } from 'node:path';
import onnxProto from 'onnx-proto';
import { FormatError } from '../data/errors.js';

const { onnx } = onnxProto;
export type ModelProto = InstanceType<typeof onnx.ModelProto>;
export type NodeProto = onnxProto.onnx.INodeProto;
export type TensorProto = onnxProto.onnx.ITensorProto;

const REEXPORT = 're-export the model (or download it again)';

/** Ops a quantized graph has: finding one means the model is quantized already (kd quantize refuses it). */
export const QUANTIZED_OPS = new Set([
  'MatMulInteger',
  'DynamicQuantizeLinear',
  'QuantizeLinear',
  'DequantizeLinear',
  'QLinearMatMul',
  'ConvInteger',
  'QLinearConv',
  'DynamicQuantizeMatMul',
  'MatMulIntegerToFloat',
  'QGemm',
  'QAttention',
  'MatMulNBits',
  'GatherBlockQuantized',
]);

/**
 * Reads an ONNX model file and checks what ONNX Runtime and the graph edits rely on: that it
 * decodes, has a graph, and that every external-data reference stays inside its folder.
 */
export function decodeModel(path: string): ModelProto {
  const bytes = readFileSync(path);
  if (bytes.length === 0) throw new FormatError(path, `the file is empty; ${REEXPORT}`);
  let model: ModelProto;
  try {
    model = onnx.ModelProto.decode(bytes);
  } catch (e) {
    throw new FormatError(path, `not a valid ONNX model (${(e as Error).message}; the file is truncated or not ONNX); ${REEXPORT}`);
  }
  // Protobuf decodes many byte strings without error; a model has a graph with nodes and outputs.
  const g = model.graph;
  if (!g || !g.node?.length || !g.output?.length)
    throw new FormatError(path, `not an ONNX model (no graph with nodes and outputs); ${REEXPORT}`);
  externalDataFiles(model, path);
  return model;
}

/** The files a model's external data is in (each checked as {@link externalDataOf} does), sorted. */
export function externalDataFiles(model: ModelProto, modelPath: string): string[] {
  const files = new Set<string>();
  for (const t of allTensors(model))
    if (t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL) files.add(externalDataOf(t, modelPath).file);
  return [...files].sort();
}

/** Every tensor stored in a graph: initializers and Constant values, subgraphs included. */
function* allTensors(model: ModelProto): Generator<TensorProto> {
  const graphs: onnxProto.onnx.IGraphProto[] = model.graph ? [model.graph] : [];
  while (graphs.length) {
    const g = graphs.pop()!;
    yield* g.initializer ?? [];
    for (const s of g.sparseInitializer ?? []) {
      if (s.values) yield s.values;
      if (s.indices) yield s.indices;
    }
    for (const n of g.node ?? []) {
      for (const a of n.attribute ?? []) {
        if (a.t) yield a.t;
        yield* a.tensors ?? [];
        if (a.g) graphs.push(a.g);
        graphs.push(...(a.graphs ?? []));
      }
    }
  }
}

export interface ExternalData {
  file: string;
  offset: number;
  length: number;
}

/**
 * Where a tensor's external data lies, checked: a relative location inside the model's folder
 * (symlinks resolved, as ONNX Runtime does), a regular file, and offset + length within it. A
 * model file is untrusted input: unchecked, `../../etc/passwd` would be read into the cache and
 * `/dev/zero` with a huge length would allocate it.
 */
export function externalDataOf(t: TensorProto, modelPath: string): ExternalData {
  const baseDir = dirname(modelPath);
  const entries = new Map((t.externalData ?? []).map((e) => [e.key, e.value]));
  const location = entries.get('location');
  const bad = (why: string) => new FormatError(modelPath, `tensor '${t.name}': external data ${why}; ${REEXPORT}`);
  if (!location) throw bad('has no location');
  if (isAbsolute(location)) throw bad(`location '${location}' is an absolute path; it must be a file in the model's folder`);
  const folder = realpathSync(baseDir);
  const lexical = resolve(folder, location);
  if (!inside(folder, lexical)) throw bad(`location '${location}' leaves the model's folder ${baseDir}`);
  let file: string;
  try {
    file = realpathSync(lexical);
  } catch {
    throw bad(`file '${location}' does not exist beside ${modelPath}`);
  }
  if (!inside(folder, file)) throw bad(`location '${location}' is a link to ${file}, outside the model's folder ${baseDir}`);
  const stat = statSync(file);
  if (!stat.isFile()) throw bad(`location '${location}' is not a regular file`);
  const offset = nonNegativeInteger(entries.get('offset') ?? '0');
  if (offset === null || offset > stat.size)
    throw bad(`offset '${entries.get('offset')}' is not an offset into '${location}' (${stat.size} bytes)`);
  const length = entries.has('length') ? nonNegativeInteger(entries.get('length')!) : stat.size - offset;
  if (length === null) throw bad(`length '${entries.get('length')}' is not a non-negative integer`);
  if (offset + length > stat.size)
    throw bad(
      `offset ${offset} + length ${length} is past the end of '${location}' (${stat.size} bytes; the file is truncated or not ` +
        `this model's)`,
    );
  return { file, offset, length };
}

function inside(folder: string, path: string): boolean {
  const rel = relative(folder, path);
  return rel !== '' && rel !== '..' && !rel.startsWith(`..${sep}`) && !isAbsolute(rel);
}

function nonNegativeInteger(text: string): number | null {
  return /^\d+$/.test(text) && Number.isSafeInteger(Number(text)) ? Number(text) : null;
}

export function encodeModel(model: ModelProto): Uint8Array {
  return onnx.ModelProto.encode(model).finish();
}

/** Whether two integer lists (e.g. a `perm` attribute, or null when absent) are equal. */
export const sameInts = (a: readonly number[] | null, b: readonly number[]): boolean =>
  a !== null && a.length === b.length && a.every((v, i) => v === b[i]);

/** Index of a graph: which node produces each tensor, which nodes read it, and its constant tensors. */
export class GraphIndex {
  readonly producer = new Map<string, NodeProto>();
  /** The nodes reading each tensor (as the graph was when indexed). */
  readonly uses = new Map<string, NodeProto[]>();
  readonly constants = new Map<string, TensorProto>();
  private readonly graphOutputs: Set<string>;

  constructor(
    readonly model: ModelProto,
    readonly modelPath: string,
  ) {
    const g = model.graph!;
    this.graphOutputs = new Set((g.output ?? []).map((o) => o.name!));
    for (const t of g.initializer ?? []) this.constants.set(t.name!, t);
    for (const n of g.node ?? []) {
      for (const o of n.output ?? []) this.producer.set(o, n);
      for (const t of n.input ?? []) if (t) (this.uses.get(t) ?? this.uses.set(t, []).get(t)!).push(n);
      if (n.opType === 'Constant') {
        const value = (n.attribute ?? []).find((a) => a.name === 'value')?.t;
        if (value) this.constants.set(n.output![0]!, value);
      }
      // PyTorch's exporter writes equal initializers once and the others as Identity of it (the zero biases of a
      // fresh model): the Identity's output is that constant too. Nodes come in topological order.
      const source = n.opType === 'Identity' ? this.constants.get(n.input?.[0] ?? '') : undefined;
      if (source) this.constants.set(n.output![0]!, source);
    }
  }

  /** Whether `t` is read by exactly one node and is not a graph output (a rewrite may then remove its producer). */
  singleUse(t: string): boolean {
    return !this.graphOutputs.has(t) && this.uses.get(t)?.length === 1;
  }

  /** A constant tensor's values as float32 (from float32, float16 or float64 data), or null. */
  constantFloats(name: string): { dims: number[]; data: Float32Array } | null {
    const t = this.constants.get(name);
    if (!t) return null;
    return { dims: (t.dims ?? []).map(Number), data: tensorToFloat32(t, this.modelPath) };
  }

  /** The value of a one-element float constant, or null. */
  constantScalar(name: string): number | null {
    const c = this.constantFloats(name);
    return c && c.data.length === 1 ? c.data[0]! : null;
  }

  /** An integer constant's values (INT64 or INT32), or null. */
  constantInts(name: string): number[] | null {
    const t = this.constants.get(name);
    return t ? tensorToInts(t, this.modelPath) : null;
  }
}

function numel(dims: number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

/** Bytes per element of the types read here (raw data is little-endian, densely packed). */
const ELEMENT_BYTES: Record<number, number> = {
  [onnx.TensorProto.DataType.FLOAT]: 4,
  [onnx.TensorProto.DataType.DOUBLE]: 8,
  [onnx.TensorProto.DataType.FLOAT16]: 2,
  [onnx.TensorProto.DataType.INT64]: 8,
  [onnx.TensorProto.DataType.INT32]: 4,
};

/** A tensor's raw bytes (inline or external, beside `modelPath`), or null when its values are in typed fields. */
function tensorBytes(t: TensorProto, modelPath: string): Uint8Array | null {
  let raw: Uint8Array | null = t.rawData && t.rawData.length > 0 ? t.rawData : null;
  if (t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL) {
    const { file, offset, length } = externalDataOf(t, modelPath);
    const fd = openSync(file, 'r');
    try {
      const buf = Buffer.alloc(length);
      const read = readSync(fd, buf, 0, length, offset);
      if (read !== length)
        throw new FormatError(
          file,
          `tensor '${t.name}': read ${read} of ${length} bytes at offset ${offset} (the file changed while being read); ${REEXPORT}`,
        );
      raw = buf;
    } finally {
      closeSync(fd);
    }
  }
  const needed = numel((t.dims ?? []).map(Number)) * (ELEMENT_BYTES[t.dataType ?? 0] ?? 0);
  if (raw && raw.length < needed)
    throw new FormatError(
      modelPath,
      `tensor '${t.name}' holds ${raw.length} bytes but its shape [${(t.dims ?? []).join(', ')}] needs ${needed}; ${REEXPORT}`,
    );
  return raw;
}

/**
 * A copy of `t` with its values inline (raw data) when they are external data beside `modelPath`, or `t`
 * itself: for writing a model to another file, whose reader would look for the data beside that file.
 */
export function inlinedTensor(t: TensorProto, modelPath: string): TensorProto {
  if (t.dataLocation !== onnx.TensorProto.DataLocation.EXTERNAL) return t;
  return onnx.TensorProto.create({
    ...t,
    rawData: tensorBytes(t, modelPath)!,
    externalData: [],
    dataLocation: onnx.TensorProto.DataLocation.DEFAULT,
  });
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
export function tensorToFloat32(t: TensorProto, modelPath: string): Float32Array {
  const n = numel((t.dims ?? []).map(Number));
  const raw = tensorBytes(t, modelPath);
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
export function tensorToInts(t: TensorProto, modelPath: string): number[] | null {
  const T = onnx.TensorProto.DataType;
  const raw = tensorBytes(t, modelPath);
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
  return onnx.TensorProto.create({
    name,
    dataType: onnx.TensorProto.DataType.FLOAT,
    dims: [...dims],
    rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
  });
}

/** A 1-D int64 initializer. */
export function int64Initializer(name: string, values: readonly number[]): TensorProto {
  return onnx.TensorProto.create({
    name,
    dataType: onnx.TensorProto.DataType.INT64,
    dims: [values.length],
    rawData: new Uint8Array(BigInt64Array.from(values.map(BigInt)).buffer),
  });
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
