// Registries built from a module's exports: listing order from `order` then name (a namespace's own key order is
// alphabetical and must not leak), duplicate names refused, and the method and student tables hold every export.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { lookup, registryOf } from '../../../src/util/registry.js';
import { METHODS } from '../../../src/distill/registry.js';
import { STUDENTS } from '../../../src/student/registry.js';
import * as allMethods from '../../../src/distill/methods/index.js';
import * as allStudents from '../../../src/student/students.js';

test('entries are listed by order, then those without one by name', () => {
  const table = registryOf([{ name: 'zeta' }, { name: 'beta', order: 2 }, { name: 'alpha' }, { name: 'omega', order: 1 }], 'thing');
  assert.deepEqual(Object.keys(table), ['omega', 'beta', 'alpha', 'zeta']);
  assert.equal(table.beta?.order, 2);
});

test('two entries with one name are a bug, named in the error', () => {
  assert.throws(
    () => registryOf([{ name: 'kd' }, { name: 'ce' }, { name: 'kd', order: 3 }], 'loss'),
    /two loss definitions are named 'kd'/,
  );
});

test('the method and student registries hold every export of their index, in the documented order', () => {
  // The namespace lists ce, dtkd, kd, lelp (sorted); the registry keeps the order the methods declare.
  assert.deepEqual(Object.keys(allMethods), ['ce', 'dtkd', 'kd', 'lelp']);
  assert.deepEqual(Object.keys(METHODS), ['ce', 'kd', 'dtkd', 'lelp']);
  for (const [exported, method] of Object.entries(allMethods)) assert.equal(METHODS[method.name], method, exported);
  assert.deepEqual(Object.keys(STUDENTS), ['ngram', 'transformer']);
  for (const [exported, student] of Object.entries(allStudents)) assert.equal(STUDENTS[student.name], student, exported);
  assert.throws(() => lookup(METHODS, 'loss', 'kdd'), { name: 'OptionError', message: "Unknown loss 'kdd'. Known: ce, kd, dtkd, lelp" });
  assert.throws(() => lookup(STUDENTS, 'student', 'cnn'), { message: "Unknown student 'cnn'. Known: ngram, transformer" });
});
