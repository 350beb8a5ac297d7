// Central finite differences against the engine's analytic gradients.
import assert from 'node:assert/strict';
import { Graph, type Value } from '../../../src/engine/graph.js';
import { gradients } from '../../../src/engine/autodiff.js';
import * as op from '../../../src/engine/ops.js';
import { createSession, ort } from '../../../src/engine/session.js';
import { Rng } from '../../../src/engine/rng.js';
import type { DType, FloatDType } from '../../../src/engine/dtype.js';

export interface CheckInput {
  name: string;
  shape: number[];
  dtype?: DType;
  /** Fixed values (e.g. indices, masks, positive inputs); random normal otherwise. */
  data?: number[];
  /** Checked by finite differences (default: true for float inputs without fixed data). */
  diff?: boolean;
}

export interface CheckOptions {
  dtype?: FloatDType;
  eps?: number;
  atol?: number;
  rtol?: number;
  seed?: number;
}

/** Sum of y times a fixed random tensor of y's (static) shape: a scalar with rich upstream gradients. */
export function weightedSum(y: Value, seed = 7): Value {
  const shape = y.shape.map((d) => {
    if (typeof d !== 'number') throw new Error(`weightedSum needs a static shape, got ${y}`);
    return d;
  });
  const rng = new Rng(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  const r = y.graph.constant(
    Array.from({ length: n }, () => rng.normal()),
    y.dtype,
    shape,
    'r',
  );
  return op.sumAll(op.mul(y, r));
}

function toTensor(dtype: DType, shape: number[], values: number[]): ort.Tensor {
  switch (dtype) {
    case 'float64':
      return new ort.Tensor('float64', Float64Array.from(values), shape);
    case 'float32':
      return new ort.Tensor('float32', Float32Array.from(values), shape);
    case 'int64':
      return new ort.Tensor('int64', BigInt64Array.from(values.map((v) => BigInt(v))), shape);
    case 'bool':
      return new ort.Tensor('bool', Uint8Array.from(values), shape);
    case 'uint64':
      return new ort.Tensor('uint64', BigUint64Array.from(values.map((v) => BigInt(v))), shape);
    default:
      throw new Error(`toTensor: ${dtype}`);
  }
}

/**
 * Builds `loss = build(inputs)`, takes its gradients with the engine, and compares each
 * differentiable input's gradient to central differences. Returns the max abs error.
 */
export async function gradCheck(
  inputs: CheckInput[],
  build: (v: Record<string, Value>) => Value,
  opts: CheckOptions = {},
): Promise<number> {
  const dtype = opts.dtype ?? 'float64';
  const eps = opts.eps ?? (dtype === 'float64' ? 1e-6 : 1e-2);
  const atol = opts.atol ?? (dtype === 'float64' ? 1e-7 : 2e-3);
  const rtol = opts.rtol ?? (dtype === 'float64' ? 1e-6 : 2e-2);
  const rng = new Rng(opts.seed ?? 1);
  const g = new Graph('gradcheck');
  const values: Record<string, Value> = {};
  const data: Record<string, number[]> = {};
  const diffNames: string[] = [];
  for (const i of inputs) {
    const dt = i.dtype ?? dtype;
    values[i.name] = g.input(i.name, dt, i.shape);
    const n = i.shape.reduce((a, b) => a * b, 1);
    data[i.name] = i.data ?? Array.from({ length: n }, () => rng.normal());
    const float = dt === 'float32' || dt === 'float64';
    if (i.diff ?? (float && !i.data)) diffNames.push(i.name);
  }
  const loss = build(values);
  const grads = gradients(
    loss,
    diffNames.map((n) => values[n]!),
  );
  const analytic = await createSession(
    g.serialize({
      outputs: [{ name: 'loss', value: loss }, ...diffNames.map((n) => ({ name: `grad_${n}`, value: grads.get(values[n]!)! }))],
    }),
  );
  const forward = await createSession(g.serialize({ outputs: [{ name: 'loss', value: loss }] }));
  const feeds = () => Object.fromEntries(inputs.map((i) => [i.name, toTensor(i.dtype ?? dtype, i.shape, data[i.name]!)]));
  const base = await analytic.session.run(feeds());
  let maxErr = 0;
  for (const name of diffNames) {
    const grad = base[`grad_${name}`]!;
    assert.deepEqual([...grad.dims], inputs.find((i) => i.name === name)!.shape, `gradient of ${name} has the input's shape`);
    const a = Array.from(grad.data as Float64Array, Number);
    for (let k = 0; k < data[name]!.length; k++) {
      const orig = data[name]![k]!;
      data[name]![k] = orig + eps;
      const plus = Number((await forward.session.run(feeds())).loss!.data[0]);
      data[name]![k] = orig - eps;
      const minus = Number((await forward.session.run(feeds())).loss!.data[0]);
      data[name]![k] = orig;
      const numeric = (plus - minus) / (2 * eps);
      const err = Math.abs(a[k]! - numeric);
      maxErr = Math.max(maxErr, err);
      assert.ok(
        err <= atol + rtol * Math.abs(numeric),
        `d loss / d ${name}[${k}]: analytic ${a[k]} vs numeric ${numeric} (err ${err.toExponential(2)})`,
      );
    }
  }
  await analytic.session.release();
  await forward.session.release();
  return maxErr;
}
