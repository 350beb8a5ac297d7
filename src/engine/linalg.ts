// Small dense linear algebra in float64 for offline work (PCA, null spaces, orthogonal
// rotations): row-major matrices, sizes up to a few thousand.
import { Rng } from './rng.js';

/** A row-major matrix. */
export interface Matrix {
  rows: number;
  cols: number;
  data: Float64Array;
}

export function matrix(rows: number, cols: number, data?: ArrayLike<number>): Matrix {
  const m = { rows, cols, data: new Float64Array(rows * cols) };
  if (data) {
    if (data.length !== rows * cols) throw new RangeError(`matrix: ${data.length} values for ${rows}×${cols}`);
    m.data.set(data);
  }
  return m;
}

export function identity(n: number): Matrix {
  const m = matrix(n, n);
  for (let i = 0; i < n; i++) m.data[i * n + i] = 1;
  return m;
}

export function transpose(a: Matrix): Matrix {
  const t = matrix(a.cols, a.rows);
  for (let i = 0; i < a.rows; i++) for (let j = 0; j < a.cols; j++) t.data[j * a.rows + i] = a.data[i * a.cols + j]!;
  return t;
}

export function multiply(a: Matrix, b: Matrix): Matrix {
  if (a.cols !== b.rows) throw new RangeError(`multiply: ${a.rows}×${a.cols} by ${b.rows}×${b.cols}`);
  const c = matrix(a.rows, b.cols);
  for (let i = 0; i < a.rows; i++) {
    for (let k = 0; k < a.cols; k++) {
      const v = a.data[i * a.cols + k]!;
      if (v === 0) continue;
      const brow = k * b.cols;
      const crow = i * b.cols;
      for (let j = 0; j < b.cols; j++) c.data[crow + j]! += v * b.data[brow + j]!;
    }
  }
  return c;
}

/** Inverse of a small symmetric positive-definite or general square matrix (Gauss–Jordan, partial pivoting). */
export function inverse(a: Matrix): Matrix {
  if (a.rows !== a.cols) throw new RangeError('inverse: matrix is not square');
  const n = a.rows;
  const m = matrix(n, 2 * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) m.data[i * 2 * n + j] = a.data[i * n + j]!;
    m.data[i * 2 * n + n + i] = 1;
  }
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(m.data[r * 2 * n + c]!) > Math.abs(m.data[p * 2 * n + c]!)) p = r;
    if (Math.abs(m.data[p * 2 * n + c]!) < 1e-12) throw new RangeError('inverse: matrix is singular');
    if (p !== c)
      for (let j = 0; j < 2 * n; j++) [m.data[p * 2 * n + j], m.data[c * 2 * n + j]] = [m.data[c * 2 * n + j]!, m.data[p * 2 * n + j]!];
    const pivot = m.data[c * 2 * n + c]!;
    for (let j = 0; j < 2 * n; j++) m.data[c * 2 * n + j]! /= pivot;
    for (let r = 0; r < n; r++) {
      if (r === c) continue;
      const f = m.data[r * 2 * n + c]!;
      if (f === 0) continue;
      for (let j = 0; j < 2 * n; j++) m.data[r * 2 * n + j]! -= f * m.data[c * 2 * n + j]!;
    }
  }
  const inv = matrix(n, n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) inv.data[i * n + j] = m.data[i * 2 * n + n + j]!;
  return inv;
}

/** Thin QR by modified Gram–Schmidt (twice, for stability): returns Q with orthonormal columns. */
export function orthonormalColumns(a: Matrix): Matrix {
  const q = matrix(a.rows, a.cols, a.data);
  for (let pass = 0; pass < 2; pass++) {
    for (let j = 0; j < q.cols; j++) {
      for (let k = 0; k < j; k++) {
        let dot = 0;
        for (let i = 0; i < q.rows; i++) dot += q.data[i * q.cols + j]! * q.data[i * q.cols + k]!;
        for (let i = 0; i < q.rows; i++) q.data[i * q.cols + j]! -= dot * q.data[i * q.cols + k]!;
      }
      let norm = 0;
      for (let i = 0; i < q.rows; i++) norm += q.data[i * q.cols + j]! ** 2;
      norm = Math.sqrt(norm);
      if (norm < 1e-300) throw new RangeError('orthonormalColumns: columns are linearly dependent');
      for (let i = 0; i < q.rows; i++) q.data[i * q.cols + j]! /= norm;
    }
  }
  return q;
}

