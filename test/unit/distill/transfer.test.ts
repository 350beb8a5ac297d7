// Transfer rows (kd train --transfer): each method's loss on them is its teacher term alone, checked against the
// PyTorch golden values (all rows transfer) and, in a mixed batch, the per-row mean of the two kinds of loss.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Graph } from '../../../src/engine/graph.js';
import { declareInputs } from '../../../src/engine/context.js';
import { createSession, ort } from '../../../src/engine/session.js';
import { getMethod } from '../../../src/distill/registry.js';
import { Rng } from '../../../src/engine/rng.js';
import { mixedBatches, trainingGraphs, transferPerBatch } from '../../../src/train/student-run.js';
import { shuffledBatches } from '../../../src/engine/batches.js';
import { fixturePath } from '../../helpers.js';

interface Golden {
  zs: number[][];
  zt: number[][];
  labels: number[];
  cases: { loss: string; options: Record<string, number | string>; value: number }[];
  lelp: { head: number[][]; targets: number[][]; subclasses: number; cases: { alpha: number; value: number }[] };
}
const golden = JSON.parse(readFileSync(fixturePath('golden', 'losses.json'), 'utf8')) as Golden;
const f32 = (rows: number[][]) => new ort.Tensor('float32', Float32Array.from(rows.flat()), [rows.length, rows[0]!.length]);
const scalar = (v: number) => new ort.Tensor('float32', Float32Array.of(v), []);
const int64 = (xs: number[]) => new ort.Tensor('int64', BigInt64Array.from(xs.map(BigInt)), [xs.length]);

/**
 * The loss kd train builds for a step (src/train/student-run.ts trainingGraphs) on a head given as input, run on
 * `feeds`; `transfer` builds the mixed form with its `labelled` and `transfer_weight` inputs.
 */
async function stepLoss(
  name: string,
  raw: Record<string, unknown>,
  headWidth: number,
  transfer: boolean,
  feeds: Record<string, ort.Tensor>,
): Promise<{ loss: number; metrics: Record<string, number> }> {
  const method = getMethod(name);
  const o = method.parse(raw);
  const classes = 3;
  const model = { inputs: { head: { dtype: 'float32' as const, shape: ['batch_size', headWidth] } }, forward: () => ({}) };
  const { loss } = trainingGraphs(model, method, o, classes, transfer);
  const g = new Graph();
  const inputs = declareInputs(g, { ...model.inputs, ...loss.inputs });
  const built = loss.build({ head: inputs.head! }, inputs, undefined as never);
  const metrics = Object.entries(built.metrics ?? {});
  const { session } = await createSession(
    g.serialize({ outputs: [{ name: 'loss', value: built.loss }, ...metrics.map(([k, v]) => ({ name: `m_${k}`, value: v }))] }),
  );
  for (const n of session.inputNames) assert.ok(n in feeds, `feed ${n}`);
  const out = await session.run(Object.fromEntries(session.inputNames.map((n) => [n, feeds[n]!])));
  return {
    loss: Number(out.loss!.data[0]),
    metrics: Object.fromEntries(metrics.map(([k]) => [k, Number(out[`m_${k}`]!.data[0])])),
  };
}

const close = (a: number, b: number, what: string, tol = 1e-5) =>
  assert.ok(Math.abs(a - b) <= tol * Math.max(1, Math.abs(b)), `${what}: ${a} vs ${b}`);

// Plain float64 references of the teacher terms, per row.
const logSoftmax = (z: number[], t: number) => {
  const s = z.map((v) => v / t);
  const m = Math.max(...s);
  const lse = m + Math.log(s.reduce((a, v) => a + Math.exp(v - m), 0));
  return s.map((v) => v - lse);
};
const kl = (zt: number[], zs: number[], tt: number, ts: number) => {
  const lt = logSoftmax(zt, tt);
  const ls = logSoftmax(zs, ts);
  return lt.reduce((a, v, c) => a + Math.exp(v) * (v - ls[c]!), 0);
};
const kdRow = (zt: number[], zs: number[], tau: number) => tau * tau * kl(zt, zs, tau, tau);
const dtkdRow = (zt: number[], zs: number[], o: { alpha: number; beta: number; tau: number; clamp: boolean }) => {
  const x = Math.max(...zt);
  const y = Math.max(...zs);
  const ok = x + y > 1e-6;
  const temp = (v: number) => {
    const t = ok ? (2 * o.tau * v) / (x + y) : o.tau;
    return o.clamp ? Math.min(4 * o.tau, Math.max(o.tau / 4, t)) : t;
  };
  const [tt, ts] = [temp(x), temp(y)];
  return o.alpha * kl(zt, zs, tt, ts) * tt * ts + o.beta * kdRow(zt, zs, o.tau);
};
const softCeRow = (head: number[], q: number[]) => -logSoftmax(head, 1).reduce((a, v, c) => a + q[c]! * v, 0);
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

