import { test } from 'node:test';
import assert from 'node:assert/strict';
import { endsInsideQuotes, parseCsvRecord } from '../../../src/data/csv.js';

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

test('endsInsideQuotes follows quote parity, doubled quotes included', () => {
  assert.equal(endsInsideQuotes('a,"b'), true);
  assert.equal(endsInsideQuotes('a,"b""c"'), false);
  assert.equal(endsInsideQuotes('a,"b""'), true);
  assert.equal(endsInsideQuotes('plain'), false);
});
