// One run per output folder, and a resumed teacher keeps its settings: kd train, kd teacher train and
// kd distill hold a lock on --out for the whole run (a second run into it is refused naming the
// first one's pid), and kd teacher train --resume refuses settings other than the run's, naming
// the field, before anything is written.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { stringify as stringifyYaml } from 'yaml';
import { LOCK_FILE } from '../../src/util/lock.js';
import { repoRoot, runKd, S140_RANDOM, sharedPath, splitAndCache, splitAndCachePaths, tempDir } from '../helpers.js';

const root = tempDir('kd-run-folders-');
const { cache, files } = splitAndCachePaths(root);
const lastLine = (stderr: string) => stderr.trimEnd().split('\n').at(-1)!;

before(() => {
  splitAndCache(root, S140_RANDOM(), ['--limit', '400', '--dev', '0.15', '--test', '0.1']);
});

const trainArgs = (out: string) => [
  ...['train', '--cache', cache, '--train', files('train'), '--dev', files('dev'), '--out', out],
  ...['--dim', '8', '--buckets', '4096', '--epochs', '1'],
];
const teacherArgs = (out: string) => [
  ...['teacher', 'train', '--data', files('train'), '--dev', files('dev'), '--out', out],
  ...['--preset', 'tiny', '--vocab-size', '500'],
];

function distillArgs(out: string): string[] {
  const recipe = {
    name: 'lock',
    classes: 2,
    data: { split: { files: [files('train')], dev: 0.2, test: 0.2, seed: 13 } },
    teacher: { dir: sharedPath('fixtures', 'hf', 'tiny-random-bert') },
    cache: { embedding: 'none', dtype: 'float32' },
    students: { ngram: { dim: 8, buckets: 4096, epochs: 1 } },
    runs: { seeds: [13], students: ['ngram'], methods: [{ loss: 'ce' }] },
  };
  const path = join(root, 'lock-recipe.yaml');
  writeFileSync(path, stringifyYaml(recipe));
  return ['distill', '--recipe', path, '--out', out];
}

/**
 * Starts `args`, stops it (SIGSTOP) once its lock is on disk, runs the same command into the same
 * --out (refused naming the first one's pid), then lets the first one go on and finish (exit 0,
 * lock released).
 */
async function secondRunRefused(what: string, args: string[], out: string): Promise<void> {
  const first = spawn(process.execPath, [join(repoRoot, 'bin', 'kd.js'), ...args], { stdio: 'ignore' });
  const exited = new Promise<number | null>((resolve) => first.on('exit', (code) => resolve(code)));
  const lock = join(out, LOCK_FILE);
  // The lock file is created, then its owner written: wait for the whole record before stopping the run.
  const written = () => {
    try {
      return JSON.parse(readFileSync(lock, 'utf8')).pid === first.pid;
    } catch {
      return false;
    }
  };
  while (!written() && first.exitCode === null) await sleep(2);
  first.kill('SIGSTOP');
  try {
    assert.ok(existsSync(lock), `${what}: the first run took a lock (exit ${first.exitCode})`);
    assert.equal(JSON.parse(readFileSync(lock, 'utf8')).pid, first.pid);
    const second = runKd(args);
    assert.equal(second.status, 2, second.stderr);
    assert.equal(
      lastLine(second.stderr),
      `kd: error: ${out} is in use by ${what} (pid ${first.pid}; lock file ${lock}). Wait for it to finish or use another ` +
        `folder; if no such process is running, delete ${lock}`,
    );
  } finally {
    first.kill('SIGCONT');
  }
  assert.equal(await exited, 0, `${what}: the first run finished`);
  assert.equal(existsSync(lock), false, `${what}: the lock is released at the end`);
}

test('a second kd train, kd teacher train or kd distill into a running one’s --out is refused naming its pid', async () => {
  const train = join(root, 'train-locked');
  await secondRunRefused('kd train', trainArgs(train), train);
  assert.ok(existsSync(join(train, 'seed-13', 'result.json')), 'the first run is whole');
  const teacher = join(root, 'teacher-locked');
  await secondRunRefused('kd teacher train', [...teacherArgs(teacher), '--epochs', '1'], teacher);
  assert.ok(existsSync(join(teacher, 'onnx', 'model.onnx')));
  const distill = join(root, 'distill-locked');
  await secondRunRefused('kd distill', distillArgs(distill), distill);
  assert.ok(existsSync(join(distill, 'report.html')));
});

test('kd teacher train --resume with other settings or data is refused naming the field, before anything is written', () => {
  const out = join(root, 'teacher-resume');
  const args = [...teacherArgs(out), '--epochs', '2'];
  const started = runKd([...args, '--max-steps', '3']);
  assert.equal(started.status, 0, started.stderr);
  const runJson = join(out, 'training', 'run.json');
  const checkpoint = join(out, 'training', 'member0', 'last.safetensors');
  const before = [runJson, checkpoint].map((p) => readFileSync(p));
  const cases: [string[], string][] = [
    [[...teacherArgs(out), '--epochs', '3'], 'config.members[0].epochs = 2; this run asks for 3'],
    [[...args, '--lr', '0.5'], 'config.members[0].lr = 0.002; this run asks for 0.5'],
    [[...args, '--no-pretrain'], 'config.pretrain = {"epochs":1,'],
    [[...args, '--limit', '100'], 'limit = null; this run asks for 100'],
  ];
  for (const [changed, field] of cases) {
    const r = runKd([...changed, '--resume']);
    assert.equal(r.status, 2, r.stderr);
    assert.ok(lastLine(r.stderr).startsWith(`kd: error: ${runJson} was trained with ${field}`), lastLine(r.stderr));
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  }
  // Other rows under the same file name: compared by content, not by path.
  const data = files('train');
  const rows = readFileSync(data, 'utf8');
  writeFileSync(data, rows.split('\n').slice(10).join('\n'));
  try {
    const r = runKd([...args, '--resume']);
    assert.equal(r.status, 2, r.stderr);
    assert.match(lastLine(r.stderr), /run\.json was trained with train\.rows = \d+; this run asks for \d+/);
  } finally {
    writeFileSync(data, rows);
  }
  // A fresh run (no --resume) over the started one is refused too: it would retrain and overwrite it.
  const fresh = runKd(args);
  assert.equal(fresh.status, 2, fresh.stderr);
  assert.match(
    lastLine(fresh.stderr),
    /holds a previous teacher \((onnx\/model\.onnx|training\/member0\/last\.safetensors)\): pass --resume/,
  );
  assert.deepEqual(
    [runJson, checkpoint].map((p) => readFileSync(p)),
    before,
    'a refused resume or fresh run wrote nothing',
  );
  const resumed = runKd([...args, '--resume']);
  assert.equal(resumed.status, 0, resumed.stderr);
  assert.match(resumed.stderr, /resumed from .*member0.*last\.safetensors/);
});
