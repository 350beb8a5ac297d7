// Readers and splits on the real samples in ../shared: exact row and label counts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { readAllExamples } from '../../src/data/read.js';
import { splitDataset } from '../../src/data/split.js';
import { AMAZON_TEST_HEAD, S140_10K, S140_20K, S140_RANDOM, fixturePath, runKd, sharedPath, tempDir } from '../helpers.js';

const counts = async (files: string[]) => (await readAllExamples(files, { progress: false })).summary;

test('Sentiment140 20k sample: 20,000 rows (9,999 / 10,001) though its last row has no newline', async () => {
  const s = await counts([S140_20K()]);
  assert.equal(readFileSync(S140_20K()).at(-1), 0x22); // ends with the closing quote, no newline
  assert.equal(s.format, 'sentiment140');
  assert.equal(s.rows, 20000);
  assert.deepEqual(s.labels, { negative: 9999, positive: 10001 });
  assert.deepEqual(s.skipped, { neutral: 0, malformed: 0 });
});

test('Sentiment140 10k sample: 10,000 rows (5,000 / 5,000); random sample: 33,477 (17,761 / 15,716)', async () => {
  const ten = await counts([S140_10K()]);
  assert.deepEqual([ten.rows, ten.labels], [10000, { negative: 5000, positive: 5000 }]);
  const random = await counts([S140_RANDOM()]);
  assert.deepEqual([random.rows, random.labels], [33477, { negative: 17761, positive: 15716 }]);
});

test('Amazon polarity fastText samples: exact rows and labels per file', async () => {
  const head = await counts([AMAZON_TEST_HEAD()]);
  assert.deepEqual([head.format, head.rows, head.labels], ['amazon-fasttext', 4459, { negative: 2179, positive: 2280 }]);
  const dir = (f: string) => sharedPath('datasets', 'amazon_polarity', f);
  const all = await counts(['test_lines_6460_10000.ft.txt', 'test_random_sample_6814.ft.txt', 'train_random_sample_9992.ft.txt'].map(dir));
  assert.deepEqual(
    all.files.map((f) => [f.rows, ...f.labelCounts]),
    [
      [3541, 1738, 1803],
      [6814, 3371, 3443],
      [9992, 5071, 4921],
    ],
  );
  assert.equal(all.skipped.malformed, 0);
});

test('the two Sentiment140 samples split into 25,000 unique rows, stratified and reproducible', async () => {
  const out = tempDir();
  const m = await splitDataset([S140_20K(), S140_10K()], { out, dev: 0.1, test: 0.1, seed: 13, progress: false });
  assert.equal(m.unique, 25000);
  assert.equal(m.duplicatesRemoved, 5000);
  assert.equal(m.duplicateLabelConflicts, 0);
  // 9,999 + 5,000 positives from the two files, negatives 9,999 (the 10k's negatives are the 20k's first 5,000).
  const total = (s: 'train' | 'dev' | 'test') => Object.values(m.counts[s]).reduce((a, b) => a + b, 0);
  assert.deepEqual(m.counts.test, { negative: 1000, positive: 1500 });
  assert.deepEqual(m.counts.dev, { negative: 1000, positive: 1500 });
  assert.equal(total('train') + total('dev') + total('test'), 25000);
  const lines = (d: string, s: string) =>
    readFileSync(join(d, `${s}.jsonl`), 'utf8')
      .trimEnd()
      .split('\n');
  const ids = new Set(['train', 'dev', 'test'].flatMap((s) => lines(out, s).map((l) => JSON.parse(l).id)));
  assert.equal(ids.size, 25000);
  const again = tempDir();
  await splitDataset([S140_20K(), S140_10K()], { out: again, dev: 0.1, test: 0.1, seed: 13, progress: false });
  for (const s of ['train', 'dev', 'test'])
    assert.equal(readFileSync(join(again, `${s}.jsonl`), 'utf8'), readFileSync(join(out, `${s}.jsonl`), 'utf8'));
  const other = tempDir();
  await splitDataset([S140_20K(), S140_10K()], { out: other, dev: 0.1, test: 0.1, seed: 14, progress: false });
  assert.notEqual(readFileSync(join(other, 'test.jsonl'), 'utf8'), readFileSync(join(out, 'test.jsonl'), 'utf8'));
  // The split files read back as JSONL with ids and hashes kept.
  const back = await readAllExamples([join(out, 'test.jsonl')], { progress: false });
  assert.deepEqual(back.summary.labels, { negative: 1000, positive: 1500 });
  assert.equal(back.examples[0]!.id, JSON.parse(lines(out, 'test')[0]!).id);
});

