// `kd data` on inputs that used to be refused or crash: long lines, multi-line Amazon CSV
// records, damaged Parquet, UTF-16, folders, JSON non-objects, and unwritable output paths.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parquetMetadata } from 'hyparquet';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { parquetHeader } from 'hyparquet/src/column.js';
import { repoRoot, runKd, tempDir } from '../helpers.js';

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
  writeFileSync(
    file,
    '"2","Two lines","first line\nsecond line"\n"1","Broken ""again""","stopped"\n"2","Ok","fine"\n"7","Bad label","x"\n',
  );
  const r = runKd(['data', 'stats', file, '--json']);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(
    [r.json().format, r.json().rows, r.json().labels, r.json().malformed],
    ['amazon-csv', 3, { negative: 1, positive: 2 }, { unknown_label: 1 }],
  );
  assert.equal(r.stderr, `skipped ${file}:5: field 'label' (column 1): unknown_label: expected 1 (negative) or 2 (positive), got "7"\n`);
  const strict = runKd(['data', 'stats', file, '--strict']);
  assert.equal(strict.status, 2);
  assert.equal(
    strict.stderr,
    `kd: error: ${file}:5: field 'label' (column 1): expected 1 (negative) or 2 (positive), got "7". ${STRICT_FIX}\n`,
  );
});

/** Four labelled reviews in two row groups of two, as hyparquet-writer writes them. */
function fourReviewsParquet(): Buffer<ArrayBuffer> {
  return Buffer.from(
    parquetWriteBuffer({
      columnData: [
        { name: 'label', data: [1n, 0n, 1n, 0n], type: 'INT64' },
        { name: 'text', data: ['great product', 'broke quickly', 'works well', 'returned it'], type: 'STRING' },
      ],
      rowGroupSize: 2,
    }),
  );
}

test('a Parquet file with a damaged page is a FormatError naming the file, column and row group (exit 2)', () => {
  const file = join(tempDir(), 'reviews.parquet');
  const bytes = fourReviewsParquet();
  writeFileSync(file, bytes);
  assert.equal(runKd(['data', 'stats', file, '--json']).json().rows, 4);
  // Damage the first data page of column 'text' in row group 1: a value length inside the page.
  const metadata = parquetMetadata(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
  const textChunk = metadata.row_groups[0]!.columns.find((c) => c.meta_data?.path_in_schema[0] === 'text')!;
  const damaged = Buffer.from(bytes);
  damaged[Number(textChunk.meta_data!.data_page_offset) + 5] = 0xff;
  writeFileSync(file, damaged);
  const r = runKd(['data', 'stats', file]);
  assert.equal(r.status, 2, r.stderr);
  assert.match(
    r.stderr,
    new RegExp(
      `^kd: error: ${file}: column 'text', row group 1 of 2 \\(rows 1-2\\): the file is damaged \\(.+\\); download or export it again\\n$`,
    ),
  );
});

test('a damaged Parquet page header (negative level length, missing size) is refused before decoding, not decoded forever', () => {
  const file = join(tempDir(), 'reviews.parquet');
  const bytes = fourReviewsParquet();
  const ab = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length);
  const label = parquetMetadata(ab).row_groups[0]!.columns.find((c) => c.meta_data?.path_in_schema[0] === 'label')!.meta_data!;
  const pageStart = Number(label.data_page_offset);
  // The byte whose damage makes the v2 header's definition-level length negative: hyparquet 1.33
  // then moves its reader backwards and decodes the same bytes forever.
  const negative = Array.from({ length: 24 }, (_, k) => pageStart + k).find((at) => {
    const d = Buffer.from(bytes);
    d[at] = 0xff;
    try {
      const h = parquetHeader({ view: new DataView(d.buffer, d.byteOffset, d.length), offset: pageStart });
      return (h.data_page_header_v2?.definition_levels_byte_length ?? 0) < 0;
    } catch {
      return false;
    }
  });
  assert.ok(negative !== undefined, 'no header byte gives a negative level length');
  for (const [at, value, why] of [
    [negative, 0xff, /impossible counts \(definition levels -\d+|lacks its repetition level length/],
    [pageStart + 2, 0x00, /the page at byte \d+ (has no compressed size|claims -?\d+ bytes)|cannot be read/],
  ] as const) {
    const damaged = Buffer.from(bytes);
    damaged[at] = value;
    writeFileSync(file, damaged);
    const r = spawnSync(process.execPath, [join(repoRoot, 'bin', 'kd.js'), 'data', 'stats', file], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.signal, null, `kd data stats did not finish on a header damaged at byte ${at}`);
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, new RegExp(`^kd: error: ${file}: column 'label', row group 1 of 2 \\(rows 1-2\\): the file is damaged \\(`));
    assert.match(r.stderr, why);
  }
});

test('UTF-16 input (with or without a byte-order mark) is named as UTF-16 with the iconv fix', () => {
  const dir = tempDir();
  const withBom = join(dir, 'bom.csv');
  writeFileSync(withBom, Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('"2","Great","loved it"\n', 'utf16le')]));
  const r = runKd(['data', 'stats', withBom]);
  assert.equal(r.status, 2);
  assert.equal(
    r.stderr,
    `kd: error: ${withBom}: is UTF-16 (little-endian, with a byte-order mark) text, not UTF-8; kd reads UTF-8: convert it ` +
      `first, e.g. iconv -f UTF-16 -t UTF-8 ${withBom} > ${join(dir, 'bom.utf8.csv')}\n`,
  );
  const noBom = join(dir, 'plain.ft.txt');
  writeFileSync(noBom, Buffer.from('__label__2 Great: loved it\n', 'utf16le'));
  const b = runKd(['data', 'stats', noBom, '--format', 'amazon-fasttext']);
  assert.equal(b.status, 2);
  assert.match(
    b.stderr,
    new RegExp(
      String.raw`^kd: error: .*plain\.ft\.txt: looks like UTF-16 \(little-endian\) text, not UTF-8: every other byte is NUL; kd reads` +
        String.raw` UTF-8: convert it first, e.g. iconv -f UTF-16 -t UTF-8 `,
    ),
  );
});

