import { test } from 'node:test';
import assert from 'node:assert/strict';
import { assignSplits } from '../../../src/data/split.js';
import { unitHash } from '../../../src/util/hash.js';

test('unitHash is uniform-looking, in [0,1), and depends on seed and key', () => {
  const values = Array.from({ length: 10000 }, (_, i) => unitHash(13, `id${i}`));
  assert.ok(values.every((v) => v >= 0 && v < 1));
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  assert.ok(Math.abs(mean - 0.5) < 0.01, `mean ${mean}`);
  assert.equal(unitHash(13, 'a'), unitHash(13, 'a'));
  assert.notEqual(unitHash(13, 'a'), unitHash(14, 'a'));
});

test('assignSplits gives exact per-class proportions and is deterministic', () => {
  const n = 1003;
  const labels = Uint8Array.from({ length: n }, (_, i) => (i % 3 === 0 ? 1 : 0));
  const keys = Float64Array.from({ length: n }, (_, i) => unitHash(13, String(i)));
  const split = assignSplits(keys, labels, 2, 0.1, 0.2);
  for (const c of [0, 1]) {
    const members = [...labels.keys()].filter((i) => labels[i] === c);
    const count = (s: number) => members.filter((i) => split[i] === s).length;
    assert.equal(count(2), Math.round(members.length * 0.2));
    assert.equal(count(1), Math.round(members.length * 0.1));
    assert.equal(count(0), members.length - count(1) - count(2));
  }
  assert.deepEqual(assignSplits(keys, labels, 2, 0.1, 0.2), split);
  const other = assignSplits(
    Float64Array.from({ length: n }, (_, i) => unitHash(14, String(i))),
    labels,
    2,
    0.1,
    0.2,
  );
  assert.notDeepEqual(other, split);
});
