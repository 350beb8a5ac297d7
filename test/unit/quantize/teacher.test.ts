// int8 teacher inference: the tiny PyTorch fixtures quantized at load agree with fp32 and keep the fp32 head; a
// crafted quantization-hostile model is refused below the bound; the head finder reads a kd-quantized file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { loadTeacher, marginChange, TeacherAgreementError } from '../../../src/quantize/teacher.js';
import { compareLogits, quantizeModel } from '../../../src/quantize/model.js';
import { checkTexts } from '../../../src/quantize/check-texts.js';
import { findClassifierHead } from '../../../src/teacher/head.js';
import { decodeModel, GraphIndex } from '../../../src/teacher/onnx-model.js';
import { nearTies, Teacher } from '../../../src/teacher/teacher.js';
import { readAllExamples } from '../../../src/data/read.js';
import { S140_RANDOM, sharedPath } from '../../helpers.js';
import { copyFixture, readModel, writeModel } from '../../teacher-folders.js';

const TEXTS = ['what a wonderful morning', 'my phone broke again, so annoying', 'going to work', 'meh'];
const quiet = { warn: () => undefined };

test('compareLogits: agreement, largest difference and largest |x| by hand; NaN never agrees', () => {
  const c = compareLogits(Float32Array.of(1, 0, 0, 1, 2, -1), Float32Array.of(0.75, 0, 0.5, 0.25, NaN, 0), 2);
  assert.deepEqual(c, { rows: 3, agreed: 1, agreement: 1 / 3, maxDiff: Infinity, maxAbs: 2 });
  const d = compareLogits(Float32Array.of(1, 0, 0, 1), Float32Array.of(0.75, 0, 0.5, 0.25), 2);
  assert.deepEqual(d, { rows: 2, agreed: 1, agreement: 0.5, maxDiff: 0.75, maxAbs: 1 });
  assert.throws(() => compareLogits(new Float32Array(4), new Float32Array(6), 2), RangeError);
});

for (const name of ['tiny-random-bert', 'tiny-random-distilbert']) {
  test(`${name}: int8 at load agrees with fp32 on every check text, logits within 0.02, the fp32 head kept`, async () => {
    const dir = sharedPath('fixtures', 'hf', name);
    const fp32 = await Teacher.load(dir, quiet);
    const int8 = await loadTeacher(dir, { ...quiet, quantize: 'int8' });
    try {
      assert.equal(fp32.precision, 'fp32');
      assert.equal(fp32.precisionCheck, null);
      assert.equal(int8.precision, 'int8');
      const check = int8.precisionCheck!;
      assert.deepEqual([check.rows, check.agreement, check.minAgreement], [128, 1, 0.99]);
      assert.ok(check.maxDiff > 0 && check.maxDiff < 0.02, `largest logit difference ${check.maxDiff}`);
      // Of 12 MatMul and 2 Gemm, the last layer's position-0 query, output and feed-forward (4), the pooler or pre-classifier
      // and the classifier stay fp32: one row per text, little to save and noise to add. The first layer's q, k and v
      // become one QAttention.
      assert.match(
        int8.optimization,
        new RegExp(
          'int8: 5 MatMul, 0 Gemm, 1 attention blocks \\(QAttention\\) quantized \\(6 MatMul/Gemm of the classifier and the ' +
            'position-0 path and the embedding tables kept fp32\\), agreement with fp32 100\\.0% on 128',
        ),
      );
      // The head is found on the float graph: the same tensor, W and b to the bit.
      assert.equal(int8.head.embeddingTensor, fp32.head.embeddingTensor);
      assert.deepEqual(int8.head.weight, fp32.head.weight);
      assert.deepEqual(int8.head.bias, fp32.head.bias);
      const a = await fp32.predict(TEXTS);
      const b = await int8.predict(TEXTS);
      let worst = 0;
      for (let i = 0; i < a.logits.length; i++) worst = Math.max(worst, Math.abs(a.logits[i]! - b.logits[i]!));
      assert.ok(worst > 0 && worst < 0.02, `logits differ by ${worst}`);
      // The classifier stays fp32: int8 logits are exactly W · embedding + b of its own embedding.
      const { weight: W, bias, rows: C, cols: D } = int8.head;
      for (let r = 0; r < TEXTS.length; r++)
        for (let c = 0; c < C; c++) {
          let z = bias![c]!;
          for (let k = 0; k < D; k++) z += W![c * D + k]! * b.embedding[r * D + k]!;
          assert.ok(Math.abs(z - b.logits[r * C + c]!) < 1e-5, `row ${r} class ${c}: ${z} vs ${b.logits[r * C + c]}`);
        }
    } finally {
      await fp32.dispose();
      await int8.dispose();
    }
  });
}

