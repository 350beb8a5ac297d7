// A small typed builder for ONNX graphs: values with static (symbolic) shapes, nodes with
// typed attributes, initializers, and serialization through the onnx-proto binding.
import onnxProto from 'onnx-proto';
import { ONNX_DTYPE, bytesOf, fromNumbers, type DType, type TypedArray } from './dtype.js';
import { formatShape, type Dim, type Shape } from './shape.js';

const { onnx } = onnxProto;

/** Opset of every graph this engine writes (LayerNormalization needs 17, BitwiseXor 18). */
export const OPSET = 18;
/** ONNX IR version matching opset 18 (ONNX 1.13). */
export const IR_VERSION = 8;

export type Attr =
  | { kind: 'int'; value: number }
  | { kind: 'float'; value: number }
  | { kind: 'string'; value: string }
  | { kind: 'ints'; value: readonly number[] }
  | { kind: 'floats'; value: readonly number[] };

export const int = (value: number): Attr => ({ kind: 'int', value });
export const float = (value: number): Attr => ({ kind: 'float', value });
export const str = (value: string): Attr => ({ kind: 'string', value });
export const ints = (value: readonly number[]): Attr => ({ kind: 'ints', value });
export const floats = (value: readonly number[]): Attr => ({ kind: 'floats', value });

/** A symbolic tensor in a graph: produced by a node, or a graph input or initializer. */
export class Value {
  constructor(
    readonly graph: Graph,
    readonly name: string,
    readonly dtype: DType,
    readonly shape: Shape,
    readonly producer: GraphNode | null,
  ) {}

  get rank(): number {
    return this.shape.length;
  }

  toString(): string {
    return `${this.name}:${this.dtype}${formatShape(this.shape)}`;
  }
}

export interface GraphNode {
  readonly id: number;
  readonly opType: string;
  readonly domain: string;
  readonly inputs: readonly (Value | null)[];
  readonly outputs: readonly Value[];
  readonly attrs: Readonly<Record<string, Attr>>;
}

export interface Initializer {
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly data: TypedArray;
}

export interface OutputSpec {
  dtype: DType;
  shape: Shape;
  /** Name hint for the output value. */
  name?: string;
}

export interface SerializeOptions {
  /** Graph outputs, by name; only the nodes and inputs they need are written. */
  outputs?: readonly { name: string; value: Value }[];
  producer?: string;
  /** Metadata written as model properties. */
  metadata?: Record<string, string>;
}

/**
 * Builds one ONNX graph. Nodes are appended in dependency order, so creation order is a
 * topological order; serialization keeps only what the requested outputs need.
 */
export class Graph {
  readonly nodes: GraphNode[] = [];
  readonly inputs: Value[] = [];
  readonly initializers = new Map<string, Initializer>();
  private readonly initializerValues = new Map<string, Value>();
  private readonly names = new Set<string>();
  private readonly outputs: { name: string; value: Value }[] = [];
  private readonly scalarCache = new Map<string, Value>();
  private counter = 0;

  constructor(readonly name = 'kd_graph') {}

  /** A fresh name starting with `hint`. */
  uniqueName(hint: string): string {
    const base = hint.replace(/[^A-Za-z0-9_./:-]/g, '_') || 'v';
    let name = base;
    while (this.names.has(name)) name = `${base}_${++this.counter}`;
    this.names.add(name);
    return name;
  }

  /** Declares a graph input. Symbolic dims are strings ("B", "T"). */
  input(name: string, dtype: DType, shape: Shape): Value {
    if (this.names.has(name)) throw new Error(`graph already has a value named '${name}'`);
    this.names.add(name);
    const v = new Value(this, name, dtype, [...shape], null);
    this.inputs.push(v);
    return v;
  }

  /** A constant tensor stored as an initializer. */
  constant(data: TypedArray | readonly number[], dtype: DType, shape: readonly number[], hint = 'const'): Value {
    const values = ArrayBuffer.isView(data) ? (data as TypedArray) : fromNumbers(dtype, data as readonly number[]);
    const expected = shape.reduce((a, b) => a * b, 1);
    if (values.length !== expected)
      throw new RangeError(`constant '${hint}': ${values.length} values for shape ${formatShape(shape)} (${expected})`);
    const name = this.uniqueName(hint);
    this.initializers.set(name, { dtype, shape: [...shape], data: values });
    const v = new Value(this, name, dtype, [...shape], null);
    this.initializerValues.set(name, v);
    return v;
  }

  /** A scalar constant (rank 0), shared between uses. */
  scalar(value: number, dtype: DType): Value {
    const key = `${dtype}:${Object.is(value, -0) ? '-0' : value}`;
    let v = this.scalarCache.get(key);
    if (!v) {
      v = this.constant([value], dtype, [], `c_${dtype}_${String(value).replace(/[^0-9a-z]/gi, '_')}`);
      this.scalarCache.set(key, v);
    }
    return v;
  }

  /** A 1-D int64 constant (shapes, axes, indices). */
  int64s(values: readonly number[], hint = 'i64'): Value {
    const key = `int64s:${values.join(',')}`;
    let v = this.scalarCache.get(key);
    if (!v) {
      v = this.constant(values, 'int64', [values.length], hint);
      this.scalarCache.set(key, v);
    }
    return v;
  }

  isInitializer(v: Value): boolean {
    return this.initializerValues.get(v.name) === v;
  }

