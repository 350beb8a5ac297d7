// AdamW on the touched rows of a float32 table in WebAssembly SIMD (4 lanes), over a table and its moments that live in
// one WebAssembly memory, interleaved by row ([row][parameters | m | v]: a row's three parts one contiguous span, one
// page, instead of three random places): the hot loop of the host n-gram trainer, assembled here byte by byte.

/** Encodes an unsigned LEB128 integer. */
function u32(n: number): number[] {
  const out: number[] = [];
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
  return out;
}

/** A section: id, byte length, contents. */
const section = (id: number, body: number[]) => [id, ...u32(body.length), ...body];
const vec = (items: number[][]) => [...u32(items.length), ...items.flat()];
const name = (s: string) => [...u32(s.length), ...Array.from(s, (c) => c.charCodeAt(0))];

const I32 = 0x7f;
const F32 = 0x7d;
const V128 = 0x7b;
const op = {
  block: [0x02, 0x40],
  loop: [0x03, 0x40],
  end: [0x0b],
  br: (d: number) => [0x0c, ...u32(d)],
  brIf: (d: number) => [0x0d, ...u32(d)],
  get: (i: number) => [0x20, ...u32(i)],
  set: (i: number) => [0x21, ...u32(i)],
  i32: (v: number) => [0x41, ...u32(v)],
  i32Load: [0x28, 0x02, 0x00],
  i32Add: [0x6a],
  i32Mul: [0x6c],
  i32GeU: [0x4f],
  v128Load: [0xfd, 0x00, 0x00, 0x00],
  v128Store: [0xfd, 0x0b, 0x00, 0x00],
  splat: [0xfd, 0x13],
  sqrt: [0xfd, ...u32(0xe3)],
  add: [0xfd, ...u32(0xe4)],
  sub: [0xfd, ...u32(0xe5)],
  mul: [0xfd, ...u32(0xe6)],
  div: [0xfd, ...u32(0xe7)],
};

// adamw(table, m, v, touched, count, rowBytes, grad, stride, b1, c1, b2, c2, step, eps, decay): byte offsets (of row
// 0's parameters and moments, and of the scratch), a row's bytes, the bytes from one row to the next, f32 scalars.
const PARAMS = [I32, I32, I32, I32, I32, I32, I32, I32, F32, F32, F32, F32, F32, F32, F32];
const [TABLE, M, V, TOUCHED, COUNT, ROW_BYTES, GRAD, STRIDE] = [0, 1, 2, 3, 4, 5, 6, 7];
const SCALARS = 8;
// Locals after the parameters: k, j, row, gradRow (i32); 7 splatted scalars, g, m', v', p (v128).
const [K, J, ROW, GROW] = [15, 16, 17, 18];
const SPLAT = 19; // b1, c1, b2, c2, step, eps, decay at SPLAT + 0..6
const [G, MN, VN, P] = [26, 27, 28, 29];

