// The browser example (examples/browser/) in headless Chromium: both students, trained small on real tweets, load with
// transformers.js's defaults (q8 file, wasm backend) from the page's own server, and the scores the page shows for typed
// texts equal Node's transformers.js q8 scores (1e-4); no console errors, no request off the server, a screenshot in
// test-output/, texts/s measured in the page. Also: the server refuses paths that leave its folders, and bad flags.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, statSync, symlinkSync } from 'node:fs';
import { request } from 'node:http';
import { basename, dirname, join } from 'node:path';
import { launchChromium } from '../browser.js';
import { repoRoot, runKd, S140_RANDOM, splitAndCache, tempDir } from '../helpers.js';
import { quantPrecisionOptions } from '../../src/engine/session.js';

const root = tempDir('kd-browser-');
const models = join(root, 'models');
let server: ChildProcess | undefined;
let base = '';

/** Typed into the page: tweets' mess (a URL, @user, entities, emoji, non-Latin script) and one long text. */
const TEXTS = [
  'what a wonderful morning',
  'my phone broke again, so annoying @bob http://x.co/abc',
  'going to work',
  'best concert ever!!',
  'I &amp; you &quot;love&quot; it',
  'ΟΔΟΣ 😀 zzzqqq',
  'so tired of this. '.repeat(30).trim(),
];

/** Each student's size flags (small, so training takes seconds); CE, since the tiny teacher's logits are noise. */
const STUDENTS: Record<string, string> = {
  ngram: '--dim 16 --buckets 4096 --ngram-vocab 3000',
  transformer: '--student transformer --layers 1 --hidden 32 --heads 2 --intermediate 64 --max-length 48 --vocab-size 1024 --lr 0.01',
};

