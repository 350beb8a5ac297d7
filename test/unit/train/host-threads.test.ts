// The host n-gram trainer on 2 threads (src/engine/bag-trainer.ts with its worker, bag-worker.ts) against 1 thread, bit for
// bit: every step's loss, terms and gradient norm and the checkpoint's every byte (parameters, both moments, step),
// for every method's loss, linear and hidden-layer models, clipping, and across a resume; a worker that fails is an
// error of the step, not a hang.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { loadSafetensors } from '../../../src/engine/safetensors.js';
import { getMethod } from '../../../src/distill/registry.js';
import { BagTrainer, MIN_SPLIT_POSITIONS } from '../../../src/engine/bag-trainer.js';
import { BagWorker } from '../../../src/engine/bag-thread.js';
import { CTRL, PHASE } from '../../../src/engine/bag-kernels.js';
import { SimdRows } from '../../../src/engine/simd-rows.js';
import { Rng } from '../../../src/engine/rng.js';
import { ort } from '../../../src/engine/session.js';
import type { OptimizerConfig } from '../../../src/engine/optim.js';
import type { LossDefinition } from '../../../src/engine/train-graph.js';
import { ngramBag, ngramFeeds, ngramStudent, type NgramStudentConfig } from '../../../src/student/ngram.js';
import { trainingGraphs } from '../../../src/train/student-run.js';
import { lossFeeds } from './loss-feeds.js';

const CLASSES = 3;
const B = 48;

interface Case {
  name: string;
  raw: Record<string, unknown>;
  transfer?: boolean;
  hidden?: number;
  clipNorm?: number;
  graphLoss?: boolean;
  /** Embedding width (default 16). */
  dim?: number;
}

/** Batches of B texts with 0–40 features, a third of them from a few rows (repeats within and across examples). */
function batches(c: Case, cfg: NgramStudentConfig, steps: number, headSize: number, seed = 5): Record<string, ort.Tensor>[] {
  const rng = new Rng(seed);
  const rows = cfg.vocabSize + cfg.buckets;
  return Array.from({ length: steps }, () => {
    const features = Array.from({ length: B }, (_, b) =>
      Int32Array.from({ length: b === 3 ? 0 : 1 + rng.int(40) }, () => (rng.uniform() < 0.3 ? rng.int(12) : rng.int(rows))),
    );
    return { ...ngramFeeds(features), ...lossFeeds(rng, c, B, CLASSES, headSize, (i) => (i % 4 === 1 ? 0 : 1)) };
  });
}

async function trainer(c: Case, threads: number) {
  const method = getMethod(c.name);
  const options = method.parse(c.raw);
  const headSize = method.headSize(options, CLASSES);
  const cfg: NgramStudentConfig = { vocabSize: 300, buckets: 2000, maxLength: 64, dim: c.dim ?? 16, hidden: c.hidden ?? 0, dropout: 0 };
  const { full, loss: graphs } = trainingGraphs(ngramStudent(cfg, headSize), method, options, CLASSES, c.transfer ?? false);
  const loss: LossDefinition = c.graphLoss ? { inputs: graphs.inputs, build: graphs.build } : graphs;
  const optimizer: OptimizerConfig = { kind: 'adamw', lr: 0.02, weightDecay: 0.1, ...(c.clipNorm ? { clipNorm: c.clipNorm } : {}) };
  const host = await BagTrainer.create({
    model: full,
    loss,
    optimizer,
    schedule: { kind: 'linear', warmupSteps: 2, totalSteps: 12 },
    seed: 3,
    bag: ngramBag(cfg)!,
    threads,
  });
  assert.equal(host.threads, threads);
  return { host, cfg, headSize };
}

/** Every tensor of a checkpoint of `t`, by name. */
function saved(t: BagTrainer, dir: string, name: string) {
  t.save(join(dir, name));
  return loadSafetensors(join(dir, name)).tensors;
}