/** The function body: per touched row k, per 16 bytes j of it, torch's AdamW in f32x4 (the graph's arithmetic). */
function adamwBody(): number[] {
  const at = (base: number, row: number) => [...op.get(base), ...op.get(row), ...op.i32Add, ...op.get(J), ...op.i32Add];
  const splat = (s: number) => op.get(SPLAT + s);
  const code = [
    ...[0, 1, 2, 3, 4, 5, 6].flatMap((s) => [...op.get(SCALARS + s), ...op.splat, ...op.set(SPLAT + s)]),
    ...op.i32(0),
    ...op.set(K),
    ...op.block,
    ...op.loop,
    ...[...op.get(K), ...op.get(COUNT), ...op.i32GeU, ...op.brIf(1)],
    // row = touched[k] · stride; gradRow = grad + k · rowBytes.
    ...[...op.get(TOUCHED), ...op.get(K), ...op.i32(4), ...op.i32Mul, ...op.i32Add, ...op.i32Load],
    ...[...op.get(STRIDE), ...op.i32Mul, ...op.set(ROW)],
    ...[...op.get(GRAD), ...op.get(K), ...op.get(ROW_BYTES), ...op.i32Mul, ...op.i32Add, ...op.set(GROW)],
    ...op.i32(0),
    ...op.set(J),
    ...op.block,
    ...op.loop,
    ...[...op.get(J), ...op.get(ROW_BYTES), ...op.i32GeU, ...op.brIf(1)],
    ...[...op.get(GROW), ...op.get(J), ...op.i32Add, ...op.v128Load, ...op.set(G)],
    // m' = m·b1 + g·(1 − b1)
    ...[...at(M, ROW), ...op.v128Load, ...splat(0), ...op.mul, ...op.get(G), ...splat(1), ...op.mul, ...op.add, ...op.set(MN)],
    // v' = v·b2 + g·g·(1 − b2)
    ...[...at(V, ROW), ...op.v128Load, ...splat(2), ...op.mul, ...op.get(G), ...op.get(G), ...op.mul, ...splat(3), ...op.mul, ...op.add],
    ...op.set(VN),
    ...[...at(M, ROW), ...op.get(MN), ...op.v128Store, ...at(V, ROW), ...op.get(VN), ...op.v128Store],
    // p' = p − p·decay − (m' / (√v' + eps))·step
    ...[...at(TABLE, ROW), ...op.v128Load, ...op.set(P)],
    ...[...at(TABLE, ROW), ...op.get(P), ...op.get(P), ...splat(6), ...op.mul, ...op.sub],
    ...[...op.get(MN), ...op.get(VN), ...op.sqrt, ...splat(5), ...op.add, ...op.div, ...splat(4), ...op.mul, ...op.sub, ...op.v128Store],
    ...[...op.get(J), ...op.i32(16), ...op.i32Add, ...op.set(J), ...op.br(0)],
    ...op.end,
    ...op.end,
    ...[...op.get(K), ...op.i32(1), ...op.i32Add, ...op.set(K), ...op.br(0)],
    ...op.end,
    ...op.end,
    ...op.end,
  ];
  const locals = vec([
    [...u32(4), I32],
    [...u32(11), V128],
  ]);
  const body = [...locals, ...code];
  return [...u32(body.length), ...body];
}

function moduleBytes(): Uint8Array {
  const type = [0x60, ...vec(PARAMS.map((t) => [t])), ...u32(0)];
  return Uint8Array.from([
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...section(1, vec([type])),
    ...section(2, vec([[...name('env'), ...name('memory'), 0x02, 0x00, ...u32(1)]])),
    ...section(3, vec([u32(0)])),
    ...section(7, vec([[...name('adamw'), 0x00, ...u32(0)]])),
    ...section(10, vec([adamwBody()])),
  ]);
}

type AdamwKernel = (...args: number[]) => void;

/** The part of the WebAssembly API used here (the project's lib, es2023 without DOM, does not declare it). */
interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
const wasm = (
  globalThis as unknown as {
    WebAssembly: {
      validate(bytes: Uint8Array): boolean;
      Memory: new (d: { initial: number }) => WasmMemory;
      Module: new (bytes: Uint8Array) => object;
      Instance: new (m: object, imports: object) => { exports: Record<string, unknown> };
    };
  }
).WebAssembly;

const WASM_PAGE = 65536;
/** wasm32's 4 GiB, less a margin: larger tables stay in JavaScript arrays. */
const MAX_BYTES = 4 * 1024 ** 3 - 64 * WASM_PAGE;

/** The parts of an interleaved row: the parameters, AdamW's first and second moments. */
export type RowPart = 'table' | 'm' | 'v';
const PART_OFFSET: Record<RowPart, number> = { table: 0, m: 1, v: 2 };

/**
 * A float32 table [rows, dim] and its AdamW moments in one WebAssembly memory, interleaved by row (`data`: row r's
 * parameters at r·stride, its moments at r·stride + dim and r·stride + 2·dim, stride = 3·dim), and a scratch area for
 * a step's touched ids and row gradients. `data` is replaced when the scratch grows (read it after `scratch`).
 */
export class SimdRows {
  data!: Float32Array;
  readonly stride: number;
  private scratchBytes: number;

