// `kd teacher train`: the default teacher, trained from scratch and exported in the HF layout.
import { Command } from 'commander';
import { resolveTeacherConfig, type DefaultTeacherConfig, type MemberConfig } from '../teacher/default-config.js';
import { trainDefaultTeacher } from '../teacher/default-train.js';
import { LEXICON_NAMES, parseLexiconList } from '../teacher/lexicon-data.js';
import { dataOptions, numberOption, printJsonLine, sessionOptions, toReadOptions, usesDevice, type DataCliOptions } from './common.js';

const NUMERIC: [keyof (DefaultTeacherConfig & MemberConfig), string, boolean][] = [
  ['layers', 'layers', true],
  ['hidden', 'hidden', true],
  ['heads', 'heads', true],
  ['intermediate', 'intermediate', true],
  ['maxLength', 'max-length', true],
  ['vocabSize', 'vocab-size', true],
  ['wideDim', 'wide-dim', true],
  ['bigramBuckets', 'bigram-buckets', true],
  ['dropout', 'dropout', false],
  ['epochs', 'epochs', true],
  ['batchSize', 'batch-size', true],
  ['lr', 'lr', false],
  ['weightDecay', 'weight-decay', false],
  ['patience', 'patience', true],
  ['evalEvery', 'eval-every', true],
  ['seed', 'seed', true],
  ['devFraction', 'dev-fraction', false],
];

function camel(flag: string): string {
  return flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

export function teacherTrainCommand(): Command {
  const cmd = new Command('train')
    .description(
      'train the default teacher (an ensemble of BERT-style encoders, a word-piece n-gram bag and sentiment lexicons) from scratch ' +
        'and export it in the Hugging Face layout',
    )
    .requiredOption('--data <file...>', 'training data (a dev split is held out unless --dev is given)')
    .option('--dev <file...>', 'dev data for early stopping')
    .option(
      '--tune <file...>',
      'labelled files (e.g. human-labelled sentences) the ensemble weights, lexicon rows and bias are fitted on instead of dev; ' +
        '`dev` stands for the dev rows. No member trains on them',
    )
    .option('--lexicons <names>', `lexicon members, comma-separated (${LEXICON_NAMES.join(', ')}), or none; default: the preset's`)
    .option('--pretrain-data <file...>', 'extra unlabeled text for masked-language-model pretraining')
    .option('--no-pretrain', 'skip masked-language-model pretraining')
    .requiredOption('--out <dir>', 'output folder (becomes a teacher folder: config.json, tokenizer.json, onnx/model.onnx)')
    .option('--preset <name>', 'base (default), large (two encoders, 4–5× the time), tiny (tests), or a JSON file of settings', 'base')
    .option('--limit <n>', 'use the first N training rows')
    .option('--max-steps <n>', 'stop after N optimizer steps')
    .option('--resume', 'continue from <out>/training/last.safetensors')
    .option('--json', 'print a JSON summary as the last line of stdout');
  for (const [, flag] of NUMERIC) cmd.option(`--${flag} <value>`, `override the preset's ${flag} (member settings apply to every member)`);
  for (const o of dataOptions()) cmd.addOption(o);
  return usesDevice(cmd).action(async (o: DataCliOptions & Record<string, string | boolean | string[] | undefined>) => {
    const overrides: Partial<DefaultTeacherConfig & MemberConfig> = {};
    for (const [key, flag, integer] of NUMERIC) {
      const v = o[camel(flag)];
      if (typeof v === 'string') (overrides as Record<string, number>)[key] = numberOption(flag, v, { integer, min: 0 });
    }
    const config = resolveTeacherConfig(o.preset as string, overrides);
    if (o.pretrain === false) config.pretrain = null;
    if (typeof o.lexicons === 'string') config.lexicons = parseLexiconList(o.lexicons);
    const result = await trainDefaultTeacher({
      trainFiles: o.data as string[],
      ...(o.dev ? { devFiles: o.dev as string[] } : {}),
      ...(o.tune ? { tuneFiles: o.tune as string[] } : {}),
      ...(o.pretrainData ? { pretrainFiles: o.pretrainData as string[] } : {}),
      read: toReadOptions(o),
      out: o.out as string,
      config,
      ...(o.resume ? { resume: true } : {}),
      session: sessionOptions(cmd),
      ...(typeof o.limit === 'string' ? { limit: numberOption('limit', o.limit, { integer: true, min: 1 }) } : {}),
      ...(typeof o.maxSteps === 'string' ? { maxSteps: numberOption('max-steps', o.maxSteps, { integer: true, min: 1 }) } : {}),
      log: (line) => process.stderr.write(`${line}\n`),
    });
    const seconds = result.members.reduce((s, m) => s + m.loop.secondsTraining, 0);
    process.stdout.write(
      `teacher written to ${result.out}: ${result.parameters} parameters, ${result.members.length} member(s) (dev ` +
        `${result.members.map((m) => `${(100 * m.devAccuracy).toFixed(2)}%`).join(', ')}), ensemble dev accuracy ` +
        `${(100 * result.devAccuracy).toFixed(2)}% (${result.devRows} rows), trained in ${seconds.toFixed(0)}s\n`,
    );
    if (o.json) printJsonLine({ ...result, config });
  });
}
