// `kd data split`: deterministic stratified train/dev/test JSONL with duplicates removed.
import { Command } from 'commander';
import { splitDataset, SPLIT_NAMES } from '../data/split.js';
import { dataOptions, numberOption, printJsonLine, toReadOptions, type DataCliOptions } from './common.js';

export function dataSplitCommand(): Command {
  const cmd = new Command('split')
    .description(
      'split into train/dev/test JSONL by a seeded hash of each id, stratified by label, duplicate ids removed; ' +
        'unlabelled rows all go to train (dev and test measure, so they need labels)',
    )
    .argument('<file...>', 'data files; duplicates across them are removed by id (first occurrence kept)')
    .requiredOption('--out <dir>', 'output folder (train.jsonl, dev.jsonl, test.jsonl, rejects.jsonl, split.json)')
    .option('--dev <fraction>', 'fraction of each class for dev', '0.1')
    .option('--test <fraction>', 'fraction of each class for test', '0.1')
    .option('--seed <n>', 'seed of the id hash', '13')
    .option('--limit <n>', 'keep a seeded random subset of N unique examples (quick runs)')
    .option('--json', 'print the split manifest as the last line of stdout');
  for (const o of dataOptions()) cmd.addOption(o);
  return cmd.action(
    async (
      files: string[],
      opts: DataCliOptions & { out: string; dev: string; test: string; seed: string; limit?: string; json?: boolean },
    ) => {
      const manifest = await splitDataset(files, {
        ...toReadOptions(opts),
        out: opts.out,
        dev: numberOption('dev', opts.dev, { min: 0, max: 1 }),
        test: numberOption('test', opts.test, { min: 0, max: 1 }),
        seed: numberOption('seed', opts.seed, { integer: true }),
        ...(opts.limit !== undefined ? { limit: numberOption('limit', opts.limit, { integer: true, min: 1 }) } : {}),
      });
      const lines = SPLIT_NAMES.map(
        (s) =>
          `${s}: ${Object.values(manifest.counts[s]).reduce((a, b) => a + b, 0) + manifest.unlabeled[s]} (${Object.entries(
            manifest.counts[s],
          )
            .map(([k, v]) => `${k} ${v}`)
            .join(', ')}${manifest.unlabeled[s] ? `, unlabelled ${manifest.unlabeled[s]}` : ''})`,
      );
      process.stdout.write(
        `${manifest.unique} unique examples from ${files.length} file(s); ${manifest.duplicatesRemoved} duplicate ids removed; ` +
          `${manifest.read.skipped.malformed} malformed rows in ${opts.out}/rejects.jsonl\n${lines.join('\n')}\nwritten to ${opts.out}\n`,
      );
      if (opts.json) printJsonLine(manifest);
    },
  );
}
