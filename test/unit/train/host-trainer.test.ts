// The host n-gram trainer (src/engine/bag-trainer.ts) against the ONNX Runtime step (src/engine/trainer.ts) on the same
// batches: loss, terms, gradient norm and every parameter and optimizer-state row after each step, for every method's
// loss (ce, kd, dtkd, lelp), with transfer rows, a hidden layer, clipping and weight decay; and bit-identical resume.
// The methods' host losses (engine/host-losses.ts) against their ONNX loss graphs: loss, terms and d(loss)/d(head).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { loadSafetensors } from '../../../src/engine/safetensors.js';
import { getMethod, METHODS } from '../../../src/distill/registry.js';
import { createSession } from '../../../src/engine/session.js';
import type { LossDefinition } from '../../../src/engine/train-graph.js';
import { Trainer } from '../../../src/engine/trainer.js';
import { BagTrainer, lossGraph } from '../../../src/engine/bag-trainer.js';
import { Rng } from '../../../src/engine/rng.js';
import { ort } from '../../../src/engine/session.js';
import type { OptimizerConfig, ScheduleConfig } from '../../../src/engine/optim.js';
import { ngramBag, ngramFeeds, ngramStudent, type NgramStudentConfig } from '../../../src/student/ngram.js';
import { chooseTrainer, trainingGraphs } from '../../../src/train/student-run.js';
import { OptionError } from '../../../src/errors.js';
import { f32, lossFeeds } from './loss-feeds.js';

const CLASSES = 3;

interface Case {
  name: string;
  raw: Record<string, unknown>;
  transfer?: boolean;
  hidden?: number;
  clipNorm?: number;
  /** Embedding width: a multiple of 4 takes the WebAssembly SIMD update (simd-rows.ts), another the JavaScript one. */
  dim?: number;
  /** SGD with momentum and decay instead of AdamW (the JavaScript row update). */
  sgd?: boolean;
  /** The loss without its host form: the host trainer runs the loss graph in ONNX Runtime. */
  graphLoss?: boolean;
}

/** Random batches: 1–9 features per text (an empty one too), ids drawn from a few rows so that rows repeat. */
function batches(c: Case, cfg: NgramStudentConfig, steps: number, headSize: number): Record<string, ort.Tensor>[] {
  const rng = new Rng(7);
  const rows = cfg.vocabSize + cfg.buckets;
  return Array.from({ length: steps }, () => {
    const B = 6;
    const features = Array.from({ length: B }, (_, b) =>
      Int32Array.from({ length: b === 2 ? 0 : 1 + rng.int(9) }, () => (rng.uniform() < 0.5 ? rng.int(8) : rng.int(rows))),
    );
    const labelled = [1, 0, 1, 1, 0, 1];
    return { ...ngramFeeds(features), ...lossFeeds(rng, c, B, CLASSES, headSize, (i) => labelled[i]!) };
  });
}

async function pair(c: Case, optimizer: OptimizerConfig, schedule: ScheduleConfig) {
  const method = getMethod(c.name);
  const options = method.parse(c.raw);
  const headSize = method.headSize(options, CLASSES);
  const cfg: NgramStudentConfig = { vocabSize: 40, buckets: 61, maxLength: 16, dim: c.dim ?? 8, hidden: c.hidden ?? 0, dropout: 0 };
  const { full, loss: graphs } = trainingGraphs(ngramStudent(cfg, headSize), method, options, CLASSES, c.transfer ?? false);
  assert.ok(graphs.host, `${c.name} has a host loss`);
  const loss: LossDefinition = c.graphLoss ? { inputs: graphs.inputs, build: graphs.build } : graphs;
  const common = { model: full, loss, optimizer, schedule, seed: 3 };
  const ortTrainer = await Trainer.create(common);
  const host = await BagTrainer.create({ ...common, bag: ngramBag(cfg)! });
  return { ortTrainer, host, cfg, headSize };
}

const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]! - b[i]!));
  return d;
};

const CASES: Case[] = [
  { name: 'ce', raw: {} },
  { name: 'kd', raw: { lambda: 0.6, tau: 2 } },
  { name: 'dtkd', raw: { alpha: 3, beta: 1, tau: 4 } },
  { name: 'lelp', raw: { subclasses: 2, alpha: 0.3 } },
  { name: 'kd', raw: { lambda: 0.6, tau: 2 }, transfer: true },
  { name: 'dtkd', raw: { alpha: 3, beta: 1, tau: 4 }, transfer: true },
  { name: 'lelp', raw: { subclasses: 2, alpha: 0.3 }, transfer: true },
  { name: 'kd', raw: { lambda: 0.6, tau: 2 }, hidden: 7 },
  { name: 'kd', raw: { lambda: 0.6, tau: 2 }, dim: 5 },
  { name: 'kd', raw: { lambda: 0.6, tau: 2 }, graphLoss: true },
  { name: 'dtkd', raw: { alpha: 3, beta: 1, tau: 4 }, transfer: true, graphLoss: true },
  { name: 'kd', raw: { lambda: 0.6, tau: 2 }, sgd: true, hidden: 3 },
  { name: 'dtkd', raw: { alpha: 3, beta: 1, tau: 4 }, transfer: true, dim: 5, hidden: 3 },
  { name: 'lelp', raw: { subclasses: 2, alpha: 0.3 }, hidden: 4, transfer: true, clipNorm: 0.05 },
];

