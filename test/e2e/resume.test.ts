// kd train's resume on real tweets: a transformer and an n-gram student killed with SIGKILL after a
// checkpoint resume to the bytes of an uninterrupted run (and a same-seed rerun gives them too); resumes
// with other settings, damaged checkpoints, repeated seeds, reruns over a run and divergence are
// refused as one-line errors that say what to do.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { availableParallelism } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { repoRoot, runKd, S140_RANDOM, splitAndCache, splitAndCachePaths, tempDir } from '../helpers.js';

const root = tempDir('kd-resume-');
const { cache, files } = splitAndCachePaths(root);

before(() => {
  splitAndCache(root, S140_RANDOM(), ['--limit', '400', '--dev', '0.15', '--test', '0.1']);
});

const base = (out: string) => ['train', '--cache', cache, '--train', files('train'), '--dev', files('dev'), '--out', out];
const TRANSFORMER = [
  '--student',
  'transformer',
  '--loss',
  'kd',
  '--layers',
  '1',
  '--hidden',
  '32',
  '--heads',
  '2',
  '--intermediate',
  '64',
  '--max-length',
  '32',
  '--vocab-size',
  '600',
  '--epochs',
  '3',
  '--batch-size',
  '16',
  '--eval-every',
  '4',
  '--patience',
  '100',
];
const NGRAM = ['--loss', 'kd', '--dim', '8', '--buckets', '4096', '--epochs', '2', '--eval-every', '5'];
/** 255 small steps, a checkpoint every 4: long enough to be killed mid-run. */
const NGRAM_LONG = [
  ...['--loss', 'kd', '--dim', '8', '--buckets', '4096', '--ngram-vocab', '500', '--epochs', '3'],
  ...['--batch-size', '4', '--eval-every', '4', '--patience', '100'],
];
const lastLine = (stderr: string) => stderr.trimEnd().split('\n').at(-1)!;
const modelBytes = (out: string) => readFileSync(join(out, 'seed-13', 'model', 'onnx', 'model.onnx'));

/**
 * Kills a run (SIGKILL) some moment after its first checkpoint, resumes it, and checks the model and
 * vocabulary bytes against an uninterrupted run and a same-seed rerun, and metrics.jsonl's rows.
 */
async function killResumeRerun(name: string, flags: string[]): Promise<void> {
  const straight = join(root, `${name}-straight`);
  const r = runKd([...base(straight), ...flags]);
  assert.equal(r.status, 0, r.stderr);

  const killed = join(root, `${name}-killed`);
  const child = spawn(process.execPath, [join(repoRoot, 'bin', 'kd.js'), ...base(killed), ...flags], { stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  const checkpoint = join(killed, 'seed-13', 'training', 'last.safetensors');
  while (!existsSync(checkpoint) && child.exitCode === null) await sleep(5);
  // Some moment after the first checkpoint (step 4): mid-step, mid-evaluation or mid-write.
  await sleep(Math.floor(Math.random() * 60));
  child.kill('SIGKILL');
  await exited;
  assert.equal(child.signalCode, 'SIGKILL', 'the run was killed, not finished');
  assert.ok(!existsSync(join(killed, 'seed-13', 'result.json')));
  const resumed = runKd([...base(killed), ...flags, '--resume']);
  assert.equal(resumed.status, 0, resumed.stderr);
  assert.match(resumed.stderr, /resumed from .*last\.safetensors at step [1-9]\d*/);

  const rerun = join(root, `${name}-rerun`);
  assert.equal(runKd([...base(rerun), ...flags]).status, 0);
  assert.ok(modelBytes(killed).equals(modelBytes(straight)), 'resumed model.onnx differs from the uninterrupted run');
  assert.ok(modelBytes(rerun).equals(modelBytes(straight)), 'same-seed rerun model.onnx differs');
  for (const f of ['tokenizer.json', 'vocab.txt'])
    assert.ok(readFileSync(join(killed, 'seed-13', 'model', f)).equals(readFileSync(join(rerun, 'seed-13', 'model', f))), `${f} differs`);
  const rows = (out: string) =>
    readFileSync(join(out, 'seed-13', 'training', 'metrics.jsonl'), 'utf8')
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l).step);
  assert.deepEqual(rows(killed), rows(straight), 'metrics.jsonl has each evaluation once');
}

test(
  'a transformer student killed (SIGKILL) after a checkpoint resumes to the bytes of an uninterrupted run, and a same-seed ' +
    'rerun gives them too',
  () => killResumeRerun('t', TRANSFORMER),
);

test('an n-gram student (its own word vocabulary, sparse table) killed after a checkpoint resumes to the same bytes too', async () => {
  await killResumeRerun('n', NGRAM_LONG);
  // kd train's default for this student: the host trainer (src/engine/bag-trainer.ts).
  const config = JSON.parse(readFileSync(join(root, 'n-straight', 'seed-13', 'config.json'), 'utf8'));
  assert.equal(config.resolved.trainer, 'host');
  // Its threads, as resolved (2 where there are 2 cores; batches this small run on one either way).
  assert.equal(config.resolved.hostThreads, availableParallelism() >= 2 ? 2 : 1);
});

test('the n-gram student on the ONNX Runtime step (--trainer ort) resumes to the same bytes too', async () => {
  await killResumeRerun('n-ort', [...NGRAM_LONG, '--trainer', 'ort']);
  const config = JSON.parse(readFileSync(join(root, 'n-ort-straight', 'seed-13', 'config.json'), 'utf8'));
  assert.equal(config.resolved.trainer, 'ort');
});

