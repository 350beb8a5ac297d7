// --quantize int8 through the CLI on the shared PyTorch exports: kd teacher predict and eval report the int8 check,
// kd cache build records int8 in its manifest and identity (an fp32 rerun into the same folder is refused), and
// int8's batch token budget (another one is refused).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CacheReader } from '../../src/cache/reader.js';
import { runKd, S140_10K, sharedPath, tempDir } from '../helpers.js';

const TEACHER = () => sharedPath('fixtures', 'hf', 'tiny-random-bert');
const TEXTS = ['what a wonderful morning', 'my phone broke again, so annoying', 'going to work'];

test('kd teacher predict --quantize int8: int8 logits within 0.02 of fp32, the same labels, the check in --json', () => {
  const fp32 = runKd(['teacher', 'predict', '--model', TEACHER(), '--text', ...TEXTS, '--json']);
  const int8 = runKd(['teacher', 'predict', '--model', TEACHER(), '--text', ...TEXTS, '--quantize', 'int8', '--json']);
  assert.equal(fp32.status, 0, fp32.stderr);
  assert.equal(int8.status, 0, int8.stderr);
  const [a, b] = [fp32.json(), int8.json()];
  assert.equal(a.precision, 'fp32');
  assert.equal(a.int8Check, undefined);
  assert.equal(b.precision, 'int8');
  assert.equal(b.int8Check.rows, 128);
  assert.equal(b.int8Check.agreement, 1);
  assert.equal(b.int8Check.minAgreement, 0.99);
  // The fp32 recheck's margin (auto: the mean margin change on the check texts) and how many texts it recomputed.
  assert.ok(b.int8Check.recheckMargin > 0 && b.int8Check.recheckMargin === b.int8Check.marginChange, JSON.stringify(b.int8Check));
  assert.ok(Number.isInteger(b.recomputedFp32) && b.recomputedFp32 >= 0 && b.recomputedFp32 <= TEXTS.length);
  assert.deepEqual(b.labels, a.labels);
  assert.deepEqual(b.classifier, a.classifier, 'the head is the float graph’s');
  const diffs = (a.logits as number[][]).flatMap((row, i) => row.map((x, c) => Math.abs(x - (b.logits as number[][])[i]![c]!)));
  assert.ok(Math.max(...diffs) > 0 && Math.max(...diffs) < 0.02, `logit differences ${diffs}`);
  assert.match(
    b.graphOptimization,
    new RegExp(
      '; int8: 5 MatMul, 0 Gemm, 1 attention blocks \\(QAttention\\) quantized \\(6 MatMul/Gemm of the classifier and the position-0 ' +
        'path and the embedding tables kept fp32\\)',
    ),
  );
});

test('kd teacher predict: bad --quantize and --min-agreement values are refused with one line', () => {
  const bad = runKd(['teacher', 'predict', '--model', TEACHER(), '--text', 'x', '--quantize', 'int4']);
  assert.equal(bad.status, 2, "commander's own choice errors are the user's mistake: exit 2 (cli/main.ts)");
  assert.match(bad.stderr, /option '--quantize <dtype>' argument 'int4' is invalid\. Allowed choices are none, int8/);
  const range = runKd(['teacher', 'predict', '--model', TEACHER(), '--text', 'x', '--quantize', 'int8', '--min-agreement', '2']);
  assert.equal(range.status, 2);
  assert.match(range.stderr, /'--min-agreement' must be in \[0, 1\], got 2/);
  const alone = runKd(['teacher', 'predict', '--model', TEACHER(), '--text', 'x', '--min-agreement', '0.9']);
  assert.equal(alone.status, 2);
  assert.match(alone.stderr, /'--min-agreement' applies to --quantize int8 only/);
  const negative = runKd(['teacher', 'predict', '--model', TEACHER(), '--text', 'x', '--quantize', 'int8', '--recheck-margin', '-1']);
  assert.equal(negative.status, 2);
  assert.match(negative.stderr, /'--recheck-margin' must be auto or a number ≥ 0, got "-1"/);
  const word = runKd(['teacher', 'predict', '--model', TEACHER(), '--text', 'x', '--quantize', 'int8', '--recheck-margin', 'some']);
  assert.equal(word.status, 2);
  assert.match(word.stderr, /'--recheck-margin' must be auto or a number ≥ 0, got "some"/);
  const fp32 = runKd(['teacher', 'predict', '--model', TEACHER(), '--text', 'x', '--recheck-margin', '0.1']);
  assert.equal(fp32.status, 2);
  assert.match(fp32.stderr, /'--recheck-margin' applies to --quantize int8 only/);
});

test('kd teacher eval --quantize int8: accuracy within 1 point of fp32 on 2,000 tweets, int8 in --json', () => {
  const run = (extra: string[]) =>
    runKd(['teacher', 'eval', '--model', TEACHER(), '--data', S140_10K(), '--limit', '2000', '--json', ...extra]);
  const [a, b] = [run([]), run(['--quantize', 'int8'])];
  assert.equal(a.status, 0, a.stderr);
  assert.equal(b.status, 0, b.stderr);
  assert.equal(b.json().n, 2000);
  assert.equal(b.json().precision, 'int8');
  assert.ok(Math.abs(a.json().accuracy - b.json().accuracy) <= 0.01, `fp32 ${a.json().accuracy}, int8 ${b.json().accuracy}`);
});

