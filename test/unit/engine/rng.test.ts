import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Graph } from '../../../src/engine/graph.js';
import { graphUniform, Rng, splitMix64 } from '../../../src/engine/rng.js';
import { createSession, ort } from '../../../src/engine/session.js';
import { ModelContext } from '../../../src/engine/context.js';
import { loadSafetensors, saveSafetensors } from '../../../src/engine/safetensors.js';
import { join } from 'node:path';
import { writeFileSync, readFileSync } from 'node:fs';
import { tempDir } from '../../helpers.js';

test('host Rng is reproducible from a seed and from a saved state', () => {
  const a = new Rng(42);
  const first = Array.from({ length: 5 }, () => a.uniform());
  assert.deepEqual(Array.from({ length: 5 }, () => new Rng(42)).length, 5);
  const b = new Rng(42);
  assert.deepEqual(
    Array.from({ length: 5 }, () => b.uniform()),
    first,
  );
  const saved = Uint32Array.from(b.state);
  const next = b.uniform();
  assert.equal(new Rng(saved).uniform(), next);
  const xs = Array.from({ length: 20000 }, () => a.normal());
  const mean = xs.reduce((s, v) => s + v, 0) / xs.length;
  const variance = xs.reduce((s, v) => s + (v - mean) ** 2, 0) / xs.length;
  assert.ok(Math.abs(mean) < 0.03 && Math.abs(variance - 1) < 0.05, `mean ${mean}, var ${variance}`);
  // 2^53 + 1 is already 2^53 as a double: such a seed is refused, not silently merged with another.
  assert.throws(() => new Rng(2 ** 53), RangeError);
  assert.notEqual(new Rng(2 ** 32).uniform(), new Rng(0).uniform(), 'seeds above 32 bits still differ');
});

test('in-graph uniforms equal the host SplitMix64 twin; dropout keeps 1 - p of the units', async () => {
  const g = new Graph();
  const x = g.input('x', 'float64', [4, 1000]);
  const seed = g.input('seed', 'uint64', []);
  const u = graphUniform(x, seed, 3);
  const ctx = new ModelContext(g, 'float64', 'train');
  (ctx as unknown as { shared: { seedInput: unknown } }).shared.seedInput = seed;
  const dropped = ctx.dropout(x, 0.25);
  const { session } = await createSession(
    g.serialize({
      outputs: [
        { name: 'u', value: u },
        { name: 'd', value: dropped },
      ],
    }),
  );
  const feeds = (s: bigint) => ({
    x: new ort.Tensor('float64', new Float64Array(4000).fill(1), [4, 1000]),
    seed: new ort.Tensor('uint64', BigUint64Array.of(s), []),
  });
  const out = await session.run(feeds(987654321n));
  const values = out.u!.data as Float64Array;
  const salt = (3n * 0xd1b54a32d192ed03n) & ((1n << 64n) - 1n);
  for (const i of [0, 1, 17, 3999]) {
    const expected = Number(splitMix64((987654321n + salt) & ((1n << 64n) - 1n), BigInt(i)) >> 40n) * 2 ** -24;
    assert.equal(values[i], expected);
  }
  const kept = Array.from(out.d!.data as Float64Array).filter((v) => v !== 0);
  assert.ok(Math.abs(kept.length / 4000 - 0.75) < 0.03, `kept ${kept.length}/4000`);
  assert.ok(kept.every((v) => Math.abs(v - 1 / 0.75) < 1e-12));
  const again = await session.run(feeds(987654321n));
  assert.deepEqual(Array.from(again.d!.data as Float64Array), Array.from(out.d!.data as Float64Array));
  const other = await session.run(feeds(5n));
  assert.notDeepEqual(Array.from(other.d!.data as Float64Array), Array.from(out.d!.data as Float64Array));
});

test('safetensors round-trips tensors and metadata; a truncated file names the tensor', () => {
  const path = join(tempDir(), 'x.safetensors');
  const tensors = new Map([
    ['b', { dtype: 'float32' as const, shape: [2, 2], data: Float32Array.of(1, 2, 3, 4) }],
    ['a', { dtype: 'int64' as const, shape: [3], data: BigInt64Array.of(1n, -2n, 3n) }],
  ]);
  saveSafetensors(path, tensors, { step: '7' });
  const bytes = readFileSync(path);
  const headerLen = Number(bytes.readBigUInt64LE(0));
  assert.equal((8 + headerLen) % 8, 0, 'data starts 8-byte aligned');
  const header = JSON.parse(bytes.subarray(8, 8 + headerLen).toString());
  assert.deepEqual(header.a, { dtype: 'I64', shape: [3], data_offsets: [0, 24] });
  assert.deepEqual(header.b, { dtype: 'F32', shape: [2, 2], data_offsets: [24, 40] });
  const back = loadSafetensors(path);
  assert.deepEqual(back.metadata, { step: '7' });
  assert.deepEqual(Array.from(back.tensors.get('b')!.data as Float32Array), [1, 2, 3, 4]);
  assert.deepEqual(Array.from(back.tensors.get('a')!.data as BigInt64Array), [1n, -2n, 3n]);
  writeFileSync(path, bytes.subarray(0, bytes.length - 4));
  assert.throws(() => loadSafetensors(path), {
    name: 'DamagedFileError',
    message:
      `${path}: tensor 'b' is truncated or inconsistent (offsets 24-40, file ${bytes.length - 4} bytes). Rewrite it with ` +
      `the command that made it`,
  });
});
