// Every reader on small fixtures with each kind of bad row: exact counts and message shapes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { readAllExamples } from '../../../src/data/read.js';
import type { Reject } from '../../../src/data/errors.js';
import { fixturePath, tempDir } from '../../helpers.js';

async function read(file: string, options: Parameters<typeof readAllExamples>[1] = {}) {
  const rejects: Reject[] = [];
  const result = await readAllExamples([file], { progress: false, ...options, onReject: (r) => rejects.push(r) });
  return { ...result, rejects };
}

test('Sentiment140: neutral skipped in binary mode, each malformed row counted with its reason', async () => {
  const file = fixturePath('data', 'sentiment140_bad.csv');
  const { examples, summary, rejects } = await read(file);
  assert.equal(summary.format, 'sentiment140');
  assert.equal(summary.rows, 4);
  assert.deepEqual(summary.labels, { negative: 2, positive: 2 });
  assert.deepEqual(summary.skipped, { neutral: 2, malformed: 4 });
  assert.deepEqual(summary.malformed, { wrong_column_count: 1, unclosed_quote: 1, unknown_label: 1, empty_text: 1 });
  assert.deepEqual(
    rejects.map((r) => [r.line, r.reason, r.field, r.message]),
    [
      [4, 'wrong_column_count', undefined, 'expected 6 columns (polarity,id,date,query,user,text), got 5'],
      [
        5,
        'unclosed_quote',
        undefined,
        'the quoted field in column 6 is not closed by the end of the line (expected 6 quoted columns polarity,id,date,query,user,text)',
      ],
      [6, 'unknown_label', "'polarity' (column 1)", 'expected 0 (negative), 2 (neutral) or 4 (positive), got "7"'],
      [7, 'empty_text', "'text' (column 6)", 'expected the tweet text, got an empty field'],
    ],
  );
  assert.ok(rejects.every((r) => r.file === file && r.raw.startsWith('"')));
  // Raw quotes inside a tweet (the official file never doubles them) are kept; the last row has no newline.
  assert.deepEqual(
    examples.map((e) => [e.id, e.label, e.line]),
    [
      ['1001', 0, 1],
      ['1002', 1, 2],
      ['1008', 1, 8],
      ['1010', 0, 10],
    ],
  );
  assert.equal(examples[2]!.text, 'she said "hi" to me');
  assert.equal(examples[3]!.text, 'last row, no newline');
});

test('Sentiment140 with --classes 3 keeps neutral rows', async () => {
  const { summary } = await read(fixturePath('data', 'sentiment140_bad.csv'), { classes: 3 });
  assert.deepEqual(summary.labels, { negative: 2, neutral: 2, positive: 2 });
  assert.equal(summary.skipped.neutral, 0);
});

test('--strict stops at the first malformed row naming file, line, field and expectation', async () => {
  const file = fixturePath('data', 'sentiment140_bad.csv');
  await assert.rejects(read(file, { strict: true }), {
    name: 'DataError',
    message:
      `${file}:4: expected 6 columns (polarity,id,date,query,user,text), got 5. Fix the row, or run without --strict to ` +
      `skip malformed rows (they are counted and written to the rejects file).`,
  });
  const amazon = fixturePath('data', 'amazon_bad.csv');
  await assert.rejects(read(amazon, { strict: true }), {
    name: 'DataError',
    message:
      `${amazon}:3: field 'label' (column 1): expected 1 (negative) or 2 (positive), got "3"; labels 3-5 are Amazon Full ` +
      `star ratings: use --classes 5. Fix the row, or run without --strict to skip malformed rows (they are counted and written ` +
      `to the rejects file).`,
  });
});

