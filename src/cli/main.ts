// The `kd` command line: one sub-command per file in this folder, thin over the library.
import { Command, CommanderError } from 'commander';
import { toolVersion } from '../util/versions.js';
import { dataSplitCommand } from './data-split.js';
import { dataStatsCommand } from './data-stats.js';
import { teacherCommand } from './teacher.js';
import { cacheCommand } from './cache.js';
import { predictCommand, trainCommand } from './train.js';
import { evalCommand } from './eval.js';
import { reportCommand } from './report.js';
import { distillCommand } from './distill.js';

export function buildProgram(): Command {
  const program = new Command('kd')
    .description('Knowledge distillation for sentiment classifiers: ONNX teacher → cached outputs → small, fast student')
    .version(toolVersion)
    .showHelpAfterError('(run with --help for usage)');
  const data = new Command('data').description('read, check and split datasets');
  data.addCommand(dataStatsCommand());
  data.addCommand(dataSplitCommand());
  program.addCommand(data);
  program.addCommand(teacherCommand());
  program.addCommand(cacheCommand());
  program.addCommand(trainCommand());
  program.addCommand(predictCommand());
  program.addCommand(evalCommand());
  program.addCommand(reportCommand());
  program.addCommand(distillCommand());
  return program;
}

/** Known input and option errors print one clear line; anything else keeps its stack. */
const USER_ERRORS = new Set(['DataError', 'FormatError', 'ConfigError', 'TypeError', 'RangeError', 'DeviceError', 'HeadNotFoundError', 'CacheMismatchError', 'ShardFormatError']);

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  program.exitOverride();
  try {
    await program.parseAsync(argv);
    // A command may set a failing exit code without throwing (e.g. kd cache verify).
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode;
    const err = e as Error & { code?: string };
    if (USER_ERRORS.has(err.name) || err.code === 'ENOENT' || err.code === 'EISDIR' || err.code === 'EACCES') {
      process.stderr.write(`kd: error: ${err.message}\n`);
      return 2;
    }
    process.stderr.write(`kd: unexpected error: ${err.stack ?? String(err)}\n`);
    return 1;
  }
}