test('a folder given as an input file is named, with what to pass instead', () => {
  const dir = tempDir();
  mkdirSync(join(dir, 'data'));
  const r = runKd(['data', 'stats', join(dir, 'data')]);
  assert.equal(r.status, 2);
  assert.equal(
    r.stderr,
    `kd: error: ${join(dir, 'data')}: is a directory, expected a data file: name the files inside it (e.g. ${join(dir, 'data', '*')})\n`,
  );
});

test('JSONL lines that are not objects say what they are: null, a number, a string, an array, a boolean', () => {
  const file = join(tempDir(), 'x.jsonl');
  writeFileSync(file, '{"text":"fine","label":"positive"}\nnull\n42\n"just text"\n[1,2]\ntrue\n');
  const r = runKd(['data', 'stats', file, '--json']);
  assert.equal(r.status, 0, r.stderr);
  const expected = 'expected a JSON object ({"text": ..., "label": ...}), got';
  assert.equal(
    r.stderr,
    [
      `2: invalid_json: ${expected} null`,
      `3: invalid_json: ${expected} a number 42`,
      `4: invalid_json: ${expected} a string "just text"`,
      `5: invalid_json: ${expected} an array of 2 items`,
      `6: invalid_json: ${expected} a boolean true`,
    ]
      .map((l) => `skipped ${file}:${l}\n`)
      .join(''),
  );
  const strict = runKd(['data', 'stats', file, '--strict']);
  assert.equal(strict.stderr, `kd: error: ${file}:2: ${expected} null. ${STRICT_FIX}\n`);
});

/** `kd` with a time limit: Node's recursive mkdir never returned under /proc. */
function runKdWithin(args: string[], seconds: number): { status: number | null; stderr: string; timedOut: boolean } {
  const r = spawnSync(process.execPath, [join(repoRoot, 'bin', 'kd.js'), ...args], { encoding: 'utf8', timeout: seconds * 1000 });
  return { status: r.status, stderr: r.stderr ?? '', timedOut: r.error !== undefined };
}

test('kd data split --out naming an existing file is refused before reading', () => {
  const dir = tempDir();
  const data = join(dir, 'a.ft.txt');
  writeFileSync(data, '__label__2 Good: yes\n__label__1 Bad: no\n');
  const out = join(dir, 'out.txt');
  writeFileSync(out, 'not a folder');
  const r = runKd(['data', 'split', data, '--out', out]);
  assert.equal(r.status, 2);
  assert.equal(
    r.stderr,
    `kd: error: '--out' ${out} is a file; it names the folder the split is written into (train.jsonl, dev.jsonl, test.jsonl, ` +
      `rejects.jsonl, split.json): give a folder path\n`,
  );
  assert.equal(readFileSync(out, 'utf8'), 'not a folder');
});

// Tests run as root, where a chmod 0o555 folder is still writable; these paths refuse root too:
// a parent that is a regular file (ENOTDIR), and /proc, whose mkdir answers ENOENT.
test('outputs under an unwritable path say which path cannot be created and why', () => {
  const dir = tempDir();
  const data = join(dir, 'a.ft.txt');
  writeFileSync(data, '__label__2 Good: yes\n__label__1 Bad: no\n');
  const blocker = join(dir, 'blocker');
  writeFileSync(blocker, '');
  const underFile = runKdWithin(['data', 'split', data, '--out', join(blocker, 'split')], 30);
  assert.equal(underFile.status, 2, underFile.stderr);
  assert.equal(
    underFile.stderr,
    `kd: error: cannot create folder ${join(blocker, 'split')}: ${blocker} exists and is a file, not a folder. Choose an output ` +
      `path in a writable folder\n`,
  );
  const rejects = runKdWithin(['data', 'stats', data, '--rejects', join(blocker, 'r', 'rejects.jsonl')], 30);
  assert.equal(
    rejects.stderr,
    `kd: error: cannot create folder ${join(blocker, 'r')}: ${blocker} exists and is a file, not a folder. Choose an output ` +
      `path in a writable folder\n`,
  );
  const proc = `/proc/kd-test-${process.pid}`;
  const virtual = runKdWithin(['data', 'split', data, '--out', join(proc, 'split')], 30);
  assert.equal(virtual.timedOut, false, 'kd did not return within 30 s');
  assert.equal(virtual.status, 2, virtual.stderr);
  assert.equal(
    virtual.stderr,
    `kd: error: cannot create folder ${proc}: /proc does not accept new files or folders (a virtual or read-only file system). ` +
      `Choose an output path in a writable folder\n`,
  );
  if (process.getuid?.() !== 0) {
    // Not root (CI): a chmod 0o555 folder refuses the write too.
    const readOnly = join(dir, 'read-only');
    mkdirSync(readOnly, { mode: 0o555 });
    const denied = runKdWithin(['data', 'split', data, '--out', join(readOnly, 'split')], 30);
    assert.equal(
      denied.stderr,
      `kd: error: cannot create folder ${join(readOnly, 'split')}: permission denied (${readOnly} is not writable by this ` +
        `user). Choose an output path in a writable folder\n`,
    );
  }
});
