// Recipes: the shipped ones load and plan the runs the README reports; a typo anywhere in a
// recipe (a field, a loss option) fails when the recipe is read, naming where and what is known.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify as stringifyYaml } from 'yaml';
import { loadRecipe, planJobs } from '../../../src/pipeline/recipe.js';
import { repoRoot, sharedDir, tempDir } from '../../helpers.js';

const shipped = (name: string) => join(repoRoot, 'recipes', name);

test('the shipped recipes load and plan their runs', () => {
  const s140 = planJobs(loadRecipe(shipped('sentiment140.yaml')), false);
  assert.equal(s140.length, 21);
  const amazon = planJobs(loadRecipe(shipped('amazon_polarity.yaml')), false);
  assert.equal(amazon.length, 26, '2 students × (4 methods + 3 late-switch points) + 12 sweep points');
  const lr = amazon.find((j) => j.name === 'ngram-lelp-lr0.02');
  assert.deepEqual(lr && { method: lr.method, seeds: lr.seeds, kind: lr.kind }, {
    method: { loss: 'lelp', subclasses: 4, lr: 0.02 },
    seeds: [13, 14, 15],
    kind: 'sweep',
  });
  assert.deepEqual(amazon.find((j) => j.name === 'transformer-kd-late0.5')?.method, { loss: 'kd', lambda: 0.5, tau: 2, kdStart: 0.5 });
});

function withEdit(from: string, to: string): string {
  const text = readFileSync(shipped('amazon_polarity.yaml'), 'utf8');
  assert.ok(text.includes(from), from);
  const path = join(tempDir('kd-recipe-'), 'edited.yaml');
  writeFileSync(path, text.replace(from, to)); // its data paths are ${SHARED}/..., absolute once read
  return path;
}

test('an unknown field or loss option in a recipe is an error that says where and what is known', () => {
  const field = withEdit('ngram: { dim: 32,', 'ngram: { dims: 32,');
  assert.throws(() => loadRecipe(field), {
    name: 'ConfigError',
    message: `${field}: students.ngram.dims: unknown field; students.ngram takes dim, hidden, vocab, buckets, epochs, batchSize, lr`,
  });
  const top = withEdit('classes: 2', 'clases: 2');
  assert.throws(() => loadRecipe(top), { message: /: clases: unknown field; the top level takes name, classes, data/ });
  const option = withEdit('- { loss: kd, lambda: 0.5, tau: 2 }', '- { loss: kd, lamda: 0.5, tau: 2 }');
  assert.throws(() => loadRecipe(option), {
    name: 'ConfigError',
    message:
      `${option}: runs.methods[1].lamda: loss 'kd' does not use this option with these settings; it reads kdStart, ` +
      `lambda, lambdaRamp, lambdaSchedule, tau. Remove it or pick the loss that takes it (run ngram-kd)`,
  });
  const loss = withEdit('- { loss: dtkd }', '- { loss: dtk }');
  assert.throws(() => loadRecipe(loss), { message: `${loss}: runs.methods[2].loss: unknown loss "dtk"; known: ce, kd, dtkd, lelp` });
});

/** A small valid recipe (its data is the shared random sample), edited by `edit`, written to a temp file. */
function crafted(edit: (r: any) => void): string {
  const r: any = {
    name: 'crafted',
    classes: 2,
    data: { split: { files: ['${SHARED}/datasets/sentiment140/train_random_sample_33477.csv'], dev: 0.1, test: 0.1, seed: 13 } },
    teacher: { preset: 'tiny' },
    cache: { embedding: 'full', dtype: 'float16' },
    students: { ngram: { dim: 8, epochs: 1 }, transformer: { hidden: 32, heads: 2 } },
    runs: {
      seeds: [13, 14],
      students: ['ngram', 'transformer'],
      methods: [{ loss: 'ce' }, { loss: 'kd', lambda: 0.5, tau: 2 }],
      lateSwitch: { loss: 'kd', lambda: 0.5, tau: 2, kdStart: [0.5] },
      sweeps: [{ student: 'ngram', loss: 'kd', lambda: 0.5, tau: 2, param: 'tau', values: [1, 4] }],
    },
    quick: { limit: 300, teacherPreset: 'tiny', seeds: [13], epochs: 1 },
  };
  edit(r);
  const path = join(tempDir('kd-recipe-'), 'recipe.yaml');
  writeFileSync(path, stringifyYaml(r));
  return path;
}

test('the crafted base recipe is valid, so each case below fails for its one edit', () => {
  assert.equal(planJobs(loadRecipe(crafted(() => undefined)), false).length, 2 * 3 + 2);
});

