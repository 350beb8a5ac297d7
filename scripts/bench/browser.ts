// Students in transformers.js, fp32 and int8: texts/s in headless Chromium (the examples/browser page, onnxruntime-web
// wasm) and in Node (onnxruntime-node), one text per call and calls of 32, plus file sizes and held-out accuracy and
// agreement of int8 with fp32 (Node, same pipeline). `npm run bench -- browser --models=a,b --data=test.jsonl`.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, statSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { readAllExamples } from '../../src/data/read.js';
import { packageRoot } from '../../src/util/versions.js';
import { launchChromium } from '../../test/browser.js';
import { flag, log } from './util.js';
import { quantPrecisionOptions } from '../../src/engine/session.js';

type Dtype = 'q8' | 'fp32';
interface Speed {
  single: number;
  batched: number;
}
interface Scored {
  label: string;
  score: number;
}

function stringFlag(args: string[], name: string): string | null {
  const hit = args.find((a) => a.startsWith(`--${name}=`));
  return hit ? hit.slice(name.length + 3) : null;
}

/** transformers.js in Node on a local folder: texts/s one text per call and `batch` per call. */
async function nodeRun(model: string, dtype: Dtype, texts: string[], batch: number): Promise<Speed> {
  const { pipeline, env } = await import('@huggingface/transformers');
  env.allowLocalModels = true;
  env.allowRemoteModels = false;
  env.localModelPath = `${dirname(model)}/`;
  const classify = await pipeline('text-classification', basename(model), { dtype, session_options: await quantPrecisionOptions() });
  for (const text of texts.slice(0, 20)) await classify(text); // warm-up
  let started = performance.now();
  for (const text of texts) await classify(text);
  const single = texts.length / ((performance.now() - started) / 1000);
  started = performance.now();
  for (let i = 0; i < texts.length; i += batch) await classify(texts.slice(i, i + batch));
  const batched = texts.length / ((performance.now() - started) / 1000);
  await classify.dispose();
  return { single, batched };
}

