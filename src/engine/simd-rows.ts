// The hot loops of the host n-gram trainer's step in WebAssembly SIMD, over a float32 table and its AdamW moments that
// live in one WebAssembly memory, interleaved by row ([row][parameters | m | v]: a row's three parts one contiguous span,
// one page, instead of three random places), with the step's arrays in the same memory: the masked mean of rows into
// the float64 bag, the rows' float64 gradients from the bag's, and AdamW on the touched rows (float32x4). Assembled here
// byte by byte. The float64 kernels do what bag-kernels.ts's JavaScript does, the same operations in the same order per
// element (two independent elements per f64x2, no fused multiply-add): the same bits.

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

/** Encodes a signed LEB128 integer (i32.const's immediate). */
function s32(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const byte = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (byte & 0x40) === 0) || (n === -1 && (byte & 0x40) !== 0)) return [...out, byte];
    out.push(byte | 0x80);
  }
}

/** A section: id, byte length, contents. */
const section = (id: number, body: number[]) => [id, ...u32(body.length), ...body];
const vec = (items: number[][]) => [...u32(items.length), ...items.flat()];
const name = (s: string) => [...u32(s.length), ...Array.from(s, (c) => c.charCodeAt(0))];

const I32 = 0x7f;
const F32 = 0x7d;
const F64 = 0x7c;
const V128 = 0x7b;
/** A memory access: its opcode, alignment hint 0 (any address: the hint changes no result), a constant byte offset. */
const mem =
  (code: number[]) =>
  (offset = 0) => [...code, 0x00, ...u32(offset)];
const simd = (n: number) => [0xfd, ...u32(n)];
const op = {
  block: [0x02, 0x40],
  loop: [0x03, 0x40],
  if: [0x04, 0x40],
  end: [0x0b],
  br: (d: number) => [0x0c, ...u32(d)],
  brIf: (d: number) => [0x0d, ...u32(d)],
  i32: (v: number) => [0x41, ...s32(v)],
  f64: (v: number) => [0x44, ...new Uint8Array(Float64Array.of(v).buffer)],
  i32Load: mem([0x28]),
  f64Load: mem([0x2b]),
  f64Store: mem([0x39]),
  i32Eqz: [0x45],
  i32GeU: [0x4f],
  i32Add: [0x6a],
  i32Sub: [0x6b],
  i32Mul: [0x6c],
  i32Shl: [0x74],
  f64Add: [0xa0],
  f64Mul: [0xa2],
  f64Div: [0xa3],
  f64Max: [0xa5],
  f64FromI32: [0xb7],
  v128Load: mem(simd(0x00)),
  v128Load64Zero: mem(simd(0x5d)),
  v128Store: mem(simd(0x0b)),
  v128Zero: [...simd(0x0c), ...new Array<number>(16).fill(0)],
  /** Lanes 0–7 of the first operand's bytes, then 0–7 of the second's: two f32x2 halves into one f32x4. */
  lowHalves: [...simd(0x0d), 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23],
  f32x4Splat: simd(0x13),
  f64x2Splat: simd(0x14),
  f32x4FromF64x2: simd(0x5e),
  f64x2FromF32x4: simd(0x5f),
  f32x4Sqrt: simd(0xe3),
  f32x4Add: simd(0xe4),
  f32x4Sub: simd(0xe5),
  f32x4Mul: simd(0xe6),
  f32x4Div: simd(0xe7),
  f64x2Add: simd(0xf0),
  f64x2Mul: simd(0xf2),
};

/** A function's parameters and locals by name (WebAssembly numbers them in declaration order, parameters first). */
class Fn {
  private readonly index = new Map<string, number>();

  constructor(
    readonly params: readonly [string, number][],
    readonly locals: readonly [string, number][],
  ) {
    [...params, ...locals].forEach(([n], i) => this.index.set(n, i));
  }

  private at(n: string): number[] {
    const i = this.index.get(n);
    if (i === undefined) throw new Error(`simd-rows: no local '${n}'`);
    return u32(i);
  }
  get = (n: string) => [0x20, ...this.at(n)];
  set = (n: string) => [0x21, ...this.at(n)];

