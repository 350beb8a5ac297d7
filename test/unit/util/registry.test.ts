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
  // A namespace lists its keys sorted (ce, dtkd, kd, lelp); the registry keeps the order the methods declare. Only the
  // shipped entries' order is pinned, so adding one (one file plus one export line) needs no change here.
  assert.deepEqual(Object.keys(allMethods), Object.keys(allMethods).sort());
  assert.deepEqual(Object.keys(METHODS).slice(0, 4), ['ce', 'kd', 'dtkd', 'lelp']);
  assert.deepEqual(Object.keys(STUDENTS).slice(0, 2), ['ngram', 'transformer']);
  for (const [all, table] of [
    [allMethods, METHODS],
    [allStudents, STUDENTS],
  ] as const) {
    assert.equal(Object.keys(table).length, Object.keys(all).length);
    for (const [exported, entry] of Object.entries(all)) assert.equal(table[entry.name], entry, exported);
  }
  assert.throws(() => lookup(METHODS, 'loss', 'kdd'), { name: 'OptionError', message: /^Unknown loss 'kdd'\. Known: ce, kd, dtkd, lelp/ });
  assert.throws(() => lookup(STUDENTS, 'student', 'cnn'), { message: /^Unknown student 'cnn'\. Known: ngram, transformer/ });
});