const CASES: Case[] = [
  { name: 'ce', raw: {} },
  { name: 'kd', raw: { lambda: 0.6, tau: 2 } },
  { name: 'dtkd', raw: { alpha: 3, beta: 1, tau: 4 }, transfer: true },
  { name: 'lelp', raw: { subclasses: 2, alpha: 0.3 }, transfer: true },
  { name: 'kd', raw: { lambda: 0.6, tau: 2 }, clipNorm: 0.05 },
  // Wide enough that the backward runs on both threads too.
  { name: 'kd', raw: { lambda: 0.6, tau: 2 }, hidden: 160, clipNorm: 1 },
  { name: 'lelp', raw: { subclasses: 2, alpha: 0.3 }, hidden: 5 },
  { name: 'dtkd', raw: { alpha: 3, beta: 1, tau: 4 }, hidden: 160, graphLoss: true },
  // Rows wide enough that each thread's forward runs in slices (bag-kernels.ts touchAndGather), split differently on 1 and 2.
  { name: 'kd', raw: { lambda: 0.6, tau: 2 }, dim: 128 },
];

for (const c of CASES) {
  const label =
    `${c.name}${c.transfer ? ' with transfer rows' : ''}${c.hidden ? `, hidden ${c.hidden}` : ''}` +
    `${c.clipNorm ? `, clipped at ${c.clipNorm}` : ''}${c.graphLoss ? ', loss graph in ONNX Runtime' : ''}${c.dim ? `, dim ${c.dim}` : ''}`;
  test(`2 threads = 1 thread, bit for bit, over 6 steps: ${label}`, async () => {
    const one = await trainer(c, 1);
    const two = await trainer(c, 2);
    const steps = batches(c, one.cfg, 6, one.headSize);
    assert.ok(
      steps.every((s) => s.ngram_ids!.dims[0]! * s.ngram_ids!.dims[1]! >= MIN_SPLIT_POSITIONS),
      'the batches are split across threads',
    );
    let clipped = 0;
    for (const [k, batch] of steps.entries()) {
      const a = await one.host.step(batch);
      const b = await two.host.step(batch);
      assert.equal(b.loss, a.loss, `step ${k}: loss`);
      assert.ok(Object.is(b.gradNorm, a.gradNorm), `step ${k}: grad norm ${b.gradNorm} vs ${a.gradNorm}`);
      assert.deepEqual(b.metrics, a.metrics, `step ${k}: terms`);
      if (c.clipNorm && a.gradNorm > c.clipNorm) clipped++;
    }
    if (c.clipNorm === 0.05) assert.ok(clipped >= 4, `clipping engaged on ${clipped} of 6 steps`);
    const dir = mkdtempSync(join(tmpdir(), 'kd-host-threads-'));
    const ta = saved(one.host, dir, 'one.safetensors');
    const tb = saved(two.host, dir, 'two.safetensors');
    rmSync(dir, { recursive: true, force: true });
    assert.deepEqual([...tb.keys()].sort(), [...ta.keys()].sort());
    for (const [key, t] of ta) assert.deepEqual(tb.get(key)!.data, t.data, key);
    await one.host.dispose();
    await two.host.dispose();
  });
}

test('a run on 2 threads resumes bit-identically on 2 threads and on 1', async () => {
  const c: Case = { name: 'kd', raw: { lambda: 0.6, tau: 2 }, clipNorm: 1 };
  const straight = await trainer(c, 2);
  const steps = batches(c, straight.cfg, 8, straight.headSize, 9);
  const dir = mkdtempSync(join(tmpdir(), 'kd-host-threads-resume-'));
  for (const batch of steps.slice(0, 4)) await straight.host.step(batch);
  straight.host.save(join(dir, 'mid.safetensors'));
  for (const batch of steps.slice(4)) await straight.host.step(batch);
  const end = saved(straight.host, dir, 'straight.safetensors');
  for (const threads of [2, 1]) {
    const resumed = await trainer(c, threads);
    resumed.host.load(join(dir, 'mid.safetensors'));
    for (const batch of steps.slice(4)) await resumed.host.step(batch);
    const got = saved(resumed.host, dir, `resumed-${threads}.safetensors`);
    for (const [key, t] of end) assert.deepEqual(got.get(key)!.data, t.data, `resumed on ${threads}: ${key}`);
    await resumed.host.dispose();
  }
  rmSync(dir, { recursive: true, force: true });
  await straight.host.dispose();
});