for (const c of CASES) {
  const label =
    `${c.name}${c.transfer ? ' with transfer rows' : ''}${c.hidden ? `, hidden ${c.hidden}` : ''}` +
    `${c.clipNorm ? ', clipped' : ''}${c.sgd ? ', SGD' : ''}${c.graphLoss ? ', loss graph in ONNX Runtime' : ''}` +
    `, dim ${c.dim ?? 8}`;
  test(`host trainer = ONNX Runtime step: ${label}`, async () => {
    const optimizer: OptimizerConfig = c.sgd
      ? { kind: 'sgd', lr: 0.05, momentum: 0.9, weightDecay: 0.1, clipNorm: 1 }
      : { kind: 'adamw', lr: 0.02, weightDecay: 0.1, clipNorm: c.clipNorm ?? 1 };
    const schedule: ScheduleConfig = { kind: 'linear', warmupSteps: 2, totalSteps: 12 };
    const { ortTrainer, host, cfg, headSize } = await pair(c, optimizer, schedule);
    for (const spec of ortTrainer.store.specs) assert.deepEqual(host.store.get(spec.name), ortTrainer.store.get(spec.name), spec.name);
    let clipped = 0;
    for (const [k, batch] of batches(c, cfg, 8, headSize).entries()) {
      const a = await ortTrainer.step(batch);
      const b = await host.step(batch);
      const rel = (x: number, y: number) => Math.abs(x - y) / Math.max(1, Math.abs(y));
      assert.ok(rel(b.loss, a.loss) < 2e-6, `step ${k}: loss ${b.loss} vs ${a.loss}`);
      assert.ok(rel(b.gradNorm, a.gradNorm) < 2e-5, `step ${k}: grad norm ${b.gradNorm} vs ${a.gradNorm}`);
      if (a.gradNorm > optimizer.clipNorm!) clipped++;
      assert.equal(b.lr, a.lr);
      assert.deepEqual(Object.keys(b.metrics), Object.keys(a.metrics));
      for (const m of Object.keys(a.metrics)) assert.ok(rel(Number(b.metrics[m]), Number(a.metrics[m])) < 2e-6, `step ${k}: ${m}`);
      for (const spec of ortTrainer.store.specs) {
        const d = maxDiff(host.store.get(spec.name), ortTrainer.store.get(spec.name));
        assert.ok(d < 2e-6, `step ${k}: ${spec.name} differs by ${d}`);
      }
    }
    if (c.clipNorm) assert.ok(clipped >= 4, `clipping engaged on ${clipped} of 8 steps`);
    // Optimizer state too: both checkpoints hold the same tensors under the same names, equal within the tolerance.
    const dir = mkdtempSync(join(tmpdir(), 'kd-host-trainer-'));
    ortTrainer.save(join(dir, 'ort.safetensors'));
    host.save(join(dir, 'host.safetensors'));
    const saved = loadSafetensors(join(dir, 'ort.safetensors')).tensors;
    const hostSaved = loadSafetensors(join(dir, 'host.safetensors')).tensors;
    rmSync(dir, { recursive: true, force: true });
    assert.deepEqual([...hostSaved.keys()].sort(), [...saved.keys()].sort());
    for (const [key, t] of saved)
      if (key.startsWith('opt/')) assert.ok(maxDiff(hostSaved.get(key)!.data as Float32Array, t.data as Float32Array) < 2e-6, key);
    // The same logits from both (evaluation through the model's graph).
    const probe = batches(c, cfg, 1, headSize)[0]!;
    const la = (await ortTrainer.evaluate(probe, ['logits'])).logits!.data as Float32Array;
    const lb = (await host.evaluate(probe, ['logits'])).logits!.data as Float32Array;
    assert.ok(maxDiff(la, lb) < 1e-5);
    await ortTrainer.dispose();
    await host.dispose();
  });
}

