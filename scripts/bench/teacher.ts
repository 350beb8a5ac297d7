// Teacher throughput: kd's runner (length-sorted token-budget batches, native tokenizer) in fp32 and in int8
// (quantized at load) against transformers.js pipeline('text-classification') in fp32 and q8 at its best batch
// size, on the same teacher folders (kd's own layout and generated Hugging Face exports) and the same real texts.
import { setTimeout as sleep } from 'node:timers/promises';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { tmpdir } from 'node:os';
import { Teacher, type PredictOptions } from '../../src/teacher/teacher.js';
import { loadTeacher } from '../../src/quantize/teacher.js';
import { quantizeModel } from '../../src/quantize/model.js';
import { TEACHER_PRESETS } from '../../src/teacher/default-config.js';
import { ensembleModel } from '../../src/teacher/default-model.js';
import { exportTeacherFolder } from '../../src/teacher/ensemble.js';
import { ParameterStore } from '../../src/engine/params.js';
import { modelParamSpecs } from '../../src/engine/context.js';
import { exportModel } from '../../src/engine/train-graph.js';
import { Rng } from '../../src/engine/rng.js';
import { TextTokenizer } from '../../src/text/tokenizer.js';
import { readAllExamples } from '../../src/data/read.js';
import { packageRoot } from '../../src/util/versions.js';
import { matmulGflops } from './engine.js';
import { flag, log } from './util.js';
import { quantPrecisionOptions } from '../../src/engine/session.js';

/** A teacher of the large preset's shape with random weights: the same compute as a trained one. */
async function untrainedBaseTeacher(texts: string[]): Promise<string> {
  const cfg = TEACHER_PRESETS.large!;
  const dir = join(mkdtempSync(join(tmpdir(), 'kd-bench-teacher-')), 'teacher-base');
  const tokenizer = TextTokenizer.trainWordPiece(texts, { vocabSize: cfg.vocabSize, maxLength: cfg.maxLength });
  const store = new ParameterStore('float32');
  const model = ensembleModel(cfg, 2);
  store.initialize(modelParamSpecs(model), new Rng(1));
  exportTeacherFolder(dir, cfg, tokenizer, ['negative', 'positive'], exportModel(model, store, { outputs: ['logits'] }), {
    note: 'random weights, for benchmarks',
  });
  return dir;
}

function sharedDatasets(): string {
  return resolve(process.env.KD_SHARED_DIR ?? join(packageRoot, '..', 'shared'), 'datasets');
}

/** The pause before each contender's slice (see benchOne). */
const SETTLE_MS = 150;

/** One way of classifying texts, timed slice by slice (seconds summed). */
interface Contender {
  name: string;
  run: (texts: string[]) => Promise<void>;
  seconds: number;
  dispose: () => Promise<void>;
}

/**
 * transformers.js `pipeline('text-classification')` in `dtype` ('fp32': onnx/model.onnx; 'q8':
 * onnx/model_quantized.onnx), one contender per batch size, or why it could not load (e.g. a tokenizer whose ids
 * exceed the model's vocabulary, which kd warns about and transformers.js fails on). With the session entry kd's own
 * sessions carry (quantPrecisionOptions: on a CPU without VNNI, u8×s8 products that do not saturate), so that
 * both sides compute the same thing.
 */
async function transformersJsContenders(dir: string, dtype: 'fp32' | 'q8', batchSizes: number[]): Promise<Contender[] | string> {
  try {
    const { pipeline, env } = await import('@huggingface/transformers');
    env.allowRemoteModels = false;
    env.localModelPath = `${dirname(resolve(dir))}/`;
    const classify = await pipeline('text-classification', basename(dir), { dtype, session_options: await quantPrecisionOptions() });
    let open = batchSizes.length;
    return batchSizes.map((batchSize) => ({
      name: `transformers.js ${dtype} batch ${batchSize}`,
      seconds: 0,
      run: async (texts: string[]) => {
        for (let i = 0; i < texts.length; i += batchSize) await classify(texts.slice(i, i + batchSize));
      },
      dispose: async () => {
        if (--open === 0) await classify.dispose();
      },
    }));
  } catch (e) {
    return (e as Error).message.split('\n')[0]!;
  }
}

