// The loss primitives of losses.ts on the host, in closed form: each term's batch average over a head [B, H] in float64,
// and that average's gradient w.r.t. the head, added into a buffer. The host trainer's step calls these instead of an
// ONNX Runtime call of the loss graph (bag-trainer.ts); test/unit/train/host-trainer.test.ts checks them against it.
import type { ort } from './session.js';

/** A batch's head on the host, row-major [B, H], and the buffer where d(loss)/d(head) accumulates. */
export interface HostHead {
  z: Float64Array;
  B: number;
  H: number;
  grad: Float64Array;
}

/** The weights of one batch average, Σ_i w[i]·x[i]: 1/B each for the batch mean (batchMean), see hostMean/maskedHostMean. */
export type HostMean = Float64Array;

/** A loss on the host: its value and named terms; its gradient is already in the head's buffer. */
export interface HostLossParts {
  loss: number;
  terms: Record<string, number>;
}

/** The loss inputs as the host losses read them: labels as int32, every float input as its values (a scalar as one). */
export interface HostInputs {
  labels: Int32Array;
  floats: Record<string, Float32Array>;
}

/**
 * A loss on the host, for LossDefinition.host: from the head and the batch's loss inputs, the loss and the loss graph's
 * metrics by name, with d(loss)/d(head) added into `head.grad` (zeroed by the caller).
 */
export type HostLoss = (head: HostHead, batch: Record<string, ort.Tensor>) => { loss: number; metrics: Record<string, number> };

/** Growable scratch rows of the primitives (no allocation per step). */
let tmpA = new Float64Array(16);
let tmpB = new Float64Array(16);
function rows(n: number): [Float64Array, Float64Array] {
  if (tmpA.length < n) ((tmpA = new Float64Array(2 * n)), (tmpB = new Float64Array(2 * n)));
  return [tmpA, tmpB];
}

/** p = softmax(x[at..at+n) · inv) into `p`; returns log Σ exp(x·inv) (the log-partition). */
function softmaxRow(x: ArrayLike<number>, at: number, n: number, inv: number, p: Float64Array): number {
  let m = -Infinity;
  for (let c = 0; c < n; c++) m = Math.max(m, x[at + c]! * inv);
  let s = 0;
  for (let c = 0; c < n; c++) s += p[c] = Math.exp(x[at + c]! * inv - m);
  for (let c = 0; c < n; c++) p[c]! /= s;
  return m + Math.log(s);
}

/** The batch mean's weights: 1/B each. */
export function hostMean(B: number, out = new Float64Array(B)): HostMean {
  return out.fill(1 / B);
}

/** maskedMean's weights: w[i] / max(Σ w, 1) for row weights w (0 or 1). */
export function maskedHostMean(weights: ArrayLike<number>, B: number, out = new Float64Array(B)): HostMean {
  let total = 0;
  for (let i = 0; i < B; i++) total += weights[i]!;
  const inv = 1 / Math.max(total, 1);
  for (let i = 0; i < B; i++) out[i] = weights[i]! * inv;
  return out;
}

/**
 * mean(crossEntropy(head, labels)) (−log softmax(z)[y]; 0 for a label outside [0, H), as the graph's one-hot gives),
 * adding `coef`·its gradient (softmax(z) − onehot(y), per row weighted by the mean) into head.grad.
 */
export function crossEntropyTerm(head: HostHead, labels: Int32Array, mean: HostMean, coef: number): number {
  const { z, B, H, grad } = head;
  const [p] = rows(H);
  let value = 0;
  for (let i = 0; i < B; i++) {
    const y = labels[i]!;
    if (!(y >= 0 && y < H)) continue;
    const at = i * H;
    const lse = softmaxRow(z, at, H, 1, p);
    value += mean[i]! * (lse - z[at + y]!);
    const g = coef * mean[i]!;
    if (g === 0) continue;
    for (let c = 0; c < H; c++) grad[at + c] += g * (p[c]! - (c === y ? 1 : 0));
  }
  return value;
}