test('kd train picks the host trainer for the n-gram student on CPU, the ORT step elsewhere, and refuses --trainer host there', () => {
  const bag = ngramBag({ vocabSize: 10, buckets: 10, maxLength: 8, dim: 4, hidden: 0, dropout: 0 });
  assert.equal(chooseTrainer({ student: 'ngram' }, bag).kind, 'host');
  assert.equal(chooseTrainer({ student: 'ngram', trainer: 'ort' }, bag).kind, 'ort');
  assert.equal(chooseTrainer({ student: 'ngram', session: { device: 'cuda' } }, bag).kind, 'ort');
  assert.equal(chooseTrainer({ student: 'transformer' }, null).kind, 'ort');
  assert.equal(ngramBag({ vocabSize: 10, buckets: 10, maxLength: 8, dim: 4, hidden: 0, dropout: 0.1 }), null, 'dropout: no host form');
  assert.throws(
    () => chooseTrainer({ student: 'ngram', trainer: 'host', session: { device: 'cuda' } }, bag),
    (e: unknown) =>
      e instanceof OptionError &&
      e.message ===
        "'--trainer host' cannot train this run: it runs on the CPU, this run asks for --device cuda. Use --trainer ort (or auto)",
  );
  assert.throws(() => chooseTrainer({ student: 'transformer', trainer: 'host' }, null), /the transformer student has no host form/);
});

/** Method options of the host-loss checks: every method, each option that changes the loss's form. */
const LOSS_CASES: { name: string; raw: Record<string, unknown> }[] = [
  { name: 'ce', raw: {} },
  { name: 'kd', raw: { lambda: 0.6, tau: 2 } },
  { name: 'kd', raw: { lambda: 0.3, tau: 0.5 } },
  { name: 'dtkd', raw: { alpha: 3, beta: 1, tau: 4 } },
  { name: 'dtkd', raw: { alpha: 2, beta: 0.5, tau: 1, dtkdGuard: 'fallback' } },
  { name: 'lelp', raw: { subclasses: 1, alpha: 0.3 } },
  { name: 'lelp', raw: { subclasses: 3, alpha: 0 } },
];

/**
 * A batch of heads with the rows that take the losses' other branches: ties for the max, a row whose logits and the
 * teacher's are all negative (DTKD's temperatures fall back to τ), a far sharper teacher (clamped temperatures).
 */
function lossBatch(B: number, H: number, transfer: boolean, rng: Rng) {
  const normal = (n: number, s: number) => Array.from({ length: n }, () => s * (rng.uniform() - 0.5));
  const head = Float32Array.from(normal(B * H, 6));
  const teacher = Float32Array.from(normal(B * CLASSES, 6));
  head.fill(0.25, 0, H); // ties
  for (let c = 0; c < H; c++) head[H + c] = -2 - c; // all negative ...
  for (let c = 0; c < CLASSES; c++) teacher[CLASSES + c] = -1 - c; // ... as the teacher's
  for (let c = 0; c < CLASSES; c++) teacher[2 * CLASSES + c] = c === 0 ? 9 : -9; // sharp teacher
  for (let c = 0; c < H; c++) head[2 * H + c] = 0.05 * c;
  // Elsewhere x + y (the maxima, DTKD's denominator) kept off 0: in float32 its cancellation there leaves the graph's own
  // gradient with few exact digits under the unclamped guard (temperatures of ±50 and more).
  for (let i = 3; i < B; i++) {
    let x = -Infinity;
    let y = -Infinity;
    for (let c = 0; c < CLASSES; c++) x = Math.max(x, teacher[i * CLASSES + c]!);
    for (let c = 0; c < H; c++) y = Math.max(y, head[i * H + c]!);
    if (Math.abs(x + y) < 1) for (let c = 0; c < H; c++) head[i * H + c] += 2;
  }
  const q = Array.from({ length: B }, () => {
    const e = normal(H, 4).map(Math.exp);
    const s = e.reduce((a, v) => a + v, 0);
    return e.map((v) => v / s);
  }).flat();
  const labelled = Array.from({ length: B }, (_, i) => (transfer && i % 3 === 1 ? 0 : 1));
  const feeds: Record<string, ort.Tensor> = {
    labels: new ort.Tensor(
      'int64',
      BigInt64Array.from(labelled, (l) => BigInt(l ? rng.int(CLASSES) : -1)),
      [B],
    ),
    teacher_logits: new ort.Tensor('float32', teacher, [B, CLASSES]),
    kd_lambda: f32([0.6], []),
    dtkd_weight: f32([0.7], []),
    lelp_weight: f32([1], []),
    lelp_targets: f32(q, [B, H]),
  };
  if (transfer) {
    feeds.labelled = f32(labelled, [B]);
    feeds.transfer_weight = f32([0.8], []);
  }
  return { head, feeds };
}

