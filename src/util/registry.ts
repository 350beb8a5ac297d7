// Registries by name (methods, students): a table built from one module's exports, in a stable listing order, and one
// lookup whose error lists what exists.
import { OptionError } from '../errors.js';

/** What a registry entry declares: its name, and optionally where it is listed. */
export interface Registered {
  name: string;
  /** Position in listings (help, `Known:` messages, recipe hints): ascending; entries without one follow, by name. */
  order?: number;
}

/**
 * The table `name → entry` for every entry a module exports (`import * as all from './methods/index.js'`), so adding
 * one is one export line. A module namespace lists its keys sorted, so the order comes from each entry's `order`
 * (then its name), not from the export lines.
 *
 * @param entries - The entries: `Object.values` of the module namespace.
 * @param what - What the entries are, for the error (`loss`, `student`).
 * @returns A record keyed by each entry's `name`, in listing order.
 * @throws Error Two entries with one name (a bug in the registry, not user input).
 *
 * @example
 * ```ts
 * console.log(Object.keys(registryOf([{ name: 'b' }, { name: 'a', order: 2 }, { name: 'c', order: 1 }], 'thing')));
 * // [ 'c', 'a', 'b' ]
 * ```
 */
export function registryOf<T extends Registered>(entries: readonly T[], what: string): Record<string, T> {
  const rank = (e: T) => e.order ?? Number.POSITIVE_INFINITY;
  const sorted = [...entries].sort((a, b) => rank(a) - rank(b) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const table: Record<string, T> = {};
  for (const e of sorted) {
    if (Object.hasOwn(table, e.name)) throw new Error(`two ${what} definitions are named '${e.name}'`);
    table[e.name] = e;
  }
  return table;
}

/** `registry[name]`, or an OptionError naming what exists: `Unknown loss 'kdd'. Known: ce, kd, dtkd, lelp`. */
export function lookup<T>(registry: Readonly<Record<string, T>>, what: string, name: string): T {
  const found = Object.hasOwn(registry, name) ? registry[name] : undefined;
  if (found === undefined) throw new OptionError(`Unknown ${what} '${name}'. Known: ${Object.keys(registry).join(', ')}`);
  return found;
}
