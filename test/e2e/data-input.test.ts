// `kd data` on inputs that used to be refused or crash: long lines, multi-line Amazon CSV
// records, damaged Parquet, UTF-16, folders, JSON non-objects, and unwritable output paths.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runKd, tempDir } from '../helpers.js';

const STRICT_FIX = 'Fix the row, or run without --strict to skip malformed rows (they are counted and written to the rejects file).';

test('a first line of 200 KiB is read, detected and with --format (fastText and Sentiment140)', () => {
  const dir = tempDir();
  const ft = join(dir, 'long.ft.txt');
  const longReview = `__label__2 Long: ${'very good '.repeat(20480)}`;
  writeFileSync(ft, `${longReview}\n__label__1 Short: bad\n`);
  for (const args of [[], ['--format', 'amazon-fasttext']]) {
    const r = runKd(['data', 'stats', ft, '--json', ...args]);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual([r.json().format, r.json().rows, r.json().labels], ['amazon-fasttext', 2, { negative: 1, positive: 1 }]);
    assert.equal(r.json().textLength.chars.max, 'Long: '.length + 'very good '.repeat(20480).trim().length);
  }
  const s140 = join(dir, 'long.csv');
  writeFileSync(s140, `"4","1","d","NO_QUERY","u","${'x'.repeat(200 * 1024)}"\n"0","2","d","NO_QUERY","u","short"`);
  for (const args of [[], ['--format', 'sentiment140']]) {
    const r = runKd(['data', 'stats', s140, '--json', ...args]);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual([r.json().format, r.json().rows, r.json().textLength.chars.max], ['sentiment140', 2, 200 * 1024]);
  }
});

test('Amazon CSV: a quoted field with a line break is one row, and later errors keep their line numbers', () => {
  const file = join(tempDir(), 'train.csv');
  writeFileSync(file, '"2","Two lines","first line\nsecond line"\n"1","Broken ""again""","stopped"\n"2","Ok","fine"\n"7","Bad label","x"\n');
  const r = runKd(['data', 'stats', file, '--json']);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual([r.json().format, r.json().rows, r.json().labels, r.json().malformed], ['amazon-csv', 3, { negative: 1, positive: 2 }, { unknown_label: 1 }]);
  assert.equal(r.stderr, `skipped ${file}:5: field 'label' (column 1): unknown_label: expected 1 (negative) or 2 (positive), got "7"\n`);
  const strict = runKd(['data', 'stats', file, '--strict']);
  assert.equal(strict.status, 2);
  assert.equal(strict.stderr, `kd: error: ${file}:5: field 'label' (column 1): expected 1 (negative) or 2 (positive), got "7". ${STRICT_FIX}\n`);
});