  /** Appends a node; output shapes and types come from the caller's inference. */
  addNode(
    opType: string,
    inputs: readonly (Value | null)[],
    attrs: Record<string, Attr>,
    outputs: readonly OutputSpec[],
    domain = '',
  ): Value[] {
    for (const i of inputs) {
      if (i && i.graph !== this) throw new Error(`${opType}: input ${i.name} belongs to another graph`);
    }
    const outs: Value[] = [];
    const node: GraphNode = { id: this.nodes.length, opType, domain, inputs: [...inputs], outputs: outs, attrs: { ...attrs } };
    for (const spec of outputs)
      outs.push(new Value(this, this.uniqueName(spec.name ?? opType.toLowerCase()), spec.dtype, [...spec.shape], node));
    this.nodes.push(node);
    return outs;
  }

  /** Marks a value as a graph output under `name` (an Identity node renames it if needed). */
  output(value: Value, name: string = value.name): void {
    this.outputs.push({ name, value });
  }

  get declaredOutputs(): readonly { name: string; value: Value }[] {
    return this.outputs;
  }

  /** Nodes needed to compute `values`, in topological order. */
  nodesFor(values: readonly Value[]): GraphNode[] {
    const needed = new Set<number>();
    const stack = values.map((v) => v.producer).filter((n): n is GraphNode => n !== null);
    while (stack.length) {
      const n = stack.pop()!;
      if (needed.has(n.id)) continue;
      needed.add(n.id);
      for (const i of n.inputs) if (i?.producer && !needed.has(i.producer.id)) stack.push(i.producer);
    }
    return this.nodes.filter((n) => needed.has(n.id));
  }

  toProto(options: SerializeOptions = {}): InstanceType<typeof onnx.ModelProto> {
    const outputs = options.outputs ?? this.outputs;
    if (outputs.length === 0) throw new Error('graph has no outputs: call output() or pass outputs');
    const seenOut = new Set<string>();
    for (const o of outputs) {
      if (seenOut.has(o.name)) throw new Error(`duplicate graph output name '${o.name}'`);
      seenOut.add(o.name);
    }
    const nodes = this.nodesFor(outputs.map((o) => o.value));
    // A node output that becomes one graph output is renamed in place: an Identity node
    // would copy the tensor (whole parameter tensors, every training step).
    const rename = new Map<string, string>();
    const outputsPerValue = new Map<Value, number>();
    for (const o of outputs) outputsPerValue.set(o.value, (outputsPerValue.get(o.value) ?? 0) + 1);
    const taken = new Set([...this.names]);
    for (const o of outputs) {
      const v = o.value;
      if (o.name === v.name || v.producer === null || outputsPerValue.get(v) !== 1) continue;
      if (taken.has(o.name)) continue;
      rename.set(v.name, o.name);
      taken.add(o.name);
    }
    const nameOf = (v: Value) => rename.get(v.name) ?? v.name;
    const used = new Set<string>();
    for (const n of nodes) for (const i of n.inputs) if (i) used.add(i.name);
    for (const o of outputs) used.add(o.value.name);
    const nodeProtos = nodes.map((n) => nodeToProto(n, nameOf));
    const outputProtos = [];
    for (const o of outputs) {
      const produced = nameOf(o.value);
      if (o.name !== produced) {
        nodeProtos.push(onnx.NodeProto.create({ opType: 'Identity', input: [produced], output: [o.name], name: `out_${o.name}` }));
      }
      outputProtos.push(valueInfo(o.name, o.value.dtype, o.value.shape));
    }
    const initializers = [...this.initializers.entries()].filter(([name]) => used.has(name)).map(([name, init]) => tensorProto(name, init));
    const graph = onnx.GraphProto.create({
      name: this.name,
      node: nodeProtos,
      input: this.inputs.filter((i) => used.has(i.name)).map((i) => valueInfo(i.name, i.dtype, i.shape)),
      output: outputProtos,
      initializer: initializers,
    });
    return onnx.ModelProto.create({
      irVersion: IR_VERSION,
      opsetImport: [{ domain: '', version: OPSET }],
      producerName: options.producer ?? 'kd-toolkit',
      graph,
      metadataProps: Object.entries(options.metadata ?? {}).map(([key, value]) => ({ key, value })),
    });
  }

  /** Serialized ONNX model bytes. */
  serialize(options: SerializeOptions = {}): Uint8Array {
    return onnx.ModelProto.encode(this.toProto(options)).finish();
  }
}

function valueInfo(name: string, dtype: DType, shape: Shape) {
  return onnx.ValueInfoProto.create({
    name,
    type: {
      tensorType: {
        elemType: ONNX_DTYPE[dtype],
        shape: { dim: shape.map((d: Dim) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  });
}

export function tensorProto(name: string, init: Initializer) {
  return onnx.TensorProto.create({ name, dataType: ONNX_DTYPE[init.dtype], dims: [...init.shape], rawData: bytesOf(init.data) });
}

function nodeToProto(n: GraphNode, nameOf: (v: Value) => string) {
  const AT = onnx.AttributeProto.AttributeType;
  const attribute = Object.entries(n.attrs).map(([name, a]) => {
    switch (a.kind) {
      case 'int':
        return { name, type: AT.INT, i: a.value };
      case 'float':
        return { name, type: AT.FLOAT, f: a.value };
      case 'string':
        return { name, type: AT.STRING, s: Buffer.from(a.value, 'utf8') };
      case 'ints':
        return { name, type: AT.INTS, ints: [...a.value] };
      case 'floats':
        return { name, type: AT.FLOATS, floats: [...a.value] };
    }
  });
  return onnx.NodeProto.create({
    opType: n.opType,
    domain: n.domain,
    name: `${n.opType}_${n.id}`,
    input: n.inputs.map((i) => (i ? nameOf(i) : '')),
    output: n.outputs.map((o) => nameOf(o)),
    attribute,
  });
}
