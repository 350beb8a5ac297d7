// Unlabelled rows through every stage on real reviews: data stats, split, cache build (the
// manifest counts both kinds, the shards hold NO_LABEL), and the refusals of kd eval and kd train.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readAllExamples } from '../../src/data/read.js';
import { CacheReader } from '../../src/cache/reader.js';
import { NO_LABEL } from '../../src/cache/format.js';
import { runKd, sharedDir, sharedPath, tempDir } from '../helpers.js';

const TEACHER = () => sharedPath('fixtures', 'hf', 'tiny-random-bert');
const AMAZON_3541 = () => sharedPath('datasets', 'amazon_polarity', 'test_lines_6460_10000.ft.txt');
// Split rows carry `source: "<file>:<line>"` with the input's absolute path: hashed with the shared folder as `$SHARED`,
// so the hash is the same wherever the checkout (and ../shared) lies.
const sha256 = (file: string) =>
  createHash('sha256')
    .update(readFileSync(file, 'utf8').replaceAll(JSON.stringify(sharedDir).slice(1, -1), '$SHARED'))
    .digest('hex');
const lines = (file: string) =>
  readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l !== '');

/**
 * The first 400 reviews of the 3,541-row Amazon sample: 300 written with their labels, then 100 as
 * `{"text": ...}` only (a JSONL with some rows unlabelled), and the same 100 texts as plain text with
 * 3 blank lines and one repeated line.
 */
async function fixtures(dir: string) {
  const { examples } = await readAllExamples([AMAZON_3541()], { progress: false });
  const labelled = examples.slice(0, 300);
  const unlabelled = examples.slice(300, 400);
  const names = ['negative', 'positive'];
  const labelledJsonl = join(dir, 'labelled.jsonl');
  writeFileSync(labelledJsonl, labelled.map((e) => `${JSON.stringify({ text: e.text, label: names[e.label!] })}\n`).join(''));
  const mixed = join(dir, 'mixed.jsonl');
  writeFileSync(mixed, readFileSync(labelledJsonl, 'utf8') + unlabelled.map((e) => `${JSON.stringify({ text: e.text })}\n`).join(''));
  const onlyText = join(dir, 'texts.jsonl');
  writeFileSync(onlyText, unlabelled.map((e) => `${JSON.stringify({ text: e.text })}\n`).join(''));
  const text = join(dir, 'texts.txt');
  const textLines = unlabelled.map((e) => e.text);
  textLines.splice(10, 0, '');
  textLines.splice(50, 0, '   ');
  textLines.push(unlabelled[0]!.text, '');
  writeFileSync(text, `${textLines.join('\n')}\n`);
  const positives = labelled.filter((e) => e.label === 1).length;
  return { labelledJsonl, mixed, onlyText, text, positives, unlabelledIds: new Set(unlabelled.map((e) => `h${e.textHash}`)) };
}

