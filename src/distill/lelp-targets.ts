// LELP pseudo-subclass targets (Loo et al. 2024), built offline from cached teacher outputs:
// remove what the classifier already sees (P = I − Wᵀ(WWᵀ)⁺W), take each class's top-S
// principal directions of H·P, rotate them by a seeded random orthogonal S×S matrix, and
// split the teacher's class probability over subclasses by a softmax of the projections.
import { OptionError } from '../errors.js';
import {
  inverse,
  matrix,
  multiply,
  orthonormalColumns,
  principalComponents,
  randomOrthogonal,
  transpose,
  type Matrix,
} from '../engine/linalg.js';
import { Rng } from '../engine/rng.js';

export type LelpVariant = 'lelp' | 'pca' | 'random' | 'kmeans';

export interface LelpConfig {
  subclasses: number;
  /** Temperature of the split over subclasses. */
  beta: number;
  /** Temperature of the teacher's class probabilities. */
  tau: number;
  groupBy: 'gold' | 'teacher';
  variant: LelpVariant;
  seed: number;
  /** Centre each class's rows before PCA (the paper's choice is unconfirmed). */
  center: boolean;
}

export interface LelpDirections {
  /** U_c as D×S matrices (orthonormal columns), one per class. */
  directions: Matrix[];
  /** The projection P was applied (lelp, random, kmeans) or not (pca). */
  nullSpace: boolean;
  /** k-means: centroids per class [S, D] instead of directions. */
  centroids: Matrix[] | null;
}

/** H·P = H − (H·Wᵀ)(W·Wᵀ)⁻¹·W for rows of H [n, D] and W [C, D]; never forms the D×D matrix. */
export function projectOutClassifier(h: Float64Array, n: number, d: number, w: Float64Array, c: number): Float64Array {
  const W = matrix(c, d, w);
  const gram = multiply(W, transpose(W));
  for (let i = 0; i < c; i++) gram.data[i * c + i]! += 1e-10; // (WWᵀ)⁺ for a full-rank W; a ridge keeps it finite otherwise
  const ginv = inverse(gram);
  const H = matrix(n, d, h);
  const coef = multiply(multiply(H, transpose(W)), ginv); // [n, C]
  const out = multiply(coef, W); // [n, D]
  for (let i = 0; i < out.data.length; i++) out.data[i] = H.data[i]! - out.data[i]!;
  return out.data;
}

function rowsOf(h: Float64Array, d: number, rows: number[]): Matrix {
  const m = matrix(rows.length, d);
  rows.forEach((r, i) => m.data.set(h.subarray(r * d, (r + 1) * d), i * d));
  return m;
}

/** Plain k-means (k-means++ seeding, Lloyd iterations), deterministic from the seed. */
export function kmeans(x: Matrix, k: number, seed: number, iterations = 50): Matrix {
  const { rows: n, cols: d } = x;
  if (n < k) throw new OptionError(`k-means: ${n} rows for ${k} clusters`);
  const rng = new Rng(seed);
  const centroids = matrix(k, d);
  const dist2 = (i: number, c: Matrix, j: number) => {
    let s = 0;
    for (let t = 0; t < d; t++) s += (x.data[i * d + t]! - c.data[j * d + t]!) ** 2;
    return s;
  };
  const first = rng.int(n);
  centroids.data.set(x.data.subarray(first * d, first * d + d), 0);
  for (let j = 1; j < k; j++) {
    const best = Float64Array.from({ length: n }, (_, i) => Math.min(...Array.from({ length: j }, (_, q) => dist2(i, centroids, q))));
    const total = best.reduce((a, b) => a + b, 0);
    let u = rng.uniform() * total;
    let pick = n - 1;
    for (let i = 0; i < n; i++) {
      u -= best[i]!;
      if (u <= 0) {
        pick = i;
        break;
      }
    }
    centroids.data.set(x.data.subarray(pick * d, pick * d + d), j * d);
  }
  const assign = new Int32Array(n);
  for (let it = 0; it < iterations; it++) {
    let changed = false;
    for (let i = 0; i < n; i++) {
      let bj = 0;
      let bd = Infinity;
      for (let j = 0; j < k; j++) {
        const dd = dist2(i, centroids, j);
        if (dd < bd) ((bd = dd), (bj = j));
      }
      if (assign[i] !== bj) ((assign[i] = bj), (changed = true));
    }
    const sums = new Float64Array(k * d);
    const counts = new Int32Array(k);
    for (let i = 0; i < n; i++) {
      counts[assign[i]!]! += 1;
      for (let t = 0; t < d; t++) sums[assign[i]! * d + t]! += x.data[i * d + t]!;
    }
    for (let j = 0; j < k; j++) if (counts[j]) for (let t = 0; t < d; t++) centroids.data[j * d + t] = sums[j * d + t]! / counts[j]!;
    if (!changed && it > 0) break;
  }
  return centroids;
}

