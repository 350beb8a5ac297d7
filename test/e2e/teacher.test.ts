// Teachers on the foreign fixtures in ../shared and the default teacher end to end: trained,
// exported in the HF layout, and loaded as is by transformers.js.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { Teacher } from '../../src/teacher/teacher.js';
import { ort } from '../../src/engine/session.js';
import { readAllExamples } from '../../src/data/read.js';
import { S140_RANDOM, runKd, sharedPath, tempDir } from '../helpers.js';

const FIXTURES = ['tiny-random-bert', 'tiny-random-distilbert'];

async function tweets(n: number): Promise<string[]> {
  const { examples } = await readAllExamples([S140_RANDOM()], { progress: false });
  return examples
    .filter((_, i) => i % Math.floor(examples.length / n) === 0)
    .slice(0, n)
    .map((e) => e.text);
}

for (const name of FIXTURES) {
  test(`${name}: logits match the exporter's reference, and embedding·Wᵀ + b = logits on real tweets`, async () => {
    const dir = sharedPath('fixtures', 'hf', name);
    const warnings: string[] = [];
    const teacher = await Teacher.load(dir, { warn: (m) => warnings.push(m) });
    try {
      assert.equal(teacher.head.rows, 2);
      assert.equal(teacher.head.cols, 64);
      assert.match(teacher.head.description, /^Gemm\(transB=1\)/);
      assert.equal(warnings.length, 1);
      assert.match(
        warnings[0]!,
        /tokenizer\.json has 2 token\(s\) with ids at or above config\.json vocab_size 56 .* they are encoded as \[UNK\]/,
      );
      const ref = JSON.parse(readFileSync(join(dir, 'reference.json'), 'utf8')) as {
        input_ids: number[][];
        attention_mask: number[][];
        logits: number[][];
      };
      const dims = [1, ref.input_ids[0]!.length];
      const feeds: Record<string, ort.Tensor> = {
        input_ids: new ort.Tensor('int64', BigInt64Array.from(ref.input_ids[0]!.map(BigInt)), dims),
        attention_mask: new ort.Tensor('int64', BigInt64Array.from(ref.attention_mask[0]!.map(BigInt)), dims),
      };
      if (teacher.session.inputNames.includes('token_type_ids'))
        feeds.token_type_ids = new ort.Tensor('int64', new BigInt64Array(dims[1]!), dims);
      const out = await teacher.session.run(feeds);
      const logits = Array.from(out.logits!.data as Float32Array);
      ref.logits[0]!.forEach((v, c) => assert.ok(Math.abs(v - logits[c]!) < 1e-4, `logit ${c}: ${logits[c]} vs reference ${v}`));
      const texts = await tweets(40);
      const p = await teacher.predict(texts, { batchTokens: 512 });
      let maxErr = 0;
      for (let i = 0; i < texts.length; i++) {
        for (let c = 0; c < 2; c++) {
          let s = teacher.head.bias![c]!;
          for (let d = 0; d < p.dim; d++) s += p.embedding[i * p.dim + d]! * teacher.head.weight![c * p.dim + d]!;
          maxErr = Math.max(maxErr, Math.abs(s - p.logits[i * 2 + c]!));
        }
      }
      assert.ok(maxErr < 1e-4, `embedding·Wᵀ + b differs from logits by ${maxErr}`);
      // Batching by length does not change results: one text at a time gives the same logits.
      const single = await teacher.predict(texts.slice(0, 5), { batchTokens: 1 });
      for (let k = 0; k < 10; k++) assert.ok(Math.abs(single.logits[k]! - p.logits[k]!) < 1e-5);
      // The optimized graph (a foreign export: dynamic reshapes, decomposed layer norms) computes
      // the last layer for position 0 only and agrees with the graph as exported.
      assert.match(teacher.optimization, /^graph optimized: \d+ nodes compute position 0 only/);
      const plain = await Teacher.load(dir, { optimize: false, warn: () => undefined });
      try {
        assert.equal(plain.optimization, 'graph not optimized (optimize: false)');
        const q = await plain.predict(texts, { batchTokens: 512 });
        p.logits.forEach((v, k) => assert.ok(Math.abs(v - q.logits[k]!) < 1e-5, `logit ${k}: ${v} vs ${q.logits[k]}`));
        p.embedding.forEach((v, k) => assert.ok(Math.abs(v - q.embedding[k]!) < 1e-5, `embedding ${k}: ${v} vs ${q.embedding[k]}`));
      } finally {
        await plain.dispose();
      }
    } finally {
      await teacher.dispose();
    }
  });
}

test('--embedding-output names the tensor when automatic detection is not wanted', async () => {
  const dir = sharedPath('fixtures', 'hf', 'tiny-random-bert');
  const teacher = await Teacher.load(dir, { embeddingOutput: '/Tanh_output_0', warn: () => undefined });
  assert.equal(teacher.head.embeddingTensor, '/Tanh_output_0');
  assert.equal(teacher.head.cols, 64);
  await teacher.dispose();
  await assert.rejects(Teacher.load(dir, { embeddingOutput: 'nope', warn: () => undefined }), {
    name: 'HeadNotFoundError',
    message: '--embedding-output nope: no tensor of that name in the graph',
  });
});

