// Seeded randomness. On the host: xoshiro128** (state saved in checkpoints, so a resumed run
// draws the same numbers). In graphs: a counter-based SplitMix64 hash of (step seed, site,
// element index), so dropout masks need no host transfer and replay exactly from the seed.
import type { Value } from './graph.js';
import * as op from './ops.js';
import { dimProduct } from './shape.js';

/** xoshiro128** (Blackman & Vigna), seeded through SplitMix32; 4×uint32 state. */
export class Rng {
  readonly state: Uint32Array;

  constructor(seed: number | Uint32Array) {
    if (seed instanceof Uint32Array) {
      if (seed.length !== 4) throw new RangeError(`Rng state must hold 4 uint32, got ${seed.length}`);
      this.state = Uint32Array.from(seed);
      return;
    }
    if (!Number.isInteger(seed)) throw new TypeError(`'seed' must be an integer, got ${seed}`);
    // Above 2^53 a double has already rounded the seed: two seeds would silently be one.
    if (!Number.isSafeInteger(seed)) throw new RangeError(`'seed' must be a safe integer (|seed| ≤ 2^53 − 1), got ${seed}`);
    this.state = new Uint32Array(4);
    let s = seed >>> 0;
    let hi = Math.floor(seed / 4294967296) >>> 0;
    for (let i = 0; i < 4; i++) {
      s = (s + 0x9e3779b9 + hi) >>> 0;
      hi = 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      this.state[i] = (z ^ (z >>> 16)) >>> 0;
    }
    if (this.state.every((x) => x === 0)) this.state[0] = 1;
  }

  /** Next uint32. */
  nextU32(): number {
    const s = this.state;
    const result = Math.imul(rotl(Math.imul(s[1]!, 5), 7), 9) >>> 0;
    const t = (s[1]! << 9) >>> 0;
    s[2]! ^= s[0]!;
    s[3]! ^= s[1]!;
    s[1]! ^= s[2]!;
    s[0]! ^= s[3]!;
    s[2]! ^= t;
    s[3] = rotl(s[3]!, 11);
    return result;
  }

  /** Uniform in [0, 1) with 53 bits. */
  uniform(): number {
    const a = this.nextU32() >>> 5;
    const b = this.nextU32() >>> 6;
    return (a * 67108864 + b) / 9007199254740992;
  }

  /** Standard normal (Box–Muller). */
  normal(): number {
    let u = this.uniform();
    while (u === 0) u = this.uniform();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.uniform());
  }

  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.uniform() * n);
  }

  /** A uint64 seed for an in-graph random site. */
  nextSeed(): bigint {
    return (BigInt(this.nextU32()) << 32n) | BigInt(this.nextU32());
  }

  /** Fisher–Yates shuffle in place. */
  shuffle<T>(items: T[] | Uint32Array | Int32Array): void {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const tmp = items[i]!;
      items[i] = items[j]!;
      items[j] = tmp as never;
    }
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

const GOLDEN = 0x9e3779b97f4a7c15n;
const MIX1 = 0xbf58476d1ce4e5b9n;
const MIX2 = 0x94d049bb133111ebn;

/** SplitMix64 of `index` under `seed`: the host twin of `graphUniform`, for tests. */
export function splitMix64(seed: bigint, index: bigint): bigint {
  const mask = (1n << 64n) - 1n;
  let z = (seed + (index + 1n) * GOLDEN) & mask;
  z = ((z ^ (z >> 30n)) * MIX1) & mask;
  z = ((z ^ (z >> 27n)) * MIX2) & mask;
  return z ^ (z >> 31n);
}

/**
 * Uniform [0, 1) numbers with the run-time shape of `like`, from a uint64 scalar `seed`
 * input and a per-site constant `salt`: u[i] = splitMix64(seed + salt, i) >> 40 / 2^24.
 */
export function graphUniform(like: Value, seed: Value, salt: number): Value {
  const g = like.graph;
  const u64 = (v: bigint, hint: string) => g.constant(BigUint64Array.from([v]), 'uint64', [], hint);
  const n = op.numel(like);
  const index = op.cast(op.range(n, dimProduct(like.shape)), 'uint64');
  const saltConst = u64((BigInt(salt) * 0xd1b54a32d192ed03n) & ((1n << 64n) - 1n), `salt_${salt}`);
  const base = op.add(seed, saltConst);
  let z = op.add(base, op.mul(op.add(index, u64(1n, 'one_u64')), u64(GOLDEN, 'golden')));
  z = op.mul(op.bitwiseXor(z, op.shiftRight(z, 30)), u64(MIX1, 'mix1'));
  z = op.mul(op.bitwiseXor(z, op.shiftRight(z, 27)), u64(MIX2, 'mix2'));
  z = op.bitwiseXor(z, op.shiftRight(z, 31));
  const top24 = op.cast(op.shiftRight(z, 40), like.dtype);
  return op.reshapeLike(op.mul(top24, 2 ** -24), like);
}
