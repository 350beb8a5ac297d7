// `kd eval`: metrics, calibration, teacher agreement, diagnostics, size and speed of a model.
import { Command } from 'commander';
import { evaluateModel } from '../eval/evaluate.js';
import { dataOptions, numberOption, printJsonLine, sessionOptions, toReadOptions, usesDevice, type DataCliOptions } from './common.js';

export function evalCommand(): Command {
  const cmd = new Command('eval')
    .description('evaluate a student (or any teacher folder) on labelled data')
    .requiredOption('--model <dir>', 'student folder (kd train) or HF-layout teacher folder')
    .requiredOption('--data <file...>', 'labelled data')
    .option('--cache <dir>', 'teacher-output cache: adds agreement with the teacher, the deviation slope and gradient variance')
    .option('--no-verify', 'with --cache: open it without checking its shard checksums')
    .option('--limit <n>', 'evaluate the first N rows')
    .option('--json', 'print the report as the last line of stdout');
  for (const o of dataOptions()) cmd.addOption(o);
  return usesDevice(cmd).action(
    async (o: DataCliOptions & { model: string; data: string[]; cache?: string; verify: boolean; limit?: string; json?: boolean }) => {
      const r = await evaluateModel({
        model: o.model,
        data: o.data,
        read: toReadOptions(o),
        ...(o.cache ? { cache: o.cache, verifyCache: o.verify } : {}),
        session: sessionOptions(cmd),
        ...(o.limit ? { limit: numberOption('limit', o.limit, { integer: true, min: 1 }) } : {}),
      });
      const pct = (x: number) => (100 * x).toFixed(2);
      const lines = [
        `${r.kind} ${r.model} on ${r.n} rows`,
        `accuracy ${pct(r.accuracy)}% (95% CI ${pct(r.interval95.low)}–${pct(r.interval95.high)}), macro-F1 ` +
          `${r.macroF1.toFixed(4)}, NLL ${r.nll.toFixed(4)}, ECE ${r.ece.toFixed(4)}`,
        `confusion (rows gold, columns predicted; ${r.labels.join(', ')}): ${JSON.stringify(r.confusion)}`,
      ];
      if (r.teacher) {
        lines.push(
          `teacher: accuracy ${pct(r.teacher.accuracy)}%, agreement ${pct(r.teacher.agreement)}%; deviation slope ` +
            `${r.teacher.deviation.slope.toFixed(3)} (95% CI ` +
            `${r.teacher.deviation.slopeCi95[0].toFixed(3)}–${r.teacher.deviation.slopeCi95[1].toFixed(3)})`,
        );
        lines.push(
          `head gradient variance: CE ${r.teacher.gradientVariance.variance['0']!.toFixed(4)}, λ=0.5 ` +
            `${r.teacher.gradientVariance.variance['0.5']!.toFixed(4)}, λ*=${r.teacher.gradientVariance.lambdaStar.toFixed(3)} ` +
            `${r.teacher.gradientVariance.variance.lambdaStar!.toFixed(4)}`,
        );
      }
      lines.push(
        `size ${r.size.parameters} parameters, ${(r.size.onnxBytes / 1e6).toFixed(2)} MB ONNX; latency ` +
          `${r.latency.batch1MsMedian.toFixed(2)} ms/example at batch 1, ${r.latency.batchedTextsPerSecond.toFixed(0)} texts/s ` +
          `batched (${r.latency.device})`,
      );
      process.stdout.write(`${lines.join('\n')}\n`);
      if (o.json) printJsonLine(r);
    },
  );
}