test('kd teacher predict --json on a foreign export', () => {
  const r = runKd([
    'teacher',
    'predict',
    '--model',
    sharedPath('fixtures', 'hf', 'tiny-random-distilbert'),
    '--text',
    'what a great day',
    '--text',
    'worst service ever',
    '--json',
  ]);
  assert.equal(r.status, 0, r.stderr);
  const j = r.json();
  assert.equal(j.labels.length, 2);
  assert.ok(j.labels.every((l: string) => l === 'NEGATIVE' || l === 'POSITIVE'));
  assert.equal(j.logits.length, 2);
  assert.equal(j.embeddingDim, 64);
  assert.deepEqual([j.classifier.rows, j.classifier.cols], [2, 64]);
  assert.match(j.graphOptimization, /^graph optimized: \d+ nodes compute position 0 only/);
  const plain = runKd([
    'teacher',
    'predict',
    '--model',
    sharedPath('fixtures', 'hf', 'tiny-random-distilbert'),
    '--text',
    'what a great day',
    '--text',
    'worst service ever',
    '--json',
    '--no-graph-optimization',
  ]);
  assert.equal(plain.status, 0, plain.stderr);
  const p = plain.json();
  assert.equal(p.graphOptimization, 'graph not optimized (optimize: false)');
  assert.deepEqual(p.labels, j.labels);
  (p.logits as number[][]).flat().forEach((v, i) => assert.ok(Math.abs(v - (j.logits as number[][]).flat()[i]!) < 1e-5));
});

test('the default teacher (with lexicon members) trains, exports in the HF layout, and transformers.js loads it as is', async () => {
  const out = join(tempDir(), 'teacher-tiny');
  const r = runKd([
    'teacher',
    'train',
    '--data',
    S140_RANDOM(),
    '--preset',
    'tiny',
    '--lexicons',
    'afinn,vader,wink',
    '--limit',
    '4000',
    '--epochs',
    '2',
    '--out',
    out,
    '--json',
  ]);
  assert.equal(r.status, 0, r.stderr);
  const summary = r.json();
  assert.equal(summary.trainRows + summary.devRows, 4000);
  assert.ok(summary.devAccuracy > 0.6, `tiny teacher dev accuracy ${summary.devAccuracy}`);
  const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
  assert.equal(config.model_type, 'bert');
  assert.deepEqual(config.id2label, { 0: 'negative', 1: 'positive' });
  assert.equal(JSON.parse(readFileSync(join(out, 'tokenizer_config.json'), 'utf8')).pad_token, '[PAD]');
  assert.deepEqual(config.kd.lexicons, ['afinn', 'vader', 'wink']);
  assert.equal(summary.lexicon.rows.length, 3);

  // transformers.js 4.3 truncates after adding special tokens (a text longer than max_length
  // loses its final [SEP]); the Rust tokenizer keeps [SEP], as Hugging Face's Python does.
  // Compare on texts that fit.
  const { TextTokenizer } = await import('../../src/text/tokenizer.js');
  const tok = TextTokenizer.fromFolder(out);
  // Tweets and human-labelled review sentences (negations, emoticons, lexicon words).
  const reviews = readFileSync(sharedPath('datasets', 'uci_sentences', 'yelp_labelled.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .slice(0, 12)
    .map((l) => (JSON.parse(l) as { text: string }).text);
  const candidates = [...(await tweets(48)), ...reviews, 'not good :( but the fries were great :)', "I didn't like it!!!"];
  const lengths = (await tok.encode(candidates)).map((e) => e.ids.length);
  const texts = candidates.filter((_, i) => lengths[i]! < tok.maxLength);
  assert.ok(texts.length >= 50, `${texts.length} texts`);
  const ours = runKd(['teacher', 'predict', '--model', out, '--json', '--text', ...texts]);
  assert.equal(ours.status, 0, ours.stderr);
  const mine = ours.json();
  const { pipeline, env } = await import('@huggingface/transformers');
  env.allowRemoteModels = false;
  env.localModelPath = `${dirname(out)}/`;
  const classify = await pipeline('sentiment-analysis', basename(out), { dtype: 'fp32' });
  const theirs = (await classify(texts)) as { label: string; score: number }[];
  assert.equal(theirs.length, texts.length);
  theirs.forEach((t, i) => {
    assert.equal(t.label, mine.labels[i], `text ${i}`);
    assert.ok(Math.abs(t.score - mine.scores[i]) < 1e-4, `text ${i}: transformers.js ${t.score} vs kd ${mine.scores[i]}`);
  });
  await classify.dispose();

  const ev = runKd([
    'teacher',
    'eval',
    '--model',
    out,
    '--data',
    sharedPath('datasets', 'sentiment140', 'train_sample_10k_head5000neg_mid5000pos.csv'),
    '--limit',
    '10000',
    '--json',
  ]);
  assert.equal(ev.status, 0, ev.stderr);
  const e = ev.json();
  assert.equal(e.n, 10000);
  assert.ok(e.accuracy > 0.55 && e.interval95.low < e.accuracy && e.accuracy < e.interval95.high);
});
