// The methods `kd train --loss NAME` knows, built from methods/index.ts (one export line each).
import { lookup, registryOf } from '../util/registry.js';
import { MethodOptionError, optionFlag, type DistillMethod } from './method.js';
import * as allMethods from './methods/index.js';

/**
 * Every distillation method by name (`kd train --loss NAME`, a recipe's `loss:`), one export line each in
 * `distill/methods/index.ts`, listed in the order the methods declare (`order`).
 *
 * @example
 * ```ts
 * import { METHODS } from 'kd-toolkit';
 * console.log(Object.keys(METHODS));
 * // [ 'ce', 'kd', 'dtkd', 'lelp' ]
 * ```
 */
export const METHODS: Record<string, DistillMethod<never>> = registryOf(Object.values(allMethods) as DistillMethod<never>[], 'loss');

/**
 * The method registered as `name`.
 *
 * @param name - A key of {@link METHODS}.
 * @returns The method: `parse`, `headSize`, `prepare`, `inputs`, `feeds`, `loss`, `classLogits` (and `check` where it has one).
 * @throws {OptionError} No method of that name; the message lists the known ones.
 *
 * @example
 * ```ts
 * import { getMethod } from 'kd-toolkit';
 * console.log(getMethod('kd').name);
 * // kd
 * getMethod('kdd');
 * // OptionError: Unknown loss 'kdd'. Known: ce, kd, dtkd, lelp
 * ```
 */
export function getMethod(name: string): DistillMethod<unknown> {
  return lookup(METHODS, 'loss', name) as DistillMethod<unknown>;
}

/**
 * `method.parse(raw)`, and an error for every option the method does not declare: a typo in a
 * recipe (`lamda`) or an option of another method (`subclasses` with `kd`) would otherwise be
 * ignored without a word.
 *
 * @param name - A key of {@link METHODS}.
 * @param raw - The options as given (camelCase keys: `lambda`, `tau`, `kdStart`, …).
 * @returns The method's parsed options, defaults filled in.
 * @throws {OptionError} No method of that name.
 * @throws {MethodOptionError} An option out of range, or one the method does not read (the message names it and
 *   what the method reads; `error.option` is its key). Its `name` is 'ConfigError'.
 *
 * @example
 * ```ts
 * import { parseMethodOptions } from 'kd-toolkit';
 * console.log(parseMethodOptions('kd', { lambda: 0.5, tau: 2 }));
 * // { lambda: 0.5, tau: 2, schedule: { kind: 'constant', rampFraction: 0.5 }, kdStart: 0 }
 * parseMethodOptions('kd', { lamda: 0.5 });
 * // throws MethodOptionError, printed as ConfigError: loss 'kd' does not use option 'lamda' (--lamda) with these settings;
 * // it reads kdStart, lambda, lambdaRamp, lambdaSchedule, tau. Remove it or pick the loss that takes it
 * ```
 */
export function parseMethodOptions(name: string, raw: Record<string, unknown>): unknown {
  const method = getMethod(name);
  const declared = new Set(method.options.map((o) => o.key));
  const options = method.parse(raw);
  const unused = Object.keys(raw).filter((k) => raw[k] !== undefined && !declared.has(k));
  if (unused.length) {
    const flag = (k: string) => `'${k}' (--${optionFlag(k)})`;
    const reads = `it reads ${[...declared].sort().join(', ') || 'no options'}`;
    const them = unused.length > 1 ? 'them' : 'it';
    // A recipe names the first unused option as its field; the command line names every flag.
    throw new MethodOptionError(
      `loss '${name}' does not use option${unused.length > 1 ? 's' : ''} ${unused.map(flag).join(', ')} with these settings; ${reads}. ` +
        `Remove ${them} or pick the loss that takes ${them}`,
      unused[0],
      `loss '${name}' does not use this option with these settings; ${reads}. Remove it or pick the loss that takes it`,
      true,
    );
  }
  return options;
}

/** One kd train flag per option key over every method: its help says which methods read it and how. */
export interface MethodFlag {
  key: string;
  flag: string;
  help: string;
  /** True for a boolean option whose default is true: the flag is `--no-<flag>`. */
  negated: boolean;
}

export function methodFlags(): MethodFlag[] {
  const byKey = new Map<string, { negated: boolean; uses: { method: string; help: string; default: unknown }[] }>();
  for (const m of Object.values(METHODS))
    for (const o of m.options) {
      const entry = byKey.get(o.key) ?? { negated: o.default === true, uses: [] };
      entry.uses.push({ method: m.name, help: o.help, default: o.default });
      byKey.set(o.key, entry);
    }
  return [...byKey].map(([key, { negated, uses }]) => {
    // Methods that declare the option alike share one clause: `kd, dtkd: ... (default 0)`.
    const clauses = new Map<string, string[]>();
    for (const u of uses) {
      const text = negated ? `do not ${u.help}` : `${u.help} (default ${String(u.default)})`;
      clauses.set(text, [...(clauses.get(text) ?? []), u.method]);
    }
    const help = [...clauses].map(([text, methods]) => `${methods.join(', ')}: ${text}`).join('; ');
    return { key, flag: optionFlag(key), negated, help };
  });
}
