// The methods `kd train --loss NAME` knows: one line each.
import type { DistillMethod } from './method.js';
import { ce } from './methods/ce.js';
import { kd } from './methods/kd.js';
import { dtkd } from './methods/dtkd.js';
import { lelp } from './methods/lelp.js';

export const METHODS: Record<string, DistillMethod<never>> = {
  ce: ce as DistillMethod<never>,
  kd: kd as DistillMethod<never>,
  dtkd: dtkd as DistillMethod<never>,
  lelp: lelp as DistillMethod<never>,
};

export function getMethod(name: string): DistillMethod<unknown> {
  const m = METHODS[name];
  if (!m) throw new RangeError(`Unknown loss '${name}'. Known: ${Object.keys(METHODS).join(', ')}`);
  return m as DistillMethod<unknown>;
}
