// `kd data stats`: rows, labels, skipped rows with reasons and text-length percentiles.
import { Command } from 'commander';
import { DatasetReader, type ReadSummary } from '../data/read.js';
import type { Reject } from '../data/errors.js';
import { formatWhere } from '../data/errors.js';
import { distribution, U32List, type Distribution } from '../util/stats.js';
import { writeFileAtomicSync } from '../util/fs.js';
import { dataOptions, printJsonLine, toReadOptions, type DataCliOptions } from './common.js';

export interface DataStats extends Omit<ReadSummary, 'files'> {
  textLength: { chars: Distribution; words: Distribution };
  files: ReadSummary['files'];
}

/** Shown on stderr when no --rejects file is asked for. */
const REJECTS_SHOWN = 20;

export function dataStatsCommand(): Command {
  const cmd = new Command('stats')
    .description('count rows, labels and skipped rows; text-length percentiles')
    .argument('<file...>', 'data files (Sentiment140 CSV, Amazon CSV/fastText, JSONL, CSV, Parquet, plain text with --format text)')
    .option('--json', 'print a JSON summary as the last line of stdout')
    .option('--rejects <file>', 'write every malformed row (file, line, reason) to this JSONL file');
  for (const o of dataOptions()) cmd.addOption(o);
  return cmd.action(async (files: string[], opts: DataCliOptions & { json?: boolean; rejects?: string }) => {
    const rejects: Reject[] = [];
    const reader = new DatasetReader(files, { ...toReadOptions(opts), onReject: (r) => rejects.push(r) });
    const chars = new U32List();
    const words = new U32List();
    for await (const ex of reader) {
      chars.push(ex.text.length);
      words.push(countWords(ex.text));
    }
    const { files: perFile, ...summary } = reader.summary;
    const stats: DataStats = {
      ...summary,
      textLength: { chars: distribution(chars.view()), words: distribution(words.view()) },
      files: perFile,
    };
    if (opts.rejects) writeFileAtomicSync(opts.rejects, rejects.map((r) => `${JSON.stringify(r)}\n`).join(''));
    else reportRejectsOnStderr(rejects);
    printHuman(stats, opts.rejects);
    if (opts.json) printJsonLine(stats);
  });
}

function countWords(text: string): number {
  let n = 0;
  let inWord = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    const space = c === 32 || c === 9 || c === 10 || c === 13;
    if (!space && !inWord) n += 1;
    inWord = !space;
  }
  return n;
}

function reportRejectsOnStderr(rejects: Reject[]): void {
  for (const r of rejects.slice(0, REJECTS_SHOWN)) process.stderr.write(`skipped ${formatWhere(r)}: ${r.reason}: ${r.message}\n`);
  if (rejects.length > REJECTS_SHOWN)
    process.stderr.write(`… and ${rejects.length - REJECTS_SHOWN} more malformed rows; pass --rejects FILE to write them all\n`);
}

function printHuman(s: DataStats, rejectsFile: string | undefined): void {
  const pct = (n: number) => (s.labeled ? ((100 * n) / s.labeled).toFixed(1) : '0.0');
  const lines = [
    `format: ${s.format}`,
    `rows read: ${s.rows}${s.unlabeled ? ` (labelled ${s.labeled}, unlabelled ${s.unlabeled})` : ''}`,
    `labels: ${Object.entries(s.labels)
      .map(([name, n]) => `${name} ${n} (${pct(n)}%)`)
      .join(', ')}`,
    `skipped: neutral ${s.skipped.neutral}, malformed ${s.skipped.malformed}${
      Object.keys(s.malformed).length
        ? ` (${Object.entries(s.malformed)
            .map(([k, v]) => `${k} ${v}`)
            .join(', ')})`
        : ''
    }${rejectsFile && s.skipped.malformed ? `; written to ${rejectsFile}` : ''}`,
    `decoded as Latin-1 (invalid UTF-8): ${s.latin1Lines} lines`,
    ...(s.blankLines ? [`blank lines skipped: ${s.blankLines}`] : []),
    `text length, characters: mean ${s.textLength.chars.mean.toFixed(1)}, p50 ${s.textLength.chars.p50}, p90 ` +
      `${s.textLength.chars.p90}, p99 ${s.textLength.chars.p99}, max ${s.textLength.chars.max}`,
    `text length, words:      mean ${s.textLength.words.mean.toFixed(1)}, p50 ${s.textLength.words.p50}, p90 ` +
      `${s.textLength.words.p90}, p99 ${s.textLength.words.p99}, max ${s.textLength.words.max}`,
  ];
  if (s.files.length > 1)
    for (const f of s.files)
      lines.push(
        `  ${f.file}: ${f.format}, ${f.rows} rows, labels [${f.labelCounts.join(', ')}]` +
          `${s.unlabeled ? `, unlabelled ${f.unlabeled}` : ''}, neutral ${f.neutral}, malformed ` +
          `${Object.values(f.malformed).reduce((a, b) => a + (b ?? 0), 0)}`,
      );
  process.stdout.write(`${lines.join('\n')}\n`);
}