test('Amazon CSV: doubled quotes, title and text kept apart, bad rows by reason', async () => {
  const { examples, summary, rejects } = await read(fixturePath('data', 'amazon_bad.csv'));
  assert.equal(summary.format, 'amazon-csv');
  assert.equal(summary.rows, 2);
  assert.deepEqual(summary.malformed, { unknown_label: 1, empty_text: 1, stray_quote: 1, wrong_column_count: 1 });
  assert.equal(examples[1]!.title, 'Broken "again"');
  assert.equal(examples[1]!.body, 'Stopped working, after a week');
  assert.equal(examples[1]!.text, 'Broken "again": Stopped working, after a week');
  assert.match(examples[0]!.id, /^h[0-9a-f]{16}$/);
  assert.deepEqual(
    rejects.map((r) => [r.line, r.reason]),
    [
      [3, 'unknown_label'],
      [4, 'empty_text'],
      [5, 'stray_quote'],
      [6, 'wrong_column_count'],
    ],
  );
  assert.equal(
    rejects[2]!.message,
    'a quote inside the quoted field in column 2 is neither doubled nor followed by a comma (RFC 4180 doubles quotes: "")',
  );
});

test('Amazon CSV: a line break inside a quoted field is one record; an unclosed quote costs only its own line', async () => {
  const file = join(tempDir(), 'amazon.csv');
  writeFileSync(file, '"2","Two","lines\nof text"\n"1","Open title,"x\n"1","Next","row"\n"2","Never closed\nstill open\n');
  const { examples, rejects } = await read(file, { format: 'amazon-csv' });
  assert.deepEqual(
    examples.map((e) => [e.line, e.title, e.body]),
    [
      [1, 'Two', 'lines\nof text'],
      [4, 'Next', 'row'],
    ],
  );
  assert.deepEqual(
    rejects.map((r) => [r.line, r.reason, r.field, r.message]),
    [
      [
        3,
        'stray_quote',
        "'title' (column 2)",
        'a quote inside the quoted field in column 2 is neither doubled nor followed by a comma (RFC 4180 doubles quotes: "")',
      ],
      [
        5,
        'unclosed_quote',
        "'title' (column 2)",
        'the quoted field opened on this line is not closed before the end of the file (expected 3 quoted columns "label","title","text")',
      ],
      [6, 'wrong_column_count', undefined, 'expected 3 columns ("label","title","text"), got 1'],
    ],
  );
});

test('Amazon Full with --classes 5 maps stars 1-5; --classes 3 is refused', async () => {
  const { examples } = await read(fixturePath('data', 'amazon_full.csv'), { classes: 5 });
  assert.deepEqual(
    examples.map((e) => e.label),
    [4, 3, 2, 1, 0],
  );
  await assert.rejects(read(fixturePath('data', 'amazon_full.csv'), { classes: 3 }), {
    name: 'ConfigError',
    message: /'--classes 3' does not fit Amazon reviews/,
  });
});

test('Amazon fastText: title split at the first ": ", same id and hash as the CSV form', async () => {
  const { examples, rejects } = await read(fixturePath('data', 'amazon_bad.ft.txt'));
  assert.deepEqual(
    examples.map((e) => [e.title, e.body, e.label]),
    [
      ['Great CD', 'loved it', 1],
      ['', 'no title here', 0],
      ['Title only', '', 0],
    ],
  );
  assert.deepEqual(
    rejects.map((r) => [r.line, r.reason]),
    [
      [3, 'unknown_label'],
      [4, 'wrong_column_count'],
    ],
  );
  const dir = tempDir();
  writeFileSync(join(dir, 'a.csv'), '"2","Great CD","loved it"\n');
  const csv = await read(join(dir, 'a.csv'));
  assert.equal(csv.examples[0]!.id, examples[0]!.id);
  assert.equal(csv.examples[0]!.textHash, examples[0]!.textHash);
});

test('generic CSV: named fields, multi-line quoted field, neutral and bad rows', async () => {
  const file = fixturePath('data', 'generic.csv');
  await assert.rejects(read(file), {
    name: 'ConfigError',
    message:
      `${file}:1 (header): cannot tell which field holds the text (looked for text, content, sentence, review, body; ` +
      `fields present: review_id, stars, comment). Name it with --text-field`,
  });
  const { examples, summary, rejects } = await read(file, { textField: 'comment', labelField: 'stars', idField: 'review_id' });
  assert.deepEqual(
    examples.map((e) => [e.id, e.label, e.text, e.line]),
    [
      ['r1', 1, 'good, really good', 2],
      ['r2', 0, 'bad "really" bad', 3],
      ['r3', 1, 'spans\ntwo lines', 4],
    ],
  );
  assert.equal(summary.skipped.neutral, 1);
  assert.deepEqual(
    rejects.map((r) => [r.line, r.reason, r.message]),
    [
      [7, 'wrong_column_count', 'expected 3 columns (review_id,stars,comment), got 2'],
      [8, 'unknown_label', 'expected a class name or index 0-1 (for 2 classes), got "9"; map other values with --label-map'],
    ],
  );
});

