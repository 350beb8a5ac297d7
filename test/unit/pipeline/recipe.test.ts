// Recipes: the shipped ones load and plan the runs the README reports; a typo anywhere in a
// recipe (a field, a loss option) fails when the recipe is read, naming where and what is known.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadRecipe, planJobs } from '../../../src/pipeline/distill.js';
import { repoRoot, tempDir } from '../../helpers.js';

const shipped = (name: string) => join(repoRoot, 'recipes', name);

test('the shipped recipes load and plan their runs', () => {
  const s140 = planJobs(loadRecipe(shipped('sentiment140.yaml')), false);
  assert.equal(s140.length, 21);
  const amazon = planJobs(loadRecipe(shipped('amazon_polarity.yaml')), false);
  assert.equal(amazon.length, 26, '2 students × (4 methods + 3 late-switch points) + 12 sweep points');
  const lr = amazon.find((j) => j.name === 'ngram-lelp-lr0.02');
  assert.deepEqual(lr && { method: lr.method, seeds: lr.seeds, kind: lr.kind }, { method: { loss: 'lelp', subclasses: 4, lr: 0.02 }, seeds: [13, 14, 15], kind: 'sweep' });
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
  assert.throws(() => loadRecipe(field), { name: 'ConfigError', message: `${field}: unknown field 'students.ngram.dims'; students.ngram takes dim, hidden, buckets, epochs, batchSize, lr` });
  const top = withEdit('classes: 2', 'clases: 2');
  assert.throws(() => loadRecipe(top), { message: /unknown field 'clases'; the top level takes name, classes, data/ });
  const option = withEdit('- { loss: kd, lambda: 0.5, tau: 2 }', '- { loss: kd, lamda: 0.5, tau: 2 }');
  assert.throws(() => loadRecipe(option), { name: 'ConfigError', message: `${option}: run ngram-kd: loss 'kd' does not use option 'lamda' (--lamda) with these settings; it reads kdStart, lambda, lambdaRamp, lambdaSchedule, tau. Remove it or pick the loss that takes it` });
  const loss = withEdit('- { loss: dtkd }', '- { loss: dtk }');
  assert.throws(() => loadRecipe(loss), { message: `${loss}: run ngram-dtk: Unknown loss 'dtk'. Known: ce, kd, dtkd, lelp` });
});
