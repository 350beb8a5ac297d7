// `kd teacher predict | eval | train`: run any HF-layout ONNX classifier, measure it, or
// train the default teacher.
import { OptionError } from '../errors.js';
import { Command, Option } from 'commander';
import type { Teacher } from '../teacher/teacher.js';
import { loadTeacher as loadQuantizableTeacher, TEACHER_PRECISIONS, type TeacherQuantize } from '../quantize/teacher.js';
import { softmaxRow } from '../util/stats.js';
import { DatasetReader } from '../data/read.js';
import { LABEL_NAMES } from '../data/labels.js';
import { ConfigError, requireLabel } from '../data/errors.js';
import { EVAL_NEEDS_LABELS } from '../eval/evaluate.js';
import { accuracyReport, argmaxRow } from '../eval/metrics.js';
import type { SessionOptions } from '../engine/session.js';
import { Progress } from '../util/progress.js';
import {
  batchTokensOption,
  dataOptions,
  numberOption,
  printJsonLine,
  sessionOptions,
  toReadOptions,
  usesDevice,
  type DataCliOptions,
} from './common.js';
import { teacherTrainCommand } from './teacher-train.js';

interface TeacherCliOptions {
  model: string;
  quantized?: boolean;
  embeddingOutput?: string;
  maxLength?: string;
  batchTokens?: string;
  graphOptimization: boolean;
  quantize: TeacherQuantize;
  minAgreement?: string;
  recheckMargin?: string;
}

/** --quantize, --min-agreement and --recheck-margin, shared with kd cache build. */
export function quantizeOptions(cmd: Command): Command {
  return cmd
    .addOption(
      new Option('--quantize <dtype>', 'run the teacher in int8: onnx/model.onnx quantized at load, checked against fp32')
        .choices([...TEACHER_PRECISIONS])
        .default('none'),
    )
    .option('--min-agreement <x>', 'with --quantize int8: the least argmax agreement with fp32 on the check texts (default 0.99)')
    .option(
      '--recheck-margin <x>',
      'with --quantize int8: recompute in fp32 the texts whose int8 logit margin is under x; auto (default): the mean ' +
        'margin change on the check texts; 0: none',
    );
}

/** The options --quantize, --min-agreement and --recheck-margin give loadTeacher. */
export function quantizeLoadOptions(o: { quantize: TeacherQuantize; minAgreement?: string; recheckMargin?: string }) {
  return {
    quantize: o.quantize,
    ...(o.minAgreement !== undefined ? { minAgreement: numberOption('min-agreement', o.minAgreement, { min: 0, max: 1 }) } : {}),
    ...(o.recheckMargin !== undefined ? { recheckMargin: recheckMarginOption(o.recheckMargin) } : {}),
  };
}

/** --recheck-margin: 'auto' or a number ≥ 0. */
function recheckMarginOption(value: string): number | 'auto' {
  if (value === 'auto') return 'auto';
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0)
    throw new OptionError(`'--recheck-margin' must be auto or a number ≥ 0, got ${JSON.stringify(value)}`);
  return n;
}

/** What a --json line says about the teacher's precision (and, in int8, how many texts were recomputed in fp32). */
export function precisionSummary(teacher: Teacher) {
  return {
    precision: teacher.precision,
    ...(teacher.precisionCheck ? { int8Check: teacher.precisionCheck, recomputedFp32: teacher.recomputedRows } : {}),
  };
}

function teacherOptions(cmd: Command): Command {
  cmd
    .requiredOption('--model <dir>', 'teacher folder (config.json, tokenizer.json, onnx/model.onnx)')
    .option('--quantized', 'use onnx/model_quantized.onnx')
    .option('--embedding-output <name>', 'tensor to expose as the embedding when it cannot be found automatically')
    .option('--max-length <n>', 'truncate inputs to this many tokens')
    .option('--batch-tokens <n>', 'tokens per batch (batch size × padded length; default 2048 on CPU, 16384 on a GPU)')
    .option(
      '--no-graph-optimization',
      'run the graph as exported (default: compute only what the logits and embedding need, checked against the original)',
    );
  return usesDevice(quantizeOptions(cmd));
}

async function loadTeacher(o: TeacherCliOptions, session: SessionOptions): Promise<Teacher> {
  return loadQuantizableTeacher(o.model, {
    session,
    ...quantizeLoadOptions(o),
    ...(o.quantized ? { quantized: true } : {}),
    ...(o.embeddingOutput ? { embeddingOutput: o.embeddingOutput } : {}),
    ...(o.maxLength ? { maxLength: numberOption('max-length', o.maxLength, { integer: true, min: 2 }) } : {}),
    optimize: o.graphOptimization,
  });
}

function predictCommand(): Command {
  const cmd = teacherOptions(new Command('predict').description('logits and predicted labels for texts'));
  return cmd
    .requiredOption('--text <text...>', 'texts to classify (repeat --text or pass several)')
    .option('--json', 'print a JSON summary as the last line of stdout')
    .action(async (o: TeacherCliOptions & { text: string[]; json?: boolean }) => {
      const teacher = await loadTeacher(o, sessionOptions(cmd));
      try {
        const out = await teacher.predict(o.text, batchTokensOption(o.batchTokens));
        const C = out.classes;
        const labels: string[] = [];
        const scores: number[] = [];
        const logits: number[][] = [];
        o.text.forEach((text, i) => {
          const probs = softmaxRow(out.logits, i * C, C);
          const k = argmaxRow(out.logits, i * C, C);
          labels.push(teacher.labels[k]!);
          scores.push(probs[k]!);
          logits.push(Array.from(out.logits.subarray(i * C, (i + 1) * C)));
          process.stdout.write(`${teacher.labels[k]} ${probs[k]!.toFixed(4)}\t${text}\n`);
        });
        if (o.json) {
          printJsonLine({
            labels,
            scores,
            logits,
            embeddingDim: out.dim,
            classifier: { rows: teacher.head.rows, cols: teacher.head.cols, found: teacher.head.description },
            device: teacher.device,
            graphOptimization: teacher.optimization,
            ...precisionSummary(teacher),
          });
        }
      } finally {
        await teacher.dispose();
      }
    });
}

