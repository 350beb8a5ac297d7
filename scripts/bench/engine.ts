// Engine benchmark: training steps per second for an MLP, a transformer student and a hashed
// n-gram student, against tfjs (wasm) and PyTorch CPU in the same run, with the MatMul peak
// of ONNX Runtime on this machine as the yardstick.
import { fileURLToPath } from 'node:url';
import { Graph } from '../../src/engine/graph.js';
import * as op from '../../src/engine/ops.js';
import { createSession, ort } from '../../src/engine/session.js';
import { Trainer, type StepTrainer } from '../../src/engine/trainer.js';
import { BagTrainer } from '../../src/engine/bag-trainer.js';
import { Rng } from '../../src/engine/rng.js';
import { touchAndGather } from '../../src/engine/bag-kernels.js';
import { ceLoss, MLP, mlpModel, mlpStepFlops, NGRAM, ngramModel, TRANSFORMER, transformerModel } from './engine-models.js';
import { flag, log, median, runNodeChild, runTorchPeer } from './util.js';

/**
 * ONNX Runtime's fp32 MatMul rate for [m, k] · [k, n], best of 3 × `reps` runs. `weight`: B a constant (ONNX Runtime
 * packs it once, as it does a teacher's weights) instead of an input fed each run (a training step's parameters).
 */
export async function matmulGflops(m: number, k: number, n: number, reps: number, weight = false): Promise<number> {
  const rng = new Rng(1);
  const random = (length: number) => Float32Array.from({ length }, () => rng.normal());
  const g = new Graph();
  const a = g.input('a', 'float32', [m, k]);
  const b = weight ? g.constant(random(k * n), 'float32', [k, n], 'w') : g.input('b', 'float32', [k, n]);
  const { session } = await createSession(g.serialize({ outputs: [{ name: 'c', value: op.matmul(a, b) }] }));
  const feeds: Record<string, ort.Tensor> = { a: new ort.Tensor('float32', random(m * k), [m, k]) };
  if (!weight) feeds.b = new ort.Tensor('float32', random(k * n), [k, n]);
  for (let i = 0; i < 3; i++) await session.run(feeds);
  let best = Infinity;
  for (let r = 0; r < 3; r++) {
    const t0 = performance.now();
    for (let i = 0; i < reps; i++) await session.run(feeds);
    best = Math.min(best, (performance.now() - t0) / 1000 / reps);
  }
  await session.release();
  return (2 * m * k * n) / best / 1e9;
}

async function timeTrainer(trainer: StepTrainer, batch: () => Record<string, ort.Tensor>, warmup: number, steps: number): Promise<number> {
  for (let i = 0; i < warmup; i++) await trainer.step(batch());
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) await trainer.step(batch());
  return (performance.now() - t0) / 1000 / steps;
}

function int64(values: ArrayLike<number>, dims: number[]): ort.Tensor {
  return new ort.Tensor('int64', BigInt64Array.from(Array.from(values, (v) => BigInt(v))), dims);
}

/** Seconds per optimizer step of the MLP, `stepsPerCall` steps (each on its own batch) per ONNX Runtime call. */
async function oursMlp(steps: number, stepsPerCall = 1): Promise<number> {
  const trainer = await Trainer.create({ model: mlpModel, loss: ceLoss, optimizer: { kind: 'adamw', lr: 1e-3 }, seed: 1, stepsPerCall });
  const rng = new Rng(2);
  const batches = Array.from({ length: stepsPerCall }, () => ({
    x: new ort.Tensor(
      'float32',
      Float32Array.from({ length: MLP.batch * MLP.input }, () => rng.normal()),
      [MLP.batch, MLP.input],
    ),
    labels: int64(
      Array.from({ length: MLP.batch }, () => rng.int(2)),
      [MLP.batch],
    ),
  }));
  const calls = Math.max(1, Math.round(steps / stepsPerCall));
  for (let i = 0; i < Math.max(2, Math.round(10 / stepsPerCall)); i++) await trainer.steps(batches);
  const t0 = performance.now();
  for (let i = 0; i < calls; i++) await trainer.steps(batches);
  const s = (performance.now() - t0) / 1000 / (calls * stepsPerCall);
  await trainer.dispose();
  return s;
}