test('kd cache build --quantize int8: the manifest records int8 and its check; an fp32 build into it is refused', () => {
  const out = join(tempDir(), 'c');
  const build = (extra: string[]) =>
    runKd(['cache', 'build', '--teacher', TEACHER(), '--data', S140_10K(), '--out', out, '--shard-rows', '5000', '--json', ...extra]);
  const r = build(['--quantize', 'int8']);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.json().precision, 'int8');
  const manifest = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8'));
  assert.equal(manifest.teacher.precision, 'int8');
  assert.deepEqual(Object.keys(manifest.teacher.int8Check).sort(), [
    'agreement',
    'marginChange',
    'maxDiff',
    'minAgreement',
    'recheckMargin',
    'rows',
  ]);
  assert.equal(manifest.teacher.int8Check.agreement, 1);
  const recipe =
    'int8 MatMul/Gemm, attention QAttention, products unsaturated (x64quantprecision), embedding tables fp32; fp32 recheck auto';
  assert.equal(manifest.teacher.int8Recipe, recipe);
  assert.match(r.stderr, /int8: \d+ text\(s\) this run with a margin under \S+ recomputed in fp32/);
  assert.equal(CacheReader.open(out).manifest.teacher.precision, 'int8');
  // The same teacher and data in fp32 is another cache.
  const again = build([]);
  assert.equal(again.status, 2);
  assert.match(
    again.stderr.trimEnd().split('\n').at(-1)!,
    /was built with a different teacher: teacher\.precision is "int8", this run has "fp32"\. Use another --out/,
  );
  // Rerunning the int8 build resumes (nothing to do) rather than refusing.
  assert.equal(build(['--quantize', 'int8']).status, 0);
  // Another recheck margin computes other rows in fp32: refused too.
  const margin = build(['--quantize', 'int8', '--recheck-margin', '0']);
  assert.equal(margin.status, 2);
  assert.match(
    margin.stderr.trimEnd().split('\n').at(-1)!,
    new RegExp(`teacher\\.int8Recipe is "${recipe.replace(/[()]/g, '\\$&')}", this run has "[^"]*recheck 0"`),
  );
  // int8 logits depend on the texts batched together (each activation's scale is the batch's): the budget is recorded
  // and another one is refused, where it would have mixed shards of other numbers into the cache.
  assert.equal(manifest.teacher.batchTokens, 2048);
  const other = build(['--quantize', 'int8', '--batch-tokens', '256']);
  assert.equal(other.status, 2);
  assert.match(
    other.stderr.trimEnd().split('\n').at(-1)!,
    /was built with a different teacher: teacher\.batchTokens is 2048, this run has 256\. Use another --out/,
  );
  const elsewhere = join(tempDir(), 'c256');
  const small = runKd(['cache', 'build', '--teacher', TEACHER(), '--data', S140_10K(), '--out', elsewhere, '--shard-rows', '5000']);
  assert.equal(small.status, 0, small.stderr);
  const smallInt8 = runKd([
    'cache',
    'build',
    '--teacher',
    TEACHER(),
    '--data',
    S140_10K(),
    '--out',
    join(elsewhere, 'q'),
    '--shard-rows',
    '5000',
    '--quantize',
    'int8',
    '--batch-tokens',
    '256',
  ]);
  assert.equal(smallInt8.status, 0, smallInt8.stderr);
  const rows = Int32Array.from({ length: 2000 }, (_, i) => i);
  const [big, tiny] = [CacheReader.open(out).read(rows).logits, CacheReader.open(join(elsewhere, 'q')).read(rows).logits];
  assert.ok(
    big.some((x, i) => x !== tiny[i]),
    'int8 logits with batches of 256 tokens differ from those of 2,048',
  );
  // An fp32 cache records no budget: its numbers do not depend on it beyond float rounding.
  assert.equal(CacheReader.open(elsewhere).manifest.teacher.batchTokens, undefined);
  // A cache built before kd's sessions kept u8×s8 products from saturating (its recipe without "products
  // unsaturated") holds other int8 logits on an x86-64 CPU without VNNI: a build is not resumed over it.
  const path = join(out, 'manifest.json');
  const before = JSON.parse(readFileSync(path, 'utf8'));
  before.teacher.int8Recipe = 'int8 MatMul/Gemm, attention QAttention, embedding tables fp32; fp32 recheck auto';
  writeFileSync(path, JSON.stringify(before));
  const old = build(['--quantize', 'int8']);
  assert.equal(old.status, 2);
  assert.match(
    old.stderr.trimEnd().split('\n').at(-1)!,
    /teacher\.int8Recipe is "int8 MatMul\/Gemm, attention QAttention, embedding tables/,
  );
});
