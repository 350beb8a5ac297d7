// int8 against fp32 on the same texts: file sizes, argmax agreement, largest logit difference,
// accuracy when the texts are labelled, and ONNX Runtime time per batch of 32, for model folders
// (kd students, teachers, HF exports) that have onnx/model.onnx; int8 is made in a temp copy when absent.
import { chmodSync, cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { tmpdir } from 'node:os';
import { createSession, type ort } from '../../src/engine/session.js';
import { readAllExamples } from '../../src/data/read.js';
import { quantizeModel } from '../../src/quantize/model.js';
import { checkTexts } from '../../src/quantize/check-texts.js';
import { readStudentCard } from '../../src/student/runtime.js';
import { getStudent } from '../../src/student/registry.js';
import { TextTokenizer } from '../../src/text/tokenizer.js';
import { tokenFeeds } from '../../src/text/feeds.js';
import { packageRoot } from '../../src/util/versions.js';
import { log, median } from './util.js';

function stringFlag(args: string[], name: string): string | null {
  const hit = args.find((a) => a.startsWith(`--${name}=`));
  return hit ? hit.slice(name.length + 3) : null;
}

type Featurize = (texts: readonly string[]) => Promise<Record<string, ort.Tensor>>;

function featurizer(dir: string): Featurize {
  const cardPath = join(dir, 'kd-student.json');
  if (existsSync(cardPath)) {
    const card = readStudentCard(cardPath);
    return getStudent(card.kind).loader(dir, card);
  }
  const tok = TextTokenizer.fromFolder(dir, { maxLength: 128 });
  // Some exports ship a tokenizer larger than their embedding table (the tiny fixtures do).
  const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as { vocab_size?: number };
  if (config.vocab_size) tok.limitVocabulary(config.vocab_size);
  return async (texts) => tokenFeeds(tok.pad(await tok.encode(texts)), true);
}

async function measure(dir: string, texts: string[], labels: (number | null)[], batch: number) {
  const featurize = featurizer(dir);
  const fp32File = join(dir, 'onnx', 'model.onnx');
  const int8File = join(dir, 'onnx', 'model_quantized.onnx');
  const a = (await createSession(fp32File)).session;
  const b = (await createSession(int8File)).session;
  // Feed only the inputs the model has (token_type_ids is not every export's).
  const only = (feeds: Record<string, ort.Tensor>) => Object.fromEntries(a.inputNames.map((n) => [n, feeds[n]!]));
  const times = { fp32: [] as number[], int8: [] as number[] };
  let agree = 0;
  let maxDiff = 0;
  const right = { fp32: 0, int8: 0 };
  let labelled = 0;
  for (let start = 0; start < texts.length; start += batch) {
    const feeds = only(await featurize(texts.slice(start, start + batch)));
    const out: Record<'fp32' | 'int8', Float32Array> = { fp32: new Float32Array(), int8: new Float32Array() };
    for (const [key, s] of [
      ['fp32', a],
      ['int8', b],
    ] as const) {
      if (start === 0) await s.run(feeds); // warm-up
      const t0 = performance.now();
      const r = await s.run(feeds);
      times[key].push(performance.now() - t0);
      out[key] = r[s.outputNames.includes('logits') ? 'logits' : s.outputNames[0]!]!.data as Float32Array;
    }
    const rows = Math.min(batch, texts.length - start);
    const classes = out.fp32.length / rows;
    for (let r = 0; r < rows; r++) {
      const arg = (x: Float32Array) => {
        let k = 0;
        for (let c = 1; c < classes; c++) if (x[r * classes + c]! > x[r * classes + k]!) k = c;
        return k;
      };
      const [ka, kb] = [arg(out.fp32), arg(out.int8)];
      if (ka === kb) agree += 1;
      for (let c = 0; c < classes; c++) maxDiff = Math.max(maxDiff, Math.abs(out.fp32[r * classes + c]! - out.int8[r * classes + c]!));
      const label = labels[start + r];
      if (label !== null && label !== undefined) {
        labelled += 1;
        if (ka === label) right.fp32 += 1;
        if (kb === label) right.int8 += 1;
      }
    }
  }
  await a.release();
  await b.release();
  const fileMb = (f: string) => statSync(f).size / 1e6;
  return {
    model: dir,
    mb: { fp32: fileMb(fp32File), int8: fileMb(int8File) },
    texts: texts.length,
    agreement: agree / texts.length,
    maxLogitDiff: maxDiff,
    accuracy: labelled ? { fp32: right.fp32 / labelled, int8: right.int8 / labelled, n: labelled } : null,
    msPerBatch: { batch, fp32: median(times.fp32), int8: median(times.int8) },
  };
}

/**
 * `npm run bench -- quantize [--models=dir,dir] [--data=test.jsonl] [--limit=N]`: default models are
 * the shared tiny fixtures (quantized in a temp copy), default texts the 256 check texts.
 */
export async function benchQuantize(args: string[]): Promise<Record<string, unknown>> {
  const shared = resolve(process.env.KD_SHARED_DIR ?? join(packageRoot, '..', 'shared'));
  const given = stringFlag(args, 'models');
  const models = given ? given.split(',') : ['tiny-random-bert', 'tiny-random-distilbert'].map((n) => join(shared, 'fixtures', 'hf', n));
  const dataFile = stringFlag(args, 'data');
  const limit = Number(stringFlag(args, 'limit') ?? 2000);
  let texts = checkTexts(256);
  let labels: (number | null)[] = texts.map(() => null);
  if (dataFile) {
    const { examples } = await readAllExamples([dataFile], { progress: false });
    const used = examples.slice(0, limit);
    texts = used.map((e) => e.text);
    labels = used.map((e) => e.label);
  }
  const results = [];
  for (let dir of models) {
    if (!existsSync(join(dir, 'onnx', 'model_quantized.onnx'))) {
      const copy = join(mkdtempSync(join(tmpdir(), 'kd-bench-q-')), basename(dir));
      cpSync(dir, copy, { recursive: true });
      // The shared fixtures are read-only, and so is their copy.
      const writable = (p: string): void => {
        chmodSync(p, statSync(p).isDirectory() ? 0o755 : 0o644);
        if (statSync(p).isDirectory()) for (const e of readdirSync(p)) writable(join(p, e));
      };
      writable(copy);
      await quantizeModel(copy);
      dir = copy;
    }
    const r = await measure(dir, texts, labels, 32);
    const pct = (x: number) => `${(100 * x).toFixed(2)}%`;
    log(
      `${basename(dir)}: ${r.mb.fp32.toFixed(2)} → ${r.mb.int8.toFixed(2)} MB; agreement ${pct(r.agreement)} on ${r.texts} texts, ` +
        `max logit diff ${r.maxLogitDiff.toPrecision(3)}` +
        (r.accuracy ? `; accuracy fp32 ${pct(r.accuracy.fp32)}, int8 ${pct(r.accuracy.int8)}` : '') +
        `; ms per batch of 32: fp32 ${r.msPerBatch.fp32.toFixed(2)}, int8 ${r.msPerBatch.int8.toFixed(2)}`,
    );
    results.push(r);
  }
  return { bench: 'quantize', results };
}