test('every bad recipe value is refused when the recipe is read, naming the file and the exact field path', () => {
  const cases: [string, (r: any) => void, string][] = [
    ['a seed that is not an integer', (r) => (r.runs.seeds = [13, 'x']), 'runs.seeds[1]: must be an integer, got "x"'],
    [
      'a duplicate seed',
      (r) => (r.runs.seeds = [13, 14, 13]),
      'runs.seeds[2]: 13 is listed twice (also runs.seeds[0]); remove the duplicate',
    ],
    ['no seeds', (r) => (r.runs.seeds = []), 'runs.seeds: must list at least 1 item'],
    [
      'a duplicate quick seed',
      (r) => (r.quick.seeds = [7, 7]),
      'quick.seeds[1]: 7 is listed twice (also quick.seeds[0]); remove the duplicate',
    ],
    [
      'a duplicate sweep seed',
      (r) => (r.runs.sweeps[0].seeds = [1, 1]),
      'runs.sweeps[0].seeds[1]: 1 is listed twice (also runs.sweeps[0].seeds[0]); remove the duplicate',
    ],
    [
      'an unknown student',
      (r) => (r.runs.students = ['ngram', 'cnn']),
      'runs.students[1]: unknown student "cnn"; known: ngram, transformer',
    ],
    [
      'an unknown sweep student',
      (r) => (r.runs.sweeps[0].student = 'cnn'),
      'runs.sweeps[0].student: unknown student "cnn"; known: ngram, transformer',
    ],
    [
      'an unknown late-switch student',
      (r) => (r.runs.lateSwitch.students = ['rnn']),
      'runs.lateSwitch.students[0]: unknown student "rnn"; known: ngram, transformer',
    ],
    ['no cache section', (r) => delete r.cache, 'cache: is missing; add cache: { embedding: full, dtype: float16 }'],
    ['a bad cache embedding', (r) => (r.cache.embedding = 'pca:0'), 'cache.embedding: must be full, none or pca:K (K > 0), got "pca:0"'],
    ['a dev fraction out of range', (r) => (r.data.split.dev = 1.5), 'data.split.dev: must be a number in [0, 1), got 1.5'],
    [
      'dev + test of 1 or more',
      (r) => Object.assign(r.data.split, { dev: 0.5, test: 0.5 }),
      'data.split.dev: dev + test must be below 1, got 1',
    ],
    ['a fractional split seed', (r) => (r.data.split.seed = 1.5), 'data.split.seed: must be an integer, got 1.5'],
    [
      'an unknown teacher preset',
      (r) => (r.teacher.preset = 'huge'),
      'teacher.preset: unknown teacher preset "huge"; known: base, large, tiny (or a JSON file of settings)',
    ],
    [
      'an unknown quick teacher preset',
      (r) => (r.quick.teacherPreset = 'huge'),
      'quick.teacherPreset: unknown teacher preset "huge"; known: base, large, tiny (or a JSON file of settings)',
    ],
    ['a quick limit of 0', (r) => (r.quick.limit = 0), 'quick.limit: must be an integer of at least 1, got 0'],
    ['quick.extraTrain not a boolean', (r) => (r.quick.extraTrain = 'no'), 'quick.extraTrain: must be true or false, got "no"'],
    [
      'a late-switch point out of range',
      (r) => (r.runs.lateSwitch.kdStart = [0.5, 2]),
      'runs.lateSwitch.kdStart[1]: must be a number in [0, 1], got 2',
    ],
    [
      'a method option out of range',
      (r) => (r.runs.methods[1].tau = 0),
      'runs.methods[1].tau: must be a number in [0.001, 100], got 0 (run ngram-kd)',
    ],
    [
      'a method choice option misspelt',
      (r) => (r.runs.methods[1].lambdaSchedule = 'linaer'),
      'runs.methods[1].lambdaSchedule: must be constant or linear, got "linaer" (run ngram-kd)',
    ],
    [
      'a bad swept value',
      (r) => (r.runs.sweeps[0].values = [1, 'x']),
      'runs.sweeps[0].values[1]: must be a number in [0.001, 100], got "x" (run ngram-kd-taux)',
    ],
    [
      'a swept lr of 0',
      (r) => Object.assign(r.runs.sweeps[0], { param: 'lr', values: [0.01, 0] }),
      'runs.sweeps[0].values[1]: must be a number above 0, got 0',
    ],
    [
      'a sweep over an option its loss ignores',
      (r) => Object.assign(r.runs.sweeps[0], { param: 'subclasses', values: [2] }),
      "runs.sweeps[0].param: loss 'kd' does not use this option with these settings; it reads kdStart, lambda, lambdaRamp, " +
        'lambdaSchedule, tau. Remove it or pick the loss that takes it (run ngram-kd-subclasses2)',
    ],
    [
      'a method epochs override of 0',
      (r) => (r.runs.methods[0].epochs = 0),
      'runs.methods[0].epochs: must be an integer of at least 1, got 0',
    ],
    [
      'a method without loss',
      (r) => (r.runs.methods[0] = { lambda: 0.5 }),
      'runs.methods[0].loss: is missing; add loss: one of ce, kd, dtkd, lelp',
    ],
    [
      'two methods making one run',
      (r) => r.runs.methods.push({ loss: 'kd', lambda: 0.9, tau: 2 }),
      'runs.methods[2]: makes run ngram-kd, as runs.methods[1] does (they would share runs/ngram-kd); remove one, or make it a sweep',
    ],
    [
      'a student width not divisible by its heads',
      (r) => (r.students.transformer.hidden = 33),
      'students.transformer.hidden: 33 must be divisible by heads (2)',
    ],
    ['a student dim that is not a number', (r) => (r.students.ngram.dim = 'wide'), 'students.ngram.dim: must be an integer, got "wide"'],
    ['runs.students not a list', (r) => (r.runs.students = 'ngram'), 'runs.students: must be a list (e.g. [a, b]), got "ngram"'],
    [
      'a teacher with neither preset nor dir',
      (r) => (r.teacher = {}),
      'teacher: needs preset (a teacher kd trains) or dir (a teacher folder)',
    ],
    ['an unknown class count', (r) => (r.classes = 4), 'classes: unknown class count 4; known: 2, 3, 5'],
    ['a caveat that is not text', (r) => (r.caveats = [3]), 'caveats[0]: must be a non-empty string, got 3'],
    [
      'LELP on a cache without embeddings',
      (r) => {
        r.cache.embedding = 'none';
        r.runs.methods.push({ loss: 'lelp', subclasses: 4 });
      },
      "cache.embedding: none cannot serve runs.methods[2] (run ngram-lelp): '--loss lelp' needs teacher embeddings, but the " +
        'cache was built with --embedding none. Rebuild it with --embedding full (or pca:K)',
    ],
  ];
  for (const [what, edit, message] of cases) {
    const path = crafted(edit);
    assert.throws(() => loadRecipe(path), { name: 'ConfigError', message: `${path}: ${message}` }, what);
  }
});

