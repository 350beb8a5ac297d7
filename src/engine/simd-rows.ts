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

/** The module, importing a plain memory, or a shared one (limits flag 3: shared, with a maximum: wasm32's 65536 pages). */
function moduleBytes(shared: boolean): Uint8Array {
  const limits = shared ? [0x03, ...u32(1), ...u32(65536)] : [0x00, ...u32(1)];
  const type = [0x60, ...vec(PARAMS.map((t) => [t])), ...u32(0)];
  return Uint8Array.from([
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...section(1, vec([type])),
    ...section(2, vec([[...name('env'), ...name('memory'), 0x02, ...limits]])),
    ...section(3, vec([u32(0)])),
    ...section(7, vec([[...name('adamw'), 0x00, ...u32(0)]])),
    ...section(10, vec([adamwBody()])),
  ]);
}

type AdamwKernel = (...args: number[]) => void;

/** The part of the WebAssembly API used here (the project's lib, es2023 without DOM, does not declare it). */
export interface WasmMemory {
  readonly buffer: ArrayBuffer | SharedArrayBuffer;
  grow(pages: number): number;
}
/** A compiled module (structured-cloneable: a worker instantiates the same one). */
export type WasmModule = object;
const wasm = (
  globalThis as unknown as {
    WebAssembly: {
      validate(bytes: Uint8Array): boolean;
      Memory: new (d: { initial: number; maximum?: number; shared?: boolean }) => WasmMemory;
      Module: new (bytes: Uint8Array) => WasmModule;
      Instance: new (m: WasmModule, imports: object) => { exports: Record<string, unknown> };
    };
  }
).WebAssembly;

const WASM_PAGE = 65536;
/** wasm32's 4 GiB, less a margin: larger tables stay in JavaScript arrays. */
const MAX_BYTES = 4 * 1024 ** 3 - 64 * WASM_PAGE;
/** Room after the table at the start, in pages (a step's scratch; it grows with the batch). */
const FIRST_ARENA_PAGES = 16;

/** The modules (plain and shared memory), compiled once per thread; null where this runtime has no WebAssembly SIMD. */
const compiled = new Map<boolean, WasmModule | null>();
function simdModule(shared: boolean): WasmModule | null {
  if (!compiled.has(shared)) {
    const bytes = moduleBytes(shared);
    compiled.set(shared, wasm.validate(bytes) ? new wasm.Module(bytes) : null);
  }
  return compiled.get(shared)!;
}

/** Why a [rows, dim] table cannot take the SIMD rows, or null where it can. */
export function simdRowsRefusal(rows: number, dim: number, shared = false): string | null {
  if (dim % 4 !== 0) return `its width ${dim} is not a multiple of 4`;
  const bytes = 3 * rows * dim * 4 + FIRST_ARENA_PAGES * WASM_PAGE;
  if (bytes > MAX_BYTES)
    return (
      `the table and its two AdamW moments (${rows} rows × ${dim} × 3 float32, ${(bytes / 1024 ** 3).toFixed(2)} GiB) do not ` +
      `fit one WebAssembly memory (wasm32: 4 GiB)`
    );
  if (!simdModule(shared)) return `this runtime has no WebAssembly SIMD${shared ? ' with threads' : ''}`;
  return null;
}

/** The parts of an interleaved row: the parameters, AdamW's first and second moments. */
export type RowPart = 'table' | 'm' | 'v';
const PART_OFFSET: Record<RowPart, number> = { table: 0, m: 1, v: 2 };

/** What a worker needs to work on the same rows: the memory (shared), the module, the table's shape. */
export interface SimdRowsHandle {
  memory: WasmMemory;
  module: WasmModule;
  rows: number;
  dim: number;
}

/**
 * A float32 table [rows, dim] and its AdamW moments in one WebAssembly memory, interleaved by row (`data`: row r's
 * parameters at r·stride, its moments at r·stride + dim and r·stride + 2·dim, stride = 3·dim), and after them an arena
 * for a step's scratch (`arena`). With `shared`, the memory is a shared one (its buffer a SharedArrayBuffer) that a
 * worker attaches to (`attach`): both threads then update rows of the same table in place.
 */
