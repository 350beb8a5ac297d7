// --device cuda on this CPU-only machine (no CUDA provider in onnxruntime-node): every command
// that takes --device refuses it naming --allow-cpu-fallback (exit 2, one line), and with the
// flag runs on CPU after one warning line. (kd distill's case is in distill-recipe.test.ts.)
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { deviceProblem } from '../../src/engine/session.js';
import { AMAZON_TRAIN, runKd, sharedPath, tempDir } from '../helpers.js';

const root = tempDir('kd-fallback-');
const split = join(root, 'split');
const cache = join(root, 'cache');
const files = (s: string) => join(split, `${s}.jsonl`);
const student = join(root, 'student');
const TEACHER = () => sharedPath('fixtures', 'hf', 'tiny-random-bert');

before(() => {
  assert.ok(deviceProblem('cuda'), 'these cases need a machine without the CUDA provider');
  const data = join(root, 'reviews.ft.txt');
  writeFileSync(data, `${readFileSync(AMAZON_TRAIN(), 'utf8').split('\n').slice(0, 300).join('\n')}\n`);
  const s = runKd(['data', 'split', data, '--dev', '0.2', '--test', '0.2', '--out', split]);
  assert.equal(s.status, 0, s.stderr);
  const c = runKd(['cache', 'build', '--teacher', TEACHER(), '--data', files('train'), files('dev'), files('test'), '--out', cache]);
  assert.equal(c.status, 0, c.stderr);
});

/** The command refused without the flag (exit 2, the error names it), then run with it after one warning. */
function fallsBack(name: string, args: string[]): ReturnType<typeof runKd> {
  const refused = runKd([...args, '--device', 'cuda']);
  assert.equal(refused.status, 2, `${name}: ${refused.stderr}`);
  const last = refused.stderr.trimEnd().split('\n').at(-1)!;
  assert.match(
    last,
    new RegExp(
      String.raw`^kd: error: --device cuda: the CUDA execution provider is not installed .*\. Use --device cpu, or pass --allow-cpu-f` +
        String.raw`allback to run on CPU with a warning$`,
    ),
    name,
  );
  const allowed = runKd([...args, '--device', 'cuda', '--allow-cpu-fallback']);
  assert.equal(allowed.status, 0, `${name}: ${allowed.stderr}`);
  const warnings = allowed.stderr.split('\n').filter((l) => l.startsWith('warning: --device cuda'));
  assert.equal(warnings.length, 1, `${name}: one warning per device, got ${JSON.stringify(warnings)}`);
  assert.match(
    warnings[0]!,
    /^warning: --device cuda is not available \(the CUDA execution provider is not installed in onnxruntime-node\..*\); running on CPU$/,
  );
  return allowed;
}

test('kd train: the trainer session falls back to CPU only with --allow-cpu-fallback', () => {
  const r = fallsBack('kd train', [
    'train',
    '--cache',
    cache,
    '--train',
    files('train'),
    '--dev',
    files('dev'),
    '--out',
    student,
    '--epochs',
    '1',
    '--dim',
    '8',
    '--buckets',
    '4096',
    '--json',
  ]);
  assert.equal(r.json().runs.length, 1);
});

test(
  'kd eval, kd predict, kd teacher predict, kd cache build: the student or teacher session falls back to CPU, and eval ' +
    'reports the device it ran on',
  () => {
    const model = join(student, 'seed-13', 'model');
    const ev = fallsBack('kd eval', ['eval', '--model', model, '--data', files('test'), '--json']);
    assert.equal(ev.json().latency.device, 'cpu', 'the latency is measured on CPU, not labelled cuda');
    const teacherEval = fallsBack('kd eval (teacher)', ['eval', '--model', TEACHER(), '--data', files('test'), '--limit', '20', '--json']);
    assert.equal(teacherEval.json().latency.device, 'cpu');
    assert.equal(fallsBack('kd predict', ['predict', '--model', model, '--text', 'great product', '--json']).json().labels.length, 1);
    assert.equal(
      fallsBack('kd teacher predict', ['teacher', 'predict', '--model', TEACHER(), '--text', 'great product', '--json']).json().device,
      'cpu',
    );
    fallsBack('kd cache build', ['cache', 'build', '--teacher', TEACHER(), '--data', files('dev'), '--out', join(root, 'cache-dev')]);
  },
);

test('kd teacher train: every member trainer falls back to CPU only with --allow-cpu-fallback', () => {
  const r = fallsBack('kd teacher train', [
    'teacher',
    'train',
    '--data',
    files('train'),
    '--dev',
    files('dev'),
    '--preset',
    'tiny',
    '--no-pretrain',
    '--epochs',
    '1',
    '--out',
    join(root, 'teacher'),
    '--json',
  ]);
  assert.ok(r.json().members.length >= 1);
});
