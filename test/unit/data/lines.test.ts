import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readLines, type LineReaderStats } from '../../../src/data/lines.js';
import { tempDir } from '../../helpers.js';

async function collect(bytes: Buffer): Promise<{ lines: string[]; numbers: number[]; stats: LineReaderStats }> {
  const file = join(tempDir(), 'x.txt');
  writeFileSync(file, bytes);
  const stats = { latin1Lines: 0, bytesRead: 0 };
  const lines: string[] = [];
  const numbers: number[] = [];
  for await (const batch of readLines(file, stats)) {
    batch.lines.forEach((l, i) => {
      lines.push(l);
      numbers.push(batch.firstLine + i);
    });
  }
  return { lines, numbers, stats };
}

test('a last line without a newline is still read; CRLF and BOM are removed', async () => {
  const { lines, numbers } = await collect(Buffer.from('\uFEFFa\r\nb\n\nc', 'utf8'));
  assert.deepEqual(lines, ['a', 'b', '', 'c']);
  assert.deepEqual(numbers, [1, 2, 3, 4]);
});

test('invalid UTF-8 falls back to Windows-1252 and is counted; a real U+FFFD is not', async () => {
  const latin1 = Buffer.concat([Buffer.from('caf'), Buffer.from([0xe9]), Buffer.from(' ok \x92s\n', 'latin1')]);
  const replacement = Buffer.from('already \uFFFD replaced\n', 'utf8');
  const { lines, stats } = await collect(Buffer.concat([latin1, replacement]));
  assert.deepEqual(lines, ['café ok \u2019s', 'already \uFFFD replaced']);
  assert.equal(stats.latin1Lines, 1);
});

test('lines that straddle 1 MiB read chunks are joined and numbered exactly', async () => {
  const rows = Array.from({ length: 60000 }, (_, i) => `row ${i} ${'x'.repeat(i % 50)}`);
  const { lines, numbers, stats } = await collect(Buffer.from(rows.join('\n') + '\n'));
  assert.equal(lines.length, rows.length);
  assert.deepEqual(lines, rows);
  assert.equal(numbers.at(-1), rows.length);
  assert.ok(stats.bytesRead > 2 << 20);
});

test('a line longer than several read chunks is read whole, and the lines around it keep their numbers', async () => {
  const long = 'é'.repeat(1600 * 1024); // 3.2 MB of UTF-8: spans four 1 MiB chunks, split inside characters
  const { lines, numbers } = await collect(Buffer.from(`first\r\n${long}\r\nlast`, 'utf8'));
  assert.deepEqual(
    lines.map((l) => l.length),
    [5, long.length, 4],
  );
  assert.equal(lines[1], long);
  assert.deepEqual(numbers, [1, 2, 3]);
});