/** The fastest of `contenders` whose name starts with `prefix`: [batch size, seconds], or null. */
function bestOf(contenders: Contender[], prefix: string): [number, number] | null {
  const mine = contenders.filter((c) => c.name.startsWith(prefix)).sort((a, b) => a.seconds - b.seconds);
  return mine.length ? [Number(mine[0]!.name.split(' ').at(-1)), mine[0]!.seconds] : null;
}

function stringFlag(args: string[], name: string): string | null {
  const hit = args.find((a) => a.startsWith(`--${name}=`));
  return hit ? hit.slice(name.length + 3) : null;
}

const DATASETS: Record<string, string[]> = {
  tweets: ['sentiment140', 'train_random_sample_33477.csv'],
  reviews: ['amazon_polarity', 'test_random_sample_6814.ft.txt'],
};

/** The generated foreign teachers (scripts/hf_random_teachers.py), by short name. */
const FOREIGN: Record<string, string> = { distilbert: 'distilbert-base-random', bert: 'bert-base-random' };

async function sampleTexts(name: string, n: number): Promise<{ texts: string[]; all: string[]; file: string }> {
  const file = join(sharedDatasets(), ...DATASETS[name]!);
  const { examples } = await readAllExamples([file], { progress: false });
  const step = Math.max(1, Math.floor(examples.length / n));
  const texts = examples
    .filter((_, i) => i % step === 0)
    .slice(0, n)
    .map((e) => e.text);
  return { texts, all: examples.map((e) => e.text), file };
}

/** kd's teacher as a contender: FLOPs executed and of the unoptimized model, and the argmax of every text. */
function kdContender(name: string, teacher: Teacher, lengths: Map<string, number>, encoders: Encoder[], opts: PredictOptions) {
  const lastLayer = teacher.optimization.includes('single-query')
    ? 'folded'
    : teacher.optimization.includes('position 0 only')
      ? 'pruned'
      : 'full';
  const stats = { flops: 0, modelFlops: 0, argmax: new Map<string, number>() };
  const C = teacher.labels.length;
  const contender: Contender = {
    name,
    seconds: 0,
    run: async (slice: string[]) => {
      for await (const b of teacher.stream(slice, opts)) {
        const len = Math.max(...Array.from(b.indices, (i) => lengths.get(slice[i]!)!));
        for (const e of encoders) {
          stats.flops += encoderFlops(e, b.indices.length, len, lastLayer);
          stats.modelFlops += encoderFlops(e, b.indices.length, len);
        }
        b.indices.forEach((pos, r) => {
          let k = 0;
          for (let c = 1; c < C; c++) if (b.logits[r * C + c]! > b.logits[r * C + k]!) k = c;
          stats.argmax.set(slice[pos]!, k);
        });
      }
    },
    dispose: () => teacher.dispose(),
  };
  return { contender, stats };
}

/** A writable copy of `dir` with onnx/model_quantized.onnx written by kd quantize (for transformers.js q8), or `dir` when it has one. */
async function withQuantizedFile(dir: string): Promise<string> {
  if (existsSync(join(dir, 'onnx', 'model_quantized.onnx'))) return dir;
  // The bench's own folders are writable; kd quantize writes beside model.onnx (agreement is measured below, not required).
  await quantizeModel(dir, { minAgreement: 0 });
  return dir;
}

/**
 * One teacher folder on one dataset: kd fp32 and int8 against transformers.js fp32 and q8 at each batch size, in one
 * run, interleaved: every contender classifies slice 1 of the texts, then slice 2, …, so the load swings of a shared
 * machine fall on all of them alike (sequential passes of minutes each measured the load, not the runtimes).
 */
