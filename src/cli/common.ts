// Option parsing shared by commands: validated at the edge, errors name the option.
import { OptionError } from '../errors.js';
import { Option, type Command } from 'commander';
import { parseClassCount, parseLabelMap, type ClassCount } from '../data/labels.js';
import { FORMATS, type Format } from '../data/formats/types.js';
import type { ReadOptions } from '../data/read.js';
import { DEVICES, type Device, type SessionOptions } from '../engine/session.js';

/** The device options, as commander parses them (declared once, on the root command). */
export interface DeviceCliOptions {
  device: Device;
  allowCpuFallback?: boolean;
  threads?: string;
}

/**
 * `--device`, `--threads`, `--allow-cpu-fallback`: global options of `kd` (main.ts adds them to the
 * root command). Commander reads a root option anywhere on the line, so `kd --device cuda train`
 * and `kd train --device cuda` mean the same; commands without a session ignore them.
 */
export function deviceOptions(): Option[] {
  return [
    new Option('--device <device>', 'execution device').choices([...DEVICES]).default('cpu'),
    new Option('--allow-cpu-fallback', 'run on CPU with a warning when the device is not available'),
    new Option('--threads <n>', 'ONNX Runtime intra-op threads (default: one per core); 1 keeps the host n-gram trainer on one too'),
  ];
}

/** The line each session-using command's help ends with. */
export const DEVICE_HELP = 'global options: --device, --threads, --allow-cpu-fallback (see kd --help)';

/** Marks `cmd` as one whose sessions follow the global device options (its help says so). */
export function usesDevice(cmd: Command): Command {
  return cmd.addHelpText('after', `\n${DEVICE_HELP}`);
}

/** The session options for the library, from the global device options `cmd` sees. */
export function sessionOptions(cmd: Command): SessionOptions {
  const o = cmd.optsWithGlobals<DeviceCliOptions>();
  return {
    device: o.device ?? 'cpu',
    ...(o.allowCpuFallback ? { allowFallback: true } : {}),
    ...(o.threads !== undefined ? { threads: numberOption('threads', o.threads, { integer: true, min: 1 }) } : {}),
  };
}

export interface DataCliOptions {
  format: Format | 'auto';
  classes: string;
  textField?: string;
  labelField?: string;
  titleField?: string;
  idField?: string;
  labelMap?: string;
  strict?: boolean;
  unlabeled?: boolean;
}

/** The reader options every data-taking command accepts. */
export function dataOptions(): Option[] {
  return [
    new Option('--format <format>', 'input format; text (one unlabelled text per line) is never auto-detected: name it')
      .choices(['auto', ...FORMATS])
      .default('auto'),
    new Option('--classes <n>', 'number of classes: 2 (neutral skipped), 3 (neutral kept), 5 (Amazon Full)')
      .choices(['2', '3', '5'])
      .default('2'),
    new Option('--text-field <name>', 'JSONL/CSV/Parquet: field holding the text'),
    new Option('--label-field <name>', 'JSONL/CSV/Parquet: field holding the label'),
    new Option('--title-field <name>', 'JSONL/CSV/Parquet: field holding a title joined before the text'),
    new Option('--id-field <name>', 'JSONL/CSV/Parquet: field holding a stable id (default: a content hash)'),
    new Option('--label-map <map>', 'map raw labels to classes, e.g. "0=negative,4=positive"'),
    new Option('--strict', 'stop at the first malformed row with an error naming file, line and field'),
    new Option('--unlabeled', 'JSONL/CSV/Parquet: accept rows without a label (no label field, or an empty/null one) as unlabelled'),
  ];
}

export function toReadOptions(o: DataCliOptions): ReadOptions & { classes: ClassCount } {
  return {
    format: o.format,
    classes: parseClassCount(o.classes),
    ...(o.textField !== undefined ? { textField: o.textField } : {}),
    ...(o.labelField !== undefined ? { labelField: o.labelField } : {}),
    ...(o.titleField !== undefined ? { titleField: o.titleField } : {}),
    ...(o.idField !== undefined ? { idField: o.idField } : {}),
    ...(o.labelMap !== undefined ? { labelMap: parseLabelMap(o.labelMap) } : {}),
    strict: Boolean(o.strict),
    ...(o.unlabeled ? { unlabeled: true } : {}),
  };
}

/** Parses a number option, naming it in the error. */
export function numberOption(name: string, value: string, opts: { integer?: boolean; min?: number; max?: number } = {}): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || (opts.integer && !Number.isInteger(n))) {
    throw new OptionError(`'--${name}' must be ${opts.integer ? 'an integer' : 'a number'}, got ${JSON.stringify(value)}`);
  }
  if ((opts.min !== undefined && n < opts.min) || (opts.max !== undefined && n > opts.max)) {
    throw new OptionError(`'--${name}' must be in [${opts.min ?? '-inf'}, ${opts.max ?? 'inf'}], got ${n}`);
  }
  return n;
}

/** Prints a JSON summary as the last line of stdout. */
export function printJsonLine(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

/** `--batch-tokens`, when given; otherwise the teacher runner's default for its device. */
export function batchTokensOption(value: string | undefined): { batchTokens?: number } {
  return value === undefined ? {} : { batchTokens: numberOption('batch-tokens', value, { integer: true, min: 1 }) };
}
