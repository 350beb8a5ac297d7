// Classification metrics with intervals: accuracy (Wilson 95%), confusion matrix, macro-F1.

/** Wilson score interval for a binomial proportion (z = 1.96 for 95%). */
export function wilsonInterval(successes: number, n: number, z = 1.959963984540054): { low: number; high: number } {
  if (n === 0) return { low: 0, high: 1 };
  const p = successes / n;
  const denom = 1 + (z * z) / n;
  const center = (p + (z * z) / (2 * n)) / denom;
  const half = (z * Math.sqrt((p * (1 - p)) / n + (z * z) / (4 * n * n))) / denom;
  return { low: Math.max(0, center - half), high: Math.min(1, center + half) };
}

export interface AccuracyReport {
  n: number;
  correct: number;
  accuracy: number;
  interval95: { low: number; high: number };
  /** confusion[gold][predicted] */
  confusion: number[][];
  macroF1: number;
}

export { argmaxRow } from '../util/stats.js';

export function accuracyReport(gold: ArrayLike<number>, predicted: ArrayLike<number>, classes: number): AccuracyReport {
  const confusion = Array.from({ length: classes }, () => new Array<number>(classes).fill(0));
  let correct = 0;
  for (let i = 0; i < gold.length; i++) {
    confusion[gold[i]!]![predicted[i]!]! += 1;
    if (gold[i] === predicted[i]) correct += 1;
  }
  let f1Sum = 0;
  for (let c = 0; c < classes; c++) {
    const tp = confusion[c]![c]!;
    const fp = confusion.reduce((s, row, g) => s + (g === c ? 0 : row[c]!), 0);
    const fn = confusion[c]!.reduce((s, v, p) => s + (p === c ? 0 : v), 0);
    f1Sum += tp === 0 ? 0 : (2 * tp) / (2 * tp + fp + fn);
  }
  return {
    n: gold.length,
    correct,
    accuracy: gold.length ? correct / gold.length : NaN,
    interval95: wilsonInterval(correct, gold.length),
    confusion,
    macroF1: f1Sum / classes,
  };
}
