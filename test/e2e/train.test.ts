// kd train end to end on real tweets: every loss from a cache, multi-seed summaries, the
// exported students (both in the HF layout that transformers.js's pipeline loads, scores equal
// to kd predict's), a first-form n-gram student still read by kd predict, and the refusals.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { Student } from '../../src/student/runtime.js';
import { readAllExamples } from '../../src/data/read.js';
import { fixturePath, runKd, S140_RANDOM, sharedPath, splitAndCache, splitAndCachePaths, tempDir } from '../helpers.js';

const root = tempDir('kd-train-');
const { cache, files } = splitAndCachePaths(root);

before(() => {
  splitAndCache(root, S140_RANDOM(), ['--limit', '2400', '--dev', '0.15', '--test', '0.15'], ['--shard-rows', '1000']);
});

function train(out: string, extra: string[]) {
  return runKd([
    'train',
    '--cache',
    cache,
    '--train',
    files('train'),
    '--dev',
    files('dev'),
    '--test',
    files('test'),
    '--out',
    out,
    '--epochs',
    '1',
    '--json',
    ...extra,
  ]);
}

/** transformers.js's text-classification pipeline over a local folder (no network): label and score per text. */
async function pipelineScores(model: string, texts: string[]): Promise<{ label: string; score: number }[]> {
  const { pipeline, env } = await import('@huggingface/transformers');
  env.allowLocalModels = true;
  env.allowRemoteModels = false;
  env.localModelPath = `${dirname(model)}/`;
  const classify = await pipeline('text-classification', basename(model), { dtype: 'fp32' });
  const scores = (await classify(texts)) as { label: string; score: number }[];
  await classify.dispose();
  return scores;
}

test('every loss trains an n-gram student from the cache and exports it with its tokenizer', async () => {
  for (const loss of ['ce', 'kd', 'dtkd', 'lelp']) {
    const out = join(root, `ngram-${loss}`);
    const r = train(out, ['--loss', loss, '--dim', '16', '--buckets', '65536']);
    assert.equal(r.status, 0, `${loss}: ${r.stderr}`);
    const j = r.json();
    assert.equal(j.loss, loss);
    assert.ok(j.runs[0].dev > 0.4 && j.runs[0].dev < 1, `${loss} dev ${j.runs[0].dev}`);
    const result = JSON.parse(readFileSync(join(out, 'seed-13', 'result.json'), 'utf8'));
    assert.equal(result.trainRows, 1680);
    assert.equal(result.test.n, 360);
    assert.ok(existsSync(join(out, 'seed-13', 'training', 'metrics.jsonl')));
    const config = JSON.parse(readFileSync(join(out, 'seed-13', 'config.json'), 'utf8'));
    assert.equal(config.resolved.headSize, loss === 'lelp' ? 8 : 2);
    assert.ok(config.versions.dependencies['onnxruntime-node']);
    const card = JSON.parse(readFileSync(join(out, 'seed-13', 'model', 'kd-student.json'), 'utf8'));
    assert.equal(card.kind, 'ngram');
    assert.deepEqual(card.inputs, ['input_ids', 'attention_mask']);
    assert.equal(card.config.buckets, 65536);
    // The vocabulary: the words of 1,680 tweets (fewer than the default 32,768), [PAD] and [UNK] first.
    // Lines, not trimEnd(): U+FEFF is a word of these tweets.
    const vocab = readFileSync(join(out, 'seed-13', 'model', 'vocab.txt'), 'utf8')
      .split('\n')
      .slice(0, -1);
    assert.equal(card.config.vocabSize, vocab.length);
    assert.ok(vocab.length > 2000 && vocab.length < 32768, `${vocab.length} words`);
    assert.deepEqual(vocab.slice(0, 2), ['[PAD]', '[UNK]']);
    // The int8 copy, checked against fp32 on the student's own features (its log line says so).
    assert.ok(existsSync(join(out, 'seed-13', 'model', 'onnx', 'model_quantized.onnx')));
    assert.match(
      r.stderr,
      /int8: .*model_quantized\.onnx \([\d.]+ MB, fp32 [\d.]+ MB\), argmax agreement with fp32 [\d.]+% on 64 check texts/,
    );
  }
  // The exported model reproduces the run's test accuracy through kd predict's runtime.
  const model = join(root, 'ngram-kd', 'seed-13', 'model');
  const student = await Student.load(model);
  const { examples } = await readAllExamples([files('test')], { progress: false });
  const logits = await student.logits(examples.map((e) => e.text));
  const right = examples.filter((e, i) => (logits[2 * i + 1]! > logits[2 * i]! ? 1 : 0) === e.label).length;
  const result = JSON.parse(readFileSync(join(root, 'ngram-kd', 'seed-13', 'result.json'), 'utf8'));
  assert.equal(right / examples.length, result.test.accuracy);
  await student.dispose();
  const p = runKd(['predict', '--model', model, '--text', 'i love it', '--json']);
  assert.equal(p.status, 0, p.stderr);
  assert.equal(p.json().kind, 'ngram');
});

