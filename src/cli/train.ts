// `kd train`: train a student from a teacher-output cache with one distillation method.
import { Command, Option } from 'commander';
import { OptionError } from '../errors.js';
import { METHODS, methodFlags } from '../distill/registry.js';
import { trainStudentSeeds, TRAINER_KINDS, type StudentRunOptions, type TrainerKind } from '../train/student-run.js';
import { getStudent, STUDENTS } from '../student/registry.js';
import { Student } from '../student/runtime.js';
import { softmaxRow } from '../util/stats.js';
import { argmaxRow } from '../eval/metrics.js';
import { FORMATS, type Format } from '../data/formats/types.js';
import { dataOptions, numberOption, printJsonLine, sessionOptions, toReadOptions, usesDevice, type DataCliOptions } from './common.js';

/** `ngram 5, transformer 4`: a training default of each student, for the help text. */
const perStudent = (key: 'epochs' | 'batchSize' | 'lr') =>
  Object.values(STUDENTS)
    .map((st) => `${st.name} ${st.defaults[key]}`)
    .join(', ');

/** Commander's property name for a flag (`max-length` → `maxLength`). */
const camel = (flag: string) => flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

export function trainCommand(): Command {
  const cmd = new Command('train')
    .description('train a student from cached teacher outputs (training never runs the teacher)')
    .requiredOption('--cache <dir>', 'teacher-output cache (kd cache build)')
    .requiredOption('--train <file...>', 'training data (every row must be in the cache)')
    .requiredOption('--dev <file...>', 'dev data for early stopping')
    .option('--test <file...>', 'test data, evaluated once with the best checkpoint')
    .option('--transfer <file...>', "transfer set: rows learnt from the teacher's targets alone (labels unused); must be in the cache")
    .addOption(
      new Option('--transfer-format <format>', 'format of the --transfer files (default: as --format)').choices([...FORMATS, 'auto']),
    )
    .option('--transfer-ratio <x>', 'share of transfer rows in each batch, in (0, 1) (default: their share of all rows)')
    .addOption(new Option('--student <kind>', 'student architecture').choices(Object.keys(STUDENTS)).default('ngram'))
    .addOption(new Option('--loss <method>', 'distillation method').choices(Object.keys(METHODS)).default('kd'))
    .requiredOption('--out <dir>', 'run folder')
    .option('--seeds <list>', 'comma-separated seeds; each runs in <out>/seed-<n>', '13')
    .option('--epochs <n>', `epochs (default: ${perStudent('epochs')})`)
    .option('--batch-size <n>', `batch size (default: ${perStudent('batchSize')})`)
    .option('--lr <x>', `peak learning rate (default: ${perStudent('lr')})`)
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
    .option('--tokenizer <dir>', "transformer, ngram: use this folder's tokenizer.json (e.g. the teacher's) instead of their own")
    .addOption(
      new Option('--trainer <kind>', 'host: the JavaScript n-gram trainer; ort: the ONNX Runtime step; auto: host where it applies')
        .choices([...TRAINER_KINDS])
        .default('auto'),
    )
    .option('--no-quantize', 'export without the int8 onnx/model_quantized.onnx (transformers.js default q8; see kd quantize)')
    .option('--json', 'print the seed summary as the last line of stdout');
  // Each student's architecture flags, with its defaults (src/student/*.ts).
  for (const st of Object.values(STUDENTS))
    for (const opt of st.options) cmd.option(`--${opt.flag} <n>`, opt.help, String(st.defaults[opt.key]));
  // Each method's options (declared in src/distill/methods/*.ts); unset ones take the method's default.
  for (const f of methodFlags()) cmd.option(f.negated ? `--no-${f.flag}` : `--${f.flag} <value>`, f.help);
  for (const o of dataOptions()) cmd.addOption(o);
  return usesDevice(cmd).action(async (o: DataCliOptions & Record<string, string | boolean | string[] | undefined>) => {
    const student = getStudent(o.student as string);
    const defaults = student.defaults;
    refuseOtherStudentsFlags(cmd, student.name);
    const int = (name: string, v: unknown, min = 0) => numberOption(name, String(v), { integer: true, min });
    const lossOptions: Record<string, unknown> = {};
    for (const f of methodFlags()) {
      const v = o[f.key];
      // A negated flag's property is true unless given: only `--no-<flag>` is passed on.
      if (f.negated ? v === false : v !== undefined) lossOptions[f.key] = v;
    }
    const seeds = String(o.seeds)
      .split(',')
      .map((s) => numberOption('seeds', s.trim(), { integer: true }));
    const run: StudentRunOptions = {
      cache: o.cache as string,
      train: o.train as string[],
      dev: o.dev as string[],
      ...(o.test ? { test: o.test as string[] } : {}),
      ...(o.transfer ? { transfer: o.transfer as string[] } : {}),
      ...(o.transferFormat ? { transferFormat: o.transferFormat as Format | 'auto' } : {}),
      ...(o.transferRatio !== undefined
        ? { transferRatio: numberOption('transfer-ratio', String(o.transferRatio), { min: 0, max: 1 }) }
        : {}),
      read: toReadOptions(o),
      student: student.name,
      settings: Object.fromEntries(student.options.map((opt) => [opt.key, int(opt.flag, o[camel(opt.flag)], opt.min)])),
      ...(o.tokenizer ? { tokenizer: o.tokenizer as string } : {}),
      loss: o.loss as string,
      lossOptions,
      epochs: int('epochs', o.epochs ?? defaults.epochs, 1),
      batchSize: int('batch-size', o.batchSize ?? defaults.batchSize, 1),
      lr: numberOption('lr', String(o.lr ?? defaults.lr), { min: 0 }),
      weightDecay: numberOption('weight-decay', String(o.weightDecay), { min: 0 }),
      warmupRatio: numberOption('warmup-ratio', String(o.warmupRatio), { min: 0, max: 1 }),
      evalEvery: int('eval-every', o.evalEvery),
      patience: int('patience', o.patience, 1),
      seed: seeds[0]!,
      out: o.out as string,
      ...(o.resume ? { resume: true } : {}),
      ...(o.verify === false ? { verifyCache: false } : {}),
      ...(o.quantize === false ? { quantize: false } : {}),
      ...(o.limit !== undefined ? { limit: int('limit', o.limit, 1) } : {}),
      session: sessionOptions(cmd),
      trainer: o.trainer as TrainerKind,
      log: (l) => process.stderr.write(`${l}\n`),
    };
    const { runs, summary } = await trainStudentSeeds(run, seeds);
    const pct = (x: number) => (100 * x).toFixed(2);
    for (const r of runs) {
      const test = r.test ? `, test ${pct(r.test.accuracy)}% (95% CI ${pct(r.test.interval95.low)}–${pct(r.test.interval95.high)})` : '';
      process.stdout.write(`seed ${r.seed}: dev ${pct(r.dev.accuracy)}%${test}, ${r.loop.steps} steps\n`);
    }
    const s = summary.test ?? summary.dev;
    process.stdout.write(
      `${student.name}/${run.loss} over ${seeds.length} seed(s): ${summary.test ? 'test' : 'dev'} ${pct(s.mean)} ± ${pct(s.std)}% ` +
        `(95% CI of the mean ${pct(s.ci95[0])}–${pct(s.ci95[1])}); models in ${run.out}/seed-*/model\n`,
    );
    if (o.json)
      printJsonLine({
        student: student.name,
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
  return usesDevice(cmd).action(async (o: { model: string; text: string[]; json?: boolean }) => {
    const student = await Student.load(o.model, sessionOptions(cmd));
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

/** A flag of another student given on the command line is a mistake, not something to ignore. */
function refuseOtherStudentsFlags(cmd: Command, chosen: string): void {
  const own = getStudent(chosen).options.map((opt) => `--${opt.flag}`);
  for (const other of Object.values(STUDENTS)) {
    if (other.name === chosen) continue;
    const given = other.options.find((opt) => cmd.getOptionValueSource(camel(opt.flag)) === 'cli');
    if (given)
      throw new OptionError(
        `'--${given.flag}' is an option of the ${other.name} student; --student ${chosen} reads ${own.join(', ')}` +
          ` (or pass --student ${other.name})`,
      );
  }
}
