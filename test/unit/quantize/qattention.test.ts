// The int8 teacher's attention rewrite: the tiny PyTorch fixtures' full attention layer becomes one QAttention whose
// logits stay within the int8 tolerance of fp32; a block it does not recognize is left as it was.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { int8TeacherTransform } from '../../../src/quantize/teacher.js';
import { compareLogits } from '../../../src/quantize/model.js';
import { checkTexts } from '../../../src/quantize/check-texts.js';
import { findAttentionBlocks } from '../../../src/quantize/attention-blocks.js';
import { quantizeGraph } from '../../../src/quantize/graph.js';
import { decodeModel, type ModelProto } from '../../../src/teacher/onnx-model.js';
import { Teacher, type TeacherGraphTransform } from '../../../src/teacher/teacher.js';
import { sharedPath } from '../../helpers.js';

const quiet = { warn: () => undefined };
const count = (m: ModelProto, op: string) => (m.graph!.node ?? []).filter((n) => n.opType === op).length;

for (const name of ['tiny-random-bert', 'tiny-random-distilbert']) {
  test(`${name}: the full attention layer becomes QAttention; logits within 0.02 of fp32, argmax the same on the check texts`, async () => {
    const dir = sharedPath('fixtures', 'hf', name);
    // The int8 transform as loadTeacher uses it (its own agreement check included), without the fp32 recheck so the
    // logits compared are the int8 graph's own; the graph it returns is kept to look at.
    const inner = int8TeacherTransform({ recheckMargin: 0 });
    const seen: { model?: ModelProto } = {};
    const transform: TeacherGraphTransform = {
      precision: 'int8',
      apply: async (model, ctx) => {
        const r = await inner.apply(model, ctx);
        seen.model = r.model;
        return r;
      },
    };
    const fp32 = await Teacher.load(dir, quiet);
    const int8 = await Teacher.load(dir, { ...quiet, transform });
    try {
      const fused = seen.model;
      assert.ok(fused);
      // Two layers: the first one's attention fused, the last one's folded to its single query (fp32) as before.
      assert.equal(count(fused, 'QAttention'), 1);
      assert.equal(count(fused, 'Softmax'), 1);
      const qa = fused.graph!.node!.find((n) => n.opType === 'QAttention')!;
      assert.equal(qa.domain, 'com.microsoft');
      assert.equal(qa.input!.length, 8);
      assert.ok((fused.opsetImport ?? []).some((o) => o.domain === 'com.microsoft'));
      assert.equal(int8.precisionCheck!.agreement, 1);
      const texts = checkTexts(128);
      const [a, b] = [await fp32.predict(texts), await int8.predict(texts)];
      const c = compareLogits(a.logits, b.logits, a.logits.length / texts.length);
      assert.equal(c.agreement, 1);
      assert.ok(c.maxDiff > 0 && c.maxDiff < 0.02, `largest logit difference ${c.maxDiff}`);
    } finally {
      await fp32.dispose();
      await int8.dispose();
    }
  });

  test(`${name}: both exported attention blocks found (4 heads, scale 1/√16); a changed key split is not matched`, () => {
    const file = sharedPath('fixtures', 'hf', name, 'onnx', 'model.onnx');
    const model = decodeModel(file);
    const blocks = findAttentionBlocks(model, file);
    assert.equal(blocks.length, 2);
    for (const b of blocks) {
      assert.equal(b.heads, 4);
      assert.ok(Math.abs(b.scale - 0.25) < 1e-7, `scale ${b.scale}`);
      assert.ok(b.maskFilter < -1000, `mask filter ${b.maskFilter}`);
      assert.equal(new Set(b.weights).size, 3);
    }
    // Keys split with another perm: the scores are no longer q·kᵀ per head, so no block is found and the graph is
    // quantized as without the rewrite.
    for (const n of model.graph!.node ?? [])
      if (n.opType === 'Transpose')
        for (const a of n.attribute ?? []) if (a.name === 'perm' && (a.ints ?? []).map(Number).join() === '0,2,3,1') a.ints = [0, 2, 1, 3];
    assert.deepEqual(findAttentionBlocks(model, file), []);
    const plain = quantizeGraph(model, file);
    const withAttention = quantizeGraph(model, file, { attention: true });
    assert.equal(withAttention.attentionBlocks, 0);
    assert.deepEqual(
      withAttention.model.graph!.node!.map((n) => n.opType),
      plain.model.graph!.node!.map((n) => n.opType),
    );
  });
}
