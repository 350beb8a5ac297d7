// Parameters: specs declared by models, values held on the host, seeded initialization.
import type { FloatDType } from './dtype.js';
import { Rng } from './rng.js';

export type Init =
  | { kind: 'zeros' }
  | { kind: 'ones' }
  | { kind: 'normal'; std: number }
  | { kind: 'uniform'; limit: number }
  /** Glorot/Xavier uniform over the first two dims (fan_in = shape[0], fan_out = shape[1]). */
  | { kind: 'xavier' };

export const zeros: Init = { kind: 'zeros' };
export const ones: Init = { kind: 'ones' };
export const normal = (std: number): Init => ({ kind: 'normal', std });
export const uniform = (limit: number): Init => ({ kind: 'uniform', limit });
export const xavier: Init = { kind: 'xavier' };

export interface ParamSpec {
  name: string;
  shape: readonly number[];
  init: Init;
  /** In the weight-decay group (biases and norms usually are not). */
  decay: boolean;
  /** An embedding table updated only in the rows a batch touches. */
  sparse: boolean;
}

export type FloatArray = Float32Array | Float64Array;

export function numelOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

export function initialValue(spec: ParamSpec, dtype: FloatDType, rng: Rng): FloatArray {
  const n = numelOf(spec.shape);
  const out = dtype === 'float64' ? new Float64Array(n) : new Float32Array(n);
  const init = spec.init;
  switch (init.kind) {
    case 'zeros':
      break;
    case 'ones':
      out.fill(1);
      break;
    case 'normal':
      for (let i = 0; i < n; i++) out[i] = rng.normal() * init.std;
      break;
    case 'uniform':
      for (let i = 0; i < n; i++) out[i] = (rng.uniform() * 2 - 1) * init.limit;
      break;
    case 'xavier': {
      const fanIn = spec.shape[0] ?? 1;
      const fanOut = spec.shape[1] ?? 1;
      const limit = Math.sqrt(6 / (fanIn + fanOut));
      for (let i = 0; i < n; i++) out[i] = (rng.uniform() * 2 - 1) * limit;
      break;
    }
  }
  return out;
}

/** Named parameter values of one model, in declaration order. */
export class ParameterStore {
  readonly specs: ParamSpec[] = [];
  readonly values = new Map<string, FloatArray>();

  constructor(readonly dtype: FloatDType) {}

  /** Creates values for specs not yet present, drawing from `rng` in spec order. */
  initialize(specs: readonly ParamSpec[], rng: Rng): void {
    for (const spec of specs) {
      if (this.values.has(spec.name)) continue;
      this.specs.push(spec);
      this.values.set(spec.name, initialValue(spec, this.dtype, rng));
    }
  }

  get(name: string): FloatArray {
    const v = this.values.get(name);
    if (!v) throw new Error(`no parameter named '${name}'. Known: ${[...this.values.keys()].join(', ')}`);
    return v;
  }

  spec(name: string): ParamSpec {
    const s = this.specs.find((x) => x.name === name);
    if (!s) throw new Error(`no parameter named '${name}'`);
    return s;
  }

  /** A copy with its own values (of the parameters `keep` accepts, all by default), in spec order. */
  clone(keep: (spec: ParamSpec) => boolean = () => true): ParameterStore {
    const copy = new ParameterStore(this.dtype);
    for (const spec of this.specs) {
      if (!keep(spec)) continue;
      copy.specs.push(spec);
      copy.values.set(spec.name, this.get(spec.name).slice());
    }
    return copy;
  }

  /** Total number of scalar parameters. */
  count(): number {
    return this.specs.reduce((sum, s) => sum + numelOf(s.shape), 0);
  }
}
