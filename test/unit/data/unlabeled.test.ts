// Unlabelled rows: --format text, and JSONL / CSV / Parquet without labels under --unlabeled.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { readAllExamples, type ReadOptions } from '../../../src/data/read.js';
import { resolveFormat } from '../../../src/data/detect.js';
import { contentId } from '../../../src/data/example.js';
import { assignSplits, SPLIT_NO_LABEL } from '../../../src/data/split.js';
import type { Reject } from '../../../src/data/errors.js';
import { shortHash } from '../../../src/util/hash.js';
import { tempDir } from '../../helpers.js';

async function read(file: string, options: ReadOptions = {}) {
  const rejects: Reject[] = [];
  const result = await readAllExamples([file], { progress: false, ...options, onReject: (r) => rejects.push(r) });
  return { ...result, rejects };
}

function write(name: string, content: string | Uint8Array): string {
  const file = join(tempDir(), name);
  writeFileSync(file, content);
  return file;
}

test('--format text: one unlabelled row per non-blank line, id the content hash, blank lines counted', async () => {
  const file = write('t.txt', 'great product, would buy again\n\n  terrible, broke in a day  \r\n   \nit is fine i guess');
  const { examples, summary, rejects } = await read(file, { format: 'text' });
  assert.deepEqual(
    examples.map((e) => [e.id, e.textHash, e.label, e.text, e.line]),
    [
      [
        contentId(shortHash('great product, would buy again')),
        shortHash('great product, would buy again'),
        null,
        'great product, would buy again',
        1,
      ],
      [contentId(shortHash('terrible, broke in a day')), shortHash('terrible, broke in a day'), null, 'terrible, broke in a day', 3],
      [contentId(shortHash('it is fine i guess')), shortHash('it is fine i guess'), null, 'it is fine i guess', 5],
    ],
  );
  assert.deepEqual(
    [summary.format, summary.rows, summary.labeled, summary.unlabeled, summary.blankLines, summary.labels],
    ['text', 3, 0, 3, 2, { negative: 0, positive: 0 }],
  );
  assert.deepEqual([summary.files[0]!.unlabeled, summary.files[0]!.blankLines, rejects.length], [3, 2, 0]);
  // Never auto-detected: the same file reads as a CSV with a header under auto.
  assert.equal(await resolveFormat(file, 'auto'), 'csv');
  assert.equal(await resolveFormat(write('j.jsonl', '{"text": "a"}\n'), 'text'), 'text');
});

test('JSONL without a label field: an error naming --unlabeled; with --unlabeled every row reads as label null', async () => {
  const file = write('n.jsonl', '{"text":"love it"}\n{"text":"hate it"}\n\n{"text":"meh"}\n');
  await assert.rejects(
    read(file),
    (e: Error) =>
      e.name === 'ConfigError' &&
      e.message ===
        `${file}:1: cannot tell which field holds the label (looked for label, sentiment, polarity, labels; fields present: ` +
          'text). Name it with --label-field, or pass --unlabeled to read rows without labels',
  );
  const { examples, summary } = await read(file, { unlabeled: true });
  assert.deepEqual(
    examples.map((e) => [e.label, e.text, e.line]),
    [
      [null, 'love it', 1],
      [null, 'hate it', 2],
      [null, 'meh', 4],
    ],
  );
  assert.deepEqual([summary.rows, summary.labeled, summary.unlabeled], [3, 0, 3]);
});