/**
 * Optimizer steps per call for the MLP: onnxruntime-node copies every output into a new buffer
 * (measured: ~1 ms for the parameters and two AdamW moments of this model), once per call.
 */
const MLP_STEPS_PER_CALL = 4;

async function oursTransformer(steps: number): Promise<number> {
  const t = TRANSFORMER;
  const trainer = await Trainer.create({ model: transformerModel, loss: ceLoss, optimizer: { kind: 'adamw', lr: 1e-3 }, seed: 1 });
  const rng = new Rng(3);
  const ids = int64(
    Array.from({ length: t.batch * t.seq }, () => rng.int(t.vocab)),
    [t.batch, t.seq],
  );
  const mask = int64(new Array(t.batch * t.seq).fill(1), [t.batch, t.seq]);
  const labels = int64(
    Array.from({ length: t.batch }, () => rng.int(2)),
    [t.batch],
  );
  const s = await timeTrainer(trainer, () => ({ input_ids: ids, attention_mask: mask, labels }), 3, steps);
  await trainer.dispose();
  return s;
}

/** N-grams an example of the n-gram case has, of its NGRAM.length positions. */
const NGRAM_USED = 40;

/** One batch of the n-gram case's positions: NGRAM_USED random ids an example, padding (id 0, masked) after them. */
function ngramPositions(rng: Rng, rows: number): { ids: Int32Array; mask: Int32Array } {
  const n = NGRAM.batch * NGRAM.length;
  const ids = new Int32Array(n);
  const mask = new Int32Array(n);
  for (let i = 0; i < n; i++)
    if (i % NGRAM.length < NGRAM_USED) {
      ids[i] = rng.int(rows);
      mask[i] = 1;
    }
  return { ids, mask };
}

/**
 * The n-gram case on a 2^log2Rows table: its trainer (the ONNX Runtime step, sparse or dense table, or the host trainer)
 * and 8 batches to cycle.
 */
async function ngramCase(
  log2Rows: number,
  sparse: boolean | 'host',
): Promise<{ trainer: StepTrainer; next: () => Record<string, ort.Tensor> }> {
  const rows = 2 ** log2Rows;
  const spec = { model: ngramModel(rows, sparse !== false), loss: ceLoss, optimizer: { kind: 'adamw', lr: 1e-3 } as const, seed: 1 };
  const bag = { table: 'ngrams', ids: 'ids', mask: 'mask', hidden: null, head: 'head', output: 'logits' };
  const trainer = sparse === 'host' ? await BagTrainer.create({ ...spec, bag }) : await Trainer.create(spec);
  const rng = new Rng(4);
  const batches = Array.from({ length: 8 }, () => {
    const { ids, mask } = ngramPositions(rng, rows);
    return {
      ids: int64(ids, [NGRAM.batch, NGRAM.length]),
      mask: int64(mask, [NGRAM.batch, NGRAM.length]),
      labels: int64(
        Array.from({ length: NGRAM.batch }, () => rng.int(2)),
        [NGRAM.batch],
      ),
    };
  });
  let k = 0;
  return { trainer, next: () => batches[k++ % batches.length]! };
}

/** Seconds per step of the n-gram case on a 2^log2Rows table (ngramCase's trainer). */
async function oursNgram(log2Rows: number, steps: number, sparse: boolean | 'host' = true): Promise<number> {
  const { trainer, next } = await ngramCase(log2Rows, sparse);
  const s = await timeTrainer(trainer, next, 5, steps);
  await trainer.dispose();
  return s;
}

