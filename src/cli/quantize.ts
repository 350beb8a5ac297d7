// `kd quantize`: onnx/model.onnx of a Hugging Face-layout folder → int8 onnx/model_quantized.onnx beside it.
import { Command, Option } from 'commander';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { quantizeModel } from '../quantize/model.js';
import { readStudentCard } from '../student/runtime.js';
import { getStudent } from '../student/registry.js';
import { numberOption, printJsonLine, sessionOptions, usesDevice } from './common.js';

const mb = (bytes: number) => `${(bytes / 1e6).toFixed(2)} MB`;

export function quantizeCommand(): Command {
  const cmd = new Command('quantize')
    .description("dynamic int8 quantization (transformers.js' default q8): writes onnx/model_quantized.onnx beside onnx/model.onnx")
    .argument('<dir>', 'model folder (onnx/model.onnx; with tokenizer.json the check runs on real texts)')
    .addOption(
      new Option('--weight-scales <kind>', 'MatMul/Gemm weight scales: one per output column, or one per weight')
        .choices(['column', 'tensor'])
        .default('column'),
    )
    .option('--min-embedding <n>', 'embedding tables (Gather) of fewer elements stay float32', '10000')
    .option('--check-rows <n>', 'inputs both models run on before the file is written', '64')
    .option('--min-agreement <x>', 'least fraction of check inputs on which int8 and fp32 pick the same class', '0.99')
    .option('--json', 'print the report as the last line of stdout');
  return usesDevice(cmd).action(
    async (
      dir: string,
      o: { weightScales: 'column' | 'tensor'; minEmbedding: string; checkRows: string; minAgreement: string; json?: boolean },
    ) => {
      // A kd student is checked on its own features (the n-gram student's hashing is not in its graph).
      const cardPath = join(dir, 'kd-student.json');
      const card = existsSync(cardPath) ? readStudentCard(cardPath) : null;
      const r = await quantizeModel(dir, {
        ...(card ? { feeds: getStudent(card.kind).loader(dir, card) } : {}),
        weightScales: o.weightScales,
        minEmbeddingElements: numberOption('min-embedding', o.minEmbedding, { integer: true, min: 0 }),
        checkRows: numberOption('check-rows', o.checkRows, { integer: true, min: 1 }),
        minAgreement: numberOption('min-agreement', o.minAgreement, { min: 0, max: 1 }),
        session: sessionOptions(cmd),
      });
      const c = r.check;
      const w = r.rewritten;
      process.stdout.write(
        `${r.file}: ${mb(r.bytes.fp32)} → ${mb(r.bytes.int8)} (${((100 * r.bytes.int8) / r.bytes.fp32).toFixed(1)}%); ` +
          `int8: ${w.MatMul} MatMul, ${w.Gemm} Gemm, ${w.Gather} embedding Gather\n` +
          `check on ${c.rows} ${c.inputs} inputs: argmax agreement ${(100 * c.agreement).toFixed(2)}%, largest ${c.output} ` +
          `difference ${c.maxDiff.toPrecision(3)} (largest |${c.output}| ${c.maxAbs.toPrecision(3)}); ` +
          `batch time fp32 ${c.ms.fp32.toFixed(1)} ms, int8 ${c.ms.int8.toFixed(1)} ms\n`,
      );
      if (o.json) printJsonLine(r);
    },
  );
}
