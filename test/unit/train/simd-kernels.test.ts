// The host trainer's WebAssembly SIMD kernels (src/engine/simd-rows.ts) against the JavaScript they replace, bit for bit,
// on random data in the memory they work in: the masked mean of rows into the float64 bag (bag-kernels.ts gatherMean),
// the rows' gradients (scatterRows), and AdamW reading the float64 gradients with the clipping coefficient (the
// float32 rounding the step did before, then torch's AdamW in float32, each operation rounded as Math.fround rounds).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  arenaLayout,
  arenaViews,
  SLICE_BYTES,
  gatherMean,
  scatterRows,
  touchAndGather,
  touchedSlices,
  type ArenaShape,
  type StepArrays,
} from '../../../src/engine/bag-kernels.js';
import { SimdRows, type AdamwScalars } from '../../../src/engine/simd-rows.js';
import { Rng } from '../../../src/engine/rng.js';
import { hyperValues, updateRowsInPlace, type OptimizerConfig } from '../../../src/engine/optim.js';

const ROWS = 700;

/** The bytes of a float array: equality of these is equality of every value's bits (-0, NaN payloads included). */
const bits = (a: Float64Array | Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** SIMD rows of width `dim` with random parameters and moments, and a step's arrays in their arena. */
function setup(dim: number, B: number, T: number, rng: Rng) {
  const rows = SimdRows.create(ROWS, dim)!;
  assert.ok(rows, 'this runtime has WebAssembly SIMD');
  const normal = (n: number) => Float32Array.from({ length: n }, () => rng.normal());
  rows.write('table', normal(ROWS * dim));
  rows.write(
    'm',
    normal(ROWS * dim).map((x) => x * 1e-2),
  );
  rows.write(
    'v',
    normal(ROWS * dim).map((x) => x * x * 1e-3),
  );
  const shape: ArenaShape = { positions: B * T, examples: B, dim, layers: [[dim, 3]] };
  const layout = arenaLayout(rows.arena(arenaLayout(rows.arenaOffset, shape).bytes), shape);
  const { arrays } = arenaViews(rows.buffer, layout, shape);
  // Mask values beyond 0/1 (weights), whole examples masked out, rows repeated within and across examples.
  for (let k = 0; k < B * T; k++) {
    arrays.ids[k] = rng.uniform() < 0.3 ? rng.int(10) : rng.int(ROWS);
    arrays.mask[k] = Math.floor(k / T) === 2 ? 0 : [0, 1, 1, 1, 2, 3][rng.int(6)]!;
  }
  return { rows, layout, arrays };
}

/** AdamW's scalars for the update tests. */
const ADAMW: AdamwScalars = { b1: 0.9, b2: 0.999, step: 3.7e-3, eps: 1e-8, decay: 2e-4 };

/**
 * `count` distinct touched rows of the ROWS, shuffled, as the step's dedup gives them, and their gradients: normal
 * times 10^e, e uniform over `spread` integers from `lowest`.
 */
function touchedRows(arrays: StepArrays, count: number, dim: number, rng: Rng, spread: number, lowest: number): void {
  const order = Array.from({ length: ROWS }, (_, i) => i);
  rng.shuffle(order);
  arrays.touched.set(order.slice(0, count));
  for (let i = 0; i < count * dim; i++) arrays.rowGrad[i] = rng.normal() * 10 ** (rng.int(spread) + lowest);
}

test('the forward in slices (touchAndGather) = one gather over every example, bit for bit', () => {
  const rng = new Rng(31);
  // Rows 3 KiB wide with their moments: 5 examples of 23 positions fill a slice's budget.
  const [dim, B, T] = [256, 40, 23];
  const { rows, layout, arrays } = setup(dim, B, T, rng);
  const perSlice = Math.floor(SLICE_BYTES / (T * rows.stride * 4));
  assert.equal(perSlice, 5);
  const bag = arrays.acts[0]!;
  bag.fill(7);
  const slices: [number, number][] = [];
  touchAndGather(rows.data, rows.stride, dim, arrays.ids, arrays.mask, T, 3, B - 3, (b0, b1) => {
    slices.push([b0, b1]);
    rows.gatherMean(layout.ids, layout.mask, layout.acts[0]!, layout.scale, T, b0, b1);
  });
  // Consecutive slices that cover [3, B − 3) once, none over the budget.
  assert.deepEqual(slices, [
    [3, 8],
    [8, 13],
    [13, 18],
    [18, 23],
    [23, 28],
    [28, 33],
    [33, 37],
  ]);
  const got = bag.slice();
  bag.fill(7);
  rows.gatherMean(layout.ids, layout.mask, layout.acts[0]!, layout.scale, T, 3, B - 3);
  assert.deepEqual(bits(got), bits(bag));
  assert.equal(got[3 * dim - 1], 7, 'examples before the range are not written');
  assert.ok(got.subarray(3 * dim, 4 * dim).some((x) => x !== 7));
});

test('the update in slices (touchedSlices) = one AdamW over every touched row, bit for bit', () => {
  const rng = new Rng(37);
  // Rows 3 KiB wide with their moments: 128 rows fill a slice's budget.
  const dim = 256;
  const { rows, layout, arrays } = setup(dim, 4, 100, rng);
  const perSlice = Math.floor(SLICE_BYTES / (rows.stride * 4));
  assert.equal(perSlice, 128);
  const count = 300;
  touchedRows(arrays, count, dim, rng, 5, -2);
  const s = ADAMW;
  const before = Float32Array.from(rows.data);
  const slices: [number, number][] = [];
  touchedSlices([rows.data], rows.stride, arrays.touched, 5, count, (s0, s1) => {
    slices.push([s0, s1]);
    rows.adamw(layout.touched, layout.rowGrad, s0, s1, 0.5, s);
  });
  // Consecutive slices that cover [5, count) once, none over the budget.
  assert.deepEqual(slices, [
    [5, 133],
    [133, 261],
    [261, 300],
  ]);
  const got = Float32Array.from(rows.data);
  rows.data.set(before);
  rows.adamw(layout.touched, layout.rowGrad, 5, count, 0.5, s);
  assert.deepEqual(bits(got), bits(rows.data));
  const first = arrays.touched[0]! * rows.stride;
  assert.equal(got[first], before[first], 'rows before the range are not updated');
  const fifth = arrays.touched[5]! * rows.stride;
  assert.notEqual(got[fifth], before[fifth]);
});

test('the update in slices over separate float64 arrays (touchedSlices, updateRowsInPlace) = one update, bit for bit', () => {
  const rng = new Rng(41);
  // Float64 rows 8 KiB wide in each of three arrays (table, m, v): 16 rows fill a slice's budget.
  const [rowsTotal, dim, count] = [300, 1024, 40];
  const normal = (n: number, scale: number) => Float64Array.from({ length: n }, () => scale * rng.normal());
  const start = { table: normal(rowsTotal * dim, 1), m: normal(rowsTotal * dim, 1e-2), v: normal(rowsTotal * dim, 1e-3).map((x) => x * x) };
  const order = Array.from({ length: rowsTotal }, (_, i) => i);
  rng.shuffle(order);
  const touched = Int32Array.from(order.slice(0, count));
  const grad = normal(count * dim, 0.1);
  const o: OptimizerConfig = { kind: 'adamw', lr: 1e-2, weightDecay: 0.01 };
  const hyper = hyperValues(o, 1e-2, 3);
  const sliced = { table: start.table.slice(), m: start.m.slice(), v: start.v.slice() };
  const slices: [number, number][] = [];
  touchedSlices([sliced.table, sliced.m, sliced.v], dim, touched, 0, count, (s0, s1) => {
    slices.push([s0, s1]);
    updateRowsInPlace(
      o,
      sliced.table,
      { m: sliced.m, v: sliced.v },
      touched.subarray(s0, s1),
      dim,
      grad.subarray(s0 * dim, s1 * dim),
      hyper,
      0.01,
    );
  });
  assert.deepEqual(slices, [
    [0, 16],
    [16, 32],
    [32, 40],
  ]);
  const whole = { table: start.table.slice(), m: start.m.slice(), v: start.v.slice() };
  updateRowsInPlace(o, whole.table, { m: whole.m, v: whole.v }, touched, dim, grad, hyper, 0.01);
  for (const k of ['table', 'm', 'v'] as const) assert.deepEqual(bits(sliced[k]), bits(whole[k]), k);
  assert.notDeepEqual(bits(sliced.table), bits(start.table));
});

for (const dim of [4, 12, 32]) {
  test(`gatherMean in SIMD = the JavaScript masked mean, bit for bit (width ${dim})`, () => {
    const rng = new Rng(dim);
    const [B, T] = [9, 23];
    const { rows, layout, arrays } = setup(dim, B, T, rng);
    const bag = arrays.acts[0]!;
    // Stale values where the kernel writes: it must overwrite them, not add to them.
    bag.fill(7);
    arrays.scale.fill(7);
    rows.gatherMean(layout.ids, layout.mask, layout.acts[0]!, layout.scale, T, 1, B - 1);
    const got = { bag: bag.slice(), scale: arrays.scale.slice() };
    bag.fill(7);
    arrays.scale.fill(7);
    gatherMean(rows.data, rows.stride, dim, T, arrays, 1, B - 1);
    assert.deepEqual(bits(got.bag), bits(bag));
    assert.deepEqual(bits(got.scale), bits(arrays.scale));
    // Outside [1, B − 1) nothing is written; an example without a position counted has a zero bag and scale 1.
    assert.equal(got.bag[0], 7);
    assert.equal(got.scale[B - 1], 7);
    assert.equal(got.scale[2], 1);
    assert.ok(got.bag.subarray(2 * dim, 3 * dim).every((x) => x === 0));
    assert.ok(got.bag.subarray(dim, 2 * dim).some((x) => x !== 0 && Math.abs(x) < 10));
  });

  test(`scatterRows in SIMD = the JavaScript rows' gradients, bit for bit (width ${dim})`, () => {
    const rng = new Rng(100 + dim);
    const [B, T] = [11, 17];
    const { rows, layout, arrays } = setup(dim, B, T, rng);
    const count = 40;
    for (let k = 0; k < B * T; k++) arrays.slots[k] = rng.int(count);
    for (let b = 0; b < B; b++) arrays.scale[b] = 1 / (1 + rng.int(T));
    const dBag = arrays.grads[0]!;
    for (let i = 0; i < B * dim; i++) dBag[i] = rng.normal() * 10 ** (rng.int(7) - 3);
    const rowGrad = arrays.rowGrad;
    // Two ranges as two threads split them, and the whole; rows outside a range keep their stale values.
    for (const [s0, s1] of [
      [0, 17],
      [17, count],
      [0, count],
    ] as const) {
      rowGrad.fill(5);
      rows.scatterRows(layout.slots, layout.mask, layout.scale, layout.grads[0]!, layout.rowGrad, B, T, s0, s1);
      const got = rowGrad.slice();
      rowGrad.fill(5);
      scatterRows(arrays, B, T, dim, s0, s1);
      assert.deepEqual(bits(got), bits(rowGrad), `rows [${s0}, ${s1})`);
      assert.equal(got[s0 * dim - 1] ?? 5, 5);
      assert.equal(got[s1 * dim], 5);
      assert.ok(got.subarray(s0 * dim, s1 * dim).some((x) => x !== 0));
    }
  });

  for (const coef of [1, 0.3125]) {
    test(`AdamW in SIMD from float64 gradients = f32(grad·coef) then AdamW in float32, bit for bit (width ${dim}, coef ${coef})`, () => {
      const rng = new Rng(200 + dim);
      const { rows, layout, arrays } = setup(dim, 4, 16, rng);
      const count = 37;
      touchedRows(arrays, count, dim, rng, 9, -4);
      const s = ADAMW;
      const before = Float32Array.from(rows.data);
      const expected = Float32Array.from(before);
      const f = Math.fround;
      const [b1, c1, b2, c2, step, eps, decay] = [s.b1, 1 - s.b1, s.b2, 1 - s.b2, s.step, s.eps, s.decay].map(f) as number[];
      const updated = new Set<number>();
      for (let k = 0; k < count; k++) {
        const row = arrays.touched[k]! * rows.stride;
        updated.add(arrays.touched[k]!);
        for (let j = 0; j < dim; j++) {
          const raw = arrays.rowGrad[k * dim + j]!;
          // The conversion the step made before (bag-kernels.ts rowsToFloat32): times coef only where it clips.
          const g = f(coef < 1 ? raw * coef : raw);
          const [p, m, v] = [expected[row + j]!, expected[row + dim + j]!, expected[row + 2 * dim + j]!];
          const mn = f(f(m * b1!) + f(g * c1!));
          const vn = f(f(v * b2!) + f(f(g * g) * c2!));
          expected[row + dim + j] = mn;
          expected[row + 2 * dim + j] = vn;
          expected[row + j] = f(f(p - f(p * decay!)) - f(f(mn / f(f(Math.sqrt(vn)) + eps!)) * step!));
        }
      }
      // Two halves, as the threads split them.
      rows.adamw(layout.touched, layout.rowGrad, 0, 20, coef, s);
      rows.adamw(layout.touched, layout.rowGrad, 20, count, coef, s);
      assert.deepEqual(bits(rows.data), bits(expected));
      let changed = 0;
      for (let r = 0; r < ROWS; r++) if (rows.data[r * rows.stride] !== before[r * rows.stride]) changed++;
      assert.ok(changed > count * 0.9 && changed <= updated.size, `${changed} rows changed`);
    });
  }
}
