// The n-gram student's bigram hashing: closed-form buckets, exact at the largest ids; the exported
// graph's feature rows equal the TypeScript reference (ngramFeatureIds) row for row, padding and
// empty batches included; and the exported graph (features from token ids) gives the logits of
// the evaluation graph (features from the host).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Graph } from '../../../src/engine/graph.js';
import { declareInputs, ModelContext, modelParamSpecs, PARAM_PREFIX } from '../../../src/engine/context.js';
import { exportModel } from '../../../src/engine/train-graph.js';
import { ParameterStore } from '../../../src/engine/params.js';
import { Rng } from '../../../src/engine/rng.js';
import { createSession, ort } from '../../../src/engine/session.js';
import { BIGRAM_PRIME, bigramBucket, MAX_NGRAM_ROWS, ngramFeatureIds } from '../../../src/text/ngrams.js';
import { ngramFeatureGraph, ngramFeeds, ngramStudent, type NgramStudentConfig } from '../../../src/student/ngram.js';

test('bigramBucket is (a·P + b) mod buckets, exact for the largest ids a vocabulary can have', () => {
  assert.equal(BIGRAM_PRIME, 1000003);
  // 5·1000003 + 7 = 5000022 = 4·1250005 + 2
  assert.equal(bigramBucket(5, 7, 4), 2);
  assert.equal(bigramBucket(0, 0, 10), 0);
  assert.equal(bigramBucket(1, 2, 1000), (1000003 + 2) % 1000);
  const big = MAX_NGRAM_ROWS - 1;
  for (const [a, b, buckets] of [
    [big, big, 196608],
    [big, big - 1, 999999937],
    [big - 7, 3, 131071],
  ] as const)
    assert.equal(BigInt(bigramBucket(a, b, buckets)), (BigInt(a) * BigInt(BIGRAM_PRIME) + BigInt(b)) % BigInt(buckets), `${a} ${b}`);
  assert.deepEqual(Array.from(ngramFeatureIds(Int32Array.of(5, 7), { vocabSize: 10, buckets: 4 })), [5, 7, 12]);
  assert.deepEqual(Array.from(ngramFeatureIds([9], { vocabSize: 10, buckets: 4 })), [9]);
  assert.deepEqual(Array.from(ngramFeatureIds([], { vocabSize: 10, buckets: 4 })), []);
});

/** Runs ngramFeatureGraph on a right-padded batch of id lists; returns [B, 2T − 1] rows and mask. */
async function graphRows(lists: number[][], h: { vocabSize: number; buckets: number }) {
  const g = new Graph('features');
  const inputs = declareInputs(g, {
    input_ids: { dtype: 'int64', shape: ['batch_size', 'sequence_length'] },
    attention_mask: { dtype: 'int64', shape: ['batch_size', 'sequence_length'] },
  });
  const { rows, mask } = ngramFeatureGraph(inputs.input_ids!, inputs.attention_mask!, h);
  const { session } = await createSession(
    g.serialize({
      outputs: [
        { name: 'rows', value: rows },
        { name: 'mask', value: mask },
      ],
    }),
  );
  const T = Math.max(0, ...lists.map((l) => l.length));
  const ids = new BigInt64Array(lists.length * T);
  const att = new BigInt64Array(lists.length * T);
  lists.forEach((l, r) => l.forEach((id, k) => ((ids[r * T + k] = BigInt(id)), (att[r * T + k] = 1n))));
  const out = await session.run({
    input_ids: new ort.Tensor('int64', ids, [lists.length, T]),
    attention_mask: new ort.Tensor('int64', att, [lists.length, T]),
  });
  await session.release();
  return { T, rows: out.rows!, mask: out.mask! };
}

/** The rows ngramFeatureIds gives, laid out as the graph lays them: ids at 0..n, pairs at T..T+n−1. */
function checkAgainstReference(
  lists: number[][],
  T: number,
  rows: ort.Tensor,
  mask: ort.Tensor,
  h: { vocabSize: number; buckets: number },
) {
  const width = Math.max(0, 2 * T - 1);
  assert.deepEqual(rows.dims, [lists.length, width]);
  const r64 = rows.data as BigInt64Array;
  const m64 = mask.data as BigInt64Array;
  lists.forEach((l, r) => {
    const want = ngramFeatureIds(l, h);
    const got: number[] = [];
    for (let k = 0; k < width; k++) if (m64[r * width + k] === 1n) got.push(Number(r64[r * width + k]!));
    assert.deepEqual(got, Array.from(want), `row ${r}`);
    // Every row id, padding included, lies inside the table.
    for (let k = 0; k < width; k++) assert.ok(r64[r * width + k]! >= 0n && r64[r * width + k]! < BigInt(h.vocabSize + h.buckets));
  });
}