/**
 * Seconds per step of the host trainer at each table size, all trainers open at once and timed in turn, a block of
 * `steps / rounds` steps each per round; the median block per size. Timed one size after the other, a load swing of
 * the machine (up to 2× within minutes on the shared VMs) fell on one size and made the spread across sizes.
 */
async function hostNgramInterleaved(sizes: readonly number[], steps: number, rounds = 5): Promise<Record<string, number>> {
  const cases = [];
  for (const s of sizes) cases.push({ s, ...(await ngramCase(s, 'host')), blocks: [] as number[] });
  const block = Math.max(1, Math.round(steps / rounds));
  try {
    for (const c of cases) for (let i = 0; i < 5; i++) await c.trainer.step(c.next());
    for (let r = 0; r < rounds; r++)
      for (const c of cases) {
        const t0 = performance.now();
        for (let i = 0; i < block; i++) await c.trainer.step(c.next());
        c.blocks.push((performance.now() - t0) / 1000 / block);
      }
  } finally {
    for (const c of cases) await c.trainer.dispose();
  }
  return Object.fromEntries(cases.map((c) => [`2^${c.s}`, median(c.blocks)]));
}

/**
 * Milliseconds to read every 64-byte line of the n-gram case's rows (ngramPositions: batch 256, each row 64
 * floats with its two AdamW moments, 768 bytes, as the host trainer keeps them) in a 2^log2Rows-row table, the median
 * of 30 batches: what this machine's caches and TLB alone charge for the rows a step touches. The rows are read as the
 * host trainer touches them (touchAndGather's slices), once; the trainer reads them twice, its forward
 * the parameters' lines, its update all of them.
 */
function rowTouchMs(log2Rows: number): number {
  const rows = 2 ** log2Rows;
  const stride = 3 * NGRAM.dim;
  const table = new Float32Array(rows * stride);
  // Every page written, as the trainer's initialization writes them.
  for (let i = 0; i < table.length; i += 1024) table[i] = 1;
  const rng = new Rng(5);
  const times: number[] = [];
  for (let r = 0; r < 35; r++) {
    const { ids, mask } = ngramPositions(rng, rows);
    const t = performance.now();
    // One position an "example": touchAndGather's slices (its touches' sums kept where the compiler cannot drop
    // them), nothing gathered.
    touchAndGather(table, stride, stride, ids, mask, 1, 0, ids.length, () => {});
    if (r >= 5) times.push(performance.now() - t);
  }
  return median(times);
}

function torchPeer(which: 'mlp' | 'transformer', steps: number): { secondsPerStep: number; torch: string } | { skipped: string } {
  return runTorchPeer('engine_torch.py', [which, String(steps), '2'], JSON.stringify({ mlp: MLP, transformer: TRANSFORMER }));
}

