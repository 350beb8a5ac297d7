// `kd report`: one self-contained HTML page from run folders.
import { Command } from 'commander';
import { readFileSync } from 'node:fs';
import { buildMarkdownTable, buildReport, loadRun, type ReportContext } from '../eval/report.js';
import { writeFileAtomicSync } from '../util/fs.js';

export function reportCommand(): Command {
  return new Command('report')
    .description('write one self-contained HTML report comparing runs (kd train folders)')
    .requiredOption('--runs <dir...>', 'run folders (each with summary.json; eval.json adds calibration and diagnostics)')
    .requiredOption('--out <file>', 'HTML file to write')
    .option('--context <file...>', 'JSON context per dataset: teacher, baselines, caveats (kd distill writes them)')
    .option('--title <text>', 'page title', 'Distillation report')
    .option('--markdown <file>', 'also write the comparison table as Markdown')
    .action((o: { runs: string[]; out: string; context?: string[]; title: string; markdown?: string }) => {
      const runs = o.runs.map(loadRun);
      const contexts = (o.context ?? []).map((f) => JSON.parse(readFileSync(f, 'utf8')) as ReportContext);
      writeFileAtomicSync(o.out, buildReport(runs, contexts, o.title));
      if (o.markdown) writeFileAtomicSync(o.markdown, buildMarkdownTable(runs, contexts));
      process.stdout.write(`report written to ${o.out} (${runs.length} runs)\n`);
    });
}