test("an n-gram student loads in transformers.js's text-classification pipeline with kd predict's scores (1e-4)", async () => {
  const out = join(root, 'ngram-tjs');
  const r = train(out, ['--loss', 'kd', '--dim', '16', '--buckets', '4096', '--ngram-vocab', '3000']);
  assert.equal(r.status, 0, r.stderr);
  const model = join(out, 'seed-13', 'model');
  const config = JSON.parse(readFileSync(join(model, 'config.json'), 'utf8'));
  assert.equal(config.model_type, 'distilbert');
  assert.deepEqual(config.id2label, { 0: 'negative', 1: 'positive' });
  assert.deepEqual(config.label2id, { negative: 0, positive: 1 });
  assert.equal(config.vocab_size, 3000);
  const texts = [
    'what a wonderful morning',
    'my phone broke again, so annoying @bob http://x.co/abc',
    'going to work',
    'best concert ever!!',
    '',
    'I &amp; you &quot;love&quot; it',
    'ΟΔΟΣ 😀 \u00a0 zzzqqq',
    'so tired of this. '.repeat(40),
  ];
  const mine = runKd(['predict', '--model', model, '--json', '--text', ...texts]).json();
  const theirs = await pipelineScores(model, texts);
  theirs.forEach((t, i) => {
    assert.equal(t.label, mine.labels[i], `text ${i}`);
    assert.ok(Math.abs(t.score - mine.scores[i]) < 1e-4, `text ${i}: ${t.score} vs ${mine.scores[i]}`);
  });
  // The model tells texts apart (scores are not all one value).
  assert.ok(Math.max(...mine.scores) - Math.min(...mine.scores) > 0.01, JSON.stringify(mine.scores));
});

test("--tokenizer gives the n-gram student a teacher's WordPiece vocabulary (a row for every id, ids that skip numbers too)", async () => {
  const out = join(root, 'ngram-teacher-vocab');
  const teacher = sharedPath('fixtures', 'hf', 'tiny-random-bert');
  const r = train(out, ['--loss', 'kd', '--dim', '8', '--buckets', '512', '--tokenizer', teacher]);
  assert.equal(r.status, 0, r.stderr);
  const model = join(out, 'seed-13', 'model');
  // 56 tokens whose largest id is 57.
  assert.equal(JSON.parse(readFileSync(join(model, 'kd-student.json'), 'utf8')).config.vocabSize, 58);
  const texts = ['i love it', 'the worst thing ever', ''];
  const mine = runKd(['predict', '--model', model, '--json', '--text', ...texts]).json();
  (await pipelineScores(model, texts)).forEach((t, i) => assert.ok(Math.abs(t.score - mine.scores[i]) < 1e-4, `text ${i}`));
});

test('a first-form n-gram student (ngram_ids hashed in JavaScript, exported by an earlier kd) still runs in kd predict', () => {
  const model = fixturePath('ngram-v1');
  const expected = JSON.parse(readFileSync(join(model, 'expected-predict.json'), 'utf8'));
  const r = runKd(['predict', '--model', model, '--json', '--text', ...expected.texts]);
  assert.equal(r.status, 0, r.stderr);
  const logits: number[][] = r.json().logits;
  logits.flat().forEach((x, i) => assert.ok(Math.abs(x - expected.logits.flat()[i]) < 1e-6, `logit ${i}: ${x}`));
});

test('--seeds runs each seed and summarizes mean, std and a 95% interval', () => {
  const out = join(root, 'seeds');
  const r = train(out, ['--loss', 'kd', '--seeds', '13,14,15', '--dim', '8', '--buckets', '4096', '--no-quantize']);
  assert.equal(r.status, 0, r.stderr);
  assert.ok(!existsSync(join(out, 'seed-13', 'model', 'onnx', 'model_quantized.onnx')), '--no-quantize');
  const { summary } = r.json();
  assert.deepEqual(summary.seeds, [13, 14, 15]);
  const tests = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8')).runs.map((x: { test: number }) => x.test);
  const mean = tests.reduce((a: number, b: number) => a + b, 0) / 3;
  assert.ok(Math.abs(summary.test.mean - mean) < 1e-12);
  assert.ok(summary.test.ci95[0] <= mean && mean <= summary.test.ci95[1]);
  const again = train(out, ['--loss', 'kd', '--seeds', '13,14,15', '--dim', '8', '--buckets', '4096', '--no-quantize', '--resume']);
  assert.equal(again.status, 0);
  assert.deepEqual(again.json().summary, summary);
});

