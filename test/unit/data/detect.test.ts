import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { resolveFormat } from '../../../src/data/detect.js';
import { fixturePath, tempDir } from '../../helpers.js';

test('detects each format from its first lines', async () => {
  assert.equal(await resolveFormat(fixturePath('data', 'sentiment140_bad.csv'), 'auto'), 'sentiment140');
  assert.equal(await resolveFormat(fixturePath('data', 'amazon_bad.csv'), 'auto'), 'amazon-csv');
  assert.equal(await resolveFormat(fixturePath('data', 'amazon_bad.ft.txt'), 'auto'), 'amazon-fasttext');
  assert.equal(await resolveFormat(fixturePath('data', 'generic.jsonl'), 'auto'), 'jsonl');
  assert.equal(await resolveFormat(fixturePath('data', 'generic.csv'), 'auto'), 'csv');
});

test('a file that is not the claimed format fails at once and says what it looks like', async () => {
  const file = fixturePath('data', 'sentiment140_bad.csv');
  await assert.rejects(resolveFormat(file, 'amazon-fasttext'), {
    name: 'FormatError',
    message:
      `${file}: does not look like Amazon reviews fastText lines ("__label__<n> <title>: <text>"): none of its first 5 ` +
      `lines fits; it looks like Sentiment140 CSV (6 quoted columns polarity,id,date,query,user,text, no header). Use --format ` +
      `sentiment140 (or auto)`,
  });
  const ft = fixturePath('data', 'amazon_bad.ft.txt');
  await assert.rejects(resolveFormat(ft, 'amazon-csv'), {
    message: /does not look like Amazon reviews CSV .*it looks like Amazon reviews fastText lines/,
  });
  await assert.rejects(resolveFormat(file, 'csv'), {
    message:
      `${file}: looks like Sentiment140 CSV (6 quoted columns polarity,id,date,query,user,text, no header), not a CSV ` +
      `with a header row. Use --format sentiment140`,
  });
  await assert.rejects(resolveFormat(file, 'parquet'), {
    message: /does not look like Parquet \(no PAR1 magic bytes\): it looks like Sentiment140/,
  });
});

test('binary, compressed and empty files are refused with what they are', async () => {
  const dir = tempDir();
  const bin = join(dir, 'model.bin');
  writeFileSync(bin, Buffer.from([1, 2, 3, 0, 5]));
  await assert.rejects(resolveFormat(bin, 'auto'), {
    name: 'FormatError',
    message: `${bin}: looks like a binary file (a NUL byte at offset 3), not text`,
  });
  const gz = join(dir, 'train.csv.gz');
  writeFileSync(gz, gzipSync('"0","1","d","q","u","t"\n'));
  await assert.rejects(resolveFormat(gz, 'sentiment140'), {
    message: `${gz}: is gzip-compressed: decompress it first (gunzip, or tar -xzf for a .tgz)`,
  });
  const zip = join(dir, 'trainingandtestdata.zip');
  writeFileSync(zip, Buffer.from([0x50, 0x4b, 3, 4, 0, 0]));
  await assert.rejects(resolveFormat(zip, 'auto'), { message: /is a zip archive: extract it first/ });
  const empty = join(dir, 'empty.csv');
  writeFileSync(empty, '');
  await assert.rejects(resolveFormat(empty, 'auto'), { message: `${empty}: is empty` });
  await assert.rejects(resolveFormat(empty, 'xml' as never), {
    name: 'OptionError',
    message: /Unknown format 'xml'. Known: auto, sentiment140/,
  });
});

test('a first record longer than the sniffed 64 KiB, or running past a newline, is sniffed from its start', async () => {
  const dir = tempDir();
  const write = (name: string, text: string) => {
    writeFileSync(join(dir, name), text);
    return join(dir, name);
  };
  const long = 'z'.repeat(100 * 1024);
  assert.equal(await resolveFormat(write('a.csv', `"2","${long}","${long}"\n`), 'auto'), 'amazon-csv');
  assert.equal(await resolveFormat(write('b.csv', `"2","title ${long}`), 'amazon-csv'), 'amazon-csv');
  assert.equal(await resolveFormat(write('c.jsonl', `{"text":"${long}","label":1}\n`), 'auto'), 'jsonl');
  assert.equal(await resolveFormat(write('d.csv', '"2","Title","first line\nsecond line"\n'), 'auto'), 'amazon-csv');
  const blank = write('e.txt', '\n  \n');
  await assert.rejects(resolveFormat(blank, 'auto'), { name: 'FormatError', message: `${blank}: holds only blank lines` });
});
