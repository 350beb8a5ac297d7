// Registries by name (methods, students): one lookup whose error lists what exists.
import { OptionError } from '../errors.js';

/** `registry[name]`, or an OptionError naming what exists: `Unknown loss 'kdd'. Known: ce, kd, dtkd, lelp`. */
export function lookup<T>(registry: Readonly<Record<string, T>>, what: string, name: string): T {
  const found = Object.hasOwn(registry, name) ? registry[name] : undefined;
  if (found === undefined) throw new OptionError(`Unknown ${what} '${name}'. Known: ${Object.keys(registry).join(', ')}`);
  return found;
}
