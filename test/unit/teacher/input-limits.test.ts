// A config.json that disagrees with the graph: the embedding tables' rows (read from the graph)
// bound token ids and sequence length, with one warning, instead of ONNX Runtime failing mid-run.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import onnxProto from 'onnx-proto';
import { Teacher } from '../../../src/teacher/teacher.js';
import { findEmbeddingTables } from '../../../src/teacher/embedding-tables.js';
import { int64Initializer, floatInitializer } from '../../../src/teacher/onnx-model.js';
import { sharedPath } from '../../helpers.js';
import { copyFixture, readModel } from '../../teacher-folders.js';

const { onnx } = onnxProto;

function editJson(path: string, edit: (j: Record<string, unknown>) => void): void {
  const j = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  edit(j);
  writeFileSync(path, JSON.stringify(j));
}

/** Texts with the tokenizer's last ids (##ing 56, ##ly 57) and one far over 128 tokens. */
const TEXTS = ['loving it, really loving it', 'sadly boring', Array.from({ length: 300 }, (_, i) => (i % 2 ? 'good' : 'bad')).join(' ')];

test('the fixtures’ embedding tables are found in the graph: 56 word rows, 128 positions', () => {
  for (const name of ['tiny-random-bert', 'tiny-random-distilbert']) {
    const dir = sharedPath('fixtures', 'hf', name);
    const t = findEmbeddingTables(readModel(dir), join(dir, 'onnx', 'model.onnx'), null);
    assert.deepEqual([t.wordRows, t.maxPositions], [56, 128], name);
  }
});

test('vocab_size beyond the word table and no max_position_embeddings: the graph’s limits are used, one warning', async () => {
  const reference = await Teacher.load(sharedPath('fixtures', 'hf', 'tiny-random-bert'), { warn: () => undefined });
  const expected = await reference.predict(TEXTS);
  await reference.dispose();

  const dir = copyFixture();
  editJson(join(dir, 'config.json'), (c) => {
    c.vocab_size = 1000;
    delete c.max_position_embeddings;
  });
  // Without a limit anywhere in the folder the tokenizer's default is 512: past the 128 positions.
  editJson(join(dir, 'tokenizer_config.json'), (c) => delete c.model_max_length);
  const warnings: string[] = [];
  const teacher = await Teacher.load(dir, { warn: (m) => warnings.push(m) });
  try {
    assert.equal(teacher.config.vocabSize, 56);
    assert.equal(teacher.config.maxPositions, 128);
    assert.equal(teacher.tokenizer.maxLength, 128);
    assert.equal(warnings.filter((w) => w.includes('config.json vocab_size is 1000')).length, 1, warnings.join('\n'));
    assert.match(
      warnings.join('\n'),
      /config\.json vocab_size is 1000 but the graph's word embedding table 'tok\.weight' has 56 rows; using 56/,
    );
    assert.match(warnings.join('\n'), /tokenizer\.json has 2 token\(s\) with ids at or above the word embedding table size 56/);
    const got = await teacher.predict(TEXTS);
    expected.logits.forEach((v, k) => assert.ok(Math.abs(v - got.logits[k]!) < 1e-5, `logit ${k}: ${got.logits[k]} vs ${v}`));
  } finally {
    await teacher.dispose();
  }
});

test('max_position_embeddings larger than the position table: truncation at the table, with a warning', async () => {
  const dir = copyFixture('tiny-random-distilbert');
  editJson(join(dir, 'config.json'), (c) => (c.max_position_embeddings = 4096));
  editJson(join(dir, 'tokenizer_config.json'), (c) => (c.model_max_length = 4096));
  const warnings: string[] = [];
  const teacher = await Teacher.load(dir, { warn: (m) => warnings.push(m) });
  try {
    assert.equal(teacher.tokenizer.maxLength, 128);
    assert.equal(warnings.length, 2, warnings.join('\n')); // this one, and the fixture's own 2 tokens beyond vocab_size 56
    assert.match(
      warnings[0]!,
      /config\.json max_position_embeddings is 4096 but the graph's position table 'pos\.weight' covers 128 positions; using 128/,
    );
    const out = await teacher.predict(TEXTS.slice(2));
    assert.ok(Number.isFinite(out.logits[0]!) && Number.isFinite(out.logits[1]!));
  } finally {
    await teacher.dispose();
  }
});

test(
  'RoBERTa-style positions (a CumSum over the padding mask, from pad_token_id + 1) leave rows − pad − 1 positions; the ' +
    'smallest word table bounds the ids; a relative-position bias does not bound the length',
  () => {
    // input_ids → Not(Equal(ids, pad)) → Cast → CumSum → Mul(mask) → Add(pad) → Gather(pos [514, 8]);
    // a second member's word table [3000, 4] read through a Cast; a T5-style bias [32, 12] indexed by a Range.
    const node = (opType: string, inputs: string[], output: string, attribute: onnxProto.onnx.IAttributeProto[] = []) =>
      onnx.NodeProto.create({ opType, input: inputs, output: [output], attribute });
    const graph = onnx.GraphProto.create({
      input: [onnx.ValueInfoProto.create({ name: 'input_ids' })],
      output: [onnx.ValueInfoProto.create({ name: 'sum' })],
      initializer: [
        floatInitializer('word', [50265, 8], new Float32Array(0)),
        floatInitializer('word2', [3000, 4], new Float32Array(0)),
        floatInitializer('pos', [514, 8], new Float32Array(0)),
        floatInitializer('rel', [32, 12], new Float32Array(0)),
        int64Initializer('pad', [1]),
        int64Initializer('axis', [1]),
        int64Initializer('zero', [0]),
        int64Initializer('n', [64]),
      ],
      node: [
        node('Equal', ['input_ids', 'pad'], 'is_pad'),
        node('Not', ['is_pad'], 'not_pad'),
        node('Cast', ['not_pad'], 'mask', [{ name: 'to', i: 7, type: onnx.AttributeProto.AttributeType.INT }]),
        node('CumSum', ['mask', 'axis'], 'cum'),
        node('Mul', ['cum', 'mask'], 'masked'),
        node('Add', ['masked', 'pad'], 'position_ids_computed'),
        node('Gather', ['word', 'input_ids'], 'w'),
        node('Gather', ['pos', 'position_ids_computed'], 'p'),
        node('Add', ['w', 'p'], 'sum'),
        node('Cast', ['input_ids'], 'ids32', [{ name: 'to', i: 6, type: onnx.AttributeProto.AttributeType.INT }]),
        node('Gather', ['word2', 'ids32'], 'w2'),
        node('Range', ['zero', 'n', 'axis'], 'buckets'),
        node('Gather', ['rel', 'buckets'], 'bias'),
      ],
    });
    const model = onnx.ModelProto.create({ graph });
    const t = findEmbeddingTables(model, '/nonexistent/model.onnx', 1);
    assert.deepEqual([t.wordRows, t.wordTable, t.maxPositions, t.positionTable], [3000, 'word2', 512, 'pos']);
  },
);