/** mean(softCrossEntropy(head, targets)) (−Σ_c q[c]·log softmax(z)[c]), adding `coef`·its gradient into head.grad. */
export function softCrossEntropyTerm(head: HostHead, targets: Float32Array, mean: HostMean, coef: number): number {
  const { z, B, H, grad } = head;
  const [p] = rows(H);
  let value = 0;
  for (let i = 0; i < B; i++) {
    const at = i * H;
    const lse = softmaxRow(z, at, H, 1, p);
    let qSum = 0;
    let x = 0;
    for (let c = 0; c < H; c++) {
      const q = targets[at + c]!;
      qSum += q;
      x -= q * (z[at + c]! - lse);
    }
    value += mean[i]! * x;
    const g = coef * mean[i]!;
    if (g === 0) continue;
    for (let c = 0; c < H; c++) grad[at + c] += g * (p[c]! * qSum - targets[at + c]!);
  }
  return value;
}

/**
 * mean(KL(softmax(zt/τ) ‖ softmax(zs/τ))) at one temperature (distillationTerm without its τ²), adding `coef`·its
 * gradient ((softmax(zs/τ)·Σ p_t − p_t)/τ) into head.grad.
 */
export function klTerm(head: HostHead, teacherLogits: Float32Array, tau: number, mean: HostMean, coef: number): number {
  const { z, B, H, grad } = head;
  const [pt, ps] = rows(H);
  const inv = 1 / tau;
  let value = 0;
  for (let i = 0; i < B; i++) {
    const at = i * H;
    const lzt = softmaxRow(teacherLogits, at, H, inv, pt);
    const lzs = softmaxRow(z, at, H, inv, ps);
    let kl = 0;
    let ptSum = 0;
    for (let c = 0; c < H; c++) {
      ptSum += pt[c]!;
      kl += pt[c]! * (teacherLogits[at + c]! * inv - lzt - (z[at + c]! * inv - lzs));
    }
    value += mean[i]! * kl;
    const g = (coef * mean[i]!) / tau;
    if (g === 0) continue;
    for (let c = 0; c < H; c++) grad[at + c] += g * (ps[c]! * ptSum - pt[c]!);
  }
  return value;
}

/** DTKD's guard of its temperatures (distill/methods/dtkd.ts): `clamp` keeps them in [τ/4, 4τ] as well. */
export type DtkdGuard = 'clamp' | 'fallback';

/** dtkd.ts's ε: below it the temperatures fall back to τ. */
const DTKD_EPS = 1e-6;

/**
 * DTKD's L_dt, mean(KL(zt/T_t ‖ zs/T_s)·T_t·T_s) with T_t = 2τ·x/(x+y), T_s = 2τ·y/(x+y) (x = max zt, y = max zs;
 * both τ when x + y ≤ ε; clamped to [τ/4, 4τ] under `clamp`), adding `coef`·its gradient into head.grad. As in the
 * graph, the gradient flows through T_s and T_t into max zs (shared equally between ties, as torch.amax does).
 */