test('an empty recipe, a YAML syntax error and a missing teacher folder are one-line errors naming the file (and line:column)', () => {
  const dir = tempDir('kd-recipe-');
  const empty = join(dir, 'empty.yaml');
  writeFileSync(empty, '# nothing yet\n');
  assert.throws(() => loadRecipe(empty), {
    name: 'ConfigError',
    message: `${empty}: the recipe: must be a mapping (key: value lines), got null`,
  });
  const broken = join(dir, 'broken.yaml');
  writeFileSync(broken, 'name: x\nruns:\n  seeds: [13, 14\n  students: [ngram]\n');
  assert.throws(
    () => loadRecipe(broken),
    (e: Error) => e.name === 'ConfigError' && e.message.startsWith(`${broken}:4:3: YAML syntax error: `) && !e.message.includes('\n'),
  );
  const duplicate = join(dir, 'duplicate.yaml');
  writeFileSync(duplicate, 'name: x\nname: y\n');
  assert.throws(() => loadRecipe(duplicate), {
    message: `${duplicate}:2:1: YAML syntax error: Map keys must be unique. Fix the recipe there`,
  });
  const presetFile = join(dir, 'preset.json');
  writeFileSync(presetFile, '{ "layers": 2,');
  const badPreset = crafted((r) => (r.quick.teacherPreset = presetFile));
  assert.throws(
    () => loadRecipe(badPreset),
    (e: Error) =>
      e.name === 'ConfigError' && e.message.startsWith(`${badPreset}: quick.teacherPreset: ${presetFile}: `) && /JSON/.test(e.message),
  );
  const teacher = crafted((r) => (r.teacher = { dir: join(dir, 'no-such-teacher') }));
  assert.throws(() => loadRecipe(teacher), {
    message:
      `${teacher}: teacher.dir: ${join(dir, 'no-such-teacher')} does not exist; give an HF-layout teacher folder ` +
      `(config.json, tokenizer.json, onnx/model.onnx)`,
  });
});