/** U_c per class (or centroids, for k-means) from training embeddings. */
export function lelpDirections(
  h: Float64Array,
  n: number,
  d: number,
  groups: Int32Array,
  classes: number,
  w: Float64Array | null,
  cfg: LelpConfig,
): LelpDirections {
  const useNull = cfg.variant !== 'pca';
  if (useNull && !w) throw new OptionError("LELP needs the teacher's classifier W (the cache has none); use --lelp-variant pca");
  const h0 = useNull ? projectOutClassifier(h, n, d, w!, classes) : h;
  const directions: Matrix[] = [];
  const centroids: Matrix[] = [];
  for (let c = 0; c < classes; c++) {
    const members: number[] = [];
    for (let i = 0; i < n; i++) if (groups[i] === c) members.push(i);
    if (members.length <= cfg.subclasses)
      throw new OptionError(`LELP: class ${c} has ${members.length} training rows, fewer than S + 1 = ${cfg.subclasses + 1}`);
    const x = rowsOf(h0, d, members);
    if (cfg.variant === 'kmeans') {
      centroids.push(kmeans(x, cfg.subclasses, cfg.seed * 31 + c));
      continue;
    }
    if (cfg.variant === 'random') {
      const rng = new Rng(cfg.seed * 31 + c);
      let r = orthonormalColumns(
        matrix(
          d,
          cfg.subclasses,
          Array.from({ length: d * cfg.subclasses }, () => rng.normal()),
        ),
      );
      if (w) {
        // Keep the random directions inside the classifier's null space too.
        const projected = projectOutClassifier(transpose(r).data, cfg.subclasses, d, w, classes);
        r = orthonormalColumns(transpose(matrix(cfg.subclasses, d, projected)));
      }
      directions.push(r);
      continue;
    }
    const { components } = principalComponents(x, cfg.subclasses, cfg.center);
    directions.push(cfg.variant === 'lelp' ? multiply(components, randomOrthogonal(cfg.subclasses, cfg.seed * 31 + c)) : components);
  }
  return { directions, nullSpace: useNull, centroids: cfg.variant === 'kmeans' ? centroids : null };
}

/**
 * Targets q [n, C·S] (index c·S + s): q[c][s] = softmax(zt/τ)[c] · softmax_s(z[c][:]/β)[s],
 * with z[c][s] = ⟨h·P, U_c[:, s]⟩ (k-means: z[c][s] = −‖h·P − μ_{c,s}‖²).
 */
export function lelpTargets(
  h: Float64Array,
  n: number,
  d: number,
  teacherLogits: Float32Array,
  classes: number,
  w: Float64Array | null,
  dirs: LelpDirections,
  cfg: LelpConfig,
): Float32Array {
  const S = cfg.subclasses;
  const h0 = dirs.nullSpace ? projectOutClassifier(h, n, d, w!, classes) : h;
  const q = new Float32Array(n * classes * S);
  const z = new Float64Array(S);
  for (let i = 0; i < n; i++) {
    let max = -Infinity;
    for (let c = 0; c < classes; c++) max = Math.max(max, teacherLogits[i * classes + c]! / cfg.tau);
    let sum = 0;
    const pt = new Float64Array(classes);
    for (let c = 0; c < classes; c++) sum += pt[c] = Math.exp(teacherLogits[i * classes + c]! / cfg.tau - max);
    for (let c = 0; c < classes; c++) {
      pt[c]! /= sum;
      for (let s = 0; s < S; s++) {
        let v = 0;
        if (dirs.centroids) {
          const mu = dirs.centroids[c]!;
          for (let t = 0; t < d; t++) v -= (h0[i * d + t]! - mu.data[s * d + t]!) ** 2;
        } else {
          const u = dirs.directions[c]!;
          for (let t = 0; t < d; t++) v += h0[i * d + t]! * u.data[t * S + s]!;
        }
        z[s] = v / cfg.beta;
      }
      let zmax = -Infinity;
      for (let s = 0; s < S; s++) zmax = Math.max(zmax, z[s]!);
      let zs = 0;
      for (let s = 0; s < S; s++) zs += Math.exp(z[s]! - zmax);
      for (let s = 0; s < S; s++) q[i * classes * S + c * S + s] = (pt[c]! * Math.exp(z[s]! - zmax)) / zs;
    }
  }
  return q;
}
