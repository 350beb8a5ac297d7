// `kd augment`: augmented copies of data files as an unlabelled transfer set (Tang et al. 2019).
import { Command } from 'commander';
import { AUGMENT_DEFAULTS, augmentExamples, type AugmentSummary } from '../pipeline/augment.js';
import { dataOptions, numberOption, printJsonLine, sessionOptions, toReadOptions, usesDevice, type DataCliOptions } from './common.js';

interface AugmentCliOptions extends DataCliOptions {
  data: string[];
  out: string;
  copies: string;
  seed: string;
  pMask: string;
  pReplace?: string;
  pNgram: string;
  maxNgram: string;
  teacher?: string;
  wordList?: string;
  neighbours: string;
  tokenizer?: string;
  json?: boolean;
}

export function augmentCommand(): Command {
  const d = AUGMENT_DEFAULTS;
  const cmd = new Command('augment')
    .description(
      'write N seeded augmented copies of every row as unlabelled JSONL (a transfer set): words masked, words replaced by ' +
        'words of the same kind, n-gram spans sampled (Tang et al. 2019); each row names its source row',
    )
    .requiredOption('--data <file...>', 'data files to augment (labels, if any, are not copied)')
    .requiredOption('--out <file>', 'output JSONL; the resolved options and counts go to <out>.json')
    .option('--copies <n>', 'copies drawn per row (a copy identical to its source or to an earlier copy is skipped)', String(d.copies))
    .option('--seed <n>', 'seed of the per-row streams', String(d.seed))
    .option('--p-mask <p>', 'probability that a word becomes the mask token', String(d.pMask))
    .option(
      '--p-replace <p>',
      `probability that a word is replaced by a word of the same kind (default ${d.pReplace} with --teacher or --word-list)`,
    )
    .option('--p-ngram <p>', 'probability that a copy is cut to a random span of 1..max-ngram words', String(d.pNgram))
    .option('--max-ngram <n>', 'longest n-gram span, in words', String(d.maxNgram))
    .option(
      '--teacher <dir>',
      "replace words by their nearest neighbours in this teacher's input-embedding space (and mask with its tokenizer's token)",
    )
    .option('--neighbours <k>', 'with --teacher: draw the replacement from the k nearest words by cosine', String(d.neighbours))
    .option('--word-list <file>', 'replace words by another word of their line (one group of interchangeable words a line)')
    .option('--tokenizer <dir>', "mask with this tokenizer.json's mask token, else its unknown token (default: the teacher's, else [MASK])")
    .option('--json', 'print the summary as the last line of stdout');
  for (const o of dataOptions()) cmd.addOption(o);
  return usesDevice(cmd).action(async (o: AugmentCliOptions) => {
    const prob = (flag: string, v: string) => numberOption(flag, v, { min: 0, max: 1 });
    const summary = await augmentExamples(o.data, {
      ...toReadOptions(o),
      out: o.out,
      copies: numberOption('copies', o.copies, { integer: true, min: 1 }),
      seed: numberOption('seed', o.seed, { integer: true, min: 0 }),
      pMask: prob('p-mask', o.pMask),
      ...(o.pReplace !== undefined ? { pReplace: prob('p-replace', o.pReplace) } : {}),
      pNgram: prob('p-ngram', o.pNgram),
      maxNgram: numberOption('max-ngram', o.maxNgram, { integer: true, min: 1 }),
      neighbours: numberOption('neighbours', o.neighbours, { integer: true, min: 1 }),
      ...(o.teacher !== undefined ? { teacher: o.teacher } : {}),
      ...(o.wordList !== undefined ? { wordList: o.wordList } : {}),
      ...(o.tokenizer !== undefined ? { tokenizer: o.tokenizer } : {}),
      session: sessionOptions(cmd),
    });
    process.stdout.write(`${summaryLine(summary)}\n`);
    if (o.json) printJsonLine(summary);
  });
}

/** The one line kd augment prints: rows read, copies written and skipped, what the rules did. */
export function summaryLine(s: AugmentSummary): string {
  const r = s.config.replacement;
  const replacement =
    r.kind === 'off'
      ? 'replacement off (give --teacher DIR or --word-list FILE)'
      : r.kind === 'word-list'
        ? `replacement from word list ${r.file} (${r.words} words)`
        : `replacement by ${r.k} nearest embedding neighbours of ${r.teacher} (${r.words} words)`;
  const { identicalToSource, repeatedCopy } = s.skipped;
  const repeatedIds = s.duplicateSourceIds ? `, ${s.duplicateSourceIds} rows with a repeated id left out` : '';
  return (
    `${s.rowsRead} rows read, ${s.copiesWritten} copies written to ${s.out}, ${identicalToSource + repeatedCopy} skipped ` +
    `(${identicalToSource} identical to their source, ${repeatedCopy} repeats of an earlier copy)${repeatedIds}, ` +
    `${s.duplicateTextsKept} repeating another row's text (kept); ` +
    `${s.masked} words masked with ${s.config.maskToken}, ${s.replaced} replaced, ${s.ngramCopies} n-gram copies; ${replacement}`
  );
}
