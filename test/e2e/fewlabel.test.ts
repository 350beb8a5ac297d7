// The few-label recipes' --quick forms end to end: k gold-labelled rows (a seeded stratified subset of the
// training split), the rest of the split as transfer set, augmented copies for -aug runs, and the report's
// "labels used" axis. Exact row counts from the files the pipeline wrote.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { repoRoot, runKd, tempDir } from '../helpers.js';

const lines = (file: string) =>
  readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l !== '');
const labelOf = (l: string) => (JSON.parse(l) as { label: string | null }).label;

for (const recipe of ['amazon_fewlabel.yaml', 'sentiment140_fewlabel.yaml']) {
  test(`kd distill --recipe recipes/${recipe} --quick: k-row subsets, transfer rows counted exactly, a labels-used report`, () => {
    const out = join(tempDir('kd-fewlabel-'), 'quick');
    const r = runKd(['distill', '--recipe', join(repoRoot, 'recipes', recipe), '--quick', '--out', out, '--json']);
    assert.equal(r.status, 0, r.stderr.slice(-3000));
    const { report, runs } = r.json() as { report: string; runs: string[] };
    const names = runs.map((d) => basename(d)).sort();
    const variants = ['ce-k200', 'kd-k200', 'kd-k200-aug', 'lelp-k200', 'lelp-k200-aug'];
    assert.deepEqual(names, ['ngram', 'transformer'].flatMap((s) => variants.map((v) => `${s}-${v}`)).sort());

    // The subset: 200 rows, each class its share of the training split (largest remainder), the rest unlabelled.
    const train = lines(join(out, 'data', 'train.jsonl'));
    const labelled = lines(join(out, 'labels', 'k200', 'labelled.jsonl'));
    const rest = lines(join(out, 'labels', 'k200', 'rest.jsonl'));
    assert.equal(labelled.length, 200);
    assert.equal(rest.length, train.length - 200);
    assert.ok(rest.every((l) => labelOf(l) === null));
    const negShare = train.filter((l) => labelOf(l) === 'negative').length / train.length;
    const neg = labelled.filter((l) => labelOf(l) === 'negative').length;
    assert.ok(Math.abs(neg - 200 * negShare) < 1, `negatives ${neg} vs ${200 * negShare}`);
    const ids = (xs: string[]) => new Set(xs.map((l) => (JSON.parse(l) as { id: string }).id));
    const subsetIds = ids(labelled);
    assert.ok(
      [...ids(rest)].every((id) => !subsetIds.has(id)),
      'no row both labelled and transfer',
    );

    const augmented = lines(join(out, 'transfer', 'augmented.jsonl'));
    assert.ok(augmented.length > 0);
    for (const student of ['ngram', 'transformer']) {
      const result = (name: string) => JSON.parse(readFileSync(join(out, 'runs', `${student}-${name}`, 'seed-13', 'result.json'), 'utf8'));
      assert.deepEqual([result('ce-k200').trainRows, result('ce-k200').transferRows], [200, undefined]);
      assert.deepEqual([result('kd-k200').trainRows, result('kd-k200').transferRows], [200, rest.length]);
      assert.deepEqual([result('lelp-k200-aug').trainRows, result('lelp-k200-aug').transferRows], [200, rest.length + augmented.length]);
    }
    const html = readFileSync(report, 'utf8');
    assert.match(html, /<section id="labels"><h2>Labels used<\/h2>/);
    assert.match(html, /k = 200: test %/);
  });
}
