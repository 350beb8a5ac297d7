// Batch orders: seeded shuffles, with length bucketing for token models (low padding), and the
// batched inference loop that puts each row's outputs back in row order.
import type { Rng } from './rng.js';

/** Batches of similar length, in a seeded random order (length buckets keep padding low). */
export function bucketedBatches(lengths: ArrayLike<number>, batchSize: number, rng: Rng): Int32Array[] {
  const idx = Int32Array.from({ length: lengths.length }, (_, i) => i);
  rng.shuffle(idx);
  // Sort within windows of 50 batches by length, then cut and shuffle the batches.
  const window = batchSize * 50;
  const batches: Int32Array[] = [];
  for (let s = 0; s < idx.length; s += window) {
    const part = idx.slice(s, s + window).sort((a, b) => lengths[a]! - lengths[b]!);
    for (let k = 0; k < part.length; k += batchSize) batches.push(part.slice(k, k + batchSize));
  }
  rng.shuffle(batches);
  return batches;
}

/** Plain shuffled batches. */
export function shuffledBatches(n: number, batchSize: number, rng: Rng): Int32Array[] {
  const idx = Int32Array.from({ length: n }, (_, i) => i);
  rng.shuffle(idx);
  const out: Int32Array[] = [];
  for (let s = 0; s < n; s += batchSize) out.push(idx.slice(s, s + batchSize));
  return out;
}

/** Row indices 0..n−1 sorted by `lengths` (shortest first), for inference with little padding. */
export function lengthOrder(lengths: ArrayLike<number>): Int32Array {
  return Int32Array.from({ length: lengths.length }, (_, i) => i).sort((a, b) => lengths[a]! - lengths[b]!);
}

/**
 * Runs `run` on the rows of `order` in batches of `batchSize` and puts each row's `width`
 * outputs (e.g. its class logits) at its own index: an [n, width] result in row order.
 */
export async function predictRows(
  order: Int32Array,
  width: number,
  batchSize: number,
  run: (rows: Int32Array) => Promise<Float32Array>,
): Promise<Float32Array> {
  const out = new Float32Array(order.length * width);
  for (let s = 0; s < order.length; s += batchSize) {
    const rows = order.subarray(s, s + batchSize);
    const values = await run(rows);
    rows.forEach((r, k) => out.set(values.subarray(k * width, (k + 1) * width), r * width));
  }
  return out;
}