/**
 * A copy of tiny-random-bert where every layer norm's output has hidden unit 0 at exactly 0 (its scale and shift set
 * to 0) and every MatMul reading a layer norm has an outlier row 0 (±1000 × its largest weight). fp32 multiplies that
 * row by 0 and is unchanged; per-column int8 scales round every other weight of those MatMuls to 0, so the int8
 * projections and feed-forward inputs lose what separates the inputs. The classifier's bias is then centred on the
 * check texts.
 */
async function quantizationHostileTeacher(): Promise<string> {
  const dir = copyFixture('tiny-random-bert');
  const model = readModel(dir);
  const index = new GraphIndex(model, join(dir, 'onnx', 'model.onnx'));
  const setFloats = (name: string, edit: (w: Float32Array, dims: number[]) => void) => {
    const t = index.constants.get(name)!;
    const w = index.constantFloats(name)!;
    edit(w.data, w.dims);
    t.rawData = new Uint8Array(w.data.buffer);
    t.floatData = [];
  };
  let hostile = 0;
  for (const n of model.graph!.node ?? []) {
    if (n.opType !== 'MatMul' || index.constants.get(n.input![1]!)?.dims?.length !== 2) continue;
    // A layer norm ends in Add(Mul(normalized, scale), shift), each with a constant operand.
    const shift = index.producer.get(n.input![0]!);
    const scaled = shift?.opType === 'Add' ? shift.input!.map((t) => index.producer.get(t)).find((p) => p?.opType === 'Mul') : undefined;
    const [scale, bias] = [scaled, shift].map((p) => p?.input?.find((t) => index.constants.has(t)));
    if (!scale || !bias) continue;
    for (const t of [scale, bias]) setFloats(t, (w) => (w[0] = 0));
    setFloats(n.input![1]!, (w, dims) => {
      const largest = w.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
      for (let c = 0; c < dims[1]!; c++) w[c] = (c % 2 ? -1000 : 1000) * largest;
    });
    hostile++;
  }
  assert.ok(hostile >= 4, `only ${hostile} MatMuls read a layer norm`);
  writeModel(dir, model);
  // The random classifier puts every check text in one class by a wide margin; its bias shifted by the median margin
  // splits them evenly, so an int8 graph that lost the inputs cannot agree by predicting that class.
  const fp32 = await Teacher.load(dir, quiet);
  const { logits } = await fp32.predict(checkTexts(128));
  await fp32.dispose();
  const margins = Array.from({ length: 128 }, (_, r) => logits[2 * r + 1]! - logits[2 * r]!).sort((a, b) => a - b);
  const classifier = (model.graph!.node ?? []).find((n) => n.output?.[0] === 'logits')!;
  setFloats(classifier.input![2]!, (b) => (b[1] = b[1]! - (margins[63]! + margins[64]!) / 2));
  writeModel(dir, model);
  return dir;
}