before(async () => {
  const { cache, files } = splitAndCache(root, S140_RANDOM(), ['--limit', '1600', '--dev', '0.15', '--test', '0.15']);
  mkdirSync(models);
  for (const [name, flags] of Object.entries(STUDENTS)) {
    const out = join(root, `run-${name}`);
    const args = `--train ${files('train')} --dev ${files('dev')} --out ${out} --epochs 2 --loss ce --json ${flags}`;
    const r = runKd(['train', '--cache', cache, ...args.split(' ')]);
    assert.equal(r.status, 0, r.stderr);
    symlinkSync(join(out, 'seed-13', 'model'), join(models, name));
  }
  const child = spawn(process.execPath, [join(repoRoot, 'examples', 'browser', 'serve.mjs'), '--models', models, '--port', '0'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  server = child;
  base = await new Promise<string>((ok, fail) => {
    let seen = '';
    child.stdout!.on('data', (d: Buffer) => {
      seen += d.toString();
      if (seen.includes('\n')) ok(seen.split('\n')[0]!);
    });
    child.once('exit', (code) => fail(new Error(`serve.mjs exited with ${code}`)));
  });
  assert.match(base, /^http:\/\/127\.0\.0\.1:\d+\/$/);
});

after(() => {
  server?.kill();
});

/** Node's transformers.js with `{ dtype: 'q8' }` (onnxruntime-node): every label's score for each text. */
async function nodeScores(model: string, texts: string[]): Promise<{ label: string; score: number }[][]> {
  const { pipeline, env } = await import('@huggingface/transformers');
  env.allowLocalModels = true;
  env.allowRemoteModels = false;
  env.localModelPath = `${dirname(model)}/`;
  // The entry kd's own sessions carry: on a CPU without VNNI, u8×s8 products that do not saturate (createSession).
  const classify = await pipeline('text-classification', basename(model), { dtype: 'q8', session_options: await quantPrecisionOptions() });
  const rows: { label: string; score: number }[][] = [];
  for (const text of texts) rows.push((await classify(text, { top_k: null })) as unknown as { label: string; score: number }[]);
  await classify.dispose();
  return rows;
}

/** The status code the server answers for a raw request path (no URL normalization on the way). */
function statusOf(path: string): Promise<number> {
  const { hostname, port } = new URL(base);
  return new Promise((ok, fail) => {
    const req = request({ host: hostname, port, path, method: 'GET' }, (res) => {
      res.resume();
      ok(res.statusCode ?? 0);
    });
    req.on('error', fail);
    req.end();
  });
}

test('the server serves the page, the students and the wasm files, and nothing outside its folders', async () => {
  assert.equal(await statusOf('/'), 200);
  assert.equal(await statusOf('/models/ngram/config.json'), 200);
  assert.equal(await statusOf('/wasm/ort-wasm-simd-threaded.asyncify.wasm'), 200);
  assert.equal(await statusOf('/transformers/transformers.js'), 200);
  assert.deepEqual(JSON.parse(await (await fetch(`${base}models.json`)).text()), ['ngram', 'transformer']);
  for (const crafted of [
    '/models/../package.json',
    '/models/%2e%2e/%2e%2e/package.json',
    '/models/..%2f..%2fpackage.json',
    '/wasm/..%2F..%2F..%2Fpackage.json',
    '/transformers/%00',
    '/models/%E0%A4%A',
    '/serve.mjs',
  ])
    assert.equal(await statusOf(crafted), 404, crafted);
});

test('serve.mjs refuses a missing or absent --models, a bad port and an unknown flag with one line, exit 2', () => {
  const serve = (...args: string[]) =>
    spawnSync(process.execPath, [join(repoRoot, 'examples', 'browser', 'serve.mjs'), ...args], { encoding: 'utf8' });
  const cases: [string[], string][] = [
    [[], 'serve.mjs: error: --models DIR is required: the folder whose subfolders are students\n'],
    [['--models', join(root, 'nope')], `serve.mjs: error: --models ${join(root, 'nope')}: not a folder\n`],
    [['--models', models, '--port', '99999'], 'serve.mjs: error: --port must be an integer in 0..65535, got 99999\n'],
    [['--model', models], "serve.mjs: error: unknown argument '--model'. Usage: node examples/browser/serve.mjs --models DIR [--port N]\n"],
  ];
  for (const [args, message] of cases) {
    const r = serve(...args);
    assert.equal(r.status, 2, args.join(' '));
    assert.equal(r.stderr, message);
    assert.equal(r.stdout, '');
  }
});

test("both students load in Chromium with transformers.js's defaults and show Node's q8 scores (1e-4)", async (t) => {
  const { browser, choice } = await launchChromium();
  t.diagnostic(`chromium: ${choice.description}, ${browser.version()}`);
  const origin = new URL(base).origin;
  const tweets = readFileSync(join(root, 'split', 'test.jsonl'), 'utf8')
    .trimEnd()
    .split('\n')
    .slice(0, 200)
    .map((line) => (JSON.parse(line) as { text: string }).text);
  try {
    // One page for both students: the npm Chromium runs --single-process, and closing a page there ends the browser.
    const page = await browser.newPage({ viewport: { width: 1000, height: 760 } });
    let errors: string[] = [];
    let requests: string[] = [];
    page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('request', (r) => requests.push(r.url()));
    for (const name of Object.keys(STUDENTS)) {
      errors = [];
      requests = [];
      await page.goto(`${base}?model=${name}`);
      await page.waitForSelector('body[data-classified="1"]', { timeout: 30_000 });
      assert.match((await page.locator('#status').textContent()) ?? '', new RegExp(`^${name}: 2 texts in [\\d.]+ ms$`));
      // Typed like a user: the table follows the textarea.
      await page.locator('#texts').fill(TEXTS.join('\n'));
      await page.waitForSelector('body[data-classified="2"]', { timeout: 30_000 });
      const shown = await page.locator('#results tbody tr').evaluateAll((rows) =>
        rows.map((row) => ({
          text: row.querySelector('td.text')!.textContent,
          label: row.getAttribute('data-label'),
          cell: row.querySelectorAll('td')[1]!.textContent,
          scores: JSON.parse(row.getAttribute('data-scores')!) as { label: string; score: number }[],
          visible: [...row.querySelectorAll('.score')].map((s) => s.textContent),
          ms: Number(row.querySelector('td.ms')!.textContent),
        })),
      );
      assert.equal(shown.length, TEXTS.length);
      const expected = await nodeScores(join(models, name), TEXTS);
      let largest = 0;
      shown.forEach((row, i) => {
        assert.equal(row.text, TEXTS[i]);
        assert.equal(row.label, expected[i]![0]!.label, `${name} text ${i}`);
        assert.equal(row.cell, row.label);
        assert.deepEqual(
          row.scores.map((s) => s.label),
          expected[i]!.map((s) => s.label),
        );
        row.scores.forEach((s, j) => {
          const node = expected[i]![j]!.score;
          largest = Math.max(largest, Math.abs(s.score - node));
          assert.ok(Math.abs(s.score - node) < 1e-4, `${name} text ${i} ${s.label}: page ${s.score}, Node ${node}`);
        });
        assert.deepEqual(
          row.visible,
          row.scores.map((s) => `${s.label} ${s.score.toFixed(4)}`),
        );
        assert.ok(row.ms > 0 && row.ms < 10_000, `time per text ${row.ms}`);
      });
      t.diagnostic(`${name}: largest |page − Node| score difference ${largest.toExponential(2)} over ${TEXTS.length} texts`);
      // The texts are told apart (the comparison is not between constant outputs).
      const positive = shown.map((row) => row.scores.find((s) => s.label === 'positive')!.score);
      assert.ok(Math.max(...positive) - Math.min(...positive) > 0.01, `${name}: ${positive}`);
      // Defaults: the int8 file and onnxruntime-web's wasm from this server; no float model, nothing off the server.
      const paths = requests
        .map((u) => new URL(u))
        .filter((u) => u.origin === origin)
        .map((u) => u.pathname);
      assert.ok(paths.includes(`/models/${name}/onnx/model_quantized.onnx`), paths.join(' '));
      assert.ok(!paths.includes(`/models/${name}/onnx/model.onnx`));
      assert.ok(
        paths.some((p) => /^\/wasm\/ort-wasm-simd-threaded.*\.wasm$/.test(p)),
        paths.join(' '),
      );
      assert.deepEqual(
        requests.filter((u) => !u.startsWith(origin) && !u.startsWith('data:')),
        [],
        'local files only',
      );
      const shots = join(repoRoot, 'test-output');
      mkdirSync(shots, { recursive: true });
      const shot = join(shots, `browser-${name}.png`);
      await page.screenshot({ path: shot, fullPage: true });
      assert.ok(statSync(shot).size > 10_000);
      // Throughput in the page, after a warm-up: one call per tweet, and calls of 32.
      await page.evaluate((texts) => (globalThis as unknown as KdDemo).kdDemo.benchmark(texts, 32), tweets.slice(0, 20));
      const speed = await page.evaluate((texts) => (globalThis as unknown as KdDemo).kdDemo.benchmark(texts, 32), tweets);
      assert.equal(speed.texts, tweets.length);
      assert.ok(speed.single > 0 && speed.batched > 0);
      t.diagnostic(
        `${name} in Chromium (q8, wasm): ${speed.single.toFixed(0)} texts/s one at a time, ${speed.batched.toFixed(0)} in batches ` +
          `of 32 (${tweets.length} tweets)`,
      );
      assert.deepEqual(errors, [], `${name}: console errors`);
    }
  } finally {
    await browser.close();
  }
});

/** What examples/browser/app.js puts on `window`. */
interface KdDemo {
  kdDemo: { benchmark: (texts: string[], batch: number) => Promise<{ single: number; batched: number; texts: number }> };
}
