// kd distill on a tiny recipe (400 Amazon reviews, the tiny foreign teacher, one n-gram student):
// a changed stage starts anew and redoes what follows it, an unchanged one is skipped, a killed
// one resumes in place; the CPU fallback is wired through; recipe mistakes are one-line errors.
// A tweets recipe whose tiny trained teacher also reads reviews (teacher.extraTrain) keeps them from the students.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify as stringifyYaml } from 'yaml';
import { CacheReader } from '../../src/cache/reader.js';
import { readAllExamples } from '../../src/data/read.js';
import { AMAZON_TRAIN, runKd, S140_10K, S140_RANDOM, sharedPath, tempDir } from '../helpers.js';

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

test(
  'teacher.extraTrain: the trained teacher learns from the split, data.extraTrain and its own files (JSONL, CSV and ' +
    "fastText in one read); the students' cache holds none of its rows; a changed file redoes the teacher and the cache",
  async () => {
    const dir = join(root, 'teacher-extra');
    mkdirSync(dir, { recursive: true });
    const head = (file: string, from: number, to: number) => readFileSync(file, 'utf8').split('\n').slice(from, to).join('\n') + '\n';
    // The random sample is sorted by label: every 100th tweet gives both (334 rows).
    const tweets = join(dir, 'tweets.csv');
    writeFileSync(
      tweets,
      `${readFileSync(S140_RANDOM(), 'utf8')
        .split('\n')
        .filter((l, i) => l !== '' && i % 100 === 0)
        .join('\n')}\n`,
    );
    const moreTweets = join(dir, 'more-tweets.csv');
    writeFileSync(moreTweets, head(S140_10K(), 0, 60));
    const reviews = join(dir, 'reviews.ft.txt');
    writeFileSync(reviews, head(AMAZON_TRAIN(), 400, 480));
    const path = join(dir, 'recipe.yaml');
    writeFileSync(
      path,
      stringifyYaml({
        name: 'tweets, teacher reads reviews',
        classes: 2,
        data: { split: { files: [tweets], dev: 0.2, test: 0.2, seed: 13 }, extraTrain: [moreTweets] },
        teacher: { preset: 'tiny', extraTrain: [reviews] },
        cache: { embedding: 'none', dtype: 'float32' },
        runs: { seeds: [13], students: ['ngram'], methods: [{ loss: 'kd', lambda: 0.5, tau: 2 }] },
        quick: { extraTrain: false },
      }),
    );
    const out = join(dir, 'out');
    const run = runs(out);
    const read = { classes: 2 as const, progress: false as const };
    const ids = async (files: string[]) => new Set((await readAllExamples(files, read)).examples.map((e) => e.id));
    const reviewIds = await ids([reviews]);
    const splitFiles = ['train', 'dev', 'test'].map((s) => join(out, 'data', `${s}.jsonl`));

    run(path, ['--until', 'cache']);
    const trainRun = () => JSON.parse(readFileSync(join(out, 'teacher', 'training', 'run.json'), 'utf8'));
    const trainIds = await ids([splitFiles[0]!]);
    assert.deepEqual(trainRun().trainFiles, [splitFiles[0], moreTweets, reviews]);
    assert.equal(trainRun().trainRows, trainIds.size + 60 + reviewIds.size);
    assert.equal(reviewIds.size, 80);
    const cached = () => new Set(CacheReader.open(join(out, 'cache')).keys().ids);
    const studentRows = await ids([...splitFiles, moreTweets]);
    assert.deepEqual(cached(), studentRows, 'the cache holds the split and data.extraTrain, no review');
    assert.ok([...reviewIds].every((id) => !studentRows.has(id)));

    // Another review file (same path, new rows): the teacher is trained anew, and so the cache.
    writeFileSync(reviews, head(AMAZON_TRAIN(), 400, 520));
    const changed = run(path, ['--until', 'cache']);
    assert.match(changed, /^split: done before, skipped/m);
    assert.match(changed, /^teacher: settings changed: extraInputs — starting teacher anew/m);
    assert.match(changed, /^cache: settings changed: teacher\.config\.json, .* — starting cache anew/m);
    assert.equal(trainRun().trainRows, trainIds.size + 60 + 120);
    assert.deepEqual(cached(), studentRows);

    // --quick with quick.extraTrain false: the teacher trains on the split alone, as the students do.
    const quick = join(dir, 'quick');
    runs(quick)(path, ['--quick', '--until', 'teacher']);
    const quickRun = JSON.parse(readFileSync(join(quick, 'teacher', 'training', 'run.json'), 'utf8'));
    assert.deepEqual([quickRun.trainFiles, quickRun.trainRows], [[join(quick, 'data', 'train.jsonl')], trainIds.size]);

    // --teacher replaces the recipe's teacher: the log names the recipe's teacher settings it leaves unused.
    const given = runs(join(dir, 'given'))(path, ['--teacher', sharedPath('fixtures', 'hf', 'tiny-random-bert'), '--until', 'teacher']);
    assert.match(given, /^teacher: using --teacher .*tiny-random-bert; the recipe's teacher\.preset, teacher\.extraTrain are not used$/m);
  },
);
