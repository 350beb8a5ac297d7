// Student training throughput with the `kd` loss: kd's engine against the same student and
// loss in @tensorflow/tfjs (wasm) and in PyTorch CPU (Debian's python3-torch), and fastText
// (Debian's fasttext) training the n-gram model on the same rows, in one run, on real tweets
// and a real cache (read once, as kd train reads it); plus what reading each batch's rows from it would add.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { buildCache } from '../../src/cache/build.js';
import { CacheReader } from '../../src/cache/reader.js';
import { readAllExamples } from '../../src/data/read.js';
import { requireLabel } from '../../src/data/errors.js';
import { getMethod } from '../../src/distill/registry.js';
import { Trainer, type StepTrainer } from '../../src/engine/trainer.js';
import { BagTrainer } from '../../src/engine/bag-trainer.js';
import { type LossDefinition } from '../../src/engine/train-graph.js';
import { trainingGraphs } from '../../src/train/student-run.js';
import { ort } from '../../src/engine/session.js';
import { Rng } from '../../src/engine/rng.js';
import { ngramBag, ngramFeeds, ngramStudent, NGRAM_DEFAULTS, NGRAM_MAX_TOKENS, type NgramStudentConfig } from '../../src/student/ngram.js';
import { transformerStudent } from '../../src/student/transformer.js';
import { ngramFeatureIds } from '../../src/text/ngrams.js';
import { TextTokenizer } from '../../src/text/tokenizer.js';
import { tokenFeeds } from '../../src/text/feeds.js';
import { packageRoot } from '../../src/util/versions.js';
import { flag, log, runNodeChild, runTorchPeer } from './util.js';

function shared(...p: string[]): string {
  return join(process.env.KD_SHARED_DIR ?? join(packageRoot, '..', 'shared'), ...p);
}

/** The PyTorch peer (scripts/bench/train_torch.py); skipped with a note when python3-torch is missing. */
function torchPeer(
  which: 'ngram-kd' | 'transformer-kd',
  steps: number,
  arg: string,
): { secondsPerStep: number; batch: number; torch: string } | { skipped: string } {
  return runTorchPeer('train_torch.py', [which, String(steps), arg]);
}

/**
 * fastText (Debian's `fasttext` 0.9) training the same kind of model on the same rows: word
 * unigrams + bigrams hashed into 2^18 buckets, dimension 32, 2 threads, 5 epochs. It has no
 * soft-target loss, so it trains with cross-entropy; the time includes reading the file and
 * building its dictionary. Run FASTTEXT_RUNS times, its fastest run reported (its start and file
 * writing swing its rate by a third from run to run). Skipped with a note when the binary is missing.
 */
const FASTTEXT_EPOCHS = 5;
const FASTTEXT_RUNS = 3;

function fasttextPeer(
  texts: readonly string[],
  labels: readonly number[],
  dir: string,
): { examplesPerS: number; seconds: number; epochs: number; runs: number[] } | { skipped: string } {
  const input = join(dir, 'fasttext-train.txt');
  writeFileSync(input, texts.map((t, i) => `__label__${labels[i]} ${t.replace(/\s+/g, ' ').toLowerCase()}`).join('\n') + '\n');
  const epochs = FASTTEXT_EPOCHS;
  const runs: number[] = [];
  for (let run = 0; run < FASTTEXT_RUNS; run++) {
    const t0 = performance.now();
    const r = spawnSync(
      'fasttext',
      [
        'supervised',
        '-input',
        input,
        '-output',
        join(dir, 'fasttext-model'),
        '-dim',
        '32',
        '-wordNgrams',
        '2',
        '-bucket',
        String(1 << 18),
        '-epoch',
        String(epochs),
        '-thread',
        '2',
        '-minCount',
        '1',
        '-verbose',
        '0',
      ],
      { encoding: 'utf8' },
    );
    const seconds = (performance.now() - t0) / 1000;
    if (r.error)
      return {
        skipped:
          (r.error as NodeJS.ErrnoException).code === 'ENOENT' ? 'fasttext is not installed (apt-get install fasttext)' : r.error.message,
      };
    if (r.status !== 0) return { skipped: r.stderr.trim().split('\n').at(-1) ?? 'failed' };
    runs.push(seconds);
  }
  const seconds = Math.min(...runs);
  return { examplesPerS: (texts.length * epochs) / seconds, seconds, epochs, runs };
}