export class SimdRows {
  data!: Float32Array;
  readonly stride: number;
  /** Byte offset of the arena: the end of the interleaved rows. */
  readonly arenaOffset: number;

  private constructor(
    readonly memory: WasmMemory,
    readonly module: WasmModule,
    private readonly kernel: AdamwKernel,
    readonly rows: number,
    readonly dim: number,
  ) {
    this.stride = 3 * dim;
    this.arenaOffset = 3 * rows * dim * 4;
    this.bind();
  }

  /**
   * The SIMD rows for a [rows, dim] table, or null where they do not apply (see simdRowsRefusal). A shared memory's
   * maximum is wasm32's bound: the arena grows with the batch, and a maximum reserves address space only.
   */
  static create(rows: number, dim: number, shared = false): SimdRows | null {
    if (simdRowsRefusal(rows, dim, shared) !== null) return null;
    const module = simdModule(shared)!;
    const initial = Math.ceil((3 * rows * dim * 4) / WASM_PAGE) + FIRST_ARENA_PAGES;
    const memory = new wasm.Memory(shared ? { initial, maximum: Math.floor(MAX_BYTES / WASM_PAGE), shared: true } : { initial });
    return SimdRows.attach({ memory, module, rows, dim });
  }

  /** The same rows over another thread's shared memory (a worker's side of `handle`). */
  static attach(handle: SimdRowsHandle): SimdRows {
    const instance = new wasm.Instance(handle.module, { env: { memory: handle.memory } });
    return new SimdRows(handle.memory, handle.module, instance.exports.adamw as AdamwKernel, handle.rows, handle.dim);
  }

  get handle(): SimdRowsHandle {
    return { memory: this.memory, module: this.module, rows: this.rows, dim: this.dim };
  }

  /** The memory's current buffer (a new object after the memory grows: views are taken after `arena`). */
  get buffer(): ArrayBuffer | SharedArrayBuffer {
    return this.memory.buffer;
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

  /**
   * Makes the arena at least `bytes` long (the memory grows when it is not, and the buffer and `data` are then new
   * objects); returns its byte offset.
   * @throws {RangeError} The arena would take the memory past wasm32's 4 GiB.
   */
  arena(bytes: number): number {
    const have = this.memory.buffer.byteLength - this.arenaOffset;
    if (bytes > have) {
      const pages = Math.ceil((bytes - have) / WASM_PAGE) + FIRST_ARENA_PAGES;
      if (this.memory.buffer.byteLength + pages * WASM_PAGE > MAX_BYTES)
        throw new RangeError(`a step needing ${bytes} bytes of scratch needs more than WebAssembly's 4 GiB beside the table`);
      this.memory.grow(pages);
      this.bind();
    }
    return this.arenaOffset;
  }

  /**
   * AdamW (torch's, as optim.ts updateRowsInPlace) on touched rows [start, end): the int32 row ids at byte offset
   * `touchedAt`, their float32 gradient rows at `gradAt` (row k at gradAt + k·dim·4). Rows are independent: threads
   * may update disjoint ranges at once.
   */
  adamw(touchedAt: number, gradAt: number, start: number, end: number, s: AdamwScalars): void {
    if (end <= start) return;
    const rowBytes = this.dim * 4;
    const { b1, b2 } = s;
    this.kernel(
      0,
      rowBytes,
      2 * rowBytes,
      touchedAt + 4 * start,
      end - start,
      rowBytes,
      gradAt + start * rowBytes,
      3 * rowBytes,
      b1,
      1 - b1,
      b2,
      1 - b2,
      s.step,
      s.eps,
      s.decay,
    );
  }
}

/** AdamW's scalars of one step: the betas, the step size (lr with the bias corrections), eps and lr·weight decay. */
export interface AdamwScalars {
  b1: number;
  b2: number;
  step: number;
  eps: number;
  decay: number;
}
