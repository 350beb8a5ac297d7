// kd distill --quick end to end (data → split → tiny teacher → cache → students with every
// method → eval → report), then the report in a real browser: headless Chromium (Debian's, or the
// npm-shipped build when it is absent; see test/browser.ts) driven by playwright-core. No console
// errors, every plot drawn, key numbers equal to the runs' JSON; a screenshot is saved in test-output/.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { launchChromium } from '../browser.js';
import { repoRoot, runKd, tempDir } from '../helpers.js';

test('kd distill --quick runs every stage, skips finished ones on rerun, and writes a report that renders', async (t) => {
  const out = join(tempDir('kd-distill-'), 'quick');
  const r = runKd(['distill', '--recipe', join(repoRoot, 'recipes', 'sentiment140.yaml'), '--quick', '--out', out, '--json']);
  assert.equal(r.status, 0, r.stderr.slice(-3000));
  const { report, runs } = r.json();
  assert.equal(runs.length, 21, '2 students × (4 methods + 3 late-switch points) + 7 n-gram sweep points');
  for (const dir of runs) {
    const summary = JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8'));
    assert.equal(summary.summary.seeds.length, 1);
    assert.ok(existsSync(join(dir, 'eval.json')));
  }
  assert.ok(existsSync(join(out, 'teacher', 'onnx', 'model.onnx')));
  assert.equal(JSON.parse(readFileSync(join(out, 'cache', 'manifest.json'), 'utf8')).format, 'kd-teacher-cache');
  const reportTime = statSync(report).mtimeMs;
  const again = runKd(['distill', '--recipe', join(repoRoot, 'recipes', 'sentiment140.yaml'), '--quick', '--out', out]);
  assert.equal(again.status, 0, again.stderr);
  for (const stage of ['split', 'teacher', 'cache', 'train ngram-kd'])
    assert.match(again.stderr, new RegExp(`${stage}: done before, skipped`));
  assert.ok(statSync(report).mtimeMs >= reportTime);

  const { browser, choice } = await launchChromium();
  t.diagnostic(`chromium: ${choice.description}`);
  try {
    const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
    const errors: string[] = [];
    const requests: string[] = [];
    page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('request', (req) => !req.url().startsWith('file:') && requests.push(req.url()));
    await page.goto(`file://${report}`);
    assert.deepEqual(errors, []);
    assert.deepEqual(requests, [], 'the report is self-contained');
    const plots = await page.locator('svg[data-plot]').evaluateAll((svgs) =>
      svgs.map((s) => ({
        name: s.getAttribute('data-plot'),
        marks: s.querySelectorAll('rect[data-value], path[data-series], circle').length,
        box: s.getBoundingClientRect().height,
      })),
    );
    assert.ok(plots.length >= 8, `${plots.length} plots`);
    for (const sweep of ['sweep-kdStart', 'sweep-lambda', 'sweep-tau', 'sweep-subclasses'])
      assert.ok(
        plots.some((p) => p.name?.startsWith(sweep)),
        `a ${sweep} plot`,
      );
    for (const p of plots) assert.ok(p.marks > 0 && p.box > 100, `plot ${p.name} has no marks`);
    // Key numbers on the page equal the runs' JSON.
    for (const dir of runs) {
      const meta = JSON.parse(readFileSync(join(dir, 'run.json'), 'utf8'));
      const summary = JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8'));
      const key = `Sentiment140|${meta.student}|${meta.label}|test-mean`;
      const value = await page.locator(`td[data-key="${key}"]`).getAttribute('data-value');
      assert.equal(Number(value), summary.summary.test.mean, key);
      const text = await page.locator(`td[data-key="${key}"]`).textContent();
      assert.equal(text, (100 * summary.summary.test.mean).toFixed(2));
    }
    const teacherEval = JSON.parse(readFileSync(join(out, 'teacher-eval', 'eval.json'), 'utf8'));
    assert.equal(
      Number(await page.locator('td[data-key="Sentiment140|teacher|test-mean"]').getAttribute('data-value')),
      teacherEval.accuracy,
    );
    assert.match((await page.locator('#caveats').textContent()) ?? '', /head\/tail slices/);
    const shots = join(repoRoot, 'test-output');
    mkdirSync(shots, { recursive: true });
    await page.screenshot({ path: join(shots, 'report-quick.png'), fullPage: true });
    assert.ok(statSync(join(shots, 'report-quick.png')).size > 10000);
  } finally {
    await browser.close();
  }
});
