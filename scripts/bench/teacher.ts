// Teacher throughput: kd's runner (length-sorted token-budget batches, native tokenizer)
// against transformers.js pipeline('text-classification') at its best batch size, on the
// same teacher folder and the same 2,000 real texts, in one run.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { tmpdir } from 'node:os';
import { Teacher } from '../../src/teacher/teacher.js';
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

/** A base-sized teacher with random weights: the same compute as a trained one. */
async function untrainedBaseTeacher(texts: string[]): Promise<string> {
  const cfg = TEACHER_PRESETS.base!;
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

/**
 * transformers.js `pipeline('text-classification')` over the same texts at batch sizes 1, 8, 32
 * and 128: seconds per batch size, or why it could not run (e.g. a tokenizer whose ids exceed
 * the model's vocabulary, which kd warns about and transformers.js fails on).
 */
async function transformersJsPeer(dir: string, texts: string[]): Promise<Record<string, number> | { skipped: string }> {
  try {
    const { pipeline, env } = await import('@huggingface/transformers');
    env.allowRemoteModels = false;
    env.localModelPath = `${dirname(resolve(dir))}/`;
    const classify = await pipeline('text-classification', basename(dir), { dtype: 'fp32' });
    const seconds: Record<string, number> = {};
    try {
      for (const batchSize of [1, 8, 32, 128]) {
        await classify(texts.slice(0, Math.min(batchSize, 16)), { batch_size: batchSize } as never);
        const s0 = performance.now();
        for (let i = 0; i < texts.length; i += batchSize) await classify(texts.slice(i, i + batchSize));
        seconds[`batch_${batchSize}`] = (performance.now() - s0) / 1000;
        log(`transformers.js batch ${batchSize}: ${(texts.length / seconds[`batch_${batchSize}`]!).toFixed(1)} seq/s`);
      }
    } finally {
      await classify.dispose();
    }
    return seconds;
  } catch (e) {
    return { skipped: (e as Error).message.split('\n')[0]! };
  }
}

export async function benchTeacher(args: string[]): Promise<Record<string, unknown>> {
  const n = flag(args, 'texts', 2000);
  const modelArg = args.find((a) => a.startsWith('--model='))?.slice('--model='.length);
  const dataset = args.includes('--amazon')
    ? join(sharedDatasets(), 'amazon_polarity', 'test_random_sample_6814.ft.txt')
    : join(sharedDatasets(), 'sentiment140', 'train_random_sample_33477.csv');
  const { examples } = await readAllExamples([dataset], { progress: false });
  const step = Math.max(1, Math.floor(examples.length / n));
  const texts = examples
    .filter((_, i) => i % step === 0)
    .slice(0, n)
    .map((e) => e.text);
  const dir = modelArg && existsSync(modelArg) ? modelArg : await untrainedBaseTeacher(examples.map((e) => e.text));
  log(`teacher ${dir}, ${texts.length} texts from ${basename(dataset)}`);

  const encoders = encodersOf(JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as HfConfig);
  const teacher = await Teacher.load(dir, { warn: () => undefined });
  const cfg = teacher.config;
  const encodings = await teacher.tokenizer.encode(texts);
  const realTokens = encodings.reduce((s, e) => s + e.ids.length, 0);
  await teacher.predict(texts.slice(0, 64));
  let flops = 0;
  let modelFlops = 0;
  const lastLayer = teacher.optimization.includes('single-query')
    ? 'folded'
    : teacher.optimization.includes('position 0 only')
      ? 'pruned'
      : 'full';
  log(`kd: ${teacher.optimization}`);
  const t0 = performance.now();
  for await (const b of teacher.stream(
    texts,
    args.some((a) => a.startsWith('--batch-tokens=')) ? { batchTokens: flag(args, 'batch-tokens', 2048) } : {},
  )) {
    const len = Math.max(...Array.from(b.indices, (i) => encodings[i]!.ids.length));
    for (const e of encoders) {
      flops += encoderFlops(e, b.indices.length, len, lastLayer);
      modelFlops += encoderFlops(e, b.indices.length, len);
    }
  }
  const ours = (performance.now() - t0) / 1000;
  await teacher.dispose();

  const peer = await transformersJsPeer(dir, texts);
  if (dir !== modelArg) rmSync(dirname(dir), { recursive: true, force: true }); // the untrained one made above
  const best = 'skipped' in peer ? null : Object.entries(peer).sort((a, b) => a[1] - b[1])[0]!;
  if (!best) log(`transformers.js skipped: ${(peer as { skipped: string }).skipped}`);
  const peak = await matmulGflops(1024, 1024, 1024, 5);
  const result = {
    bench: 'teacher',
    model: dir,
    model_type: cfg.modelType,
    texts: texts.length,
    tokens: realTokens,
    sequences_per_s: round(texts.length / ours),
    tokens_per_s: Math.round(realTokens / ours),
    transformersjs_sequences_per_s: best ? round(texts.length / best[1]) : null,
    transformersjs_best_batch: best ? Number(best[0].slice('batch_'.length)) : null,
    ratio_vs_transformersjs: best ? round(best[1] / ours) : null,
    graph_optimization: teacher.optimization,
    gflops: round(flops / ours / 1e9),
    model_gflops: round(modelFlops / ours / 1e9),
    matmul_peak_gflops: round(peak),
    frac_of_matmul_peak: round(flops / ours / 1e9 / peak, 3),
  };
  log(
    `kd: ${result.sequences_per_s} seq/s, ${result.tokens_per_s} tokens/s (${result.gflops} GFLOP/s executed, ` +
      `${(100 * result.frac_of_matmul_peak).toFixed(0)}% of MatMul peak ${result.matmul_peak_gflops}; ${result.model_gflops} ` +
      `GFLOP/s counting the unoptimized model's FLOPs); ` +
      (best
        ? `transformers.js best (batch ${result.transformersjs_best_batch}) ${result.transformersjs_sequences_per_s} seq/s; ` +
          `ratio ${result.ratio_vs_transformersjs}× (target ≥ 3×)`
        : 'transformers.js skipped'),
  );
  return result;
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
