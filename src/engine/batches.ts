// Batch orders: seeded shuffles, with length bucketing for token models (low padding).
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
