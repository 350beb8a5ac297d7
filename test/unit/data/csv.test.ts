import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CsvRecordSplitter, parseCsvPrefix, parseCsvRecord } from '../../../src/data/csv.js';

test('parses quoted fields with commas, doubled quotes and empty fields', () => {
  assert.deepEqual(parseCsvRecord('"0","a, b","say ""hi""",,plain'), { ok: true, fields: ['0', 'a, b', 'say "hi"', '', 'plain'] });
  assert.deepEqual(parseCsvRecord(''), { ok: true, fields: [''] });
  assert.deepEqual(parseCsvRecord('a,'), { ok: true, fields: ['a', ''] });
  assert.deepEqual(parseCsvRecord('"multi\nline",x'), { ok: true, fields: ['multi\nline', 'x'] });
});

test('keeps a quote inside an unquoted field as a character', () => {
  assert.deepEqual(parseCsvRecord('5" screen,ok'), { ok: true, fields: ['5" screen', 'ok'] });
});

test('reports an unclosed quote and a stray quote with their 1-based column', () => {
  assert.deepEqual(parseCsvRecord('"a","b","never closed'), { ok: false, error: 'unclosed_quote', column: 3 });
  assert.deepEqual(parseCsvRecord('"a","bad"x,"c"'), { ok: false, error: 'stray_quote', column: 2 });
});

test('the record splitter joins a quoted field across lines and numbers each record by its first line', () => {
  const splitter = new CsvRecordSplitter();
  const lines = ['"2","Title","line one', 'line two"', '', '"1","ok","fine"', '5" screen,ok', '"1","bad"x,"y"'];
  const splits = lines.flatMap((l, i) => splitter.push(l, i + 1)).concat(splitter.finish());
  assert.deepEqual(
    splits.map((s) => [s.kind, s.line, s.text]),
    [
      ['record', 1, '"2","Title","line one\nline two"'],
      ['record', 4, '"1","ok","fine"'],
      ['record', 5, '5" screen,ok'],
      ['record', 6, '"1","bad"x,"y"'],
    ],
  );
  assert.deepEqual(
    splits.map((s) => (s.kind === 'record' ? s.parsed : null)),
    [
      { ok: true, fields: ['2', 'Title', 'line one\nline two'] },
      { ok: true, fields: ['1', 'ok', 'fine'] },
      { ok: true, fields: ['5" screen', 'ok'] },
      { ok: false, error: 'stray_quote', column: 2 },
    ],
  );
});

test('a quote never closed is reported at its line, and the lines after it are read again', () => {
  const atLimit = new CsvRecordSplitter(3);
  const lines = ['"1","never closed', 'text a', 'text b', '"4","c"'];
  const splits = lines.flatMap((l, i) => atLimit.push(l, i + 1)).concat(atLimit.finish());
  assert.deepEqual(
    splits.map((s) => [s.kind, s.line, s.kind === 'unclosed' ? s.cause : '']),
    [
      ['unclosed', 1, 'line_limit'],
      ['record', 2, ''],
      ['record', 3, ''],
      ['record', 4, ''],
    ],
  );
  const atEnd = new CsvRecordSplitter();
  const end = ['"1","open', 'more text', '"2","a"'].flatMap((l, i) => atEnd.push(l, i + 1)).concat(atEnd.finish());
  assert.deepEqual(
    end.map((s) => [s.kind, s.line, s.kind === 'unclosed' ? s.cause : '']),
    [
      ['unclosed', 1, 'invalid_continuation'],
      ['record', 2, ''],
      ['record', 3, ''],
    ],
  );
  const eof = new CsvRecordSplitter();
  const tail = ['"1","a"', '"2","open', 'more'].flatMap((l, i) => eof.push(l, i + 1)).concat(eof.finish());
  assert.deepEqual(
    tail.map((s) => [s.kind, s.line, s.kind === 'unclosed' ? s.cause : '']),
    [
      ['record', 1, ''],
      ['unclosed', 2, 'end_of_file'],
      ['record', 3, ''],
    ],
  );
});

test('parseCsvPrefix closes the field a cut record leaves open', () => {
  assert.deepEqual(parseCsvPrefix('"0","123","long tex'), ['0', '123', 'long tex']);
  assert.deepEqual(parseCsvPrefix('"a",b'), ['a', 'b']);
  assert.equal(parseCsvPrefix('"a"x,"b'), null);
});
