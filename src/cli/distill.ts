// `kd distill`: the whole pipeline from a recipe.
import { Command } from 'commander';
import { Option } from 'commander';
import { DISTILL_STAGES, runDistill, type DistillStage } from '../pipeline/distill.js';
import { sessionOptions, usesDevice } from './common.js';

export function distillCommand(): Command {
  const cmd = new Command('distill')
    .description('data → split → teacher → cache → students (every method) → eval → report, resumable')
    .requiredOption('--recipe <file>', 'recipe YAML (recipes/sentiment140.yaml, recipes/amazon_polarity.yaml)')
    .option('--out <dir>', 'output folder (default: runs/<recipe name>)')
    .option('--quick', "the recipe's quick size: a small slice, the tiny teacher, one seed (CI)")
    .option('--teacher <dir>', "use this teacher folder instead of the recipe's")
    .option('--no-quantize', 'export the students without the int8 onnx/model_quantized.onnx')
    .addOption(
      new Option('--until <stage>', 'stop after this stage (e.g. build and check the teacher without the student runs)').choices(
        DISTILL_STAGES,
      ),
    )
    .option('--json', 'print a JSON summary as the last line of stdout');
  type Opts = {
    recipe: string;
    out?: string;
    quick?: boolean;
    teacher?: string;
    until?: DistillStage;
    quantize: boolean;
    json?: boolean;
  };
  return usesDevice(cmd).action(async (o: Opts) => {
    const session = sessionOptions(cmd);
    const name = o.recipe.replace(/^.*\//, '').replace(/\.ya?ml$/, '');
    const out = o.out ?? `runs/${name}${o.quick ? '-quick' : ''}`;
    const { report, runs, stoppedAfter } = await runDistill({
      recipe: o.recipe,
      out,
      ...(o.quick ? { quick: true } : {}),
      ...(o.until ? { until: o.until } : {}),
      ...(o.teacher ? { teacher: o.teacher } : {}),
      session,
      ...(o.quantize ? {} : { quantize: false }),
      log: (l) => process.stderr.write(`${l}\n`),
    });
    if (report) process.stdout.write(`report: ${report}\n${runs.length} runs in ${out}/runs\n`);
    else process.stdout.write(`stopped after the ${stoppedAfter} stage in ${out}\n${runs.length} runs in ${out}/runs\n`);
    if (o.json) process.stdout.write(`${JSON.stringify({ report, runs, stoppedAfter })}\n`);
  });
}