async function benchOne(dir: string, dataset: string, args: string[], peak: number): Promise<Record<string, unknown>> {
  const n = flag(args, 'texts', 2000);
  const sliceSize = flag(args, 'slice', 250);
  const { texts, file } = await sampleTexts(dataset, n);
  const batchSizes = (stringFlag(args, 'tjs-batches') ?? '1,8,32,128').split(',').map(Number);
  const batchTokens = args.some((a) => a.startsWith('--batch-tokens=')) ? { batchTokens: flag(args, 'batch-tokens', 2048) } : {};
  log(`teacher ${dir}, ${texts.length} texts from ${basename(file)}, interleaved in slices of ${sliceSize}`);
  const encoders = encodersOf(JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as HfConfig);

  const fp32Teacher = await Teacher.load(dir, { warn: () => undefined });
  const cfg = fp32Teacher.config;
  const optimization = fp32Teacher.optimization;
  log(`kd fp32: ${optimization}`);
  const encodings = await fp32Teacher.tokenizer.encode(texts);
  const lengths = new Map(texts.map((t, i) => [t, encodings[i]!.ids.length]));
  const tokens = encodings.reduce((s, e) => s + e.ids.length, 0);
  // int8 as `--quantize int8` runs it (near ties recomputed in fp32), and without the recheck (`--recheck-margin 0`).
  const int8Teacher = await loadTeacher(dir, { warn: () => undefined, quantize: 'int8', minAgreement: 0 });
  log(`kd int8: ${int8Teacher.optimization}`);
  const plainTeacher = await loadTeacher(dir, { warn: () => undefined, quantize: 'int8', minAgreement: 0, recheckMargin: 0 });
  const fp32 = kdContender('kd fp32', fp32Teacher, lengths, encoders, batchTokens);
  const int8 = kdContender('kd int8', int8Teacher, lengths, encoders, batchTokens);
  const plain = kdContender('kd int8, no recheck', plainTeacher, lengths, encoders, batchTokens);
  const contenders: Contender[] = [fp32.contender, int8.contender, plain.contender];
  const notes: string[] = [];
  for (const [dtype, folder] of [
    ['fp32', dir],
    ['q8', await withQuantizedFile(dir)],
  ] as const) {
    const peers = await transformersJsContenders(folder, dtype, batchSizes);
    if (typeof peers === 'string') notes.push(`transformers.js ${dtype} skipped: ${peers}`);
    else contenders.push(...peers);
  }
  for (const note of notes) log(note);
  try {
    for (const c of contenders) await c.run(texts.slice(0, 16)); // warm-up
    for (const k of [fp32, int8, plain]) k.stats.flops = k.stats.modelFlops = 0;
    int8Teacher.recomputedRows = 0;
    for (let start = 0; start < texts.length; start += sliceSize) {
      const slice = texts.slice(start, start + sliceSize);
      for (const c of contenders) {
        // Untimed: the last contender's idle ONNX Runtime threads spin for tens of milliseconds after its run, on the
        // cores this one needs; each contender starts on a quiet machine instead of after whichever ran before it.
        await sleep(SETTLE_MS);
        const t0 = performance.now();
        await c.run(slice);
        c.seconds += (performance.now() - t0) / 1000;
      }
    }
  } finally {
    for (const c of contenders) await c.dispose();
  }
  for (const c of contenders) log(`${c.name}: ${(texts.length / c.seconds).toFixed(1)} seq/s`);
  const agreementOf = (k: typeof int8) => texts.filter((t) => fp32.stats.argmax.get(t) === k.stats.argmax.get(t)).length / texts.length;
  const [agreement, plainAgreement] = [agreementOf(int8), agreementOf(plain)];
  const tjs = bestOf(contenders, 'transformers.js fp32');
  const tjsQ8 = bestOf(contenders, 'transformers.js q8');
  const perS = (s: number) => round(texts.length / s);
  const [fp32s, int8s, plains] = [fp32.contender.seconds, int8.contender.seconds, plain.contender.seconds];
  const result = {
    model: dir,
    model_type: cfg.modelType,
    dataset,
    texts: texts.length,
    tokens,
    sequences_per_s: perS(fp32s),
    tokens_per_s: Math.round(tokens / fp32s),
    int8_sequences_per_s: perS(int8s),
    int8_argmax_agreement: round(agreement, 4),
    int8_recheck_margin: int8Teacher.precisionCheck?.recheckMargin ?? null,
    int8_recomputed_share: round(int8Teacher.recomputedRows / texts.length, 4),
    int8_no_recheck_sequences_per_s: perS(plains),
    int8_no_recheck_argmax_agreement: round(plainAgreement, 4),
    transformersjs_sequences_per_s: tjs ? perS(tjs[1]) : null,
    transformersjs_best_batch: tjs ? tjs[0] : null,
    transformersjs_q8_sequences_per_s: tjsQ8 ? perS(tjsQ8[1]) : null,
    transformersjs_q8_best_batch: tjsQ8 ? tjsQ8[0] : null,
    ratio_vs_transformersjs: tjs ? round(tjs[1] / fp32s) : null,
    int8_ratio_vs_transformersjs: tjs ? round(tjs[1] / int8s) : null,
    int8_ratio_vs_transformersjs_q8: tjsQ8 ? round(tjsQ8[1] / int8s) : null,
    int8_no_recheck_ratio_vs_transformersjs: tjs ? round(tjs[1] / plains) : null,
    int8_no_recheck_ratio_vs_transformersjs_q8: tjsQ8 ? round(tjsQ8[1] / plains) : null,
    graph_optimization: optimization,
    gflops: round(fp32.stats.flops / fp32s / 1e9),
    model_gflops: round(fp32.stats.modelFlops / fp32s / 1e9),
    matmul_peak_gflops: round(peak),
    frac_of_matmul_peak: round(fp32.stats.flops / fp32s / 1e9 / peak, 3),
    seconds: Object.fromEntries(contenders.map((c) => [c.name, round(c.seconds, 3)])),
    ...(notes.length ? { notes } : {}),
  };
  log(
    `kd fp32: ${result.sequences_per_s} seq/s (${result.gflops} GFLOP/s executed, ${(100 * result.frac_of_matmul_peak).toFixed(0)}% ` +
      `of MatMul peak ${result.matmul_peak_gflops}); kd int8: ${result.int8_sequences_per_s} seq/s, argmax agreement with fp32 ` +
      `${(100 * agreement).toFixed(2)}% (${(100 * result.int8_recomputed_share).toFixed(1)}% of the texts recomputed in fp32; ` +
      `without: ${result.int8_no_recheck_sequences_per_s} seq/s, ${(100 * plainAgreement).toFixed(2)}%); ` +
      `transformers.js fp32 ${result.transformersjs_sequences_per_s} seq/s (batch ` +
      `${result.transformersjs_best_batch}), q8 ${result.transformersjs_q8_sequences_per_s} ` +
      `(batch ${result.transformersjs_q8_best_batch}); ` +
      `fp32 ratio ${result.ratio_vs_transformersjs}×, int8 ratio ${result.int8_ratio_vs_transformersjs}× (target ≥ 3×), ` +
      `vs q8 ${result.int8_ratio_vs_transformersjs_q8}× (target ≥ 1.5×); without the recheck ` +
      `${result.int8_no_recheck_ratio_vs_transformersjs}× and ${result.int8_no_recheck_ratio_vs_transformersjs_q8}×`,
  );
  return result;
}