test('int8 is refused below --min-agreement, with the counts, the bound and the fix; accepted at a lower bound', async () => {
  const dir = await quantizationHostileTeacher();
  const err = await loadTeacher(dir, { ...quiet, quantize: 'int8' }).then(
    () => assert.fail('expected a refusal'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof TeacherAgreementError);
  const { check } = err;
  assert.equal(check.rows, 128);
  assert.ok(check.agreement < 0.9, `agreement ${check.agreement}`);
  const agreed = Math.round(check.agreement * 128);
  assert.match(
    err.message,
    new RegExp(
      `--quantize int8 refused: the int8 teacher picks the fp32 teacher's class on ${agreed} of 128 check texts .* below the 99\\.0%`,
    ),
  );
  assert.match(err.message, new RegExp(`pass --min-agreement ${Math.floor(100 * check.agreement) / 100} to accept it`));
  // The bound it names is accepted, and the check it reports is the same measurement.
  const accepted = await loadTeacher(dir, { ...quiet, quantize: 'int8', minAgreement: Math.floor(100 * check.agreement) / 100 });
  assert.equal(accepted.precisionCheck!.agreement, check.agreement);
  await accepted.dispose();
  // The bound is checked: the fixture itself reaches 100%, so 1 is accepted there and nothing above 1 is.
  await assert.rejects(loadTeacher(sharedPath('fixtures', 'hf', 'tiny-random-bert'), { quantize: 'int8', minAgreement: 1.01 }), RangeError);
  await assert.rejects(loadTeacher(dir, { quantized: true, quantize: 'int8' }), /pass one of them/);
  await assert.rejects(loadTeacher(dir, { minAgreement: 0.5 }), /applies to --quantize int8 only/);
});

test('the head finder reads a kd-quantized file: the same embedding tensor, W within half a scale step, b exact', async () => {
  for (const name of ['tiny-random-bert', 'tiny-random-distilbert']) {
    const dir = copyFixture(name);
    await quantizeModel(dir);
    const fp32Path = join(dir, 'onnx', 'model.onnx');
    const int8Path = join(dir, 'onnx', 'model_quantized.onnx');
    const a = findClassifierHead(decodeModel(fp32Path), fp32Path, 'logits');
    const int8Model = decodeModel(int8Path);
    const b = findClassifierHead(int8Model, int8Path, 'logits');
    assert.match(b.description, /^MatMulInteger\(int8, dequantized\) \+ Add/);
    assert.equal(b.embeddingTensor, a.embeddingTensor);
    assert.deepEqual([b.rows, b.cols], [a.rows, a.cols]);
    assert.deepEqual(b.bias, a.bias);
    // Per-column scales: class c's weights are max_k |W[c, k]| / 127 apart, so each lies within half of that.
    for (let c = 0; c < a.rows; c++) {
      let largest = 0;
      for (let k = 0; k < a.cols; k++) largest = Math.max(largest, Math.abs(a.weight![c * a.cols + k]!));
      for (let k = 0; k < a.cols; k++) {
        const d = Math.abs(a.weight![c * a.cols + k]! - b.weight![c * a.cols + k]!);
        assert.ok(d <= (0.5 + 1e-3) * (largest / 127), `class ${c} weight ${k} off by ${d}`);
      }
    }
    // And --quantized loads (it failed to find the head before), its graph optimized on any CPU (on x86-64 without VNNI
    // the check compared against the unoptimized graph's saturated products and refused every rewrite), near fp32.
    const q = await Teacher.load(dir, { ...quiet, quantized: true });
    assert.match(q.optimization, /^graph optimized: .*position 0 only/, `${name}: ${q.optimization}`);
    const f = await Teacher.load(dir, quiet);
    const [lq, lf] = [(await q.predict(TEXTS)).logits, (await f.predict(TEXTS)).logits];
    for (let i = 0; i < lq.length; i++) assert.ok(Math.abs(lq[i]! - lf[i]!) < 0.02, `logit ${i}: ${lq[i]} vs ${lf[i]}`);
    await q.dispose();
    await f.dispose();
  }
});

test('nearTies and marginChange by hand: top-two gaps under the margin, NaN a tie; the largest pairwise margin change', () => {
  assert.deepEqual(nearTies(Float32Array.of(0.5, 0.51, 2, -1, 0, 0), 2, 0.05), [0, 2]);
  assert.deepEqual(nearTies(Float32Array.of(3, 1, 2.9, NaN, 0, 1, 0, 5, 4.5), 3, 0.2), [0, 1]);
  assert.deepEqual(nearTies(Float32Array.of(1, 0), 2, 0), []);
  // Row 0: fp32 argmax 0, margin 1 → 0.75 (0.25); row 1: argmax 1, margin 1 → 1.5 (0.5).
  assert.equal(marginChange(Float32Array.of(1, 0, 0, 1), Float32Array.of(0.75, 0, 0, 1.5), 2), 0.375);
  // Three classes, argmax 2: margins to classes 0 and 1 are 2 and 1; after, 1.5 and 1.75: the worst change is 0.75.
  assert.equal(marginChange(Float32Array.of(1, 2, 3), Float32Array.of(1.5, 1.25, 3), 3), 0.75);
});

test("the fp32 recheck: rows whose int8 margin is under the margin are the fp32 teacher's, the rest int8 to the bit", async () => {
  const dir = sharedPath('fixtures', 'hf', 'tiny-random-bert');
  const { examples } = await readAllExamples([S140_RANDOM()], { progress: false });
  const texts = examples.slice(0, 600).map((e) => e.text);
  const fp32 = await Teacher.load(dir, quiet);
  const plain = await loadTeacher(dir, { ...quiet, quantize: 'int8', recheckMargin: 0 });
  const [f, p] = [await fp32.predict(texts), await plain.predict(texts)];
  assert.equal(plain.precisionCheck!.recheckMargin, 0);
  assert.equal(plain.recomputedRows, 0);
  assert.doesNotMatch(plain.optimization, /recomputed/);
  // A margin that takes about a third of the texts.
  const gaps = Array.from({ length: texts.length }, (_, r) => Math.abs(p.logits[2 * r + 1]! - p.logits[2 * r]!)).sort((a, b) => a - b);
  const margin = gaps[200]!;
  const near = new Set(nearTies(p.logits, 2, margin));
  assert.ok(near.size >= 150 && near.size <= 250, `${near.size} near ties`);
  const rechecked = await loadTeacher(dir, { ...quiet, quantize: 'int8', recheckMargin: margin });
  try {
    assert.equal(rechecked.precisionCheck!.recheckMargin, margin);
    assert.match(rechecked.optimization, /texts with an int8 margin under \S+ recomputed in fp32$/);
    const r = await rechecked.predict(texts);
    assert.equal(rechecked.recomputedRows, near.size);
    const D = r.dim;
    for (let row = 0; row < texts.length; row++) {
      const [ref, width] = near.has(row) ? [f, 1e-5] : [p, 0];
      for (let c = 0; c < 2; c++) {
        const d = Math.abs(r.logits[2 * row + c]! - ref.logits[2 * row + c]!);
        assert.ok(d <= width, `row ${row} (${near.has(row) ? 'near tie' : 'int8'}) logit ${c} off by ${d}`);
      }
      for (let k = 0; k < D; k++) assert.ok(Math.abs(r.embedding[row * D + k]! - ref.embedding[row * D + k]!) <= width * 10);
    }
    // Every near tie is fp32's now: the argmax agrees with fp32 at least as often as plain int8, on exactly those rows.
    const argmax = (l: Float32Array, row: number) => (l[2 * row + 1]! > l[2 * row]! ? 1 : 0);
    for (const row of near) assert.equal(argmax(r.logits, row), argmax(f.logits, row));
  } finally {
    for (const t of [fp32, plain, rechecked]) await t.dispose();
  }
  // 'auto' is the mean margin change on the check texts; negative margins are refused.
  const auto = await loadTeacher(dir, { ...quiet, quantize: 'int8' });
  const check = auto.precisionCheck!;
  assert.ok(check.marginChange! > 0 && check.recheckMargin === check.marginChange, JSON.stringify(check));
  await auto.dispose();
  await assert.rejects(loadTeacher(dir, { quantize: 'int8', recheckMargin: -1 }), RangeError);
  await assert.rejects(loadTeacher(dir, { recheckMargin: 0.1 }), /'--recheck-margin' applies to --quantize int8 only/);
});
