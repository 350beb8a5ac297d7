// The training loop's checkpoints: self-checksummed files, a resume that refuses other settings
// and cuts the metrics log back to the checkpoint, no writes through symbolic links, and
// divergence reported as the user's to fix.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { existsSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { Trainer, type TrainerOptions } from '../../../src/engine/trainer.js';
import { type LossDefinition } from '../../../src/engine/train-graph.js';
import type { ModelDefinition } from '../../../src/engine/context.js';
import { linear } from '../../../src/engine/layers.js';
import { batchMean, crossEntropy } from '../../../src/engine/losses.js';
import { ort } from '../../../src/engine/session.js';
import { Rng } from '../../../src/engine/rng.js';
import { firstDifference, runTrainingLoop, type LoopOptions } from '../../../src/engine/loop.js';
import { DamagedFileError, loadSafetensors, saveSafetensors } from '../../../src/engine/safetensors.js';
import { OptionError, UserError } from '../../../src/errors.js';
import { tempDir } from '../../helpers.js';

const ROWS = 48;
const D = 6;
const C = 3;
const rng = new Rng(5);
const X = Float32Array.from({ length: ROWS * D }, () => rng.normal());
const Y = Array.from({ length: ROWS }, (_, i) => (X[i * D]! > 0 ? 1 : 0) + (X[i * D + 1]! > 0.5 ? 1 : 0));

const model: ModelDefinition = {
  inputs: { x: { dtype: 'float32', shape: ['B', D] } },
  forward: (ctx, { x }) => ({ logits: linear(ctx, ctx.dropout(x!, 0.2), D, C, 'head') }),
};
const ceLoss: LossDefinition = {
  inputs: { labels: { dtype: 'int64', shape: ['B'] } },
  build: (o, i) => ({ loss: batchMean(crossEntropy(o.logits!, i.labels!)) }),
};

function trainerOptions(lr = 0.05): TrainerOptions {
  return {
    model,
    loss: ceLoss,
    optimizer: { kind: 'adamw', lr, weightDecay: 0.01, clipNorm: 1 },
    schedule: { kind: 'linear', warmupSteps: 2, totalSteps: 24 },
    seed: 9,
  };
}

function feed(rows: Int32Array): Record<string, ort.Tensor> {
  const x = new Float32Array(rows.length * D);
  rows.forEach((r, k) => x.set(X.subarray(r * D, (r + 1) * D), k * D));
  return {
    x: new ort.Tensor('float32', x, [rows.length, D]),
    labels: new ort.Tensor('int64', BigInt64Array.from(Array.from(rows, (r) => BigInt(Y[r]!))), [rows.length]),
  };
}

/** Options of a 3-epoch loop (6 steps an epoch, dev evaluation every 4 steps). */
function loopOptions(trainer: Trainer, outDir: string, extra: Partial<LoopOptions<Int32Array>> = {}): LoopOptions<Int32Array> {
  return {
    trainer,
    outDir,
    epochs: 3,
    seed: 4,
    batches: (_e, r) => {
      const order = Int32Array.from({ length: ROWS }, (_, i) => i);
      r.shuffle(order);
      return Array.from({ length: ROWS / 8 }, (_, b) => order.slice(b * 8, b * 8 + 8));
    },
    feed,
    evaluate: async () => {
      const logits = (await trainer.evaluate(feed(Int32Array.from({ length: ROWS }, (_, i) => i)), ['logits'])).logits!
        .data as Float32Array;
      let right = 0;
      for (let i = 0; i < ROWS; i++) {
        let best = 0;
        for (let c = 1; c < C; c++) if (logits[i * C + c]! > logits[i * C + best]!) best = c;
        right += best === Y[i] ? 1 : 0;
      }
      return { score: right / ROWS };
    },
    evalEvery: 4,
    runConfig: { lr: 0.05, epochs: 3 },
    ...extra,
  };
}

const withoutSeconds = (path: string) =>
  readFileSync(path, 'utf8')
    .trimEnd()
    .split('\n')
    .map((l) => ({ ...JSON.parse(l), seconds: 0 }));