export async function benchEngine(args: string[]): Promise<Record<string, unknown>> {
  const quick = args.includes('--quick');
  const mlpSteps = flag(args, 'mlp-steps', quick ? 30 : 200);
  const trSteps = flag(args, 'transformer-steps', quick ? 3 : 20);

  const peaks = {
    mlp_shape: await matmulGflops(MLP.batch, MLP.input, MLP.hidden, 50),
    square_1024: await matmulGflops(1024, 1024, 1024, 5),
    wide: await matmulGflops(2048, 768, 768, 5),
  };
  const peak = Math.max(...Object.values(peaks));
  log(
    `ORT MatMul GFLOP/s: 256x768x256 ${peaks.mlp_shape.toFixed(1)}, 1024^3 ${peaks.square_1024.toFixed(1)}, 2048x768x768 ` +
      `${peaks.wide.toFixed(1)} → peak ${peak.toFixed(1)}`,
  );

  const worker = fileURLToPath(new URL('./engine-tfjs.js', import.meta.url));
  const mlpSingle = await oursMlp(mlpSteps);
  const mlpOurs = await oursMlp(mlpSteps, MLP_STEPS_PER_CALL);
  const mlpTfjs = await runNodeChild(worker, ['mlp', String(Math.max(5, Math.round(mlpSteps / 10)))]);
  const mlpTorch = torchPeer('mlp', mlpSteps);
  const mlpGflops = mlpStepFlops(MLP.batch) / mlpOurs / 1e9;
  const eps = (s: number, b: number) => b / s;
  log(
    `MLP 768→256→2, batch 256, AdamW: kd ${eps(mlpOurs, MLP.batch).toFixed(0)} ex/s with ${MLP_STEPS_PER_CALL} steps per call ` +
      `(${mlpGflops.toFixed(1)} GFLOP/s, ${((100 * mlpGflops) / peak).toFixed(0)}% of MatMul peak), ` +
      `${eps(mlpSingle, MLP.batch).toFixed(0)} ex/s with 1 ` +
      `(${((100 * mlpStepFlops(MLP.batch)) / mlpSingle / 1e9 / peak).toFixed(0)}%); tfjs-${mlpTfjs.result.backend} ` +
      `${eps(Number(mlpTfjs.result.secondsPerStep), MLP.batch).toFixed(0)} ex/s; ` +
      ('skipped' in mlpTorch
        ? `PyTorch skipped: ${mlpTorch.skipped}`
        : `PyTorch ${mlpTorch.torch} ${eps(mlpTorch.secondsPerStep, MLP.batch).toFixed(0)} ex/s`),
  );

  const trOurs = await oursTransformer(trSteps);
  const trTfjs = await runNodeChild(worker, ['transformer', String(Math.max(2, Math.round(trSteps / 4)))]);
  const trTorch = torchPeer('transformer', trSteps);
  log(
    `Transformer (2 layers, hidden 128, 2 heads, seq 64, batch 32): kd ${eps(trOurs, TRANSFORMER.batch).toFixed(1)} ex/s; ` +
      `tfjs-${trTfjs.result.backend} ${eps(Number(trTfjs.result.secondsPerStep), TRANSFORMER.batch).toFixed(1)} ex/s; ` +
      ('skipped' in trTorch
        ? `PyTorch skipped: ${trTorch.skipped}`
        : `PyTorch ${eps(trTorch.secondsPerStep, TRANSFORMER.batch).toFixed(1)} ex/s`),
  );

  const sizes = quick ? [16, 20] : [16, 18, 20, 22];
  const ngram: Record<string, number> = {};
  for (const s of sizes) {
    const sec = await oursNgram(s, quick ? 20 : 100);
    ngram[`2^${s}`] = sec;
    log(
      `hashed n-gram student, table 2^${s} x ${NGRAM.dim}, batch ${NGRAM.batch}: ${(sec * 1000).toFixed(2)} ms/step, ` +
        `${eps(sec, NGRAM.batch).toFixed(0)} ex/s`,
    );
  }
  const ngramTimes = Object.values(ngram);
  // The same steps on the host trainer (kd train's default for the n-gram student).
  const host = await hostNgramInterleaved(sizes, quick ? 20 : 100);
  for (const s of sizes) {
    const sec = host[`2^${s}`]!;
    log(
      `  host trainer, table 2^${s}: ${(sec * 1000).toFixed(2)} ms/step, ${eps(sec, NGRAM.batch).toFixed(0)} ex/s ` +
        '(the sizes timed in turn, median of 5 blocks)',
    );
  }
  const hostTimes = Object.values(host);
  // The floor under both: reading the same rows' lines, nothing else.
  const touch: Record<string, number> = {};
  for (const s of sizes) {
    touch[`2^${s}`] = rowTouchMs(s);
    log(`  reading the rows' lines alone, table 2^${s}: ${touch[`2^${s}`]!.toFixed(2)} ms per batch`);
  }
  const touchTimes = Object.values(touch);
  // The same student with a dense table: every step reads and writes the whole table.
  const dense: Record<string, number> = {};
  for (const s of quick ? [16] : [16, 18]) {
    dense[`2^${s}`] = await oursNgram(s, quick ? 5 : 10, false);
    log(`  same student, dense table 2^${s}: ${(dense[`2^${s}`]! * 1000).toFixed(2)} ms/step`);
  }
  const result = {
    bench: 'engine',
    matmul_peak_gflops: round(peak),
    mlp_steps_per_call: MLP_STEPS_PER_CALL,
    mlp_examples_per_s: Math.round(eps(mlpOurs, MLP.batch)),
    mlp_one_step_per_call_examples_per_s: Math.round(eps(mlpSingle, MLP.batch)),
    mlp_one_step_per_call_ratio_vs_tfjs: round(Number(mlpTfjs.result.secondsPerStep) / mlpSingle),
    mlp_tfjs_examples_per_s: Math.round(eps(Number(mlpTfjs.result.secondsPerStep), MLP.batch)),
    mlp_ratio_vs_tfjs: round(Number(mlpTfjs.result.secondsPerStep) / mlpOurs),
    mlp_gflops: round(mlpGflops),
    mlp_frac_of_matmul_peak: round(mlpGflops / peak, 3),
    mlp_ratio_vs_pytorch: 'skipped' in mlpTorch ? null : round(mlpTorch.secondsPerStep / mlpOurs),
    transformer_examples_per_s: round(eps(trOurs, TRANSFORMER.batch)),
    transformer_tfjs_examples_per_s: round(eps(Number(trTfjs.result.secondsPerStep), TRANSFORMER.batch)),
    transformer_ratio_vs_tfjs: round(Number(trTfjs.result.secondsPerStep) / trOurs),
    transformer_ratio_vs_pytorch: 'skipped' in trTorch ? null : round(trTorch.secondsPerStep / trOurs),
    ngram_examples_per_s: Math.round(eps(ngram['2^20'] ?? ngramTimes.at(-1)!, NGRAM.batch)),
    ngram_ms_per_step_by_table: Object.fromEntries(Object.entries(ngram).map(([k, v]) => [k, round(v * 1000, 3)])),
    ngram_step_time_spread: round(Math.max(...ngramTimes) / Math.min(...ngramTimes), 3),
    ngram_host_ms_per_step_by_table: Object.fromEntries(Object.entries(host).map(([k, v]) => [k, round(v * 1000, 3)])),
    ngram_host_step_time_spread: round(Math.max(...hostTimes) / Math.min(...hostTimes), 3),
    ngram_row_touch_ms_by_table: Object.fromEntries(Object.entries(touch).map(([k, v]) => [k, round(v, 3)])),
    ngram_row_touch_spread: round(Math.max(...touchTimes) / Math.min(...touchTimes), 3),
    ngram_dense_ms_per_step_by_table: Object.fromEntries(Object.entries(dense).map(([k, v]) => [k, round(v * 1000, 3)])),
    tfjs_backend: mlpTfjs.result.backend,
    pytorch: 'skipped' in mlpTorch ? mlpTorch.skipped : mlpTorch.torch,
  };
  log(
    `targets: MLP ≥ 25× tfjs (${result.mlp_ratio_vs_tfjs}× with ${MLP_STEPS_PER_CALL} steps per call, ` +
      `${result.mlp_one_step_per_call_ratio_vs_tfjs}× with 1), ≥ 40% of MatMul peak ` +
      `(${(100 * result.mlp_frac_of_matmul_peak).toFixed(0)}%); transformer ≥ 10× tfjs (${result.transformer_ratio_vs_tfjs}×); ` +
      `n-gram step time across table sizes within ${result.ngram_step_time_spread}× ` +
      `(host trainer ${result.ngram_host_step_time_spread}×, target ≤ 1.3×; reading the rows alone ${result.ngram_row_touch_spread}×)`,
  );
  return result;
}

function round(x: number, digits = 2): number {
  return Number(x.toFixed(digits));
}
