// Diagnostics of a student against its teacher (METHODS.md §4, §5): calibration, the
// deviation ("exaggeration") slope with a bootstrap interval, and KD's gradient variance.
import { Rng } from '../engine/rng.js';
import { argmaxRow } from '../util/stats.js';

export interface ReliabilityBin {
  low: number;
  high: number;
  count: number;
  confidence: number;
  accuracy: number;
}

/** Expected calibration error over equal-width confidence bins, and the bins themselves. */
export function calibration(
  probs: Float64Array,
  labels: ArrayLike<number>,
  classes: number,
  bins = 15,
): { ece: number; nll: number; bins: ReliabilityBin[]; histogram: number[] } {
  const n = labels.length;
  const b: ReliabilityBin[] = Array.from({ length: bins }, (_, k) => ({
    low: k / bins,
    high: (k + 1) / bins,
    count: 0,
    confidence: 0,
    accuracy: 0,
  }));
  let nll = 0;
  for (let i = 0; i < n; i++) {
    const k = argmaxRow(probs, i * classes, classes);
    const conf = probs[i * classes + k]!;
    const bin = b[Math.min(bins - 1, Math.floor(conf * bins))]!;
    bin.count += 1;
    bin.confidence += conf;
    bin.accuracy += k === labels[i] ? 1 : 0;
    nll -= Math.log(Math.max(1e-12, probs[i * classes + labels[i]!]!));
  }
  let ece = 0;
  for (const bin of b) {
    if (bin.count) {
      bin.confidence /= bin.count;
      bin.accuracy /= bin.count;
      ece += (bin.count / n) * Math.abs(bin.accuracy - bin.confidence);
    }
  }
  return { ece, nll: nll / n, bins: b, histogram: b.map((x) => x.count) };
}

export interface DeviationFit {
  /** Slope a of logit(pS(k)) = a·logit(pT(k)) + c; a > 1 means exaggeration. */
  slope: number;
  intercept: number;
  slopeCi95: [number, number];
  n: number;
  /** Binned means of (u, v) for plots. */
  binned: { u: number; v: number; count: number }[];
}

const logit = (p: number) => {
  const q = Math.min(1 - 1e-6, Math.max(1e-6, p));
  return Math.log(q / (1 - q));
};

function ols(u: Float64Array, v: Float64Array, idx: ArrayLike<number>): { a: number; c: number } {
  let su = 0;
  let sv = 0;
  for (let k = 0; k < idx.length; k++) ((su += u[idx[k]!]!), (sv += v[idx[k]!]!));
  const mu = su / idx.length;
  const mv = sv / idx.length;
  let cov = 0;
  let var_ = 0;
  for (let k = 0; k < idx.length; k++) {
    const du = u[idx[k]!]! - mu;
    cov += du * (v[idx[k]!]! - mv);
    var_ += du * du;
  }
  const a = var_ > 0 ? cov / var_ : NaN;
  return { a, c: mv - a * mu };
}

/** The student–teacher deviation diagnostic on the teacher's top class, with a bootstrap 95% interval. */
export function deviationSlope(
  teacherProbs: Float64Array,
  studentProbs: Float64Array,
  n: number,
  classes: number,
  seed = 13,
  resamples = 1000,
): DeviationFit {
  const u = new Float64Array(n);
  const v = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const k = argmaxRow(teacherProbs, i * classes, classes);
    u[i] = logit(teacherProbs[i * classes + k]!);
    v[i] = logit(studentProbs[i * classes + k]!);
  }
  const all = Int32Array.from({ length: n }, (_, i) => i);
  const { a, c } = ols(u, v, all);
  const rng = new Rng(seed);
  const slopes: number[] = [];
  const idx = new Int32Array(n);
  for (let r = 0; r < resamples; r++) {
    for (let i = 0; i < n; i++) idx[i] = rng.int(n);
    const fit = ols(u, v, idx);
    if (Number.isFinite(fit.a)) slopes.push(fit.a);
  }
  slopes.sort((x, y) => x - y);
  const q = (p: number) => slopes[Math.min(slopes.length - 1, Math.max(0, Math.round(p * (slopes.length - 1))))] ?? NaN;
  const order = Array.from(all).sort((x, y) => u[x]! - u[y]!);
  const binned: DeviationFit['binned'] = [];
  for (let b = 0; b < 10; b++) {
    const part = order.slice(Math.floor((b * n) / 10), Math.floor(((b + 1) * n) / 10));
    if (part.length)
      binned.push({
        u: part.reduce((s, i) => s + u[i]!, 0) / part.length,
        v: part.reduce((s, i) => s + v[i]!, 0) / part.length,
        count: part.length,
      });
  }
  return { slope: a, intercept: c, slopeCi95: [q(0.025), q(0.975)], n, binned };
}

/**
 * Variance of per-example head (logit) gradients at the student's point, for
 * L = (1−λ)CE + λ·KL at τ = 1: g_i = (p_s − y) − λ(p_t − y) (METHODS.md §4), and the
 * variance-minimizing λ* = E⟨p_s − y, p_t − y⟩ / E‖p_t − y‖².
 */
export function gradientVariance(
  studentProbs: Float64Array,
  teacherProbs: Float64Array,
  labels: ArrayLike<number>,
  classes: number,
  lambdas: number[],
): { lambdaStar: number; variance: Record<string, number> } {
  const n = labels.length;
  let dot = 0;
  let tt = 0;
  for (let i = 0; i < n; i++)
    for (let c = 0; c < classes; c++) {
      const y = labels[i] === c ? 1 : 0;
      const gs = studentProbs[i * classes + c]! - y;
      const gt = teacherProbs[i * classes + c]! - y;
      dot += gs * gt;
      tt += gt * gt;
    }
  const lambdaStar = tt > 0 ? dot / tt : 0;
  const variance: Record<string, number> = {};
  for (const lambda of [...lambdas, lambdaStar]) {
    const mean = new Float64Array(classes);
    const g = new Float64Array(n * classes);
    for (let i = 0; i < n; i++)
      for (let c = 0; c < classes; c++) {
        const y = labels[i] === c ? 1 : 0;
        g[i * classes + c] = studentProbs[i * classes + c]! - y - lambda * (teacherProbs[i * classes + c]! - y);
        mean[c]! += g[i * classes + c]! / n;
      }
    let v = 0;
    for (let i = 0; i < n; i++) for (let c = 0; c < classes; c++) v += (g[i * classes + c]! - mean[c]!) ** 2;
    variance[lambda === lambdaStar && !lambdas.includes(lambda) ? 'lambdaStar' : String(lambda)] = v / n;
  }
  return { lambdaStar, variance };
}