/**
 * `npm run bench -- teacher [--models=own,distilbert,bert] [--data=tweets,reviews] [--model=DIR] [--texts=N]
 * [--tjs-batches=1,8,32,128] [--slice=250] [--batch-tokens=N]`: kd's own base teacher (random weights) and the generated foreign
 * exports (.bench/hf, from scripts/hf_random_teachers.py; skipped with a note when absent), on tweets and reviews.
 * The result's top-level figures are the DistilBERT-base run on tweets (kd's own teacher when it is absent).
 */
export async function benchTeacher(args: string[]): Promise<Record<string, unknown>> {
  const modelArg = stringFlag(args, 'model');
  const datasets = (stringFlag(args, 'data') ?? (args.includes('--amazon') ? 'reviews' : 'tweets,reviews')).split(',');
  for (const d of datasets) if (!DATASETS[d]) throw new Error(`Unknown --data '${d}'. Known: ${Object.keys(DATASETS).join(', ')}`);
  const names = modelArg ? ['given'] : (stringFlag(args, 'models') ?? 'own,distilbert,bert').split(',');
  const foreignDir = resolve(process.env.KD_BENCH_MODELS ?? join(packageRoot, '.bench', 'hf'));
  // The best fp32 MatMul rate of three shapes: 1024³ fed, and a BERT-base layer's feed-forward shapes with constant
  // weights, as the teacher's are. One 1024³ probe gave 85 GFLOP/s in a run whose teacher then executed 115 ("135% of
  // peak"), on an AVX2 machine where the three gave 110–125 minutes later: one probe can catch a slow moment.
  const peaks = [
    await matmulGflops(1024, 1024, 1024, 5),
    await matmulGflops(2048, 768, 3072, 3, true),
    await matmulGflops(2048, 3072, 768, 3, true),
  ];
  const peak = Math.max(...peaks);
  const [cube, up, down] = peaks.map((p) => p.toFixed(1));
  log(`fp32 MatMul GFLOP/s: 1024³ ${cube}, 2048×768×3072 (constant weight) ${up}, 2048×3072×768 ${down}`);
  const runs: Record<string, unknown>[] = [];
  const notes: string[] = [];
  for (const name of names) {
    let dir: string;
    let temporary = false;
    if (name === 'given') dir = modelArg!;
    else if (name === 'own') {
      dir = await untrainedBaseTeacher((await sampleTexts('tweets', 0)).all);
      temporary = true;
    } else if (FOREIGN[name]) {
      dir = join(foreignDir, FOREIGN[name]);
      if (!existsSync(join(dir, 'onnx', 'model.onnx'))) {
        notes.push(`${name}: ${dir} not found (make it with python3 scripts/hf_random_teachers.py; needs PyTorch)`);
        log(`skipped ${name}: ${notes.at(-1)}`);
        continue;
      }
    } else throw new Error(`Unknown --models entry '${name}'. Known: own, ${Object.keys(FOREIGN).join(', ')}`);
    try {
      for (const dataset of datasets) runs.push({ teacher: name, ...(await benchOne(dir, dataset, args, peak)) });
    } finally {
      if (temporary) rmSync(dirname(dir), { recursive: true, force: true });
    }
  }
  const headline =
    runs.find((r) => r.teacher === 'distilbert' && r.dataset === 'tweets') ?? runs.find((r) => r.dataset === 'tweets') ?? runs[0] ?? {};
  return { bench: 'teacher', ...headline, runs, ...(notes.length ? { notes } : {}) };
}