  /** A loop: `v` from `from` while below `to` (unsigned, `to` read each turn), `step` a turn, `body` each turn. */
  loop(v: string, from: number[], to: number[], step: number, body: number[]): number[] {
    const advance = [...this.get(v), ...op.i32(step), ...op.i32Add, ...this.set(v)];
    const test = [...this.get(v), ...to, ...op.i32GeU, ...op.brIf(1)];
    return [...from, ...this.set(v), ...op.block, ...op.loop, ...test, ...body, ...advance, ...op.br(0), ...op.end, ...op.end];
  }
  /** `base + index · scale` (i32). */
  addr = (base: string, index: number[], scale: number[]) => [...this.get(base), ...index, ...scale, ...op.i32Mul, ...op.i32Add];

  type(): number[] {
    return [0x60, ...vec(this.params.map(([, t]) => [t])), ...u32(0)];
  }
  body(code: number[]): number[] {
    const body = [...vec(this.locals.map(([, t]) => [...u32(1), t])), ...code, ...op.end];
    return [...u32(body.length), ...body];
  }
}

const params = (names: string, type: number) => names.split(' ').map((n): [string, number] => [n, type]);

// gatherMean(table, stride, ids, mask, T, b0, b1, bag, scale, rowBytes): byte offsets (row 0's parameters, ids[0],
// mask[0], bag[0], scale[0]), a row's step in bytes, a bag row's bytes (dim · 8). bag-kernels.ts gatherMean in f64x2.
const gather = new Fn(params('table stride ids mask T b0 b1 bag scale rowBytes', I32), [
  ...params('b k kEnd out outEnd p q w', I32),
  ...params('count s', F64),
  ...params('wv sv', V128),
]);
function gatherBody(): number[] {
  const f = gather;
  const { get, set } = f;
  const scaledAdd = (offset: number) => [
    // bag[j] += w · table[row + j], two elements: the table's two float32 widened (exactly) to float64.
    ...get('p'),
    ...get('p'),
    ...op.v128Load(offset),
    ...get('wv'),
    ...get('q'),
    ...op.v128Load64Zero(offset / 2),
    ...op.f64x2FromF32x4,
    ...op.f64x2Mul,
    ...op.f64x2Add,
    ...op.v128Store(offset),
  ];
  const position = [
    ...op.block,
    ...[...f.addr('mask', get('k'), op.i32(4)), ...op.i32Load(), ...set('w'), ...get('w'), ...op.i32Eqz, ...op.brIf(0)],
    ...[...get('count'), ...get('w'), ...op.f64FromI32, ...op.f64Add, ...set('count')],
    ...[...get('w'), ...op.f64FromI32, ...op.f64x2Splat, ...set('wv')],
    ...[...get('table'), ...f.addr('ids', get('k'), op.i32(4)), ...op.i32Load(), ...get('stride'), ...op.i32Mul, ...op.i32Add, ...set('q')],
    ...f.loop('p', get('out'), get('outEnd'), 32, [
      ...scaledAdd(0),
      ...scaledAdd(16),
      ...[...get('q'), ...op.i32(16), ...op.i32Add, ...set('q')],
    ]),
    ...op.end,
  ];
  const example = [
    ...[...f.addr('bag', get('b'), get('rowBytes')), ...set('out')],
    ...[...get('out'), ...get('rowBytes'), ...op.i32Add, ...set('outEnd')],
    ...f.loop('p', get('out'), get('outEnd'), 16, [...get('p'), ...op.v128Zero, ...op.v128Store()]),
    ...[...op.f64(0), ...set('count')],
    ...[...get('b'), ...get('T'), ...op.i32Mul, ...get('T'), ...op.i32Add, ...set('kEnd')],
    ...f.loop('k', [...get('b'), ...get('T'), ...op.i32Mul], get('kEnd'), 1, position),
    // s = 1 / max(count, 1); bag[j] *= s.
    ...[...op.f64(1), ...get('count'), ...op.f64(1), ...op.f64Max, ...op.f64Div, ...set('s')],
    ...[...f.addr('scale', get('b'), op.i32(8)), ...get('s'), ...op.f64Store()],
    ...[...get('s'), ...op.f64x2Splat, ...set('sv')],
    ...f.loop('p', get('out'), get('outEnd'), 16, [
      ...get('p'),
      ...get('p'),
      ...op.v128Load(),
      ...get('sv'),
      ...op.f64x2Mul,
      ...op.v128Store(),
    ]),
  ];
  return f.body(f.loop('b', get('b0'), get('b1'), 1, example));
}