test('generic CSV: a quote never closed is reported where it opened, and later rows are still read', async () => {
  const { examples, rejects } = await read(fixturePath('data', 'unclosed_header.csv'));
  assert.deepEqual(
    rejects.map((r) => [r.line, r.reason, r.field, r.message]),
    [[2, 'unclosed_quote', "'text' (column 2)", 'the quoted field opened on this line is not closed before the end of the file']],
  );
  assert.deepEqual(
    examples.map((e) => [e.id, e.text]),
    [['2', 'fine row']],
  );
});

test('JSONL: invalid JSON, missing field, unknown label and empty text are skipped with reasons', async () => {
  const { examples, rejects } = await read(fixturePath('data', 'generic.jsonl'));
  assert.deepEqual(
    examples.map((e) => [e.text, e.label]),
    [
      ['I love it', 1],
      ['I hate it', 0],
    ],
  );
  assert.deepEqual(
    rejects.map((r) => [r.line, r.reason]),
    [
      [3, 'unknown_label'],
      [4, 'invalid_json'],
      [5, 'invalid_json'],
      [6, 'missing_field'],
      [7, 'empty_text'],
    ],
  );
  assert.equal(rejects[3]!.message, 'the field is missing (fields present: body, label); name the right one with --text-field');
  assert.equal(rejects[3]!.field, "'text'");
});

test('Parquet in the Hugging Face amazon_polarity and sentiment140 schemas', async () => {
  const dir = tempDir();
  const amazon = join(dir, 'amazon_polarity.parquet');
  writeFileSync(
    amazon,
    Buffer.from(
      parquetWriteBuffer({
        columnData: [
          { name: 'label', data: [1n, 0n, 1n, 3n], type: 'INT64' },
          { name: 'title', data: ['Great CD', 'Broken', '', 'odd'], type: 'STRING' },
          { name: 'content', data: ['loved it', 'stopped after a week', 'no title', 'label 3'], type: 'STRING' },
        ],
        rowGroupSize: 2,
      }),
    ),
  );
  const a = await read(amazon);
  assert.equal(a.summary.format, 'parquet');
  assert.deepEqual(
    a.examples.map((e) => [e.label, e.text, e.line]),
    [
      [1, 'Great CD: loved it', 1],
      [0, 'Broken: stopped after a week', 2],
      [1, 'no title', 3],
    ],
  );
  assert.deepEqual(
    a.rejects.map((r) => [r.line, r.reason]),
    [[4, 'unknown_label']],
  );
  // Same review, same id, whichever container it came in.
  const ft = join(dir, 'a.ft.txt');
  writeFileSync(ft, '__label__2 Great CD: loved it\n');
  assert.equal((await read(ft)).examples[0]!.id, a.examples[0]!.id);

  const s140 = join(dir, 'sentiment140.parquet');
  writeFileSync(
    s140,
    Buffer.from(
      parquetWriteBuffer({
        columnData: [
          { name: 'text', data: ['so sad', 'so happy', 'a bus'], type: 'STRING' },
          { name: 'date', data: ['d', 'd', 'd'], type: 'STRING' },
          { name: 'user', data: ['u', 'u', 'u'], type: 'STRING' },
          { name: 'sentiment', data: [0, 4, 2], type: 'INT32' },
          { name: 'query', data: ['NO_QUERY', 'NO_QUERY', 'NO_QUERY'], type: 'STRING' },
        ],
      }),
    ),
  );
  const s = await read(s140);
  assert.deepEqual(
    s.examples.map((e) => [e.text, e.label]),
    [
      ['so sad', 0],
      ['so happy', 1],
    ],
  );
  assert.equal(s.summary.skipped.neutral, 1);
  assert.equal((await read(s140, { classes: 3 })).summary.labels.neutral, 1);
});
