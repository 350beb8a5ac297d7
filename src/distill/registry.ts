// The methods `kd train --loss NAME` knows: one line each.
import { OptionError } from '../errors.js';
import { MethodOptionError, type DistillMethod } from './method.js';
import { ce } from './methods/ce.js';
import { kd } from './methods/kd.js';
import { dtkd } from './methods/dtkd.js';
import { lelp } from './methods/lelp.js';

/**
 * Every distillation method by name (`kd train --loss NAME`, a recipe's `loss:`): one line each.
 *
 * @example
 * ```ts
 * import { METHODS } from 'kd-toolkit';
 * console.log(Object.keys(METHODS));
 * // [ 'ce', 'kd', 'dtkd', 'lelp' ]
 * ```
 */
export const METHODS: Record<string, DistillMethod<never>> = {
  ce: ce as DistillMethod<never>,
  kd: kd as DistillMethod<never>,
  dtkd: dtkd as DistillMethod<never>,
  lelp: lelp as DistillMethod<never>,
};

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
  const m = METHODS[name];
  if (!m) throw new OptionError(`Unknown loss '${name}'. Known: ${Object.keys(METHODS).join(', ')}`);
  return m as DistillMethod<unknown>;
}

/**
 * `method.parse(raw)`, and an error for every option the method did not read: a typo in a
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
  const read = new Set<string>();
  const tracked = new Proxy(raw, {
    get(target, key, receiver) {
      if (typeof key === 'string') read.add(key);
      return Reflect.get(target, key, receiver);
    },
  });
  const options = method.parse(tracked);
  const unused = Object.keys(raw).filter((k) => raw[k] !== undefined && !read.has(k));
  if (unused.length) {
    const flag = (k: string) => `'${k}' (--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)})`;
    const reads = `it reads ${[...read].sort().join(', ') || 'no options'}`;
    // A recipe names the first unused option as its field; the command line names every flag.
    throw new MethodOptionError(
      `loss '${name}' does not use option${unused.length > 1 ? 's' : ''} ${unused.map(flag).join(', ')} with these settings; ${reads}. Remove ${unused.length > 1 ? 'them' : 'it'} or pick the loss that takes ${unused.length > 1 ? 'them' : 'it'}`,
      unused[0],
      `loss '${name}' does not use this option with these settings; ${reads}. Remove it or pick the loss that takes it`,
      true,
    );
  }
  return options;
}