// scatterRows(slots, mask, scale, dBag, rowGrad, B, T, rowBytes, s0, s1): byte offsets (slots[0], mask[0], scale[0],
// dBag[0], rowGrad[0]), a row's bytes (dim · 8), the touched rows [s0, s1). bag-kernels.ts scatterRows in f64x2.
const scatter = new Fn(params('slots mask scale dBag rowGrad B T rowBytes s0 s1', I32), [
  ...params('b k kEnd p pEnd q w slot span', I32),
  ...params('sc', F64),
  ...params('fv', V128),
]);
function scatterBody(): number[] {
  const f = scatter;
  const { get, set } = f;
  const scaledAdd = (offset: number) => [
    // rowGrad[at + j] += f · dBag[src + j], two elements.
    ...get('p'),
    ...get('p'),
    ...op.v128Load(offset),
    ...get('fv'),
    ...get('q'),
    ...op.v128Load(offset),
    ...op.f64x2Mul,
    ...op.f64x2Add,
    ...op.v128Store(offset),
  ];
  const position = [
    ...op.block,
    ...[...f.addr('mask', get('k'), op.i32(4)), ...op.i32Load(), ...set('w'), ...get('w'), ...op.i32Eqz, ...op.brIf(0)],
    // A slot outside [s0, s1) is another thread's (slot − s0 wraps to above the span below s0).
    ...[...f.addr('slots', get('k'), op.i32(4)), ...op.i32Load(), ...set('slot')],
    ...[...get('slot'), ...get('s0'), ...op.i32Sub, ...get('span'), ...op.i32GeU, ...op.brIf(0)],
    ...[...get('w'), ...op.f64FromI32, ...get('sc'), ...op.f64Mul, ...op.f64x2Splat, ...set('fv')],
    ...[...f.addr('rowGrad', get('slot'), get('rowBytes')), ...set('p')],
    ...[...get('p'), ...get('rowBytes'), ...op.i32Add, ...set('pEnd')],
    ...[...f.addr('dBag', get('b'), get('rowBytes')), ...set('q')],
    ...f.loop('p', get('p'), get('pEnd'), 32, [...scaledAdd(0), ...scaledAdd(16), ...get('q'), ...op.i32(32), ...op.i32Add, ...set('q')]),
    ...op.end,
  ];
  const example = [
    ...[...f.addr('scale', get('b'), op.i32(8)), ...op.f64Load(), ...set('sc')],
    ...[...get('b'), ...get('T'), ...op.i32Mul, ...get('T'), ...op.i32Add, ...set('kEnd')],
    ...f.loop('k', [...get('b'), ...get('T'), ...op.i32Mul], get('kEnd'), 1, position),
  ];
  return f.body([
    ...[...f.addr('rowGrad', get('s1'), get('rowBytes')), ...set('pEnd')],
    ...f.loop('p', f.addr('rowGrad', get('s0'), get('rowBytes')), get('pEnd'), 16, [...get('p'), ...op.v128Zero, ...op.v128Store()]),
    ...[...get('s1'), ...get('s0'), ...op.i32Sub, ...set('span')],
    ...f.loop('b', op.i32(0), get('B'), 1, example),
  ]);
}