export function dtkdDtTerm(
  head: HostHead,
  teacherLogits: Float32Array,
  tau: number,
  guard: DtkdGuard,
  mean: HostMean,
  coef: number,
): number {
  const { z, B, H, grad } = head;
  const [pa, pb] = rows(H);
  const lo = tau / 4;
  const hi = 4 * tau;
  let value = 0;
  for (let i = 0; i < B; i++) {
    const at = i * H;
    let x = -Infinity;
    let y = -Infinity;
    for (let c = 0; c < H; c++) ((x = Math.max(x, teacherLogits[at + c]!)), (y = Math.max(y, z[at + c]!)));
    const sum = x + y;
    const ok = sum > DTKD_EPS;
    let tt = ok ? (2 * tau * x) / sum : tau;
    let ts = ok ? (2 * tau * y) / sum : tau;
    // Whether the gradient passes each temperature's clamp (Clip's: inside [lo, hi], bounds included).
    const passT = guard === 'fallback' || (tt >= lo && tt <= hi);
    const passS = guard === 'fallback' || (ts >= lo && ts <= hi);
    if (guard === 'clamp') ((tt = Math.min(Math.max(tt, lo), hi)), (ts = Math.min(Math.max(ts, lo), hi)));
    const la = softmaxRow(teacherLogits, at, H, 1 / tt, pa);
    const lb = softmaxRow(z, at, H, 1 / ts, pb);
    let kl = 0;
    let paSum = 0;
    for (let c = 0; c < H; c++) {
      paSum += pa[c]!;
      kl += pa[c]! * (teacherLogits[at + c]! / tt - la - (z[at + c]! / ts - lb));
    }
    value += mean[i]! * kl * tt * ts;
    const g = coef * mean[i]!;
    if (g === 0) continue;
    // d(KL)/d(T_s) through b = zs/T_s, and d(KL)/d(T_t) through a = zt/T_t.
    let dKlTs = 0;
    let dKlTt = 0;
    for (let c = 0; c < H; c++) {
      const db = pb[c]! * paSum - pa[c]!;
      dKlTs -= (db * z[at + c]!) / (ts * ts);
      const logRatio = teacherLogits[at + c]! / tt - la - (z[at + c]! / ts - lb);
      dKlTt -= (pa[c]! * (logRatio - kl) * teacherLogits[at + c]!) / (tt * tt);
    }
    // The rows' direct gradient (T_t·T_s·dKL/db / T_s), then the temperatures' through y = max zs.
    for (let c = 0; c < H; c++) grad[at + c] += g * tt * (pb[c]! * paSum - pa[c]!);
    if (!ok) continue;
    const dTt = passT ? (-2 * tau * x) / (sum * sum) : 0;
    const dTs = passS ? (2 * tau * x) / (sum * sum) : 0;
    const dy = (dKlTt * tt * ts + kl * ts) * dTt + (dKlTs * tt * ts + kl * tt) * dTs;
    if (dy === 0) continue;
    let ties = 0;
    for (let c = 0; c < H; c++) if (z[at + c] === y) ties++;
    for (let c = 0; c < H; c++) if (z[at + c] === y) grad[at + c] += (g * dy) / ties;
  }
  return value;
}

/**
 * mean(crossEntropy(marginal logits, labels)) for a head of C·S pseudo-subclasses, the marginal of class c being
 * log Σ_s exp(z[c·S + s]) (lelp.ts marginalLogits), adding `coef`·its gradient into head.grad.
 */
export function marginalCrossEntropyTerm(head: HostHead, labels: Int32Array, classes: number, mean: HostMean, coef: number): number {
  const { z, B, H, grad } = head;
  const S = H / classes;
  const [pm, ps] = rows(Math.max(H, classes));
  let value = 0;
  const m = new Float64Array(classes);
  for (let i = 0; i < B; i++) {
    const y = labels[i]!;
    if (!(y >= 0 && y < classes)) continue;
    const at = i * H;
    for (let c = 0; c < classes; c++) m[c] = softmaxRow(z, at + c * S, S, 1, ps);
    const lse = softmaxRow(m, 0, classes, 1, pm);
    value += mean[i]! * (lse - m[y]!);
    const g = coef * mean[i]!;
    if (g === 0) continue;
    for (let c = 0; c < classes; c++) {
      const dm = g * (pm[c]! - (c === y ? 1 : 0));
      softmaxRow(z, at + c * S, S, 1, ps);
      for (let s = 0; s < S; s++) grad[at + c * S + s] += dm * ps[s]!;
    }
  }
  return value;
}

/** The labels (int64 or int32) of a batch as int32 into `out` (labels are class ids: small). */
export function labelsOf(t: ort.Tensor, out: Int32Array): Int32Array {
  const data = t.data as ArrayLike<number | bigint>;
  for (let i = 0; i < out.length; i++) out[i] = Number(data[i]);
  return out;
}