test('teacher.tune: dev or existing files, resolved; a missing file, a duplicate or a tune next to teacher.dir is refused', () => {
  const shippedTune = loadRecipe(shipped('sentiment140.yaml')).teacher.tune!;
  assert.equal(shippedTune[0], 'dev');
  assert.match(shippedTune[1]!, /\/datasets\/uci_sentences\/yelp_labelled\.jsonl$/);
  const missing = withEdit('    - dev\n', '    - dev\n    - nowhere/sentences.jsonl\n');
  assert.throws(() => loadRecipe(missing), {
    name: 'ConfigError',
    message: new RegExp(`^${missing}: teacher\\.tune\\[1\\]: data file .*/nowhere/sentences\\.jsonl does not exist`),
  });
  const twice = withEdit('    - dev\n', '    - dev\n    - dev\n');
  assert.throws(() => loadRecipe(twice), { message: /: teacher\.tune\[1\]: "dev" is listed twice \(also teacher\.tune\[0\]\)/ });
  const withDir = withEdit('  preset: large\n', '  dir: models/teacher-amazon\n');
  assert.throws(() => loadRecipe(withDir), {
    message: /: teacher\.tune: tunes a teacher kd trains \(preset\); a teacher folder \(dir\) is used as it is: remove one$/,
  });
});

test('teacher.extraTrain: existing labelled files, resolved; a bad entry, a dev/test file or one next to teacher.dir is refused', () => {
  const amazon = (f: string) => join(sharedDir, 'datasets', 'amazon_polarity', f);
  const pool = ['train_random_sample_9992.ft.txt', 'test_head_part1_4459.ft.txt', 'test_lines_6460_10000.ft.txt'].map(amazon);
  // The few-label recipe's teacher alone reads the reviews; the full recipe's students learn from them too.
  assert.deepEqual(loadRecipe(shipped('sentiment140_fewlabel.yaml')).teacher.extraTrain, pool);
  const s140 = loadRecipe(shipped('sentiment140.yaml'));
  assert.equal(s140.teacher.extraTrain, undefined);
  assert.deepEqual(s140.data.extraTrain!.slice(2), pool);
  const amazonRecipe = loadRecipe(shipped('amazon_polarity.yaml'));
  assert.equal(amazonRecipe.teacher.extraTrain, undefined, 'the Amazon recipes keep their teacher');
  // The Amazon recipes' held-out test file is in no Sentiment140 recipe.
  assert.ok(!readFileSync(shipped('sentiment140.yaml'), 'utf8').includes('test_random_sample_6814'));

  const accepted = loadRecipe(crafted((r) => (r.teacher.extraTrain = ['${SHARED}/datasets/amazon_polarity/test_head_part1_4459.ft.txt'])));
  assert.deepEqual(accepted.teacher.extraTrain, [pool[1]]);

  const heldOut = amazon('test_random_sample_6814.ft.txt');
  const cases: [string, (r: any) => void, string][] = [
    ['a path that is not text', (r) => (r.teacher.extraTrain = [pool[0], 3]), 'teacher.extraTrain[1]: must be a non-empty string, got 3'],
    ['not a list', (r) => (r.teacher.extraTrain = pool[0]), `teacher.extraTrain: must be a list (e.g. [a, b]), got "${pool[0]}"`],
    [
      'a test file',
      (r) => Object.assign(r, { data: { ...r.data, test: [heldOut] }, teacher: { preset: 'tiny', extraTrain: [pool[0], heldOut] } }),
      `teacher.extraTrain[1]: ${heldOut} is also data.test[0] (a test file); remove it from teacher.extraTrain`,
    ],
    [
      'a file the split takes dev and test rows from',
      (r) => (r.teacher.extraTrain = [r.data.split.files[0]]),
      `teacher.extraTrain[0]: ${join(sharedDir, 'datasets', 'sentiment140', 'train_random_sample_33477.csv')} is also ` +
        'data.split.files[0] (the split takes dev and test rows from it); remove it from teacher.extraTrain',
    ],
    [
      'next to teacher.dir',
      (r) => (r.teacher = { dir: sharedDir, extraTrain: [pool[0]] }),
      'teacher.extraTrain: is training data for a teacher kd trains (preset); a teacher folder (dir) is used as it is: remove one',
    ],
  ];
  for (const [what, edit, message] of cases) {
    const path = crafted(edit);
    assert.throws(() => loadRecipe(path), { name: 'ConfigError', message: `${path}: ${message}` }, what);
  }
  const missing = crafted((r) => (r.teacher.extraTrain = ['nowhere/reviews.ft.txt']));
  assert.throws(() => loadRecipe(missing), {
    message: new RegExp(`^${missing}: teacher\\.extraTrain\\[0\\]: data file .*/nowhere/reviews\\.ft\\.txt does not exist`),
  });
});