  private constructor(
    private readonly memory: WasmMemory,
    private readonly kernel: AdamwKernel,
    readonly rows: number,
    readonly dim: number,
  ) {
    this.stride = 3 * dim;
    this.scratchBytes = memory.buffer.byteLength - this.dataBytes;
    this.bind();
  }

  /**
   * The SIMD rows for a [rows, dim] table, or null where they do not apply (dim not a multiple of 4, a table too large for
   * one WebAssembly memory, no SIMD in this runtime).
   */
  static create(rows: number, dim: number): SimdRows | null {
    const tableBytes = rows * dim * 4;
    if (dim % 4 !== 0 || 3 * tableBytes + WASM_PAGE > MAX_BYTES) return null;
    const bytes = moduleBytes();
    if (!wasm.validate(bytes)) return null;
    const memory = new wasm.Memory({ initial: Math.ceil((3 * tableBytes + 16 * WASM_PAGE) / WASM_PAGE) });
    const instance = new wasm.Instance(new wasm.Module(bytes), { env: { memory } });
    return new SimdRows(memory, instance.exports.adamw as AdamwKernel, rows, dim);
  }

  private get dataBytes(): number {
    return 3 * this.rows * this.dim * 4;
  }

  private bind(): void {
    this.data = new Float32Array(this.memory.buffer, 0, 3 * this.rows * this.dim);
  }

  /** One part of every row, de-interleaved into `out` [rows, dim] (checkpoints, export and evaluation read these). */
  read(part: RowPart, out: Float32Array): Float32Array {
    const { data, dim, stride } = this;
    // dim is a multiple of 4 here (see create): four at a time.
    for (let r = 0, at = PART_OFFSET[part] * dim, to = 0; r < this.rows; r++, at += stride)
      for (let j = at; j < at + dim; j += 4, to += 4) {
        out[to] = data[j]!;
        out[to + 1] = data[j + 1]!;
        out[to + 2] = data[j + 2]!;
        out[to + 3] = data[j + 3]!;
      }
    return out;
  }

  /** One part of every row from `src` [rows, dim] (initial values, a loaded checkpoint, restored parameters). */
  write(part: RowPart, src: Float32Array): void {
    const { data, dim, stride } = this;
    for (let r = 0, at = PART_OFFSET[part] * dim, from = 0; r < this.rows; r++, at += stride)
      for (let j = at; j < at + dim; j += 4, from += 4) {
        data[j] = src[from]!;
        data[j + 1] = src[from + 1]!;
        data[j + 2] = src[from + 2]!;
        data[j + 3] = src[from + 3]!;
      }
  }

  /** Scratch views for `count` touched ids and their gradient rows (the memory grows when they do not fit). */
  scratch(count: number): { touched: Int32Array; grad: Float32Array } {
    const need = count * 4 + count * this.dim * 4;
    if (need > this.scratchBytes) {
      const pages = Math.ceil((need - this.scratchBytes) / WASM_PAGE) + 16;
      if (this.memory.buffer.byteLength + pages * WASM_PAGE > MAX_BYTES)
        throw new RangeError(`a step touching ${count} rows needs more than WebAssembly's 4 GiB beside the table`);
      this.memory.grow(pages);
      this.scratchBytes += pages * WASM_PAGE;
      this.bind();
    }
    const base = this.dataBytes;
    return {
      touched: new Int32Array(this.memory.buffer, base, count),
      grad: new Float32Array(this.memory.buffer, base + count * 4, count * this.dim),
    };
  }

  /** AdamW (torch's, as optim.ts updateRowsInPlace) on the `count` rows in scratch, with their gradients there. */
  adamw(count: number, b1: number, b2: number, step: number, eps: number, decay: number): void {
    const base = this.dataBytes;
    const rowBytes = this.dim * 4;
    this.kernel(0, rowBytes, 2 * rowBytes, base, count, rowBytes, base + count * 4, 3 * rowBytes, b1, 1 - b1, b2, 1 - b2, step, eps, decay);
  }
}
