// The host n-gram trainer's second thread (bag-trainer.ts starts it on the SIMD rows' shared memory): it waits on the
// control block, runs its part of a step's phases (its examples' forward and backward, its touched rows' gradients and
// AdamW update) with the same functions as the main thread (bag-kernels.ts), and says it is done.
import { workerData } from 'node:worker_threads';
import {
  arenaLayouts,
  arenaViews,
  backwardExamples,
  CTRL,
  forwardLayers,
  PHASE,
  touchAndGather,
  touchedSlices,
  type ArenaLayout,
  type BagWorkerData,
  type LayerView,
  type StepArrays,
} from './bag-kernels.js';
import { SimdRows } from './simd-rows.js';

const data = workerData as BagWorkerData;
const rows = SimdRows.attach(data.handle);
const ctrl = new Int32Array(data.control, 0, CTRL.INTS);
const scalars = new Float64Array(data.control, CTRL.FLOAT_AT, CTRL.FLOATS);
const { dim: D, stride } = rows;

/** Each arena's views, taken again when the capacities or the memory's size change. */
const views: ({ key: string; layout: ArenaLayout; arrays: StepArrays; weights: LayerView[] } | null)[] = [null, null];

function arena(index: number): NonNullable<(typeof views)[number]> {
  const shape = { positions: ctrl[CTRL.POSITIONS]!, examples: ctrl[CTRL.EXAMPLES]!, dim: D, layers: data.layers };
  const buffer = rows.buffer;
  const key = `${shape.positions},${shape.examples},${buffer.byteLength}`;
  let v = views[index];
  if (v?.key !== key) {
    const layout = arenaLayouts(rows.arenaOffset, shape).layouts[index]!;
    views[index] = v = { key, layout, ...arenaViews(buffer, layout, shape) };
  }
  return v;
}

function run(phase: number): void {
  const { layout, arrays, weights } = arena(ctrl[CTRL.ARENA]!);
  const [B, T, b0, b1, s0, s1] = [CTRL.B, CTRL.T, CTRL.B0, CTRL.B1, CTRL.S0, CTRL.S1].map((i) => ctrl[i]!) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  if (phase & PHASE.FORWARD) {
    touchAndGather(rows.data, stride, D, arrays.ids, arrays.mask, T, b0, b1, (from, to) =>
      rows.gatherMean(layout.ids, layout.mask, layout.acts[0]!, layout.scale, T, from, to),
    );
    forwardLayers(weights, arrays, b0, b1);
  }
  if (phase & PHASE.BACKWARD) backwardExamples(weights, arrays, b0, b1);
  if (phase & PHASE.SCATTER) rows.scatterRows(layout.slots, layout.mask, layout.scale, layout.grads[0]!, layout.rowGrad, B, T, s0, s1);
  if (phase & PHASE.UPDATE) {
    const adam = {
      b1: scalars[CTRL.ADAM_B1]!,
      b2: scalars[CTRL.ADAM_B2]!,
      step: scalars[CTRL.ADAM_STEP]!,
      eps: scalars[CTRL.ADAM_EPS]!,
      decay: scalars[CTRL.ADAM_DECAY]!,
    };
    const coef = scalars[CTRL.COEF]!;
    touchedSlices([rows.data], stride, arrays.touched, s0, s1, (from, to) =>
      rows.adamw(layout.touched, layout.rowGrad, from, to, coef, adam),
    );
  }
}

/** The next command's sequence number: a short spin (a step's phases follow each other closely), then a sleep. */
function next(seen: number): number {
  const spinUntil = performance.now() + ctrl[CTRL.SPIN_US]! / 1000;
  for (let i = 0; ; i++) {
    const seq = Atomics.load(ctrl, CTRL.SEQ);
    if (seq !== seen) return seq;
    if ((i & 63) === 63 && performance.now() > spinUntil) {
      Atomics.wait(ctrl, CTRL.SEQ, seen);
      i = 0;
    }
  }
}

let seen = Atomics.load(ctrl, CTRL.SEQ);
data.port.postMessage({ ready: true });
for (;;) {
  seen = next(seen);
  const phase = ctrl[CTRL.PHASE]!;
  try {
    if (phase !== PHASE.QUIT) run(phase);
  } catch (e) {
    Atomics.store(ctrl, CTRL.FAILED, 1);
    data.port.postMessage({ error: e instanceof Error ? (e.stack ?? e.message) : String(e) });
  }
  Atomics.store(ctrl, CTRL.DONE, seen);
  Atomics.notify(ctrl, CTRL.DONE);
  if (phase === PHASE.QUIT) break;
}
data.port.close();