interface Encoder {
  hidden: number;
  layers: number;
  heads: number;
  intermediate: number;
}

interface HfConfig {
  hidden_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  intermediate_size: number;
  kd?: { members?: Encoder[] };
}

/** The encoders a teacher runs: each member of a kd ensemble (bags count ~0), or the one config.json describes. */
function encodersOf(config: HfConfig): Encoder[] {
  const members = config.kd?.members?.filter((m) => m.layers > 0);
  return members?.length
    ? members
    : [
        {
          hidden: config.hidden_size,
          layers: config.num_hidden_layers,
          heads: config.num_attention_heads,
          intermediate: config.intermediate_size,
        },
      ];
}

/**
 * Forward FLOPs of a BERT-style encoder on a [batch, len] input (2 per multiply-add), for the graph
 * kd runs: 'full' as exported; 'pruned', the last layer projecting keys and values for every
 * position and the rest for position 0 only; 'folded', the last layer's single query attending
 * to the positions directly (no key/value projections; see attention-fusion.ts).
 */
function encoderFlops(e: Encoder, batch: number, len: number, lastLayer: 'full' | 'pruned' | 'folded' = 'full'): number {
  const h = e.hidden;
  const layer = (positions: number, queries: number) =>
    queries * (2 * 2 * h * h + 2 * 2 * h * e.intermediate) + positions * 2 * 2 * h * h + 2 * 2 * queries * len * h;
  const last =
    lastLayer === 'full'
      ? layer(len, len)
      : lastLayer === 'pruned'
        ? layer(len, 1)
        : 8 * h * h + 4 * h * e.intermediate + 4 * e.heads * h * len;
  return batch * ((e.layers - 1) * layer(len, len) + last);
}

function round(x: number, digits = 2): number {
  return Number(x.toFixed(digits));
}