for (const c of LOSS_CASES)
  for (const transfer of getMethod(c.name).transfer ? [false, true] : [false]) {
    const label = `${c.name} ${JSON.stringify(c.raw)}${transfer ? ' with transfer rows' : ''}`;
    test(`host loss = the method's ONNX loss graph (loss, terms, d(loss)/d(head)): ${label}`, async () => {
      const method = getMethod(c.name);
      const options = method.parse(c.raw);
      const H = method.headSize(options, CLASSES);
      const cfg: NgramStudentConfig = { vocabSize: 10, buckets: 10, maxLength: 8, dim: 4, hidden: 0, dropout: 0 };
      const { loss } = trainingGraphs(ngramStudent(cfg, H), method, options, CLASSES, transfer);
      const { session } = await createSession(lossGraph(loss, 'float32', 'batch_size', 'head', H), { threads: 1 });
      const rng = new Rng(11);
      for (let trial = 0; trial < 4; trial++) {
        const B = 9;
        const { head, feeds } = lossBatch(B, H, transfer, rng);
        const out = await session.run({
          head: new ort.Tensor('float32', head, [B, H]),
          ...Object.fromEntries(session.inputNames.filter((n) => n !== 'head').map((n) => [n, feeds[n]!])),
        });
        const grad = new Float64Array(B * H);
        const host = loss.host!({ z: Float64Array.from(head), B, H, grad }, feeds);
        const close = (a: number, b: number, what: string) =>
          assert.ok(Math.abs(a - b) <= 1e-5 * Math.max(1, Math.abs(b)), `trial ${trial}: ${what} ${a} vs ${b}`);
        close(host.loss, Number(out.loss!.data[0]), 'loss');
        const names = session.outputNames.filter((n) => n.startsWith('metric/')).map((n) => n.slice(7));
        assert.deepEqual(Object.keys(host.metrics), names);
        for (const m of names) close(host.metrics[m]!, Number(out[`metric/${m}`]!.data[0]), m);
        const g = out['grad/head']!.data as Float32Array;
        const scale = Math.max(1, ...Array.from(g, Math.abs));
        assert.ok(maxDiff(grad, g) <= 1e-5 * scale, `trial ${trial}: d(loss)/d(head) differs by ${maxDiff(grad, g)}`);
      }
      await session.release();
    });
  }

test('every method in the registry has a host loss, with and without transfer rows', () => {
  for (const [name, method] of Object.entries(METHODS)) {
    assert.ok(method.host, `${name} has a host form`);
    assert.equal(Boolean(method.host.transfer), Boolean(method.transfer), `${name}: a host transfer loss where it has a transfer loss`);
  }
});

test('the interleaved rows (parameters and moments of a row together) resume bit-identically and keep writes to the store', async () => {
  const c: Case = { name: 'kd', raw: { lambda: 0.6, tau: 2 } };
  const optimizer: OptimizerConfig = { kind: 'adamw', lr: 0.02, weightDecay: 0.1, clipNorm: 1 };
  const schedule: ScheduleConfig = { kind: 'linear', warmupSteps: 2, totalSteps: 12 };
  const a = await pair(c, optimizer, schedule);
  const b = await pair(c, optimizer, schedule);
  const steps = batches(c, a.cfg, 8, a.headSize);
  const dir = mkdtempSync(join(tmpdir(), 'kd-host-rows-'));
  for (const batch of steps.slice(0, 4)) (await a.host.step(batch), await a.ortTrainer.step(batch));
  a.host.save(join(dir, 'host.safetensors'));
  // A fresh trainer loaded from the checkpoint takes the same steps to the same bytes (parameters and both moments).
  b.host.load(join(dir, 'host.safetensors'));
  for (const batch of steps.slice(4)) (await a.host.step(batch), await b.host.step(batch), await a.ortTrainer.step(batch));
  a.host.save(join(dir, 'a.safetensors'));
  b.host.save(join(dir, 'b.safetensors'));
  const ta = loadSafetensors(join(dir, 'a.safetensors')).tensors;
  const tb = loadSafetensors(join(dir, 'b.safetensors')).tensors;
  assert.ok(
    [...ta.keys()].some((k) => k.startsWith('opt/') && k.includes('ngram')),
    'the table has moments in the checkpoint',
  );
  for (const [key, t] of ta) assert.deepEqual(tb.get(key)!.data, t.data, key);
  // A write to the store's table (as the loop's restore of the best parameters) is what the next step starts from.
  const table = ngramBag(a.cfg)!.table;
  for (const t of [a.host, a.ortTrainer]) t.store.get(table).fill(0.125);
  await a.host.step(steps[0]!);
  await a.ortTrainer.step(steps[0]!);
  const d = maxDiff(a.host.store.get(table), a.ortTrainer.store.get(table));
  assert.ok(a.host.store.get(table).some((v) => v !== 0.125) && d < 2e-6, `after a write through the store: differs by ${d}`);
  rmSync(dir, { recursive: true, force: true });
  for (const t of [a.host, a.ortTrainer, b.host, b.ortTrainer]) await t.dispose();
});