/** A seeded random orthogonal n×n matrix (QR of a Gaussian matrix, Haar-distributed). */
export function randomOrthogonal(n: number, seed: number): Matrix {
  const rng = new Rng(seed);
  return orthonormalColumns(
    matrix(
      n,
      n,
      Array.from({ length: n * n }, () => rng.normal()),
    ),
  );
}

/** Eigen-decomposition of a symmetric matrix by cyclic Jacobi rotations: values descending, vectors as columns. */
export function symmetricEigen(
  a: Matrix,
  opts: { maxSweeps?: number; tolerance?: number } = {},
): { values: Float64Array; vectors: Matrix } {
  const n = a.rows;
  const m = matrix(n, n, a.data);
  const v = identity(n);
  const tol = opts.tolerance ?? 1e-12;
  for (let sweep = 0; sweep < (opts.maxSweeps ?? 100); sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += m.data[p * n + q]! ** 2;
    if (off < tol * tol) break;
    for (let p = 0; p < n; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = m.data[p * n + q]!;
        if (Math.abs(apq) < 1e-300) continue;
        const app = m.data[p * n + p]!;
        const aqq = m.data[q * n + q]!;
        const theta = (aqq - app) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k++) {
          const akp = m.data[k * n + p]!;
          const akq = m.data[k * n + q]!;
          m.data[k * n + p] = c * akp - s * akq;
          m.data[k * n + q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = m.data[p * n + k]!;
          const aqk = m.data[q * n + k]!;
          m.data[p * n + k] = c * apk - s * aqk;
          m.data[q * n + k] = s * apk + c * aqk;
        }
        for (let k = 0; k < n; k++) {
          const vkp = v.data[k * n + p]!;
          const vkq = v.data[k * n + q]!;
          v.data[k * n + p] = c * vkp - s * vkq;
          v.data[k * n + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  const order = Array.from({ length: n }, (_, i) => i).sort((x, y) => m.data[y * n + y]! - m.data[x * n + x]!);
  const values = Float64Array.from(order, (i) => m.data[i * n + i]!);
  const vectors = matrix(n, n);
  order.forEach((src, dst) => {
    // Sign convention: the largest-magnitude entry of each vector is positive (deterministic output).
    let big = 0;
    for (let k = 0; k < n; k++) if (Math.abs(v.data[k * n + src]!) > Math.abs(v.data[big * n + src]!)) big = k;
    const sign = v.data[big * n + src]! < 0 ? -1 : 1;
    for (let k = 0; k < n; k++) vectors.data[k * n + dst] = sign * v.data[k * n + src]!;
  });
  return { values, vectors };
}

/**
 * Top-k principal directions of the rows of `x` (n×d), centred unless `center` is false:
 * the mean and a d×k matrix of orthonormal columns, with the variance along each.
 */
export function principalComponents(
  x: Matrix,
  k: number,
  center = true,
): { mean: Float64Array; components: Matrix; variances: Float64Array } {
  const { rows: n, cols: d } = x;
  const mean = new Float64Array(d);
  if (center) {
    for (let i = 0; i < n; i++) for (let j = 0; j < d; j++) mean[j]! += x.data[i * d + j]!;
    for (let j = 0; j < d; j++) mean[j]! /= Math.max(1, n);
  }
  const cov = matrix(d, d);
  const row = new Float64Array(d);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < d; j++) row[j] = x.data[i * d + j]! - mean[j]!;
    for (let a = 0; a < d; a++) {
      const ra = row[a]!;
      if (ra === 0) continue;
      for (let b = a; b < d; b++) cov.data[a * d + b]! += ra * row[b]!;
    }
  }
  for (let a = 0; a < d; a++)
    for (let b = a; b < d; b++) {
      const v = cov.data[a * d + b]! / Math.max(1, n - (center ? 1 : 0));
      cov.data[a * d + b] = v;
      cov.data[b * d + a] = v;
    }
  const { values, vectors } = symmetricEigen(cov);
  const kk = Math.min(k, d);
  const components = matrix(d, kk);
  for (let a = 0; a < d; a++) for (let j = 0; j < kk; j++) components.data[a * kk + j] = vectors.data[a * d + j]!;
  return { mean, components, variances: values.slice(0, kk) };
}
