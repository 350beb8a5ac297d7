// kd augment as a user runs it, on 300 real Amazon reviews: byte-identical by seed, the summary
// line, the output read back by kd data stats and cached by kd cache build (--unlabeled), and the
// one-line errors (exit 2) for bad input.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AMAZON_TRAIN, runKd, sharedPath, tempDir } from '../helpers.js';

const TEACHER = () => sharedPath('fixtures', 'hf', 'tiny-random-bert');

test('kd augment: deterministic by seed, each row names its source, the output reads back and caches as unlabelled rows', () => {
  const dir = tempDir();
  const input = join(dir, 'reviews.ft.txt');
  writeFileSync(input, `${readFileSync(AMAZON_TRAIN(), 'utf8').split('\n').slice(0, 300).join('\n')}\n`);
  const augment = (out: string, seed: string, extra: string[] = []) =>
    runKd(['augment', '--data', input, '--out', join(dir, out), '--copies', '3', '--seed', seed, '--json', ...extra]);
  const a = augment('a.jsonl', '21');
  assert.equal(a.status, 0, a.stderr);
  const summary = a.json();
  assert.equal(summary.rowsRead, 300);
  assert.equal(summary.copiesWritten + summary.skipped.identicalToSource + summary.skipped.repeatedCopy, 900);
  assert.match(
    a.stdout,
    new RegExp(
      `^300 rows read, ${summary.copiesWritten} copies written to .*a\\.jsonl, \\d+ skipped \\(\\d+ identical to their source, ` +
        `\\d+ repeats of an earlier copy\\), \\d+ repeating another row's text \\(kept\\); ` +
        `\\d+ words masked with \\[MASK\\], 0 replaced, \\d+ n-gram copies; ` +
        `replacement off \\(give --teacher DIR or --word-list FILE\\)\n`,
    ),
  );
  assert.equal(augment('b.jsonl', '21').status, 0);
  assert.equal(augment('c.jsonl', '22').status, 0);
  const bytes = (f: string) => readFileSync(join(dir, f));
  assert.ok(bytes('a.jsonl').equals(bytes('b.jsonl')), 'same seed, same bytes');
  assert.ok(!bytes('a.jsonl').equals(bytes('c.jsonl')), 'another seed, other copies');

  // Every source_id is an id of the input (its content ids, as kd data split writes them).
  const split = runKd(['data', 'split', input, '--out', join(dir, 'split'), '--dev', '0', '--test', '0']);
  assert.equal(split.status, 0, split.stderr);
  const inputIds = new Set(
    readFileSync(join(dir, 'split', 'train.jsonl'), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => (JSON.parse(l) as { id: string }).id),
  );
  const out = readFileSync(join(dir, 'a.jsonl'), 'utf8').split('\n').filter(Boolean);
  assert.equal(out.length, summary.copiesWritten);
  const perSource = new Map<string, number[]>();
  for (const line of out) {
    const r = JSON.parse(line) as { id: string; source_id: string; copy: number; label: null };
    assert.ok(inputIds.has(r.source_id), r.source_id);
    assert.equal(r.label, null);
    perSource.set(r.source_id, [...(perSource.get(r.source_id) ?? []), r.copy]);
  }
  for (const copies of perSource.values()) assert.deepEqual(copies, [...new Set(copies)].sort());

  // Read back: every row unlabelled, none malformed.
  const stats = runKd(['data', 'stats', join(dir, 'a.jsonl'), '--unlabeled', '--json']);
  assert.equal(stats.status, 0, stats.stderr);
  assert.deepEqual(
    [stats.json().rows, stats.json().unlabeled, stats.json().labeled, stats.json().skipped.malformed],
    [summary.copiesWritten, summary.copiesWritten, 0, 0],
  );
  // With the teacher's neighbours, then cached by that teacher like any other unlabelled rows.
  const t = augment('t.jsonl', '21', ['--teacher', TEACHER()]);
  assert.equal(t.status, 0, t.stderr);
  assert.ok(t.json().replaced > 0);
  assert.match(t.stdout, /replacement by 10 nearest embedding neighbours of .*tiny-random-bert \(16 words\)/);
  const cache = runKd([
    'cache',
    'build',
    '--teacher',
    TEACHER(),
    '--data',
    join(dir, 't.jsonl'),
    '--unlabeled',
    '--out',
    join(dir, 'cache'),
    '--json',
  ]);
  assert.equal(cache.status, 0, cache.stderr);
  assert.deepEqual([cache.json().rows, cache.json().unlabeled], [t.json().copiesWritten, t.json().copiesWritten]);
});

test('kd augment: bad input exits 2 with one line naming the file or option', () => {
  const dir = tempDir();
  const good = join(dir, 'in.txt');
  writeFileSync(good, 'a fine review of a fine product\n');
  const empty = join(dir, 'empty.txt');
  writeFileSync(empty, '');
  const out = join(dir, 'out.jsonl');
  const cases: [string[], RegExp][] = [
    [['--data', empty], /^kd: error: '--data' .*empty\.txt: the file is empty; there is nothing to augment\n$/],
    [['--data', join(dir, 'nope.txt')], /^kd: error: '--data' .*nope\.txt: no such file; nothing was augmented\n$/],
    [['--data', good, '--copies', '0'], /^kd: error: '--copies' must be in \[1, inf\], got 0\n$/],
    [['--data', good, '--copies', '2.5'], /^kd: error: '--copies' must be an integer, got "2\.5"\n$/],
    [['--data', good, '--p-mask', '1.2'], /^kd: error: '--p-mask' must be in \[0, 1\], got 1\.2\n$/],
    [['--data', good, '--p-ngram', '-0.5'], /^kd: error: '--p-ngram' must be in \[0, 1\], got -0\.5\n$/],
    [['--data', good, '--p-replace', '0.1'], /^kd: error: '--p-replace' 0\.1 needs words to replace with/],
  ];
  for (const [args, message] of cases) {
    const r = runKd(['augment', '--format', 'text', '--out', out, ...args]);
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message);
  }
});