test('--resume with a changed setting is refused naming the field, old and new value, and config.json is left as it was', () => {
  const out = join(root, 'changed');
  assert.equal(runKd([...base(out), ...NGRAM, '--seeds', '13,14']).status, 0);
  const config = readFileSync(join(out, 'seed-13', 'config.json'));
  const refusals: [string[], string][] = [
    [['--lr', '0.01'], 'lr = 0.005; this run asks for 0.01'],
    [['--tau', '4'], 'lossOptions.tau = 2; this run asks for 4'],
    [['--epochs', '3'], 'epochs = 2; this run asks for 3'],
    [['--kd-start', '0.5'], 'lossOptions.kdStart = 0; this run asks for 0.5'],
  ];
  for (const [flags, says] of refusals) {
    const r = runKd([...base(out), ...NGRAM, '--seeds', '13,14', ...flags, '--resume']);
    assert.equal(r.status, 2, `${flags.join(' ')}: ${r.stderr}`);
    assert.equal(
      lastLine(r.stderr),
      `kd: error: ${join(out, 'seed-13', 'result.json')} was trained with ${says}. Resume with the same settings, or start a ` +
        `new run in another --out (or delete the run folder)`,
    );
  }
  // A finished kd seed is not summarized as a ce one.
  const ce = runKd([...base(out), ...NGRAM.map((f) => (f === 'kd' ? 'ce' : f)), '--seeds', '13,14', '--resume']);
  assert.equal(ce.status, 2);
  assert.match(lastLine(ce.stderr), /result\.json was trained with loss = "kd"; this run asks for "ce"/);
  // An unfinished seed is checked against its checkpoint.
  rmSync(join(out, 'seed-14', 'result.json'));
  const unfinished = runKd([...base(out), ...NGRAM, '--seeds', '14', '--lr', '0.01', '--resume']);
  assert.equal(unfinished.status, 2);
  assert.match(lastLine(unfinished.stderr), /seed-14\/training\/last\.safetensors was trained with lr = 0\.005; this run asks for 0\.01\./);
  assert.ok(readFileSync(join(out, 'seed-13', 'config.json')).equals(config), 'config.json was rewritten by a refused run');
  // Threads and device may differ on resume.
  const r = runKd([...base(out), ...NGRAM, '--seeds', '13,14', '--resume', '--threads', '1', '--json']);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(r.json().summary.seeds, [13, 14]);
});

test('a damaged checkpoint, a rerun over a finished run, repeated or unsafe seeds and divergence are one-line errors (exit 2)', () => {
  const out = join(root, 'refusals');
  const first = runKd([...base(out), ...NGRAM]);
  assert.equal(first.status, 0, first.stderr);
  const again = runKd([...base(out), ...NGRAM]);
  assert.equal(again.status, 2);
  assert.equal(
    lastLine(again.stderr),
    `kd: error: ${join(out, 'seed-13')} holds a previous run (result.json): pass --resume to continue it with the same ` +
      `settings, or choose another --out (or delete that folder) to start anew`,
  );

  const killed = join(root, 'damaged');
  assert.equal(runKd([...base(killed), ...NGRAM]).status, 0);
  rmSync(join(killed, 'seed-13', 'result.json')); // unfinished: --resume reads the checkpoint
  const last = join(killed, 'seed-13', 'training', 'last.safetensors');
  const bytes = readFileSync(last);
  bytes.writeFloatLE(0.5, bytes.length - 8); // finite garbage in a parameter or optimizer value
  writeFileSync(last, bytes);
  const damaged = runKd([...base(killed), ...NGRAM, '--resume']);
  assert.equal(damaged.status, 2, damaged.stderr);
  assert.match(
    lastLine(damaged.stderr),
    new RegExp(
      `^kd: error: ${last.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: damaged: its contents do not match the sha256 .*Delete the run folder`,
    ),
  );

  for (const seeds of ['13,13', '9007199254740993', '4294967296']) {
    const r = runKd([...base(join(root, `seeds-${seeds}`)), ...NGRAM, '--seeds', seeds]);
    assert.equal(r.status, 2, `${seeds}: ${r.stderr}`);
    assert.match(
      lastLine(r.stderr),
      seeds === '13,13' ? /'--seeds' lists 13 twice/ : /'--seeds': .* is not an integer in \[0, 4294967295\]/,
    );
  }
  const diverged = runKd([...base(join(root, 'diverged')), ...NGRAM, '--lr', '1e9']);
  assert.equal(diverged.status, 2, diverged.stderr);
  assert.match(lastLine(diverged.stderr), /^kd: error: training diverged at step \d+: loss NaN/);
  assert.doesNotMatch(diverged.stderr, /\n\s+at /, 'no stack trace');
});

test('kd teacher train twice with the same seed writes the same vocabulary and model bytes', () => {
  const outs = [join(root, 'teacher-a'), join(root, 'teacher-b')];
  for (const out of outs) {
    const r = runKd([
      'teacher',
      'train',
      '--data',
      files('train'),
      '--dev',
      files('dev'),
      '--preset',
      'tiny',
      '--epochs',
      '1',
      '--vocab-size',
      '500',
      '--out',
      out,
    ]);
    assert.equal(r.status, 0, r.stderr);
  }
  for (const f of ['vocab.txt', 'tokenizer.json', join('onnx', 'model.onnx')])
    assert.ok(readFileSync(join(outs[0]!, f)).equals(readFileSync(join(outs[1]!, f))), `${f} differs between same-seed teacher runs`);
});