/** Starts examples/browser/serve.mjs on a folder of links to the models; resolves to its URL. */
async function serve(models: string[]): Promise<{ url: string; names: string[]; stop: () => void }> {
  const dir = mkdtempSync(join(tmpdir(), 'kd-bench-browser-'));
  const names = models.map((m, i) => `m${i}`);
  models.forEach((m, i) => symlinkSync(resolve(m), join(dir, names[i]!)));
  const child = spawn(process.execPath, [join(packageRoot, 'examples', 'browser', 'serve.mjs'), '--models', dir], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = await new Promise<string>((ok, fail) => {
    let seen = '';
    child.stdout.on('data', (d: Buffer) => {
      seen += d.toString();
      if (seen.includes('\n')) ok(seen.split('\n')[0]!);
    });
    child.once('exit', (code) => fail(new Error(`serve.mjs exited with ${code}`)));
  });
  return { url, names, stop: () => child.kill() };
}

/** One model's figures: sizes (MB), texts/s per runtime and dtype, held-out accuracy (Node) and int8/fp32 agreement. */
interface BrowserBenchRow {
  model: string;
  mb: { fp32: number; int8: number };
  fp32: { chromium: Speed; node: Speed };
  int8: { chromium: Speed; node: Speed };
  accuracy: { fp32: number; int8: number; n: number };
  agreement: number;
}

interface KdDemo {
  kdDemo: { benchmark: (texts: string[], batch: number) => Promise<Speed & { texts: number }> };
}

/**
 * `npm run bench -- browser --models=dir[,dir] [--data=test.jsonl] [--limit=500] [--accuracy-limit=5000]`: every model
 * in Chromium and in Node, q8 and fp32; accuracy on `--data` (all of it up to the accuracy limit) in Node.
 */
export async function benchBrowser(args: string[]): Promise<Record<string, unknown>> {
  const given = stringFlag(args, 'models');
  const dataFile = stringFlag(args, 'data');
  if (!given || !dataFile) throw new Error("'--models=dir[,dir]' and '--data=test.jsonl' are required");
  const models = given.split(',');
  const { examples } = await readAllExamples([dataFile], { progress: false });
  const limit = flag(args, 'limit', 500);
  const speedTexts = examples.slice(0, limit).map((e) => e.text);
  const held = examples.slice(0, flag(args, 'accuracy-limit', 5000));
  const server = await serve(models);
  const { browser, choice } = await launchChromium();
  log(`chromium: ${choice.description} ${browser.version()}; ${speedTexts.length} texts for speed, ${held.length} for accuracy`);
  const results: BrowserBenchRow[] = [];
  // One page throughout: the npm Chromium runs --single-process, and closing a page there ends the browser.
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
  try {
    for (const [i, model] of models.entries()) {
      const config = JSON.parse(readFileSync(join(model, 'config.json'), 'utf8')) as { id2label: Record<string, string> };
      const mb = (f: string) => statSync(join(model, 'onnx', f)).size / 1e6;
      const speed: Partial<Record<Dtype, { chromium: Speed; node: Speed }>> = {};
      const predicted: Partial<Record<Dtype, string[]>> = {};
      for (const dtype of ['fp32', 'q8'] as const) {
        errors.length = 0;
        // q8 is the page's default: no dtype in the URL.
        await page.goto(`${server.url}?model=${server.names[i]}${dtype === 'fp32' ? '&dtype=fp32' : ''}`);
        await page.waitForSelector('body[data-classified="1"]', { timeout: 120_000 });
        await page.evaluate((t) => (globalThis as unknown as KdDemo).kdDemo.benchmark(t, 32), speedTexts.slice(0, 20));
        const chromium = await page.evaluate((t) => (globalThis as unknown as KdDemo).kdDemo.benchmark(t, 32), speedTexts);
        if (errors.length) throw new Error(`${model} ${dtype} in Chromium: ${errors.join('; ')}`);
        const node = await nodeRun(model, dtype, speedTexts, 32);
        speed[dtype] = { chromium: { single: chromium.single, batched: chromium.batched }, node };
        predicted[dtype] = await labelsOf(
          model,
          dtype,
          held.map((e) => e.text),
        );
      }
      const truth = held.map((e) => config.id2label[String(e.label)]);
      const accuracy = (p: string[]) => p.filter((l, k) => l === truth[k]).length / p.length;
      const row: BrowserBenchRow = {
        model,
        mb: { fp32: mb('model.onnx'), int8: mb('model_quantized.onnx') },
        fp32: speed.fp32!,
        int8: speed.q8!,
        accuracy: { fp32: accuracy(predicted.fp32!), int8: accuracy(predicted.q8!), n: held.length },
        agreement: predicted.fp32!.filter((l, k) => l === predicted.q8![k]).length / held.length,
      };
      const s = (x: Speed) => `${x.single.toFixed(0)} / ${x.batched.toFixed(0)}`;
      const pct = (x: number) => `${(100 * x).toFixed(2)}%`;
      log(
        `${model}: ${row.mb.fp32.toFixed(2)} MB fp32, ${row.mb.int8.toFixed(2)} MB int8; texts/s (1 / 32 per call) ` +
          `Chromium fp32 ${s(row.fp32.chromium)}, int8 ${s(row.int8.chromium)}; Node fp32 ${s(row.fp32.node)}, int8 ${s(row.int8.node)}; ` +
          `accuracy fp32 ${pct(row.accuracy.fp32)}, int8 ${pct(row.accuracy.int8)} on ${held.length}, agreement ${pct(row.agreement)}`,
      );
      results.push(row);
    }
  } finally {
    await browser.close();
    server.stop();
  }
  return { bench: 'browser', chromium: choice.description, results };
}

/** The label transformers.js in Node predicts for each text (calls of 64). */
async function labelsOf(model: string, dtype: Dtype, texts: string[]): Promise<string[]> {
  const { pipeline, env } = await import('@huggingface/transformers');
  env.allowLocalModels = true;
  env.allowRemoteModels = false;
  env.localModelPath = `${dirname(model)}/`;
  const classify = await pipeline('text-classification', basename(model), { dtype, session_options: await quantPrecisionOptions() });
  const labels: string[] = [];
  for (let i = 0; i < texts.length; i += 64) labels.push(...((await classify(texts.slice(i, i + 64))) as Scored[]).map((r) => r.label));
  await classify.dispose();
  return labels;
}