// adamw(table, m, v, touched, count, rowBytes, grad, stride, b1, c1, b2, c2, step, eps, decay, coef, scaled): byte
// offsets (of row 0's parameters and moments, of the touched ids, of their float64 gradient rows), a row's float32
// bytes, the bytes from one row to the next, f32 scalars, the clipping coefficient and whether it applies (coef < 1).
const adamw = new Fn(
  [
    ...params('table m v touched count rowBytes grad stride', I32),
    ...params('b1 c1 b2 c2 step eps decay', F32),
    ['coef', F64],
    ['scaled', I32],
  ],
  [...params('k j row gradRow g64', I32), ...params('sb1 sc1 sb2 sc2 sstep seps sdecay scoef g lo hi mn vn p', V128)],
);
/** Per touched row k, per 16 bytes j of it: its gradient (clipped, rounded to f32), torch's AdamW in f32x4. */
function adamwBody(): number[] {
  const f = adamw;
  const { get, set } = f;
  const at = (base: string) => [...get(base), ...get('row'), ...op.i32Add, ...get('j'), ...op.i32Add];
  const splats = ['b1', 'c1', 'b2', 'c2', 'step', 'eps', 'decay'].flatMap((s) => [...get(s), ...op.f32x4Splat, ...set(`s${s}`)]);
  const element = [
    // g = f32(grad · coef) where coef < 1, else f32(grad) (bag-kernels.ts's conversion), four elements from 32 bytes.
    ...[...get('gradRow'), ...get('j'), ...op.i32(1), ...op.i32Shl, ...op.i32Add, ...set('g64')],
    ...[...get('g64'), ...op.v128Load(0), ...set('lo'), ...get('g64'), ...op.v128Load(16), ...set('hi')],
    ...[...get('scaled'), ...op.if],
    ...[...get('lo'), ...get('scoef'), ...op.f64x2Mul, ...set('lo'), ...get('hi'), ...get('scoef'), ...op.f64x2Mul, ...set('hi')],
    ...op.end,
    ...[...get('lo'), ...op.f32x4FromF64x2, ...get('hi'), ...op.f32x4FromF64x2, ...op.lowHalves, ...set('g')],
    // m' = m·b1 + g·(1 − b1)
    ...[
      ...at('m'),
      ...op.v128Load(),
      ...get('sb1'),
      ...op.f32x4Mul,
      ...get('g'),
      ...get('sc1'),
      ...op.f32x4Mul,
      ...op.f32x4Add,
      ...set('mn'),
    ],
    // v' = v·b2 + g·g·(1 − b2)
    ...[...at('v'), ...op.v128Load(), ...get('sb2'), ...op.f32x4Mul, ...get('g'), ...get('g'), ...op.f32x4Mul, ...get('sc2')],
    ...[...op.f32x4Mul, ...op.f32x4Add, ...set('vn')],
    ...[...at('m'), ...get('mn'), ...op.v128Store(), ...at('v'), ...get('vn'), ...op.v128Store()],
    // p' = p − p·decay − (m' / (√v' + eps))·step
    ...[...at('table'), ...op.v128Load(), ...set('p')],
    ...[...at('table'), ...get('p'), ...get('p'), ...get('sdecay'), ...op.f32x4Mul, ...op.f32x4Sub],
    ...[...get('mn'), ...get('vn'), ...op.f32x4Sqrt, ...get('seps'), ...op.f32x4Add, ...op.f32x4Div, ...get('sstep'), ...op.f32x4Mul],
    ...[...op.f32x4Sub, ...op.v128Store()],
  ];
  const row = [
    // row = touched[k] · stride; gradRow = grad + k · rowBytes · 2 (float64 rows).
    ...[...f.addr('touched', get('k'), op.i32(4)), ...op.i32Load(), ...get('stride'), ...op.i32Mul, ...set('row')],
    ...[...f.addr('grad', get('k'), [...get('rowBytes'), ...op.i32(1), ...op.i32Shl]), ...set('gradRow')],
    ...f.loop('j', op.i32(0), get('rowBytes'), 16, element),
  ];
  return f.body([...splats, ...get('coef'), ...op.f64x2Splat, ...set('scoef'), ...f.loop('k', op.i32(0), get('count'), 1, row)]);
}