test('checkpoints carry their own sha256: finite or NaN garbage and header edits are refused naming the file and the fix', async () => {
  const dir = tempDir();
  const path = join(dir, 'last.safetensors');
  const trainer = await Trainer.create(trainerOptions());
  await trainer.step(feed(Int32Array.of(0, 1, 2, 3)));
  trainer.save(path);
  const good = readFileSync(path);
  const headerEnd = 8 + Number(good.readBigUInt64LE(0));
  const damage = (mutate: (b: Buffer) => void) => {
    const b = Buffer.from(good);
    mutate(b);
    writeFileSync(path, b);
    const fresh = trainer;
    assert.throws(
      () => fresh.load(path),
      (e: unknown) => {
        assert.ok(e instanceof DamagedFileError && e instanceof UserError, String(e));
        assert.match(
          e.message,
          new RegExp(`^${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: damaged: its contents do not match the sha256`),
        );
        assert.match(e.message, /Delete the run folder .* and start the run anew without --resume$/);
        return true;
      },
    );
  };
  damage((b) => b.writeFloatLE(0.125, headerEnd + 4)); // a finite value in place of a parameter
  damage((b) => b.writeFloatLE(NaN, good.length - 4));
  damage((b) => b.write(b.subarray(8, headerEnd).toString('latin1').replace('"step":"1"', '"step":"7"'), 8, 'latin1'));
  writeFileSync(path, good);
  assert.equal(trainer.load(path).step, '1', 'the intact file still loads');
  // A file without a checksum is refused where one is required, read where it is not.
  saveSafetensors(path, new Map([['w', { dtype: 'float32', shape: [1], data: Float32Array.of(1) }]]), { format: 'kd-checkpoint' });
  assert.throws(() => loadSafetensors(path, { requireChecksum: true, remedy: 'Fix it.' }), {
    name: 'DamagedFileError',
    message: `${path}: has no 'sha256' checksum in its metadata (not written by this version of kd). Fix it.`,
  });
  assert.equal(loadSafetensors(path).metadata.format, 'kd-checkpoint');
  await trainer.dispose();
});

test('a run killed between a metrics row and its checkpoint resumes to the same parameters and the same log, no row twice', async () => {
  const straightDir = tempDir();
  const straight = await Trainer.create(trainerOptions());
  await runTrainingLoop(loopOptions(straight, straightDir));

  const dir = tempDir();
  // A fresh run starts the log anew: rows of an earlier run in the folder are dropped.
  writeFileSync(join(dir, 'metrics.jsonl'), '{"step":99,"dev":1}\n');
  const first = await Trainer.create(trainerOptions());
  let rowsLogged = 0;
  const crash = new Error('killed');
  await assert.rejects(
    runTrainingLoop(
      loopOptions(first, dir, {
        log: (l) => {
          // The third evaluation's row is in metrics.jsonl, its checkpoint not yet written.
          if (l.startsWith('step ') && ++rowsLogged === 3) throw crash;
        },
      }),
    ),
    (e) => e === crash,
  );
  assert.equal(readFileSync(join(dir, 'metrics.jsonl'), 'utf8').trimEnd().split('\n').length, 3);
  assert.equal(loadSafetensors(join(dir, 'last.safetensors')).metadata.step, '8');
  const resumed = await Trainer.create(trainerOptions());
  const result = await runTrainingLoop(loopOptions(resumed, dir, { resume: true }));
  assert.equal(result.steps, 18);
  assert.deepEqual(withoutSeconds(join(dir, 'metrics.jsonl')), withoutSeconds(join(straightDir, 'metrics.jsonl')));
  assert.deepEqual(
    withoutSeconds(join(dir, 'metrics.jsonl')).map((r) => r.step),
    [4, 8, 12, 16],
  );
  assert.ok(
    Buffer.from(resumed.store.get('head.weight').buffer).equals(Buffer.from(straight.store.get('head.weight').buffer)),
    'parameters differ after resume',
  );
  await Promise.all([straight.dispose(), first.dispose(), resumed.dispose()]);
});

test('a resume with other settings is refused naming the field, old and new value, before anything is written', async () => {
  const dir = tempDir();
  const first = await Trainer.create(trainerOptions());
  await runTrainingLoop(loopOptions(first, dir, { maxSteps: 5 }));
  const before = { last: readFileSync(join(dir, 'last.safetensors')), metrics: readFileSync(join(dir, 'metrics.jsonl')) };
  const other = await Trainer.create(trainerOptions(0.5));
  await assert.rejects(runTrainingLoop(loopOptions(other, dir, { resume: true, runConfig: { lr: 0.5, epochs: 3 } })), (e: unknown) => {
    assert.ok(e instanceof OptionError, String(e));
    assert.equal(
      e.message,
      `${join(dir, 'last.safetensors')} was trained with lr = 0.05; this run asks for 0.5. Resume with the same settings, or ` +
        `start a new run in another --out (or delete the run folder)`,
    );
    return true;
  });
  // Without a run config the trainer's own check still refuses the other optimizer, as a UserError.
  await assert.rejects(
    runTrainingLoop(loopOptions(other, dir, { resume: true, runConfig: undefined })),
    (e: unknown) => e instanceof OptionError && /saved with optimizer .*"lr":0\.05.* this run asks for .*"lr":0\.5/.test(e.message),
  );
  assert.ok(readFileSync(join(dir, 'last.safetensors')).equals(before.last));
  assert.ok(readFileSync(join(dir, 'metrics.jsonl')).equals(before.metrics));
  assert.deepEqual(firstDifference({ a: { b: [1, 2] } }, { a: { b: [1, 3] } }), { field: 'a.b[1]', stored: 2, current: 3 });
  assert.deepEqual(firstDifference({ a: 1 }, { a: 1, tau: 2 }), { field: 'tau', stored: undefined, current: 2 });
  await Promise.all([first.dispose(), other.dispose()]);
});

