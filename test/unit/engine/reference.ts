// Plain-TypeScript reference: an MLP's forward and backward by hand, and the optimizers'
// update rules as PyTorch defines them. Independent of the engine's graphs.

export type Mat = Float64Array; // row-major

export function matmul(a: Mat, b: Mat, n: number, k: number, m: number): Mat {
  const out = new Float64Array(n * m);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < m; j++) {
      let s = 0;
      for (let t = 0; t < k; t++) s += a[i * k + t]! * b[t * m + j]!;
      out[i * m + j] = s;
    }
  return out;
}

export function softmaxRows(z: Mat, n: number, c: number): Mat {
  const p = new Float64Array(n * c);
  for (let i = 0; i < n; i++) {
    let max = -Infinity;
    for (let j = 0; j < c; j++) max = Math.max(max, z[i * c + j]!);
    let s = 0;
    for (let j = 0; j < c; j++) s += p[i * c + j] = Math.exp(z[i * c + j]! - max);
    for (let j = 0; j < c; j++) p[i * c + j]! /= s;
  }
  return p;
}

/** Mean cross-entropy and its gradient with respect to the logits. */
export function crossEntropyGrad(z: Mat, labels: number[], n: number, c: number): { loss: number; dz: Mat } {
  const p = softmaxRows(z, n, c);
  let loss = 0;
  const dz = new Float64Array(n * c);
  for (let i = 0; i < n; i++) {
    loss -= Math.log(p[i * c + labels[i]!]!);
    for (let j = 0; j < c; j++) dz[i * c + j] = (p[i * c + j]! - (j === labels[i] ? 1 : 0)) / n;
  }
  return { loss: loss / n, dz };
}

export interface MlpParams {
  [name: string]: Mat;
}

/** x [n, d] → linear(d, h) → relu → linear(h, c): loss and gradients for every parameter. */
export function mlpLossAndGrads(
  p: MlpParams,
  x: Mat,
  labels: number[],
  n: number,
  d: number,
  h: number,
  c: number,
): { loss: number; grads: MlpParams } {
  const z1 = matmul(x, p['l1.weight']!, n, d, h);
  for (let i = 0; i < n; i++) for (let j = 0; j < h; j++) z1[i * h + j]! += p['l1.bias']![j]!;
  const a1 = z1.map((v) => Math.max(0, v));
  const z2 = matmul(a1, p['l2.weight']!, n, h, c);
  for (let i = 0; i < n; i++) for (let j = 0; j < c; j++) z2[i * c + j]! += p['l2.bias']![j]!;
  const { loss, dz } = crossEntropyGrad(z2, labels, n, c);
  const dW2 = new Float64Array(h * c);
  const db2 = new Float64Array(c);
  const da1 = new Float64Array(n * h);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < c; j++) {
      const g = dz[i * c + j]!;
      db2[j]! += g;
      for (let t = 0; t < h; t++) {
        dW2[t * c + j]! += a1[i * h + t]! * g;
        da1[i * h + t]! += p['l2.weight']![t * c + j]! * g;
      }
    }
  const dz1 = da1.map((g, k) => (z1[k]! > 0 ? g : 0));
  const dW1 = new Float64Array(d * h);
  const db1 = new Float64Array(h);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < h; j++) {
      const g = dz1[i * h + j]!;
      db1[j]! += g;
      for (let t = 0; t < d; t++) dW1[t * h + j]! += x[i * d + t]! * g;
    }
  return { loss, grads: { 'l1.weight': dW1, 'l1.bias': db1, 'l2.weight': dW2, 'l2.bias': db2 } };
}

export function globalNorm(grads: MlpParams): number {
  let s = 0;
  for (const g of Object.values(grads)) for (const v of g) s += v * v;
  return Math.sqrt(s);
}

/** torch.optim.AdamW step (with torch.nn.utils.clip_grad_norm_ before it). */
export function adamwStep(
  p: MlpParams,
  g: MlpParams,
  m: MlpParams,
  v: MlpParams,
  t: number,
  lr: number,
  o: { b1: number; b2: number; eps: number; wd: number; clip?: number; decay: (name: string) => boolean },
): void {
  let coef = 1;
  if (o.clip !== undefined) coef = Math.min(1, o.clip / (globalNorm(g) + 1e-6));
  const bc1 = 1 - o.b1 ** t;
  const bc2 = 1 - o.b2 ** t;
  for (const name of Object.keys(p)) {
    const wd = o.decay(name) ? o.wd : 0;
    for (let k = 0; k < p[name]!.length; k++) {
      const gk = g[name]![k]! * coef;
      m[name]![k] = o.b1 * m[name]![k]! + (1 - o.b1) * gk;
      v[name]![k] = o.b2 * v[name]![k]! + (1 - o.b2) * gk * gk;
      const denom = Math.sqrt(v[name]![k]!) / Math.sqrt(bc2) + o.eps;
      p[name]![k] = p[name]![k]! * (1 - lr * wd) - (lr / bc1) * (m[name]![k]! / denom);
    }
  }
}

/** torch.optim.SGD step with momentum, coupled weight decay and optional Nesterov. */
export function sgdStep(
  p: MlpParams,
  g: MlpParams,
  buf: MlpParams,
  lr: number,
  o: { momentum: number; wd: number; nesterov?: boolean; decay: (name: string) => boolean },
): void {
  for (const name of Object.keys(p)) {
    const wd = o.decay(name) ? o.wd : 0;
    for (let k = 0; k < p[name]!.length; k++) {
      const gk = g[name]![k]! + wd * p[name]![k]!;
      buf[name]![k] = o.momentum * buf[name]![k]! + gk;
      const d = o.nesterov ? gk + o.momentum * buf[name]![k]! : buf[name]![k]!;
      p[name]![k]! -= lr * d;
    }
  }
}