/** The kernels, in the module's function order. */
const KERNELS = [
  { name: 'adamw', fn: adamw, body: adamwBody },
  { name: 'gatherMean', fn: gather, body: gatherBody },
  { name: 'scatterRows', fn: scatter, body: scatterBody },
] as const;

/** The module, importing a plain memory, or a shared one (limits flag 3: shared, with a maximum: wasm32's 65536 pages). */
function moduleBytes(shared: boolean): Uint8Array {
  const limits = shared ? [0x03, ...u32(1), ...u32(65536)] : [0x00, ...u32(1)];
  return Uint8Array.from([
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...section(1, vec(KERNELS.map((k) => k.fn.type()))),
    ...section(2, vec([[...name('env'), ...name('memory'), 0x02, ...limits]])),
    ...section(3, vec(KERNELS.map((_, i) => u32(i)))),
    ...section(7, vec(KERNELS.map((k, i) => [...name(k.name), 0x00, ...u32(i)]))),
    ...section(10, vec(KERNELS.map((k) => k.body()))),
  ]);
}

type Kernel = (...args: number[]) => void;
type Kernels = Record<(typeof KERNELS)[number]['name'], Kernel>;

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
    private readonly kernels: Kernels,
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
    const kernels = Object.fromEntries(KERNELS.map((k) => [k.name, instance.exports[k.name] as Kernel])) as Kernels;
    return new SimdRows(handle.memory, handle.module, kernels, handle.rows, handle.dim);
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
   * The masked mean of examples [b0, b1)'s rows into the float64 bag (bag-kernels.ts gatherMean's arithmetic and
   * bits): the positions' int32 row ids and mask at byte offsets `idsAt`, `maskAt` (example b's T positions from b·T),
   * the bag [B, dim] at `bagAt`, each example's 1 / max(Σ mask, 1) into the float64 `scaleAt`.
   */
  gatherMean(idsAt: number, maskAt: number, bagAt: number, scaleAt: number, T: number, b0: number, b1: number): void {
    if (b1 <= b0) return;
    this.kernels.gatherMean(0, this.stride * 4, idsAt, maskAt, T, b0, b1, bagAt, scaleAt, this.dim * 8);
  }

  /**
   * The float64 gradients of touched rows [s0, s1) from the bag's, over all B examples' positions in order
   * (bag-kernels.ts scatterRows' arithmetic and bits): int32 slots and mask at `slotsAt`, `maskAt`, the float64 scale
   * [B], d(loss)/d(bag) [B, dim] and the rows' gradients [touched, dim] at `scaleAt`, `dBagAt`, `rowGradAt`.
   */
  scatterRows(
    slotsAt: number,
    maskAt: number,
    scaleAt: number,
    dBagAt: number,
    rowGradAt: number,
    B: number,
    T: number,
    s0: number,
    s1: number,
  ): void {
    if (s1 <= s0) return;
    this.kernels.scatterRows(slotsAt, maskAt, scaleAt, dBagAt, rowGradAt, B, T, this.dim * 8, s0, s1);
  }

  /**
   * AdamW (torch's, as optim.ts updateRowsInPlace, in float32) on touched rows [start, end): the int32 row ids at byte
   * offset `touchedAt`, their float64 gradient rows at `gradAt` (row k at gradAt + k·dim·8), each times `coef` where
   * it is below 1 (clipping), then rounded to float32. Rows are independent: threads may update disjoint ranges at once.
   */
  adamw(touchedAt: number, gradAt: number, start: number, end: number, coef: number, s: AdamwScalars): void {
    if (end <= start) return;
    const rowBytes = this.dim * 4;
    const { b1, b2 } = s;
    this.kernels.adamw(
      0,
      rowBytes,
      2 * rowBytes,
      touchedAt + 4 * start,
      end - start,
      rowBytes,
      gradAt + start * 2 * rowBytes,
      3 * rowBytes,
      b1,
      1 - b1,
      b2,
      1 - b2,
      s.step,
      s.eps,
      s.decay,
      coef,
      coef < 1 ? 1 : 0,
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
