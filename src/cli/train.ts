// `kd train`: train a student from a teacher-output cache with one distillation method.
import { Command, Option } from 'commander';
import { METHODS } from '../distill/registry.js';
import { trainStudentSeeds, type StudentRunOptions } from '../train/student-run.js';
import { Student } from '../student/runtime.js';
import { softmaxRow } from '../util/stats.js';
import { argmaxRow } from '../eval/metrics.js';
import { dataOptions, numberOption, printJsonLine, toReadOptions, type DataCliOptions } from './common.js';
import { deviceOptions, toSessionOptions, type DeviceCliOptions } from './teacher.js';

/** Loss options: flag name → key in the method's raw options. */
const LOSS_FLAGS: [string, string, string][] = [
  ['lambda', 'lambda', 'kd: weight of the distillation term (1−λ on CE)'],
  ['tau', 'tau', 'kd, dtkd, lelp: temperature of the teacher (and student) softmax'],
  ['lambda-schedule', 'lambdaSchedule', 'kd: constant | linear (ramp λ up from 0)'],
  ['lambda-ramp', 'lambdaRamp', 'kd: fraction of training the linear ramp takes'],
  ['kd-start', 'kdStart', 'late switch: train with CE alone for this fraction of training first'],
  ['alpha', 'alpha', 'dtkd: weight of L_dt; lelp: weight of gold-label CE'],
  ['beta', 'beta', 'dtkd: weight of the vanilla KD term; lelp: temperature of the subclass split'],
  ['warmup-epochs', 'warmupEpochs', 'dtkd: w = min(epoch / this, 1)'],
  ['dtkd-guard', 'dtkdGuard', 'dtkd: clamp (fallback + clamp to [τ/4, 4τ]) | fallback'],
  ['subclasses', 'subclasses', 'lelp: pseudo-subclasses S per class'],
  ['group-by', 'groupBy', 'lelp: gold | teacher labels group the embeddings'],
  ['lelp-variant', 'lelpVariant', 'lelp: lelp | pca | random | kmeans'],
  ['lelp-seed', 'lelpSeed', 'lelp: seed of the rotations'],
];