test('a text file and a JSONL without labels: data stats, split and cache build count every unlabelled row', async () => {
  const dir = tempDir();
  const f = await fixtures(dir);

  // data stats: 101 lines of text (one repeated), 3 blank lines; the JSONL needs --unlabeled.
  const textStats = runKd(['data', 'stats', f.text, '--format', 'text', '--json']);
  assert.equal(textStats.status, 0, textStats.stderr);
  const ts = textStats.json();
  assert.deepEqual([ts.format, ts.rows, ts.labeled, ts.unlabeled, ts.blankLines], ['text', 101, 0, 101, 3]);
  assert.match(textStats.stdout, /^format: text\nrows read: 101 \(labelled 0, unlabelled 101\)\n/);
  const refused = runKd(['data', 'stats', f.onlyText]);
  assert.equal(refused.status, 2);
  assert.match(
    refused.stderr,
    /^kd: error: .*texts\.jsonl:1: cannot tell which field holds the label .*, or pass --unlabeled to read rows without labels\n$/,
  );
  const mixedStats = runKd(['data', 'stats', f.mixed, '--unlabeled', '--json']).json();
  assert.deepEqual(
    [mixedStats.rows, mixedStats.labeled, mixedStats.unlabeled, mixedStats.labels],
    [400, 300, 100, { negative: 300 - f.positives, positive: f.positives }],
  );
  const mixedPlain = runKd(['data', 'stats', f.mixed, '--json']).json();
  assert.deepEqual([mixedPlain.rows, mixedPlain.unlabeled, mixedPlain.malformed], [300, 0, { missing_field: 100 }]);

  // data split: the text file's 100 unique rows all go to train.
  const textSplit = runKd(['data', 'split', f.text, '--format', 'text', '--out', join(dir, 'text-split'), '--json']);
  assert.equal(textSplit.status, 0, textSplit.stderr);
  const tm = textSplit.json();
  assert.deepEqual([tm.unique, tm.duplicatesRemoved, tm.unlabeled], [100, 1, { train: 100, dev: 0, test: 0 }]);
  assert.deepEqual(tm.counts.train, { negative: 0, positive: 0 });
  assert.match(textSplit.stdout, /\ntrain: 100 \(negative 0, positive 0, unlabelled 100\)\ndev: 0 \(negative 0, positive 0\)\n/);
  const trainRows = lines(join(dir, 'text-split', 'train.jsonl')).map((l) => JSON.parse(l) as { id: string; label: unknown });
  assert.deepEqual([trainRows.length, trainRows.every((r) => r.label === null)], [100, true]);
  assert.deepEqual([lines(join(dir, 'text-split', 'dev.jsonl')).length, lines(join(dir, 'text-split', 'test.jsonl')).length], [0, 0]);

  // The mixed JSONL: labelled rows split exactly as the labelled file alone; the 100 unlabelled go to train.
  const mixedSplit = runKd(['data', 'split', f.mixed, '--unlabeled', '--out', join(dir, 'mixed-split'), '--json']);
  assert.equal(mixedSplit.status, 0, mixedSplit.stderr);
  const mm = mixedSplit.json();
  const alone = runKd(['data', 'split', f.labelledJsonl, '--out', join(dir, 'alone-split'), '--json']).json();
  assert.deepEqual([mm.unique, mm.unlabeled, mm.counts], [400, { train: 100, dev: 0, test: 0 }, alone.counts]);
  for (const s of ['dev', 'test'])
    assert.equal(
      readFileSync(join(dir, 'mixed-split', `${s}.jsonl`), 'utf8').replaceAll('mixed.jsonl', 'labelled.jsonl'),
      readFileSync(join(dir, 'alone-split', `${s}.jsonl`), 'utf8'),
    );
  const mixedTrain = lines(join(dir, 'mixed-split', 'train.jsonl'));
  assert.equal(mixedTrain.length, alone.counts.train.negative + alone.counts.train.positive + 100);
  assert.equal(mixedTrain.filter((l) => (JSON.parse(l) as { label: unknown }).label === null).length, 100);

  // cache build: over the mixed split (--unlabeled reads its null labels) and over the text file.
  const splitFiles = ['train', 'dev', 'test'].map((s) => join(dir, 'mixed-split', `${s}.jsonl`));
  const cacheDir = join(dir, 'cache');
  const built = runKd(['cache', 'build', '--teacher', TEACHER(), '--data', ...splitFiles, '--unlabeled', '--out', cacheDir, '--json']);
  assert.equal(built.status, 0, built.stderr);
  assert.deepEqual([built.json().rows, built.json().labeled, built.json().unlabeled], [400, 300, 100]);
  assert.match(built.stdout, /; data: 300 labelled, 100 unlabelled rows\n/);
  const manifest = JSON.parse(readFileSync(join(cacheDir, 'manifest.json'), 'utf8'));
  assert.deepEqual([manifest.data.rows, manifest.data.labeled, manifest.data.unlabeled], [400, 300, 100]);
  const cache = CacheReader.open(cacheDir);
  try {
    const { ids } = cache.keys();
    const { labels, logits } = cache.read(Int32Array.from(ids.keys()));
    const expected = readAllExamples(splitFiles, { unlabeled: true, progress: false });
    const byId = new Map((await expected).examples.map((e) => [e.id, e.label]));
    assert.equal(ids.length, 400);
    ids.forEach((id, r) => assert.equal(labels[r], byId.get(id) ?? NO_LABEL, id));
    assert.equal([...labels].filter((y) => y === NO_LABEL).length, 100);
    assert.ok(ids.filter((_, r) => labels[r] === NO_LABEL).every((id) => f.unlabelledIds.has(id)));
    assert.ok(logits.every((x) => Number.isFinite(x)));
  } finally {
    cache.close();
  }
  const info = runKd(['cache', 'info', cacheDir, '--json']).json();
  assert.deepEqual([info.rows, info.unlabeled, info.labels.negative + info.labels.positive], [400, 100, 300]);

  const textCache = runKd([
    'cache',
    'build',
    '--teacher',
    TEACHER(),
    '--data',
    f.text,
    '--format',
    'text',
    '--out',
    join(dir, 'text-cache'),
    '--json',
  ]);
  assert.equal(textCache.status, 0, textCache.stderr);
  const tmf = JSON.parse(readFileSync(join(dir, 'text-cache', 'manifest.json'), 'utf8'));
  assert.deepEqual([tmf.data.rows, tmf.data.labeled, tmf.data.unlabeled, tmf.data.duplicatesRemoved], [100, 0, 100, 1]);
  const tc = CacheReader.open(join(dir, 'text-cache'));
  try {
    assert.ok([...tc.read(Int32Array.from({ length: 100 }, (_, i) => i)).labels].every((y) => y === NO_LABEL));
  } finally {
    tc.close();
  }

  // kd eval and kd teacher eval refuse unlabelled rows, naming the file and line.
  const ev = runKd(['eval', '--model', TEACHER(), '--data', f.text, '--format', 'text']);
  assert.equal(ev.status, 2);
  assert.equal(
    ev.stderr,
    `kd: error: ${f.text}:1: row ${[...f.unlabelledIds][0]} has no label, but kd eval needs labelled data (accuracy is measured ` +
      'against gold labels). Give a labelled file; unlabelled rows (--format text, or --unlabeled) are teacher inputs for kd cache ' +
      'build --data\n',
  );
  const tev = runKd(['teacher', 'eval', '--model', TEACHER(), '--data', f.mixed, '--unlabeled']);
  assert.equal(tev.status, 2);
  assert.match(tev.stderr, /^kd: error: .*mixed\.jsonl:301: row h[0-9a-f]{16} has no label, but kd teacher eval needs labelled data/);

  // kd train --train with unlabelled rows: refused, pointing to --transfer.
  const firstUnlabelled = mixedTrain.findIndex((l) => (JSON.parse(l) as { label: unknown }).label === null) + 1;
  const tr = runKd([
    'train',
    '--cache',
    cacheDir,
    '--train',
    splitFiles[0]!,
    '--dev',
    splitFiles[1]!,
    '--unlabeled',
    '--out',
    join(dir, 'run'),
  ]);
  assert.equal(tr.status, 2);
  assert.equal(
    tr.stderr,
    `kd: error: ${splitFiles[0]}:${firstUnlabelled}: row ${(JSON.parse(mixedTrain[firstUnlabelled - 1]!) as { id: string }).id} ` +
      'has no label, but kd train --train needs labelled data (the student learns from gold labels there). Give a labelled file; ' +
      "unlabelled rows the student should learn from with the teacher's targets alone go in --transfer\n",
  );
});