const goldenValue = (loss: string, match: (o: Record<string, number | string>) => boolean) =>
  golden.cases.find((c) => c.loss === loss && match(c.options))!.value;

test('all rows transfer: kd, dtkd and lelp losses are their teacher terms, equal to the PyTorch golden values', async () => {
  const n = golden.labels.length;
  const base = { labels: int64(golden.labels), labelled: new ort.Tensor('float32', new Float32Array(n), [n]), transfer_weight: scalar(1) };
  // kd: the λ = 1, τ = 1 golden is τ²·KL alone; and the τ = 4 form against the float64 reference.
  for (const tau of [1, 4]) {
    const kdFeeds = { ...base, head: f32(golden.zs), teacher_logits: f32(golden.zt), kd_lambda: scalar(0.5) };
    const { loss, metrics } = await stepLoss('kd', { lambda: 0.5, tau }, 3, true, kdFeeds);
    const reference = mean(golden.zs.map((zs, i) => kdRow(golden.zt[i]!, zs, tau)));
    close(loss, reference, `kd τ=${tau} vs float64 reference`);
    if (tau === 1)
      close(
        loss,
        goldenValue('kd', (o) => o.lambda === 1 && o.tau === 1),
        'kd vs golden λ=1 τ=1',
      );
    close(metrics.transfer_kd!, loss, 'transfer_kd term');
    assert.equal(metrics.ce, 0, 'no labelled row: the ce term is 0');
  }
  // dtkd: CE + w·distill golden at w = 1, less the CE golden, is the distill term alone.
  for (const c of golden.cases.filter((k) => k.loss === 'dtkd' && k.options.weight === 1)) {
    const feeds = { ...base, head: f32(golden.zs), teacher_logits: f32(golden.zt), dtkd_weight: scalar(0.25) };
    const { loss } = await stepLoss('dtkd', c.options, 3, true, feeds);
    const o = {
      alpha: Number(c.options.alpha),
      beta: Number(c.options.beta),
      tau: Number(c.options.tau),
      clamp: c.options.dtkdGuard === 'clamp',
    };
    close(loss, c.value - goldenValue('ce', () => true), `dtkd ${JSON.stringify(c.options)} vs golden − CE`);
    close(loss, mean(golden.zs.map((zs, i) => dtkdRow(golden.zt[i]!, zs, o))), 'dtkd vs float64 reference');
  }
  // lelp: the α = 0 golden is soft cross-entropy alone; the transfer loss ignores α.
  const L = golden.lelp;
  for (const alpha of [0, 0.3]) {
    const feeds = { ...base, head: f32(L.head), lelp_targets: f32(L.targets), lelp_weight: scalar(1) };
    const { loss } = await stepLoss('lelp', { subclasses: L.subclasses, alpha }, L.head[0]!.length, true, feeds);
    close(loss, L.cases.find((k) => k.alpha === 0)!.value, `lelp α=${alpha} vs golden α=0`);
  }
});