test("int32 ids and mask (kd train's feeds for the host trainer) give the int64 feeds' bits", async () => {
  const c: Case = { name: 'kd', raw: { lambda: 0.6, tau: 2 }, clipNorm: 1 };
  const wide = await trainer(c, 2);
  const narrow = await trainer(c, 2);
  const int32 = (t: ort.Tensor) => new ort.Tensor('int32', Int32Array.from(t.data as BigInt64Array, Number), t.dims);
  for (const [k, batch] of batches(c, wide.cfg, 5, wide.headSize, 11).entries()) {
    const a = await wide.host.step(batch);
    const b = await narrow.host.step({ ...batch, ngram_ids: int32(batch.ngram_ids!), ngram_mask: int32(batch.ngram_mask!) });
    assert.equal(b.loss, a.loss, `step ${k}: loss`);
    assert.ok(Object.is(b.gradNorm, a.gradNorm), `step ${k}: grad norm`);
  }
  const dir = mkdtempSync(join(tmpdir(), 'kd-host-int32-'));
  const ta = saved(wide.host, dir, 'int64.safetensors');
  const tb = saved(narrow.host, dir, 'int32.safetensors');
  rmSync(dir, { recursive: true, force: true });
  for (const [key, t] of ta) assert.deepEqual(tb.get(key)!.data, t.data, key);
  await wide.host.dispose();
  await narrow.host.dispose();
});

test('2 threads are refused where the second thread cannot work, and the default falls back to 1 there', async () => {
  const method = getMethod('ce');
  const cfg: NgramStudentConfig = { vocabSize: 10, buckets: 10, maxLength: 8, dim: 5, hidden: 0, dropout: 0 };
  const { full, loss } = trainingGraphs(ngramStudent(cfg, CLASSES), method, method.parse({}), CLASSES);
  const options = { model: full, loss, optimizer: { kind: 'adamw', lr: 0.01 } as const, seed: 1, bag: ngramBag(cfg)! };
  await assert.rejects(
    BagTrainer.create({ ...options, threads: 2 }),
    (e: unknown) =>
      e instanceof Error &&
      e.message === 'the host trainer cannot run on 2 threads here: its width 5 is not a multiple of 4. Use threads: 1',
  );
  await assert.rejects(BagTrainer.create({ ...options, threads: 3 }), /'threads' must be 1 or 2, got 3/);
  const fallback = await BagTrainer.create(options);
  assert.equal(fallback.threads, 1);
  await fallback.dispose();
});

test("a worker's error is an error of the wait, and a worker that exited fails the next wait instead of hanging", async () => {
  const rows = SimdRows.create(64, 8, true)!;
  const worker = await BagWorker.start(rows.handle, [[8, 2]]);
  // Capacities the arena cannot hold: the worker's views of it throw.
  worker.ctrl[CTRL.POSITIONS] = 1 << 28;
  worker.ctrl[CTRL.EXAMPLES] = 1;
  worker.post(PHASE.FORWARD);
  await assert.rejects(async () => worker.wait(), /the host trainer's worker thread failed: RangeError/);
  assert.throws(() => worker.post(PHASE.FORWARD), /worker thread failed/, 'a failed worker takes no more phases');
  await worker.dispose();

  const quitting = await BagWorker.start(rows.handle, [[8, 2]]);
  quitting.post(PHASE.QUIT);
  await quitting.wait();
  // The worker has ended: this phase is never done, and the wait says so once its exit is seen (or the post does, when
  // the exit was seen already).
  await assert.rejects(async () => {
    quitting.post(PHASE.FORWARD);
    await quitting.wait();
  }, /the host trainer's worker thread exited \(code 0\)/);
  await quitting.dispose();
});