/** Maps the teacher's class names onto the dataset's (by name, case-insensitive; else by index). */
export function classMapping(teacherLabels: readonly string[], datasetLabels: readonly string[]): { map: number[]; byName: boolean } {
  const lower = teacherLabels.map((l) => l.toLowerCase());
  const map = datasetLabels.map((d) => lower.indexOf(d.toLowerCase()));
  if (map.every((m) => m >= 0)) return { map, byName: true };
  if (teacherLabels.length !== datasetLabels.length) {
    throw new ConfigError(
      `the teacher's classes (${teacherLabels.join(', ')}) do not match the data's (${datasetLabels.join(', ')}) by name or by ` +
        `count: use a teacher trained for these classes, or pick --classes / --label-map to match its id2label`,
    );
  }
  return { map: datasetLabels.map((_, i) => i), byName: false };
}

/** One line of `kd teacher eval`: accuracy with its interval, n and macro-F1. */
function accuracyLine(report: ReturnType<typeof accuracyReport>): string {
  return (
    `accuracy ${(100 * report.accuracy).toFixed(2)}% (95% CI ` +
    `${(100 * report.interval95.low).toFixed(2)}–${(100 * report.interval95.high).toFixed(2)}), n = ${report.n}, macro-F1 ` +
    `${report.macroF1.toFixed(4)}`
  );
}

function evalCommand(): Command {
  const cmd = teacherOptions(
    new Command('eval').description("the teacher's accuracy on a dataset: one row per data file, then all of them"),
  )
    .requiredOption('--data <file...>', 'labelled data files (each gets its own row)')
    .option('--limit <n>', 'evaluate the first N rows of each file')
    .option('--json', 'print a JSON summary as the last line of stdout');
  for (const opt of dataOptions()) cmd.addOption(opt);
  return cmd.action(async (o: TeacherCliOptions & DataCliOptions & { data: string[]; limit?: string; json?: boolean }) => {
    const read = toReadOptions(o);
    const texts: string[] = [];
    const gold: number[] = [];
    const limit = o.limit ? numberOption('limit', o.limit, { integer: true, min: 1 }) : Infinity;
    // Each file is read on its own, so its rows are a contiguous range: [starts[f], starts[f + 1]).
    const starts: number[] = [];
    for (const file of o.data) {
      starts.push(texts.length);
      let taken = 0;
      for await (const ex of new DatasetReader([file], read)) {
        if (taken++ >= limit) break;
        texts.push(ex.text);
        gold.push(requireLabel(ex, { ...EVAL_NEEDS_LABELS, needs: 'kd teacher eval' }).label);
      }
    }
    starts.push(texts.length);
    const teacher = await loadTeacher(o, sessionOptions(cmd));
    try {
      const datasetLabels = LABEL_NAMES[read.classes];
      const { map, byName } = classMapping(teacher.labels, datasetLabels);
      if (!byName)
        process.stderr.write(`warning: teacher labels ${teacher.labels.join(', ')} matched to ${datasetLabels.join(', ')} by position\n`);
      const progress = new Progress('teacher', { unit: 'texts', total: texts.length });
      const t0 = performance.now();
      const out = await teacher.predict(texts, { ...batchTokensOption(o.batchTokens), onProgress: (d) => progress.update(d) });
      progress.finish();
      const seconds = (performance.now() - t0) / 1000;
      const C = out.classes;
      const predicted = gold.map((_, i) => {
        let best = 0;
        for (let c = 1; c < datasetLabels.length; c++) if (out.logits[i * C + map[c]!]! > out.logits[i * C + map[best]!]!) best = c;
        return best;
      });
      const report = accuracyReport(gold, predicted, datasetLabels.length);
      const perFile = o.data.map((file, f) => ({
        data: file,
        ...accuracyReport(gold.slice(starts[f], starts[f + 1]), predicted.slice(starts[f], starts[f + 1]), datasetLabels.length),
      }));
      const speed = `${(texts.length / seconds).toFixed(1)} texts/s on ${teacher.device}`;
      if (o.data.length === 1) process.stdout.write(`${accuracyLine(report)}; ${speed}\n`);
      else {
        const width = Math.max(...o.data.map((f) => f.length), 3);
        for (const row of perFile) process.stdout.write(`${row.data.padEnd(width)}  ${accuracyLine(row)}\n`);
        process.stdout.write(`${'all'.padEnd(width)}  ${accuracyLine(report)}; ${speed}\n`);
      }
      if (o.json)
        printJsonLine({
          model: o.model,
          data: o.data,
          ...report,
          perFile,
          labels: datasetLabels,
          textsPerSecond: texts.length / seconds,
          device: teacher.device,
          graphOptimization: teacher.optimization,
          ...precisionSummary(teacher),
        });
    } finally {
      await teacher.dispose();
    }
  });
}

export function teacherCommand(): Command {
  const teacher = new Command('teacher').description('run, evaluate or train a teacher');
  teacher.addCommand(predictCommand());
  teacher.addCommand(evalCommand());
  teacher.addCommand(teacherTrainCommand());
  return teacher;
}