export function trainCommand(): Command {
  const cmd = new Command('train')
    .description('train a student from cached teacher outputs (training never runs the teacher)')
    .requiredOption('--cache <dir>', 'teacher-output cache (kd cache build)')
    .requiredOption('--train <file...>', 'training data (every row must be in the cache)')
    .requiredOption('--dev <file...>', 'dev data for early stopping')
    .option('--test <file...>', 'test data, evaluated once with the best checkpoint')
    .addOption(new Option('--student <kind>', 'student architecture').choices(['ngram', 'transformer']).default('ngram'))
    .addOption(new Option('--loss <method>', 'distillation method').choices(Object.keys(METHODS)).default('kd'))
    .requiredOption('--out <dir>', 'run folder')
    .option('--seeds <list>', 'comma-separated seeds; each runs in <out>/seed-<n>', '13')
    .option('--epochs <n>', 'epochs (default: ngram 5, transformer 4)')
    .option('--batch-size <n>', 'batch size (default: ngram 64, transformer 32)')
    .option('--lr <x>', 'peak learning rate (default: ngram 5e-3, transformer 5e-4)')
    .option('--weight-decay <x>', 'AdamW weight decay', '0.01')
    .option('--warmup-ratio <x>', 'fraction of steps of linear warm-up', '0.06')
    .option('--eval-every <n>', 'evaluate on dev every N steps (default: each epoch)', '0')
    .option('--patience <n>', 'stop after N evaluations without improvement', '3')
    .option('--limit <n>', 'use N training rows (spread over the file)')
    .option('--resume', 'continue from <out>/seed-*/training/last.safetensors')
    .option(
      '--no-verify',
      'open the cache without checking its shard checksums (one read of the cache; kd cache verify checks it separately)',
    )
    .option('--dim <n>', 'ngram: embedding width', '32')
    .option('--ngram-hidden <n>', 'ngram: hidden layer width (0 = linear)', '0')
    .option('--buckets <n>', 'ngram: hash buckets', String(1 << 18))
    .option('--layers <n>', 'transformer: layers', '2')
    .option('--hidden <n>', 'transformer: hidden size', '128')
    .option('--heads <n>', 'transformer: attention heads', '2')
    .option('--intermediate <n>', 'transformer: feed-forward size', '512')
    .option('--max-length <n>', 'transformer: max tokens', '128')
    .option('--vocab-size <n>', 'transformer: own WordPiece vocabulary size', '8192')
    .option('--tokenizer <dir>', "transformer: use this folder's tokenizer.json (e.g. the teacher's) instead of its own")
    .option('--json', 'print the seed summary as the last line of stdout');
  for (const [flag, , help] of LOSS_FLAGS) cmd.option(`--${flag} <value>`, help);
  cmd.option('--no-center', 'lelp: do not centre class rows before PCA');
  for (const o of [...dataOptions(), ...deviceOptions()]) cmd.addOption(o);
  return cmd.action(async (o: DataCliOptions & DeviceCliOptions & Record<string, string | boolean | string[] | undefined>) => {
    const student = o.student as 'ngram' | 'transformer';
    const int = (name: string, v: unknown, min = 0) => numberOption(name, String(v), { integer: true, min });
    const lossOptions: Record<string, unknown> = {};
    for (const [, key] of LOSS_FLAGS) {
      const v = o[key];
      if (v !== undefined) lossOptions[key] = v;
    }
    if (o.center === false) lossOptions.center = false;
    const seeds = String(o.seeds)
      .split(',')
      .map((s) => numberOption('seeds', s.trim(), { integer: true }));
    const session = toSessionOptions(o);
    const run: StudentRunOptions = {
      cache: o.cache as string,
      train: o.train as string[],
      dev: o.dev as string[],
      ...(o.test ? { test: o.test as string[] } : {}),
      read: toReadOptions(o),
      student,
      ngram: {
        dim: int('dim', o.dim, 1),
        hidden: int('ngram-hidden', o.ngramHidden),
        ngrams: { buckets: int('buckets', o.buckets, 2), maxN: 2, maxFeatures: 256 },
        dropout: 0,
      },
      transformer: {
        layers: int('layers', o.layers, 1),
        hidden: int('hidden', o.hidden, 1),
        heads: int('heads', o.heads, 1),
        intermediate: int('intermediate', o.intermediate, 1),
        maxLength: int('max-length', o.maxLength, 4),
        vocabSize: int('vocab-size', o.vocabSize, 16),
        dropout: 0.1,
      },
      ...(o.tokenizer ? { tokenizer: o.tokenizer as string } : {}),
      loss: o.loss as string,
      lossOptions,
      epochs: int('epochs', o.epochs ?? (student === 'ngram' ? 5 : 4), 1),
      batchSize: int('batch-size', o.batchSize ?? (student === 'ngram' ? 64 : 32), 1),
      lr: numberOption('lr', String(o.lr ?? (student === 'ngram' ? 5e-3 : 5e-4)), { min: 0 }),
      weightDecay: numberOption('weight-decay', String(o.weightDecay), { min: 0 }),
      warmupRatio: numberOption('warmup-ratio', String(o.warmupRatio), { min: 0, max: 1 }),
      evalEvery: int('eval-every', o.evalEvery),
      patience: int('patience', o.patience, 1),
      seed: seeds[0]!,
      out: o.out as string,
      ...(o.resume ? { resume: true } : {}),
      ...(o.verify === false ? { verifyCache: false } : {}),
      ...(o.limit !== undefined ? { limit: int('limit', o.limit, 1) } : {}),
      ...(session.device ? { device: session.device } : {}),
      ...(session.allowFallback ? { allowFallback: true } : {}),
      ...(session.threads ? { threads: session.threads } : {}),
      log: (l) => process.stderr.write(`${l}\n`),
    };
    const { runs, summary } = await trainStudentSeeds(run, seeds);
    const pct = (x: number) => (100 * x).toFixed(2);
    for (const r of runs)
      process.stdout.write(
        `seed ${r.seed}: dev ${pct(r.dev.accuracy)}%${r.test ? `, test ${pct(r.test.accuracy)}% (95% CI ${pct(r.test.interval95.low)}–${pct(r.test.interval95.high)})` : ''}, ${r.loop.steps} steps\n`,
      );
    const s = summary.test ?? summary.dev;
    process.stdout.write(
      `${student}/${run.loss} over ${seeds.length} seed(s): ${summary.test ? 'test' : 'dev'} ${pct(s.mean)} ± ${pct(s.std)}% (95% CI of the mean ${pct(s.ci95[0])}–${pct(s.ci95[1])}); models in ${run.out}/seed-*/model\n`,
    );
    if (o.json)
      printJsonLine({
        student,
        loss: run.loss,
        lossOptions,
        summary,
        runs: runs.map((r) => ({ seed: r.seed, dev: r.dev.accuracy, test: r.test?.accuracy ?? null, model: r.model })),
      });
  });
}

export function predictCommand(): Command {
  const cmd = new Command('predict')
    .description('classify texts with a student exported by kd train')
    .requiredOption('--model <dir>', 'student folder (<run>/seed-<n>/model)')
    .requiredOption('--text <text...>', 'texts to classify')
    .option('--json', 'print a JSON summary as the last line of stdout');
  for (const o of deviceOptions()) cmd.addOption(o);
  return cmd.action(async (o: DeviceCliOptions & { model: string; text: string[]; json?: boolean }) => {
    const student = await Student.load(o.model, toSessionOptions(o));
    try {
      const logits = await student.logits(o.text);
      const C = student.labels.length;
      const labels: string[] = [];
      const scores: number[] = [];
      o.text.forEach((t, i) => {
        const k = argmaxRow(logits, i * C, C);
        const p = softmaxRow(logits, i * C, C);
        labels.push(student.labels[k]!);
        scores.push(p[k]!);
        process.stdout.write(`${student.labels[k]} ${p[k]!.toFixed(4)}\t${t}\n`);
      });
      if (o.json)
        printJsonLine({
          labels,
          scores,
          logits: o.text.map((_, i) => Array.from(logits.subarray(i * C, (i + 1) * C))),
          kind: student.card.kind,
        });
    } finally {
      await student.dispose();
    }
  });
}
