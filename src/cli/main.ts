// The `kd` command line: one sub-command per file in this folder, thin over the library.
import { Command, CommanderError } from 'commander';
import { toolVersion } from '../util/versions.js';
import { UserError } from '../errors.js';
import { dataSplitCommand } from './data-split.js';
import { dataStatsCommand } from './data-stats.js';
import { teacherCommand } from './teacher.js';
import { cacheCommand } from './cache.js';
import { predictCommand, trainCommand } from './train.js';
import { evalCommand } from './eval.js';
import { reportCommand } from './report.js';
import { distillCommand } from './distill.js';
import { augmentCommand } from './augment.js';
import { quantizeCommand } from './quantize.js';
import { deviceOptions } from './common.js';

export function buildProgram(): Command {
  const program = new Command('kd')
    .description('Knowledge distillation for sentiment classifiers: ONNX teacher → cached outputs → small, fast student')
    .version(toolVersion)
    .showHelpAfterError('(run with --help for usage)');
  // Global: read before or after the sub-command (`kd train --device cuda …`); see cli/common.ts.
  for (const o of deviceOptions()) program.addOption(o);
  const data = new Command('data').description('read, check and split datasets');
  data.addCommand(dataStatsCommand());
  data.addCommand(dataSplitCommand());
  program.addCommand(data);
  program.addCommand(augmentCommand());
  program.addCommand(teacherCommand());
  program.addCommand(cacheCommand());
  program.addCommand(trainCommand());
  program.addCommand(predictCommand());
  program.addCommand(evalCommand());
  program.addCommand(reportCommand());
  program.addCommand(distillCommand());
  program.addCommand(quantizeCommand());
  return program;
}

/** File-system failures on a path the user gave: the message names the path, there is no bug to show. */
const USER_FS_CODES = new Set(['ENOENT', 'EISDIR', 'ENOTDIR', 'EACCES', 'EPERM', 'EROFS', 'EEXIST', 'ENOSPC', 'ENAMETOOLONG', 'ELOOP']);

/**
 * Runs `kd` with `argv` and returns the exit code: 0 on success, 2 for a {@link UserError}, a bad
 * option or argument (commander's own message) or a file-system error on a user's path (one line),
 * 1 with the full stack for anything else (a bug).
 * `KD_DEBUG=1` prints the stack in every case. `program` is kd's (tests pass one with a command of their own).
 */
export async function main(argv: string[], program: Command = buildProgram()): Promise<number> {
  // Every command, not the root alone: commander does not pass exitOverride to commands added with
  // addCommand, and without it their errors call process.exit(1) themselves.
  const override = (c: Command): void => {
    c.exitOverride();
    c.commands.forEach(override);
  };
  override(program);
  try {
    await program.parseAsync(argv);
    // A command may set a failing exit code without throwing (e.g. kd cache verify).
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (e) {
    // Commander has printed its one line (unknown option, bad choice, missing argument, …): the user's mistake,
    // so exit 2 like every other UserError; help and --version keep their 0.
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2;
    const err: Error & { code?: string } = e instanceof Error ? e : new Error(String(e));
    const debug = process.env.KD_DEBUG === '1';
    if (err instanceof UserError || (err.code !== undefined && USER_FS_CODES.has(err.code))) {
      process.stderr.write(`kd: error: ${err.message}\n${debug && err.stack ? `${err.stack}\n` : ''}`);
      return 2;
    }
    process.stderr.write(`kd: unexpected error (a bug in kd; please report it with this trace): ${err.stack ?? String(err)}\n`);
    return 1;
  }
}