test('metrics and checkpoints are never written through a symbolic link', async () => {
  for (const file of ['metrics.jsonl', 'last.safetensors']) {
    const dir = tempDir();
    const victim = join(tempDir(), 'victim.txt');
    writeFileSync(victim, 'precious\n');
    symlinkSync(victim, join(dir, file));
    const trainer = await Trainer.create(trainerOptions());
    await assert.rejects(
      runTrainingLoop(loopOptions(trainer, dir)),
      (e: unknown) =>
        e instanceof UserError &&
        e.message ===
          `${join(dir, file)} is a symbolic link; kd writes run files only as plain files in the run folder. Remove the link, ` +
            `or choose another --out`,
    );
    assert.equal(readFileSync(victim, 'utf8'), 'precious\n');
    await trainer.dispose();
  }
});

test("divergence is the user's to fix: an OptionError naming the step and the learning rate, no checkpoint of it", async () => {
  const dir = tempDir();
  // AdamW moves each weight by about lr a step: float32 overflows within the first evaluation period.
  const trainer = await Trainer.create({
    ...trainerOptions(),
    optimizer: { kind: 'adamw', lr: 3e38 },
    schedule: { kind: 'linear', warmupSteps: 1, totalSteps: 24 },
  });
  await assert.rejects(runTrainingLoop(loopOptions(trainer, dir)), (e: unknown) => {
    assert.ok(e instanceof OptionError, String(e));
    assert.match(
      e.message,
      new RegExp(
        String.raw`^training diverged at step [123]: loss (NaN|-?Infinity) \(learning rate [\d.e+]+ at that step\)\. Lower the learni` +
          String.raw`ng rate \(--lr\) and start a new run`,
      ),
    );
    return true;
  });
  assert.ok(!existsSync(join(dir, 'last.safetensors')), 'no checkpoint of a diverged state');
  await trainer.dispose();
});

test('a step limit between evaluations still evaluates where it stops, so there is a best checkpoint to restore', async () => {
  const dir = tempDir();
  const trainer = await Trainer.create(trainerOptions());
  // Stops at step 2, before the first evaluation (every 4 steps); before, no best.safetensors was written.
  const result = await runTrainingLoop(loopOptions(trainer, dir, { maxSteps: 2 }));
  assert.equal(result.steps, 2);
  assert.equal(result.bestStep, 2);
  const best = loadSafetensors(join(dir, 'best.safetensors'));
  assert.equal(best.metadata.step, '2');
  const rows = withoutSeconds(join(dir, 'metrics.jsonl'));
  assert.deepEqual(
    rows.map((r) => r.step),
    [2],
  );
  // A limit on an evaluation step is not evaluated twice.
  const dir2 = tempDir();
  await runTrainingLoop(loopOptions(await Trainer.create(trainerOptions()), dir2, { maxSteps: 4 }));
  assert.deepEqual(
    withoutSeconds(join(dir2, 'metrics.jsonl')).map((r) => r.step),
    [4],
  );
});

test('restoreBest leaves the best checkpoint’s parameters in the trainer, and ParameterStore.clone copies them', async () => {
  const dir = join(tempDir('kd-loop-best-'), 'run');
  const trainer = await Trainer.create(trainerOptions());
  await runTrainingLoop(loopOptions(trainer, dir, { restoreBest: true }));
  const best = loadSafetensors(join(dir, 'best.safetensors')).tensors;
  for (const spec of trainer.store.specs) assert.deepEqual(trainer.store.get(spec.name), best.get(spec.name)!.data);
  const copy = trainer.store.clone((s) => s.name !== 'head.bias');
  assert.deepEqual(
    copy.specs.map((s) => s.name),
    trainer.store.specs.map((s) => s.name).filter((n) => n !== 'head.bias'),
  );
  const weight = copy.get('head.weight');
  assert.deepEqual(weight, trainer.store.get('head.weight'));
  assert.notEqual(weight.buffer, trainer.store.get('head.weight').buffer, 'the copy owns its values');
  await trainer.dispose();
});
