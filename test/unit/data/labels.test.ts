import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseClassCount, parseLabelMap, resolveLabel } from '../../../src/data/labels.js';

test('resolves names, indices and maps; neutral is a skip only for binary', () => {
  assert.deepEqual(resolveLabel('POSITIVE', 2), { kind: 'class', index: 1 });
  assert.deepEqual(resolveLabel(0, 2), { kind: 'class', index: 0 });
  assert.deepEqual(resolveLabel(1n, 2), { kind: 'class', index: 1 });
  assert.deepEqual(resolveLabel('2', 2), { kind: 'unknown' });
  assert.deepEqual(resolveLabel('neutral', 2), { kind: 'neutral' });
  assert.deepEqual(resolveLabel('neutral', 3), { kind: 'class', index: 1 });
  assert.deepEqual(resolveLabel('very positive', 5), { kind: 'class', index: 4 });
  const map = parseLabelMap('0=negative,2=neutral,4=positive');
  assert.deepEqual(resolveLabel('4', 2, map), { kind: 'class', index: 1 });
  assert.deepEqual(resolveLabel(2, 2, map), { kind: 'neutral' });
  assert.deepEqual(resolveLabel('1', 2, map), { kind: 'unknown' });
  assert.deepEqual(resolveLabel(null, 2), { kind: 'unknown' });
  assert.deepEqual(resolveLabel('', 2), { kind: 'unknown' });
});

test('option errors name the option and show the expected form', () => {
  assert.throws(() => parseLabelMap('0:negative'), {
    name: 'OptionError',
    message: `'--label-map' entries must look like RAW=CLASS (e.g. "0=negative,4=positive"), got "0:negative"`,
  });
  assert.throws(() => parseClassCount('4'), { name: 'OptionError', message: `'--classes' must be 2, 3 or 5, got "4"` });
});
