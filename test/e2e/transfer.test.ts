// Transfer sets through the CLI on real tweets: kd cache build --transfer caches a plain-text file beside labelled
// files, kd train --transfer learns from it with exact row counts and logs each loss term, and the refusals.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runKd, sharedPath, tempDir } from '../helpers.js';

const TEACHER = () => sharedPath('fixtures', 'hf', 'tiny-random-bert');
const S140 = () => sharedPath('datasets', 'sentiment140', 'train_random_sample_33477.csv');
const lines = (file: string) =>
  readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l !== '');

/** A 1,200-tweet split; every 8th training row kept labelled, the other training tweets written as plain text. */
function fixtures() {
  const dir = tempDir();
  const split = join(dir, 'split');
  const s = runKd(['data', 'split', S140(), '--limit', '1200', '--out', split]);
  assert.equal(s.status, 0, s.stderr);
  const train = lines(join(split, 'train.jsonl'));
  const labelled = join(dir, 'labelled.jsonl');
  writeFileSync(labelled, train.filter((_, i) => i % 8 === 0).join('\n') + '\n');
  const texts = train.filter((_, i) => i % 8 !== 0).map((l) => (JSON.parse(l) as { text: string }).text.replace(/\s*\n\s*/g, ' '));
  const transfer = join(dir, 'tweets.txt');
  writeFileSync(transfer, texts.join('\n') + '\n');
  return { dir, labelled, transfer, dev: join(split, 'dev.jsonl'), test: join(split, 'test.jsonl'), texts };
}

test('kd cache build --transfer and kd train --transfer: exact counts, each loss term logged, a changed ratio refused on resume', () => {
  const f = fixtures();
  const cache = join(f.dir, 'cache');
  const built = runKd([
    'cache',
    'build',
    '--teacher',
    TEACHER(),
    '--data',
    f.labelled,
    f.dev,
    f.test,
    '--transfer',
    f.transfer,
    '--transfer-format',
    'text',
    '--out',
    cache,
    '--json',
  ]);
  assert.equal(built.status, 0, built.stderr);
  const labelledRows = lines(f.labelled).length + lines(f.dev).length + lines(f.test).length;
  // Plain-text rows are keyed by their text: a tweet that occurs twice is one row.
  const unique = new Set(f.texts.map((t) => t.trim())).size;
  const m = JSON.parse(readFileSync(join(cache, 'manifest.json'), 'utf8'));
  assert.deepEqual([m.data.labeled, m.data.unlabeled, m.data.transfer], [labelledRows, unique, { files: 1, format: 'text' }]);

  const out = join(f.dir, 'run');
  const args = ['train', '--cache', cache, '--train', f.labelled, '--dev', f.dev, '--transfer', f.transfer];
  const small = ['--transfer-format', 'text', '--dim', '8', '--buckets', '4096', '--epochs', '1', '--batch-size', '32'];
  const r = runKd([...args, ...small, '--loss', 'kd', '--out', out]);
  assert.equal(r.status, 0, r.stderr);
  const nl = lines(f.labelled).length;
  const bt = Math.min(31, Math.max(1, Math.round((32 * unique) / (nl + unique))));
  assert.match(r.stderr, new RegExp(`${nl} labelled \\+ ${unique} transfer rows \\(${bt} of each batch of 32\\)`));
  const result = JSON.parse(readFileSync(join(out, 'seed-13', 'result.json'), 'utf8'));
  assert.deepEqual([result.trainRows, result.transferRows, result.loop.steps], [nl, unique, Math.ceil((nl + unique) / 32)]);
  assert.equal(result.runConfig.data.transfer.rows, unique);
  const metrics = lines(join(out, 'seed-13', 'training', 'metrics.jsonl')).map((l) => JSON.parse(l));
  assert.deepEqual(Object.keys(metrics.at(-1).terms).sort(), ['ce', 'kd', 'transfer_kd']);

  // The same run resumed with another ratio is refused naming the field; with the same settings it is reused.
  const again = runKd([...args, ...small, '--loss', 'kd', '--out', out, '--resume', '--transfer-ratio', '0.5']);
  assert.equal(again.status, 2);
  assert.match(again.stderr, /was trained with data\.transfer\.ratio = 0\.\d+; this run asks for 0\.5/);
  assert.equal(runKd([...args, ...small, '--loss', 'kd', '--out', out, '--resume']).status, 0);

  // ce has no teacher term for transfer rows.
  const ce = runKd([...args, ...small, '--loss', 'ce', '--out', join(f.dir, 'ce')]);
  assert.equal(ce.status, 2);
  assert.match(ce.stderr, /^kd: error: '--loss ce' learns from gold labels alone, .*use --loss kd, dtkd or lelp with --transfer/);
  // A dev row given as transfer row is refused, naming the file and line.
  const leak = runKd(['train', '--cache', cache, '--train', f.labelled, '--dev', f.dev, '--transfer', f.dev, '--out', join(f.dir, 'x')]);
  assert.equal(leak.status, 2);
  assert.match(leak.stderr, new RegExp(`^kd: error: ${f.dev}:1: transfer row \\S+ is also a dev or test row`));
  // A ratio outside (0, 1), and one without a transfer set.
  const ratio = runKd([...args, ...small, '--transfer-ratio', '1', '--out', join(f.dir, 'y')]);
  assert.match(ratio.stderr, /'--transfer-ratio' must be a fraction in \(0, 1\)/);
  const alone = runKd([
    'train',
    '--cache',
    cache,
    '--train',
    f.labelled,
    '--dev',
    f.dev,
    '--transfer-ratio',
    '0.5',
    '--out',
    join(f.dir, 'z'),
  ]);
  assert.match(alone.stderr, /'--transfer-ratio' sets the share of transfer rows in each batch: give the transfer set with --transfer/);
});

test('a transfer row missing from the cache names the file and line and says to rebuild the cache with that file', () => {
  const f = fixtures();
  const cache = join(f.dir, 'cache');
  const built = runKd(['cache', 'build', '--teacher', TEACHER(), '--data', f.labelled, f.dev, '--out', cache]);
  assert.equal(built.status, 0, built.stderr);
  const r = runKd([
    'train',
    '--cache',
    cache,
    '--train',
    f.labelled,
    '--dev',
    f.dev,
    '--transfer',
    f.transfer,
    '--transfer-format',
    'text',
    '--out',
    join(f.dir, 'run'),
  ]);
  assert.equal(r.status, 2);
  const unique = new Set(f.texts.map((t) => t.trim())).size;
  assert.match(
    r.stderr,
    new RegExp(
      `^kd: error: ${f.transfer}:1: ${unique} of ${unique} transfer rows are not in the cache ${cache} \\(first: id h[0-9a-f]{16}\\)\\. ` +
        `The teacher labels transfer rows in the cache build: rebuild the cache with ${f.transfer} among its --transfer files`,
    ),
  );
});