test('JSONL with some labels: rows without one are rejects naming --unlabeled; with it unlabelled, labels still checked', async () => {
  const file = write(
    'm.jsonl',
    [
      '{"text":"love it","label":"positive"}',
      '{"text":"hate it"}',
      '{"text":"so so","label":null}',
      '{"text":"x","label":"7"}',
      '{"text":"bad","label":0}',
    ].join('\n'),
  );
  const plain = await read(file);
  assert.deepEqual(
    plain.examples.map((e) => [e.label, e.line]),
    [
      [1, 1],
      [0, 5],
    ],
  );
  assert.deepEqual(
    plain.rejects.map((r) => [r.line, r.reason, r.message.endsWith(', or pass --unlabeled to read rows without labels')]),
    [
      [2, 'missing_field', true],
      [3, 'unknown_label', true],
      [4, 'unknown_label', false],
    ],
  );
  const { examples, summary, rejects } = await read(file, { unlabeled: true });
  assert.deepEqual(
    examples.map((e) => [e.label, e.line]),
    [
      [1, 1],
      [null, 2],
      [null, 3],
      [0, 5],
    ],
  );
  assert.deepEqual([summary.rows, summary.labeled, summary.unlabeled, summary.labels], [4, 2, 2, { negative: 1, positive: 1 }]);
  assert.deepEqual(
    rejects.map((r) => [r.line, r.reason]),
    [[4, 'unknown_label']],
  );
});

test('CSV with a header and no label column, and an empty label cell, under --unlabeled', async () => {
  const noLabel = write('n.csv', 'id,text\na1,first review\na2,"second, with a comma"\n');
  await assert.rejects(read(noLabel), /cannot tell which field holds the label .* or pass --unlabeled to read rows without labels$/);
  const a = await read(noLabel, { unlabeled: true });
  assert.deepEqual(
    a.examples.map((e) => [e.id, e.label, e.text, e.line]),
    [
      ['a1', null, 'first review', 2],
      ['a2', null, 'second, with a comma', 3],
    ],
  );
  const someLabels = write('m.csv', 'text,label\ngood,positive\nunknown,\nbad,negative\n');
  assert.deepEqual(
    (await read(someLabels)).rejects.map((r) => [r.line, r.reason]),
    [[3, 'unknown_label']],
  );
  const b = await read(someLabels, { unlabeled: true });
  assert.deepEqual(
    b.examples.map((e) => e.label),
    [1, null, 0],
  );
  assert.deepEqual([b.summary.labeled, b.summary.unlabeled], [2, 1]);
});

test('Parquet without a label column under --unlabeled', async () => {
  const file = write(
    'u.parquet',
    Buffer.from(
      parquetWriteBuffer({
        columnData: [
          { name: 'title', data: ['Great CD', 'Broken', ''], type: 'STRING' },
          { name: 'content', data: ['loved it', 'stopped after a week', 'no title'], type: 'STRING' },
        ],
        rowGroupSize: 2,
      }),
    ),
  );
  await assert.rejects(read(file), /Parquet schema\): cannot tell which field holds the label .* or pass --unlabeled/);
  const { examples, summary } = await read(file, { unlabeled: true });
  assert.deepEqual(
    examples.map((e) => [e.label, e.text, e.line]),
    [
      [null, 'Great CD: loved it', 1],
      [null, 'Broken: stopped after a week', 2],
      [null, 'no title', 3],
    ],
  );
  assert.deepEqual([summary.format, summary.rows, summary.unlabeled], ['parquet', 3, 3]);
});

test('assignSplits: unlabelled rows (SPLIT_NO_LABEL) all go to train; labelled rows split as without them', () => {
  const n = 50;
  const keys = Float64Array.from({ length: n }, (_, i) => ((i * 7919) % 101) / 101);
  const labels = Uint8Array.from({ length: n }, (_, i) => (i % 5 === 4 ? SPLIT_NO_LABEL : i % 2));
  const split = assignSplits(keys, labels, 2, 0.2, 0.2);
  const labelled = [...labels.keys()].filter((i) => labels[i] !== SPLIT_NO_LABEL);
  const alone = assignSplits(
    Float64Array.from(labelled, (i) => keys[i]!),
    Uint8Array.from(labelled, (i) => labels[i]!),
    2,
    0.2,
    0.2,
  );
  assert.deepEqual(
    labelled.map((i) => split[i]),
    [...alone],
  );
  assert.ok([...labels.keys()].filter((i) => labels[i] === SPLIT_NO_LABEL).every((i) => split[i] === 0));
});