test('labelled data: split files byte-identical to the code before unlabelled rows; the cache manifest counts all labelled', () => {
  const dir = tempDir();
  const split = runKd(['data', 'split', AMAZON_3541(), '--out', join(dir, 'split')]);
  assert.equal(split.status, 0, split.stderr);
  // sha256 of the files written by commit 09df28b (before unlabelled rows) on the same input and options.
  assert.deepEqual(
    ['train', 'dev', 'test'].map((s) => sha256(join(dir, 'split', `${s}.jsonl`))),
    [
      '0109029eb3f4962021e83d395d11c62ed78d0d77bc71f2466586cd29f4e56b20',
      '8dcac6a0ba99d0ec62cf18ca28f0185a0aea034cfa59080318e623e7f123eff5',
      '031ccacbfda9d4eabd41b60cc2a0507259839a2a8a9099c50cb1be78e399fc23',
    ],
  );
  assert.doesNotMatch(split.stdout, /unlabelled/);
  const cacheDir = join(dir, 'cache');
  const built = runKd([
    'cache',
    'build',
    '--teacher',
    TEACHER(),
    '--data',
    join(dir, 'split', 'dev.jsonl'),
    '--out',
    cacheDir,
    '--shard-rows',
    '100',
  ]);
  assert.equal(built.status, 0, built.stderr);
  assert.equal(built.stdout, `cache ${cacheDir}: 354 rows in 4 shard(s), embedding full 64 float16\n`);
  const m = JSON.parse(readFileSync(join(cacheDir, 'manifest.json'), 'utf8'));
  assert.deepEqual([m.version, m.data.rows, m.data.labeled, m.data.unlabeled], [1, 354, 354, 0]);
  const shard = readFileSync(join(cacheDir, m.shards[0].path));
  assert.equal(shard.readUInt32LE(8), 1); // shard format version unchanged
});