test('a transformer student exports in the HF layout and transformers.js loads it as is', async () => {
  const out = join(root, 'transformer');
  const r = train(out, [
    '--student',
    'transformer',
    '--loss',
    'kd',
    '--layers',
    '1',
    '--hidden',
    '32',
    '--heads',
    '2',
    '--intermediate',
    '64',
    '--max-length',
    '48',
    '--vocab-size',
    '1024',
  ]);
  assert.equal(r.status, 0, r.stderr);
  const model = join(out, 'seed-13', 'model');
  assert.equal(JSON.parse(readFileSync(join(model, 'config.json'), 'utf8')).model_type, 'bert');
  const texts = ['what a wonderful morning', 'my phone broke again, so annoying', 'going to work', 'best concert ever!!'];
  const mine = runKd(['predict', '--model', model, '--json', '--text', ...texts]).json();
  const theirs = await pipelineScores(model, texts);
  theirs.forEach((t, i) => {
    assert.equal(t.label, mine.labels[i]);
    assert.ok(Math.abs(t.score - mine.scores[i]) < 1e-4);
  });
  // Its int8 copy is what transformers.js loads by default in a browser (dtype 'q8'): close to fp32.
  const { pipeline } = await import('@huggingface/transformers');
  const q8 = await pipeline('sentiment-analysis', basename(model), { dtype: 'q8' });
  const quantized = (await q8(texts, { top_k: null })) as unknown as { label: string; score: number }[][];
  quantized.forEach((row, i) => {
    const score = row.find((x) => x.label === mine.labels[i])!.score;
    assert.ok(Math.abs(score - mine.scores[i]) < 0.01, `q8 ${score} vs fp32 ${mine.scores[i]}`);
  });
  await q8.dispose();
  // kd's runtime runs the rewritten graph (position 0 only, single-query attention) on length-ordered batches: the
  // same logits as the graph as exported, text by text, on 360 real tweets of every length (1.5e-8 apart when measured;
  // this barely trained student's logits vary little, so rows sent back to a neighbour's place differ by only ~1e-4).
  const fast = await Student.load(model);
  const plain = await Student.load(model, { optimize: false });
  assert.match(fast.graphNote, /^graph optimized: .*compute position 0 only/);
  assert.match(plain.graphNote, /^graph not optimized/);
  const { examples } = await readAllExamples([files('test')], { progress: false });
  const tweets = examples.map((e) => e.text);
  const batched = await fast.logits(tweets, 64);
  const reference = new Float32Array(batched.length);
  for (let i = 0; i < tweets.length; i++) reference.set(await plain.logits([tweets[i]!]), 2 * i);
  let worst = 0;
  for (let i = 0; i < batched.length; i++) worst = Math.max(worst, Math.abs(batched[i]! - reference[i]!));
  assert.ok(worst < 1e-6, `largest logit difference ${worst}`);
  await fast.dispose();
  await plain.dispose();
});

test('lelp is refused when the cache has no embeddings, naming the option and the fix', () => {
  const none = join(root, 'cache-none');
  assert.equal(
    runKd([
      'cache',
      'build',
      '--teacher',
      sharedPath('fixtures', 'hf', 'tiny-random-bert'),
      '--data',
      files('train'),
      '--out',
      none,
      '--embedding',
      'none',
    ]).status,
    0,
  );
  const r = runKd([
    'train',
    '--cache',
    none,
    '--train',
    files('train'),
    '--dev',
    files('dev'),
    '--out',
    join(root, 'bad'),
    '--loss',
    'lelp',
  ]);
  assert.equal(r.status, 2);
  assert.equal(
    r.stderr.trimEnd().split('\n').at(-1),
    "kd: error: '--loss lelp' needs teacher embeddings, but the cache was built with --embedding none. Rebuild it with " +
      '--embedding full (or pca:K)',
  );
  const missing = runKd([
    'train',
    '--cache',
    none,
    '--train',
    files('dev'),
    '--dev',
    files('dev'),
    '--out',
    join(root, 'bad2'),
    '--loss',
    'ce',
  ]);
  assert.equal(missing.status, 2);
  assert.match(missing.stderr, /rows are not in the cache/);
});

test("kd train refuses another student's flag instead of ignoring it", () => {
  const r = runKd([
    'train',
    '--cache',
    'none',
    '--train',
    'a.jsonl',
    '--dev',
    'b.jsonl',
    '--out',
    'o',
    '--student',
    'ngram',
    '--layers',
    '0',
  ]);
  assert.equal(r.status, 2, r.stderr);
  assert.equal(
    r.stderr,
    "kd: error: '--layers' is an option of the transformer student; --student ngram reads --dim, --ngram-hidden, --ngram-vocab, " +
      '--buckets' +
      ' (or pass --student transformer)\n',
  );
});