test('a mixed batch: the per-row mean of the method loss on labelled rows and the teacher term on transfer rows', async () => {
  const mask = [1, 0, 1, 0];
  const pick = (rows: number[][], keep: number) => rows.filter((_, i) => mask[i] === keep);
  const labelledLabels = golden.labels.filter((_, i) => mask[i] === 1);
  const cases: {
    name: string;
    raw: Record<string, unknown>;
    extra: (rows: (r: number[][]) => number[][]) => Record<string, ort.Tensor>;
  }[] = [
    { name: 'kd', raw: { lambda: 0.3, tau: 2 }, extra: (r) => ({ teacher_logits: f32(r(golden.zt)), kd_lambda: scalar(0.3) }) },
    { name: 'dtkd', raw: { alpha: 3, beta: 1, tau: 4 }, extra: (r) => ({ teacher_logits: f32(r(golden.zt)), dtkd_weight: scalar(0.5) }) },
  ];
  for (const c of cases) {
    for (const weight of [1, 0]) {
      const all = (r: number[][]) => r;
      const { loss, metrics } = await stepLoss(c.name, c.raw, 3, true, {
        head: f32(golden.zs),
        labels: int64(golden.labels.map((y, i) => (mask[i] ? y : 0))),
        labelled: new ort.Tensor('float32', Float32Array.from(mask), [4]),
        transfer_weight: scalar(weight),
        ...c.extra(all),
      });
      // The labelled rows alone through the plain (no-transfer) loss, whose golden values are checked elsewhere.
      const gold = await stepLoss(c.name, c.raw, 3, false, {
        head: f32(pick(golden.zs, 1)),
        labels: int64(labelledLabels),
        ...c.extra((r) => pick(r, 1)),
      });
      const o = { alpha: 3, beta: 1, tau: 4, clamp: true };
      const teacherRows = pick(golden.zs, 0).map((zs, k) =>
        c.name === 'kd' ? kdRow(pick(golden.zt, 0)[k]!, zs, 2) : dtkdRow(pick(golden.zt, 0)[k]!, zs, o),
      );
      close(loss, (2 * gold.loss + 2 * weight * mean(teacherRows)) / 4, `${c.name} mixed, transfer weight ${weight}`);
      close(metrics.ce!, gold.metrics.ce!, `${c.name}: ce term over the labelled rows`);
      close(
        metrics.transfer_kd!,
        mean(teacherRows.map((_, k) => kdRow(pick(golden.zt, 0)[k]!, pick(golden.zs, 0)[k]!, c.name === 'kd' ? 2 : 4))),
        'transfer_kd',
      );
    }
  }
  // lelp with α = 0.3: labelled rows keep α·CE on marginals, transfer rows the soft targets alone.
  const L = golden.lelp;
  const { loss } = await stepLoss('lelp', { subclasses: 2, alpha: 0.3 }, 6, true, {
    head: f32(L.head),
    labels: int64(golden.labels.map((y, i) => (mask[i] ? y : 0))),
    labelled: new ort.Tensor('float32', Float32Array.from(mask), [4]),
    transfer_weight: scalar(1),
    lelp_targets: f32(L.targets),
    lelp_weight: scalar(1),
  });
  const gold = await stepLoss('lelp', { subclasses: 2, alpha: 0.3 }, 6, false, {
    head: f32(pick(L.head, 1)),
    labels: int64(labelledLabels),
    lelp_targets: f32(pick(L.targets, 1)),
    lelp_weight: scalar(1),
  });
  const soft = mean(pick(L.head, 0).map((h, k) => softCeRow(h, pick(L.targets, 0)[k]!)));
  close(loss, (2 * gold.loss + 2 * soft) / 4, 'lelp mixed');
});

test('ce refuses transfer rows: it has no teacher term', () => {
  assert.equal(getMethod('ce').transfer, undefined);
  for (const m of ['kd', 'dtkd', 'lelp']) assert.ok(getMethod(m).transfer, m);
});

test('mixed batches: every step holds B − b_t labelled and b_t transfer rows; each kind covers its rows once per pass', () => {
  assert.equal(transferPerBatch(32, 0.5), 16);
  assert.equal(transferPerBatch(32, 0.001), 1);
  assert.equal(transferPerBatch(32, 0.999), 31);
  const [nl, nt, B] = [50, 250, 20];
  const batches = mixedBatches(nl, nt, B, nt / (nl + nt), (off, n, rng) => shuffledBatches(n, B, rng), new Rng(7));
  assert.equal(batches.length, Math.ceil((nl + nt) / B));
  const bt = transferPerBatch(B, nt / (nl + nt));
  assert.equal(bt, 17);
  for (const b of batches) {
    assert.equal(b.length, B);
    assert.ok(b.subarray(0, B - bt).every((i) => i >= 0 && i < nl));
    assert.ok(b.subarray(B - bt).every((i) => i >= nl && i < nl + nt));
  }
  // 15 steps × 3 labelled rows = 45 < 50: no labelled row twice; 15 × 17 = 255 transfer rows: all 250 once, 5 again.
  const labelled = batches.flatMap((b) => [...b.subarray(0, B - bt)]);
  assert.equal(new Set(labelled).size, labelled.length);
  const transfer = batches.flatMap((b) => [...b.subarray(B - bt)]);
  assert.equal(new Set(transfer).size, nt);
  // Same seed, same batches; another seed, other batches.
  const again = mixedBatches(nl, nt, B, nt / (nl + nt), (off, n, rng) => shuffledBatches(n, B, rng), new Rng(7));
  assert.deepEqual(again, batches);
  const other = mixedBatches(nl, nt, B, nt / (nl + nt), (off, n, rng) => shuffledBatches(n, B, rng), new Rng(8));
  assert.notDeepEqual(other, batches);
});

test('the plain loss is unchanged without transfer rows (mean over the batch)', async () => {
  const c = golden.cases.find((k) => k.loss === 'kd' && k.options.lambda === 0.5)!;
  const { loss } = await stepLoss('kd', c.options, 3, false, {
    head: f32(golden.zs),
    labels: int64(golden.labels),
    teacher_logits: f32(golden.zt),
    kd_lambda: scalar(0.5),
  });
  close(loss, c.value, 'kd λ=0.5 golden');
});
