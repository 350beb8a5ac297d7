// The default teacher with lexicon members through kd distill: --until stops after each stage; the
// ensemble is fitted on the recipe's teacher.tune files and on nothing else (a file it does not
// list can change without touching the teacher; a listed one refits it, members reused); and
// kd teacher eval prints one row per data file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify as stringifyYaml } from 'yaml';
import { TEACHER_PRESETS } from '../../src/teacher/default-config.js';
import { S140_RANDOM, runKd, sharedPath, tempDir } from '../helpers.js';

const root = tempDir('kd-lexicon-teacher-');
const tweets = join(root, 'tweets.csv');
// The random sample is in random order: its first 1,200 tweets hold both labels.
writeFileSync(tweets, `${readFileSync(S140_RANDOM(), 'utf8').split('\n').slice(0, 1200).join('\n')}\n`);
const sentences = (set: string) =>
  readFileSync(sharedPath('datasets', 'uci_sentences', `${set}_labelled.jsonl`), 'utf8')
    .trim()
    .split('\n');
const yelp = join(root, 'yelp.jsonl');
const imdb = join(root, 'imdb.jsonl');
writeFileSync(yelp, `${sentences('yelp').slice(0, 300).join('\n')}\n`);
writeFileSync(imdb, `${sentences('imdb').slice(0, 300).join('\n')}\n`);
const preset = join(root, 'tiny-lexicons.json');
writeFileSync(preset, JSON.stringify({ ...TEACHER_PRESETS.tiny, lexicons: ['afinn', 'vader', 'wink'] }));

const recipePath = join(root, 'recipe.yaml');
writeFileSync(
  recipePath,
  stringifyYaml({
    name: 'tiny lexicon',
    classes: 2,
    data: { split: { files: [tweets], dev: 0.2, test: 0.2, seed: 13 } },
    teacher: { preset, tune: ['dev', yelp] },
    cache: { embedding: 'full', dtype: 'float32' },
    students: { ngram: { dim: 8, buckets: 4096, epochs: 1, batchSize: 32, lr: 0.005 } },
    runs: { seeds: [13], students: ['ngram'], methods: [{ loss: 'kd', lambda: 0.5, tau: 2 }] },
  }),
);

const sha = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');
const flipLabels = (file: string) =>
  writeFileSync(
    file,
    readFileSync(file, 'utf8').replace(/"(positive|negative)"/g, (_, l: string) => (l === 'positive' ? '"negative"' : '"positive"')),
  );

test('kd distill --until each stage; the ensemble is tuned on teacher.tune only; kd teacher eval prints a row per file', () => {
  const out = join(root, 'out');
  const distill = (until: string) => {
    const r = runKd(['distill', '--recipe', recipePath, '--out', out, '--until', until]);
    assert.equal(r.status, 0, r.stderr);
    return r;
  };
  const split = distill('split');
  assert.match(split.stdout, /^stopped after the split stage in /m);
  assert.ok(existsSync(join(out, 'data', 'train.jsonl')));
  assert.ok(!existsSync(join(out, 'teacher')), 'no teacher after --until split');

  const first = distill('teacher');
  assert.match(first.stdout, /^stopped after the teacher stage in /m);
  assert.match(first.stderr, /^split: done before, skipped/m);
  const model = join(out, 'teacher', 'onnx', 'model.onnx');
  assert.ok(existsSync(model));
  assert.ok(!existsSync(join(out, 'cache')), 'no cache after --until teacher');
  const training = () => JSON.parse(readFileSync(join(out, 'teacher', 'config.json'), 'utf8')).kd.training;
  const tuned = training();
  assert.deepEqual(tuned.tune.files, ['dev', yelp]);
  assert.equal(tuned.tune.rows, tuned.devRows + 300);
  assert.deepEqual(tuned.lexicon.names, ['afinn', 'vader', 'wink']);
  const firstModel = sha(model);
  const checkpoints = [0, 1].map((k) => join(out, 'teacher', 'training', `member${k}`, 'best.safetensors'));
  const written = checkpoints.map((p) => statSync(p).mtimeMs);

  // The file the ensemble is measured on, not tuned on, changes: the teacher is untouched.
  flipLabels(imdb);
  const again = distill('teacher');
  assert.match(again.stderr, /^teacher: done before, skipped/m);
  assert.equal(sha(model), firstModel);

  // A tuning file changes: the members resume as trained (no step is retrained) and only the ensemble is refitted.
  flipLabels(yelp);
  const refit = distill('teacher');
  assert.match(refit.stderr, /^teacher: tuneInputs changed — redoing teacher in place /m);
  const retuned = training();
  assert.notEqual(sha(model), firstModel);
  assert.deepEqual(
    retuned.members.map((m: { steps: number }) => m.steps),
    tuned.members.map((m: { steps: number }) => m.steps),
  );
  assert.deepEqual(
    checkpoints.map((p) => statSync(p).mtimeMs),
    written,
    'the members were not retrained',
  );
  // The refit read the changed file: other lexicon rows, fitted on its rows plus dev's.
  assert.notDeepEqual(retuned.lexicon.rows, tuned.lexicon.rows);
  assert.equal(retuned.tune.rows, tuned.tune.rows);

  // --until cache, then --until students: each stops where it says, and the report waits for a run without --until.
  assert.match(distill('cache').stdout, /^stopped after the cache stage in /m);
  assert.ok(existsSync(join(out, 'cache')) && !existsSync(join(out, 'runs')), 'a cache, no student runs');
  const students = runKd(['distill', '--recipe', recipePath, '--out', out, '--until', 'students', '--json']);
  assert.equal(students.status, 0, students.stderr);
  assert.deepEqual(students.json(), { report: null, runs: [join(out, 'runs', 'ngram-kd')], stoppedAfter: 'students' });
  assert.ok(!existsSync(join(out, 'report.html')) && !existsSync(join(out, 'teacher-eval')), 'no teacher eval, no report');

  // kd teacher eval: one row per file, then all of them; the rows' counts add up.
  const ev = runKd(['teacher', 'eval', '--model', join(out, 'teacher'), '--data', yelp, imdb, '--json']);
  assert.equal(ev.status, 0, ev.stderr);
  const lines = ev.stdout.trimEnd().split('\n').slice(0, -1);
  assert.equal(lines.length, 3);
  assert.match(lines[0]!, new RegExp(`^${yelp} +accuracy \\d+\\.\\d\\d% \\(95% CI .*\\), n = 300, macro-F1`));
  assert.match(lines[1]!, new RegExp(`^${imdb} +accuracy \\d+\\.\\d\\d% .*n = 300`));
  assert.match(lines[2]!, /^all +accuracy \d+\.\d\d% .*n = 600, .* texts\/s on cpu$/);
  const e = ev.json();
  assert.deepEqual(
    e.perFile.map((f: { data: string; n: number }) => [f.data, f.n]),
    [
      [yelp, 300],
      [imdb, 300],
    ],
  );
  assert.equal(e.correct, e.perFile[0].correct + e.perFile[1].correct);
});