test('all three Sentiment140 samples hold 58,477 unique tweets', async () => {
  const out = tempDir();
  const m = await splitDataset([S140_20K(), S140_10K(), S140_RANDOM()], { out, dev: 0.05, test: 0.05, seed: 13, progress: false });
  assert.equal(m.unique, 58477);
});

test('kd data stats --json: last stdout line is the summary object', () => {
  const r = runKd(['data', 'stats', S140_20K(), '--json']);
  assert.equal(r.status, 0, r.stderr);
  const s = r.json();
  assert.equal(s.format, 'sentiment140');
  assert.equal(s.rows, 20000);
  assert.deepEqual(s.labels, { negative: 9999, positive: 10001 });
  assert.deepEqual(s.skipped, { neutral: 0, malformed: 0 });
  assert.equal(s.textLength.chars.max, 188);
  assert.match(r.stdout, /^format: sentiment140\nrows read: 20000\n/);
});

test('kd data split writes malformed rows with file and line to rejects.jsonl; --strict fails naming them', () => {
  const file = fixturePath('data', 'sentiment140_bad.csv');
  const out = tempDir();
  const r = runKd(['data', 'split', file, '--out', out, '--dev', '0.25', '--test', '0.25', '--json']);
  assert.equal(r.status, 0, r.stderr);
  const rejects = readFileSync(join(out, 'rejects.jsonl'), 'utf8')
    .trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l));
  assert.deepEqual(
    rejects.map((x) => [x.file, x.line, x.reason]),
    [
      [file, 4, 'wrong_column_count'],
      [file, 5, 'unclosed_quote'],
      [file, 6, 'unknown_label'],
      [file, 7, 'empty_text'],
    ],
  );
  assert.equal(r.json().unique, 4);
  const strict = runKd(['data', 'stats', file, '--strict']);
  assert.equal(strict.status, 2);
  assert.equal(
    strict.stderr,
    `kd: error: ${file}:4: expected 6 columns (polarity,id,date,query,user,text), got 5. Fix the row, or run without --strict ` +
      `to skip malformed rows (they are counted and written to the rejects file).\n`,
  );
});

test('kd exits 2 with one clear line for a wrong format, a missing file and a bad option', () => {
  const wrong = runKd(['data', 'stats', S140_10K(), '--format', 'amazon-fasttext']);
  assert.equal(wrong.status, 2);
  assert.match(wrong.stderr, /^kd: error: .*does not look like Amazon reviews fastText lines .* Use --format sentiment140 \(or auto\)\n$/);
  const missing = runKd(['data', 'stats', '/nonexistent/x.csv']);
  assert.equal(missing.status, 2);
  assert.match(missing.stderr, /^kd: error: ENOENT: no such file or directory/);
  const bad = runKd(['data', 'split', S140_10K(), '--out', tempDir(), '--dev', '0.6', '--test', '0.5']);
  assert.equal(bad.status, 2);
  assert.equal(bad.stderr, "kd: error: '--dev' + '--test' must be below 1, got 1.1\n");
  const help = runKd(['--help']);
  assert.equal(help.status, 0);
  assert.match(help.stdout, /Usage: kd/);
});
