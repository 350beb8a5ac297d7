// kd distill on a tiny recipe (400 Amazon reviews, the tiny foreign teacher, one n-gram student):
// a changed stage starts anew and redoes what follows it, an unchanged one is skipped, a killed
// one resumes in place; the CPU fallback is wired through; recipe mistakes are one-line errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify as stringifyYaml } from 'yaml';
import { AMAZON_TRAIN, runKd, sharedPath, tempDir } from '../helpers.js';

const root = tempDir('kd-distill-recipe-');
const data = join(root, 'reviews.ft.txt');
// The train sample is in random order, so its first 400 lines hold both labels.
writeFileSync(data, `${readFileSync(AMAZON_TRAIN(), 'utf8').split('\n').slice(0, 400).join('\n')}\n`);

function recipe(edit: (r: any) => void = () => undefined): string {
  const r: any = {
    name: 'tiny',
    classes: 2,
    data: { split: { files: [data], dev: 0.2, test: 0.2, seed: 13 } },
    teacher: { dir: sharedPath('fixtures', 'hf', 'tiny-random-bert') },
    cache: { embedding: 'full', dtype: 'float32' },
    students: { ngram: { dim: 8, buckets: 4096, epochs: 1, batchSize: 32, lr: 0.005 } },
    runs: { seeds: [13], students: ['ngram'], methods: [{ loss: 'kd', lambda: 0.5, tau: 2 }] },
  };
  edit(r);
  const path = join(root, 'recipe.yaml');
  writeFileSync(path, stringifyYaml(r));
  return path;
}

const sha = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');

test('kd distill redoes a changed stage from scratch (and every stage after it), skips an unchanged one and resumes a killed one', () => {
  const out = join(root, 'out');
  const run = runs(out);
  const model = join(out, 'runs', 'ngram-kd', 'seed-13', 'model', 'onnx', 'model.onnx');
  const config = join(out, 'runs', 'ngram-kd', 'seed-13', 'config.json');

  // --device cuda on this CPU-only machine: refused naming the flag, or run on CPU with a warning.
  const refused = runKd(['distill', '--recipe', recipe(), '--out', join(root, 'refused'), '--device', 'cuda']);
  assert.equal(refused.status, 2, refused.stderr);
  assert.match(refused.stderr, /^kd: error: --device cuda: .*pass --allow-cpu-fallback to run on CPU with a warning\n$/);
  assert.ok(!existsSync(join(root, 'refused', 'data')), 'refused before the first stage');
  const first = run(recipe(), ['--device', 'cuda', '--allow-cpu-fallback']);
  assert.match(first, /^warning: --device cuda is not available \(.*\); running on CPU$/m);
  const firstModel = sha(model);
  assert.equal(JSON.parse(readFileSync(config, 'utf8')).ngram.dim, 8);

  const same = run(recipe());
  for (const stage of ['split', 'cache', 'train ngram-kd', 'teacher eval'])
    assert.match(same, new RegExp(`^${stage}: done before, skipped`, 'm'));
  assert.equal(sha(model), firstModel);

  const changed = run(recipe((r) => Object.assign(r.students.ngram, { dim: 16, lr: 0.02 })));
  assert.match(changed, /^cache: done before, skipped/m);
  assert.match(changed, /^train ngram-kd: settings changed: s\.dim, s\.lr — starting train ngram-kd anew/m);
  assert.notEqual(sha(model), firstModel, 'a new student, not the stale one');
  const resolved = JSON.parse(readFileSync(config, 'utf8'));
  assert.deepEqual([resolved.ngram.dim, resolved.lr], [16, 0.02]);
  const secondModel = sha(model);

  // A stage left `running` by a killed run keeps its outputs and resumes (the seed's result is reused).
  const marker = join(out, 'runs', 'ngram-kd', 'stage.json');
  writeFileSync(marker, JSON.stringify({ ...JSON.parse(readFileSync(marker, 'utf8')), state: 'running' }));
  assert.match(
    run(recipe((r) => Object.assign(r.students.ngram, { dim: 16, lr: 0.02 }))),
    /^train ngram-kd: resuming with the same settings/m,
  );
  assert.equal(sha(model), secondModel);

  // Upstream changes: a new split changes no setting of the cache, yet redoes it (its rows
  // changed), and so the student trained on it. The teacher's evaluation is left with no record
  // of its settings (a folder of another version): it is not trusted either.
  const teacherEval = join(out, 'teacher-eval');
  rmSync(join(teacherEval, 'stage.json'));
  writeFileSync(join(teacherEval, 'leftover.txt'), 'from another version');
  const seed = run(
    recipe((r) => {
      Object.assign(r.students.ngram, { dim: 16, lr: 0.02 });
      r.data.split.seed = 7;
    }),
  );
  assert.match(seed, /^split: settings changed: seed — starting split anew/m);
  assert.match(seed, /^cache: settings changed: split — starting cache anew/m);
  assert.match(seed, /^train ngram-kd: settings changed: cache — starting train ngram-kd anew/m);
  assert.match(seed, /^teacher eval: \S+ has no record of its settings — starting teacher eval anew/m);
  assert.ok(!existsSync(join(teacherEval, 'leftover.txt')));
  assert.ok(existsSync(join(teacherEval, 'eval.json')));
});

/** Runs kd distill into `out`, asserts success, returns its log (stderr). */
function runs(out: string) {
  return (path: string, extra: string[] = []): string => {
    const r = runKd(['distill', '--recipe', path, '--out', out, ...extra]);
    assert.equal(r.status, 0, r.stderr.slice(-3000));
    return r.stderr;
  };
}

test(
  'kd distill refuses a recipe with a YAML syntax error or an unknown student, or an --out it did not make, in one line ' +
    'before any stage runs',
  () => {
    const broken = join(root, 'broken.yaml');
    writeFileSync(broken, 'name: tiny\nruns:\n  seeds: [13, 14\n  students: [ngram]\n');
    const out = join(root, 'never');
    const r = runKd(['distill', '--recipe', broken, '--out', out]);
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, new RegExp(`^kd: error: ${broken.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:4:3: YAML syntax error: [^\\n]+\\n$`));
    const cnn = runKd(['distill', '--recipe', recipe((x) => (x.runs.students = ['cnn'])), '--out', out]);
    assert.equal(cnn.status, 2, cnn.stderr);
    assert.equal(
      cnn.stderr,
      `kd: error: ${join(root, 'recipe.yaml')}: runs.students[0]: unknown student "cnn"; known: ngram, transformer\n`,
    );
    assert.ok(!existsSync(out), 'nothing was run');
    // An --out folder kd distill did not make is refused, since stages remove their folders in it.
    const foreign = join(root, 'foreign');
    mkdirSync(join(foreign, 'data'), { recursive: true });
    writeFileSync(join(foreign, 'data', 'notes.txt'), 'mine');
    const refused = runKd(['distill', '--recipe', recipe(), '--out', foreign]);
    assert.equal(refused.status, 2, refused.stderr);
    assert.equal(
      refused.stderr,
      `kd: error: --out ${foreign}: the folder exists and is not a kd distill output (no recipe.resolved.json); kd distill ` +
        `removes stage folders in it when settings change, so give a new or empty folder\n`,
    );
    assert.equal(readFileSync(join(foreign, 'data', 'notes.txt'), 'utf8'), 'mine');
  },
);
