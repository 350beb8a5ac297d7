// Small numeric summaries shared by stats, evaluation and benchmarks.

/** Nearest-rank percentile of an ascending-sorted array (q in [0, 100]). */
export function percentile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((q / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

export interface Distribution {
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

export function distribution(values: ArrayLike<number>): Distribution {
  const sorted = Float64Array.from(values).sort();
  let sum = 0;
  for (let i = 0; i < sorted.length; i++) sum += sorted[i]!;
  return {
    mean: sorted.length ? sum / sorted.length : NaN,
    p50: percentile(sorted, 50),
    p90: percentile(sorted, 90),
    p99: percentile(sorted, 99),
    max: sorted.length ? sorted[sorted.length - 1]! : NaN,
  };
}

/** Index of the largest of `classes` values starting at `offset` (first one on ties). */
export function argmaxRow(values: ArrayLike<number>, offset: number, classes: number): number {
  let best = 0;
  for (let c = 1; c < classes; c++) if (values[offset + c]! > values[offset + best]!) best = c;
  return best;
}

/** A growable typed array of unsigned 32-bit values (lengths of millions of texts). */
export class U32List {
  private data = new Uint32Array(1024);
  length = 0;
  push(v: number): void {
    if (this.length === this.data.length) {
      const next = new Uint32Array(this.data.length * 2);
      next.set(this.data);
      this.data = next;
    }
    this.data[this.length++] = v;
  }
  view(): Uint32Array {
    return this.data.subarray(0, this.length);
  }
}

/** The maximum of row `offset .. offset + classes` and Σ exp(x − max) over it. */
function rowExpSum(logits: ArrayLike<number>, offset: number, classes: number): { max: number; sum: number } {
  let max = -Infinity;
  for (let c = 0; c < classes; c++) max = Math.max(max, logits[offset + c]!);
  let sum = 0;
  for (let c = 0; c < classes; c++) sum += Math.exp(logits[offset + c]! - max);
  return { max, sum };
}

/** Softmax of `n` rows of [n, classes] logits (the host's one softmax). */
export function softmaxRows(logits: ArrayLike<number>, n: number, classes: number, offset = 0): Float64Array {
  const p = new Float64Array(n * classes);
  for (let i = 0; i < n; i++) {
    const at = offset + i * classes;
    const { max, sum } = rowExpSum(logits, at, classes);
    for (let c = 0; c < classes; c++) p[i * classes + c] = Math.exp(logits[at + c]! - max) / sum;
  }
  return p;
}

/** Softmax of the row of `classes` logits at `offset`. */
export function softmaxRow(logits: ArrayLike<number>, offset: number, classes: number): number[] {
  return Array.from(softmaxRows(logits, 1, classes, offset));
}

/** Log-softmax of the rows of [n, classes] logits. */
export function logSoftmaxRows(logits: ArrayLike<number>, classes: number): Float64Array {
  const out = new Float64Array(logits.length);
  for (let i = 0; i < logits.length / classes; i++) {
    const { max, sum } = rowExpSum(logits, i * classes, classes);
    const lse = max + Math.log(sum);
    for (let c = 0; c < classes; c++) out[i * classes + c] = logits[i * classes + c]! - lse;
  }
  return out;
}