export async function benchTrain(args: string[]): Promise<Record<string, unknown>> {
  const steps = flag(args, 'steps', 200);
  const file = shared('datasets', 'sentiment140', 'train_random_sample_33477.csv');
  const dir = mkdtempSync(join(tmpdir(), 'kd-bench-train-'));
  const cacheDir = join(dir, 'cache');
  await buildCache({
    teacher: shared('fixtures', 'hf', 'tiny-random-bert'),
    data: [file],
    read: { classes: 2, progress: false },
    out: cacheDir,
    embedding: 'none',
  });
  const { examples } = await readAllExamples([file], { progress: false });
  // kd's n-gram trainers' measured steps: by default the FASTTEXT_EPOCHS epochs over the rows (2,615 steps of 64) that
  // fastText's figure covers (its time includes its start); a few hundred steps would be mostly the first steps' warm-up
  // (rows coming into the caches: 5–12 ms a step against 1–1.5 ms later).
  const ngSteps = flag(args, 'ngram-steps', Math.ceil((FASTTEXT_EPOCHS * examples.length) / 64));
  const cache = CacheReader.open(cacheDir);
  const rng = new Rng(1);
  const kd = getMethod('kd');
  const options = kd.parse({ lambda: 0.5, tau: 2 });
  const batchRows = (size: number) => Int32Array.from({ length: size }, () => rng.int(examples.length));

  // n-gram student with its defaults, batch 64: its word vocabulary, bigrams hashed from the ids.
  const wordTok = TextTokenizer.trainWordLevel(
    examples.map((e) => e.text),
    { vocabSize: NGRAM_DEFAULTS.vocab!, maxLength: NGRAM_MAX_TOKENS },
  );
  const ngCfg: NgramStudentConfig = {
    vocabSize: wordTok.vocabSize,
    buckets: NGRAM_DEFAULTS.buckets!,
    maxLength: NGRAM_MAX_TOKENS,
    dim: NGRAM_DEFAULTS.dim!,
    hidden: 0,
    dropout: 0,
  };
  const ngRows = ngCfg.vocabSize + ngCfg.buckets;
  // kd train's loss (its terms as metrics, and the host form the host trainer computes it with; the ORT steps run its graph).
  const loss = (): LossDefinition => trainingGraphs(ngramStudent(ngCfg, 2), kd, options, 2).loss;
  const features = (await wordTok.encode(examples.map((e) => e.text))).map((e) => ngramFeatureIds(e.ids, ngCfg));
  const ngModel = { model: ngramStudent(ngCfg, 2), loss: loss(), optimizer: { kind: 'adamw', lr: 5e-3 } as const, seed: 1 };
  // As kd train feeds a step: the run's cached rows read once before training (cache.read of every row), each step's
  // teacher logits and λ from the method's feeds, its labels as a BigInt64 tensor.
  const every = Int32Array.from({ length: examples.length }, (_, i) => i);
  const cachedAll = cache.read(every);
  const bound = kd.create(options, {
    classes: 2,
    teacherLogits: cachedAll.logits,
    embedding: null,
    dim: 0,
    weight: null,
    bias: null,
    pca: null,
    labels: cachedAll.labels,
    seed: 1,
  });
  const methodFeeds = (rows: Int32Array) => ({
    labels: new ort.Tensor(
      'int64',
      BigInt64Array.from(rows, (r) => BigInt(cachedAll.labels[r]!)),
      [rows.length],
    ),
    ...bound.feeds(rows, { progress: 0.5, epoch: 1 }),
  });
  // The ids and mask as kd train feeds its trainer: int32 for the host trainer, int64 for the ONNX Runtime step.
  const ngBatch = (size: number, type: 'int64' | 'int32' = 'int64') => {
    const rows = batchRows(size);
    return {
      rows,
      feeds: {
        ...ngramFeeds(
          Array.from(rows, (r) => features[r]!),
          type,
        ),
        ...methodFeeds(rows),
      },
    };
  };
  /**
   * What reading a batch's rows from the cache file at random would cost against a step (`secondsPerStep`): kd train
   * reads them once before training, so this is not in the examples/s; it is what a per-step reader would add.
   */
  const cacheReadShare = (size: number, secondsPerStep: number) => {
    const batches = Array.from({ length: 200 }, () => batchRows(size));
    const t0 = performance.now();
    for (const rows of batches) cache.read(rows);
    return (performance.now() - t0) / 1000 / batches.length / secondsPerStep;
  };
  /** Examples per second of `trainer` over `steps` steps of batch 64, as kd train feeds them. */
  const ngramThroughput = async (trainer: StepTrainer) => {
    const type = trainer instanceof BagTrainer ? 'int32' : 'int64';
    for (let i = 0; i < 10; i++) await trainer.step(ngBatch(64, type).feeds);
    const t0 = performance.now();
    for (let i = 0; i < ngSteps; i++) await trainer.step(ngBatch(64, type).feeds);
    const seconds = (performance.now() - t0) / 1000;
    await trainer.dispose();
    return { eps: (ngSteps * 64) / seconds, readShare: cacheReadShare(64, seconds / ngSteps) };
  };
  // The host trainer (kd train's default for this student) and the ONNX Runtime step it replaced.
  const ngHost = await ngramThroughput(await BagTrainer.create({ ...ngModel, bag: ngramBag(ngCfg)! }));
  const ngOrt = await ngramThroughput(await Trainer.create(ngModel));
  const ngRead = ngHost.readShare;

  // Peer batches for tfjs: the same features, labels and teacher logits.
  const peerBatches = Array.from({ length: 20 }, () => {
    const b = ngBatch(64);
    const width = Math.max(1, ...Array.from(b.rows, (r) => features[r]!.length));
    const ids: number[] = [];
    const mask: number[] = [];
    for (const r of b.rows) for (let k = 0; k < width; k++) (ids.push(features[r]![k] ?? 0), mask.push(k < features[r]!.length ? 1 : 0));
    const labels = Array.from(b.rows, (r) => cachedAll.labels[r]!);
    const teacher = Array.from(b.rows).flatMap((r) => [cachedAll.logits[2 * r]!, cachedAll.logits[2 * r + 1]!]);
    return { ids, mask, width, labels, teacher };
  });
  const batchesFile = join(dir, 'ngram-batches.json');
  writeFileSync(batchesFile, JSON.stringify({ buckets: ngRows, dim: ngCfg.dim, classes: 2, tau: 2, batches: peerBatches }));
  const worker = fileURLToPath(new URL('./engine-tfjs.js', import.meta.url));
  const ngPeer = await runNodeChild(worker, ['ngram-kd', String(Math.max(5, Math.round(steps / 10))), batchesFile]);
  const ngTorch = torchPeer('ngram-kd', Math.max(20, Math.round(steps / 2)), batchesFile);
  const ft = fasttextPeer(
    examples.map((e) => e.text),
    examples.map(
      (e) => requireLabel(e, { needs: 'the training benchmark', why: 'fastText learns labels', instead: 'use a labelled split' }).label,
    ),
    dir,
  );

  // Transformer student (1 layer, hidden 64), batch 32, tweets padded per batch.
  const tok = TextTokenizer.trainWordPiece(
    examples.map((e) => e.text),
    { vocabSize: 8192, maxLength: 64 },
  );
  const enc = await tok.encode(examples.map((e) => e.text));
  const trCfg = { layers: 1, hidden: 64, heads: 2, intermediate: 256, maxLength: 64, vocabSize: tok.vocabSize, dropout: 0.1 };
  // As `kd train` runs it: several optimizer steps per ONNX Runtime call ('auto').
  const trTrainer = await Trainer.create({
    model: transformerStudent(trCfg, 2),
    loss: loss(),
    optimizer: { kind: 'adamw', lr: 1e-3 },
    seed: 1,
    stepsPerCall: 'auto',
  });
  const perCall = trTrainer.stepsPerCall;
  const trGroup = () => Array.from({ length: perCall }, trBatch);
  let tokens = 0;
  const trBatch = () => {
    const rows = batchRows(32);
    const b = tok.pad(Array.from(rows, (r) => enc[r]!));
    tokens += b.length;
    return { ...tokenFeeds(b), ...methodFeeds(rows) };
  };
  for (let i = 0; i < 2; i++) await trTrainer.steps(trGroup());
  tokens = 0;
  const trCalls = Math.max(3, Math.round(steps / 4 / perCall));
  const trSteps = trCalls * perCall;
  const t0 = performance.now();
  for (let i = 0; i < trCalls; i++) await trTrainer.steps(trGroup());
  const trSeconds = (performance.now() - t0) / 1000;
  const trReadShare = cacheReadShare(32, trSeconds / trSteps);
  await trTrainer.dispose();
  cache.close();
  const meanLen = Math.round(tokens / trSteps);
  const trPeerConfig = JSON.stringify({
    vocab: tok.vocabSize,
    hidden: 64,
    layers: 1,
    heads: 2,
    intermediate: 256,
    seq: meanLen,
    batch: 32,
    classes: 2,
    dropout: 0.1,
  });
  const trPeer = await runNodeChild(worker, ['transformer-kd', String(Math.max(3, Math.round(trSteps / 5))), trPeerConfig]);
  const trTorch = torchPeer('transformer-kd', Math.max(10, Math.round(trSteps / 2)), trPeerConfig);

  const ngEps = ngHost.eps;
  const trEps = (trSteps * 32) / trSeconds;
  const result = {
    bench: 'train',
    ngram_examples_per_s: Math.round(ngEps),
    ngram_steps: ngSteps,
    ngram_trainer: 'host',
    ngram_ort_examples_per_s: Math.round(ngOrt.eps),
    ngram_ratio_host_vs_ort: Number((ngEps / ngOrt.eps).toFixed(2)),
    ngram_tfjs_examples_per_s: Math.round(64 / Number(ngPeer.result.secondsPerStep)),
    ngram_ratio_vs_tfjs: Number((ngEps / (64 / Number(ngPeer.result.secondsPerStep))).toFixed(2)),
    ngram_cache_read_share: Number(ngRead.toFixed(4)),
    transformer_steps_per_call: perCall,
    transformer_examples_per_s: Math.round(trEps),
    transformer_tfjs_examples_per_s: Number((32 / Number(trPeer.result.secondsPerStep)).toFixed(1)),
    transformer_ratio_vs_tfjs: Number((trEps / (32 / Number(trPeer.result.secondsPerStep))).toFixed(2)),
    transformer_cache_read_share: Number(trReadShare.toFixed(4)),
    transformer_mean_padded_length: meanLen,
    tfjs_backend: ngPeer.result.backend,
    ngram_pytorch_examples_per_s: 'skipped' in ngTorch ? null : Math.round(ngTorch.batch / ngTorch.secondsPerStep),
    ngram_ratio_vs_pytorch: 'skipped' in ngTorch ? null : Number((ngEps / (ngTorch.batch / ngTorch.secondsPerStep)).toFixed(2)),
    transformer_pytorch_examples_per_s: 'skipped' in trTorch ? null : Math.round(trTorch.batch / trTorch.secondsPerStep),
    transformer_ratio_vs_pytorch: 'skipped' in trTorch ? null : Number((trEps / (trTorch.batch / trTorch.secondsPerStep)).toFixed(2)),
    pytorch: 'skipped' in ngTorch ? `skipped: ${ngTorch.skipped}` : ngTorch.torch,
    ngram_fasttext_examples_per_s: 'skipped' in ft ? null : Math.round(ft.examplesPerS),
    ngram_ratio_vs_fasttext: 'skipped' in ft ? null : Number((ngEps / ft.examplesPerS).toFixed(2)),
    fasttext:
      'skipped' in ft
        ? `skipped: ${ft.skipped}`
        : `0.9 (CE, ${examples.length} rows × ${ft.epochs} epochs in ${ft.seconds.toFixed(2)} s, the fastest of ` +
          `${ft.runs.map((x) => x.toFixed(2)).join(', ')} s)`,
  };
  log(
    `n-gram student (${ngCfg.vocabSize} words + ${ngCfg.buckets} buckets × ${ngCfg.dim}, batch 64, kd loss, ${ngSteps} steps): ` +
      `kd ${result.ngram_examples_per_s} ex/s (host trainer; ONNX Runtime step ${result.ngram_ort_examples_per_s}, ` +
      `${result.ngram_ratio_host_vs_ort}×) vs tfjs-${result.tfjs_backend} ` +
      `${result.ngram_tfjs_examples_per_s} ex/s (${result.ngram_ratio_vs_tfjs}×), ` +
      `${torchNote(result.ngram_pytorch_examples_per_s, result.ngram_ratio_vs_pytorch, ngTorch)}, ` +
      ('skipped' in ft
        ? `fastText skipped (${ft.skipped})`
        : `fastText ${result.ngram_fasttext_examples_per_s} ex/s (${result.ngram_ratio_vs_fasttext}×)`) +
      '; ' +
      `a per-step cache read would add ${(100 * result.ngram_cache_read_share).toFixed(2)}% (kd train reads the cache once)`,
  );
  rmSync(dir, { recursive: true, force: true });
  log(
    `transformer student (1 layer, hidden 64, batch 32, ~${meanLen} tokens, ${perCall} steps per call): kd ` +
      `${result.transformer_examples_per_s} ex/s vs tfjs ${result.transformer_tfjs_examples_per_s} ex/s ` +
      `(${result.transformer_ratio_vs_tfjs}×), ` +
      `${torchNote(result.transformer_pytorch_examples_per_s, result.transformer_ratio_vs_pytorch, trTorch)}; ` +
      `a per-step cache read would add ${(100 * result.transformer_cache_read_share).toFixed(2)}%`,
  );
  return result;
}

function torchNote(eps: number | null, ratio: number | null, peer: { torch: string } | { skipped: string }): string {
  return 'skipped' in peer ? `PyTorch skipped (${peer.skipped})` : `PyTorch ${peer.torch} ${eps} ex/s (${ratio}×)`;
}