test("the exported graph's feature rows equal ngramFeatureIds (random batches, ids up to 2^31 − 2, padding, empty texts)", async () => {
  const rng = new Rng(7);
  const cases: [{ vocabSize: number; buckets: number }, number][] = [
    [{ vocabSize: 50, buckets: 7 }, 50],
    [{ vocabSize: 32768, buckets: 196608 }, 32768],
    [{ vocabSize: MAX_NGRAM_ROWS - 196608, buckets: 196608 }, MAX_NGRAM_ROWS - 196608],
  ];
  for (const [h, vocab] of cases) {
    const lists = Array.from({ length: 9 }, (_, r) => Array.from({ length: r === 0 ? 0 : rng.int(13) }, () => rng.int(vocab)));
    lists.push([vocab - 1, vocab - 1, 0, vocab - 2]);
    const { T, rows, mask } = await graphRows(lists, h);
    checkAgainstReference(lists, T, rows, mask, h);
  }
  // All texts empty (transformers.js then feeds [n, 0]) and all of one token.
  for (const lists of [
    [[], []],
    [[3], [4]],
  ]) {
    const h = { vocabSize: 10, buckets: 5 };
    const { T, rows, mask } = await graphRows(lists, h);
    checkAgainstReference(lists, T, rows, mask, h);
  }
});

test('the exported student (rows from input_ids) gives the logits of its evaluation graph (rows from the host)', async () => {
  const cfg: NgramStudentConfig = { vocabSize: 40, buckets: 23, maxLength: 16, dim: 6, hidden: 5, dropout: 0 };
  const model = ngramStudent(cfg, 3);
  const store = new ParameterStore('float32');
  store.initialize(modelParamSpecs(model), new Rng(3));
  const rng = new Rng(5);
  for (const spec of store.specs) {
    const v = store.get(spec.name);
    for (let i = 0; i < v.length; i++) v[i]! += 0.3 * rng.normal();
  }
  const exported = await createSession(exportModel(model, store, { outputs: ['head'], rename: { head: 'logits' } }));
  assert.deepEqual([...exported.session.inputNames].sort(), ['attention_mask', 'input_ids']);
  const g = new Graph('eval');
  const outs = model.forward(new ModelContext(g, 'float32', 'eval'), declareInputs(g, model.inputs));
  const evaluation = await createSession(g.serialize({ outputs: [{ name: 'logits', value: outs.head! }] }));
  assert.deepEqual(
    evaluation.session.inputNames.filter((n) => !n.startsWith(PARAM_PREFIX)),
    ['ngram_ids', 'ngram_mask'],
  );
  const lists = [[1, 2, 3], [], [39, 39, 0, 7, 8, 9, 10], [5]];
  const T = 7;
  const ids = new BigInt64Array(lists.length * T);
  const att = new BigInt64Array(lists.length * T);
  lists.forEach((l, r) => l.forEach((id, k) => ((ids[r * T + k] = BigInt(id)), (att[r * T + k] = 1n))));
  const a = (
    await exported.session.run({
      input_ids: new ort.Tensor('int64', ids, [lists.length, T]),
      attention_mask: new ort.Tensor('int64', att, [lists.length, T]),
    })
  ).logits!.data as Float32Array;
  const feeds: Record<string, ort.Tensor> = { ...ngramFeeds(lists.map((l) => ngramFeatureIds(l, cfg))) };
  for (const name of evaluation.session.inputNames)
    if (name.startsWith(PARAM_PREFIX)) {
      const p = name.slice(PARAM_PREFIX.length);
      feeds[name] = new ort.Tensor('float32', store.get(p) as Float32Array, store.spec(p).shape);
    }
  const b = (await evaluation.session.run(feeds)).logits!.data as Float32Array;
  assert.equal(a.length, 12);
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i]! - b[i]!) < 1e-6, `logit ${i}: ${a[i]} vs ${b[i]}`);
  // Different texts, different logits: the comparison is not between constants.
  assert.ok(Math.abs(a[0]! - a[6]!) > 1e-3);
  await exported.session.release();
  await evaluation.session.release();
});

test("ngramFeeds' int32 form (the host trainer's) holds the int64 form's values, padded the same way", () => {
  const features = [Int32Array.of(4, 9, 2 ** 31 - 1), Int32Array.of(), Int32Array.of(7)];
  const wide = ngramFeeds(features);
  const narrow = ngramFeeds(features, 'int32');
  for (const name of ['ngram_ids', 'ngram_mask']) {
    assert.equal(wide[name]!.type, 'int64');
    assert.equal(narrow[name]!.type, 'int32');
    assert.deepEqual(narrow[name]!.dims, [3, 3]);
    assert.deepEqual(wide[name]!.dims, narrow[name]!.dims);
    assert.deepEqual(Array.from(narrow[name]!.data as Int32Array), Array.from(wide[name]!.data as BigInt64Array, Number), name);
  }
  assert.deepEqual(Array.from(narrow.ngram_ids!.data as Int32Array), [4, 9, 2 ** 31 - 1, 0, 0, 0, 7, 0, 0]);
  assert.deepEqual(Array.from(narrow.ngram_mask!.data as Int32Array), [1, 1, 1, 0, 0, 0, 1, 0, 0]);
});
