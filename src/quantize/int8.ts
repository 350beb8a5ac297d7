// Symmetric int8 weight quantization as onnxruntime's quantize_dynamic does it (QInt8, symmetric,
// scale = max|w| / 127, round half to even, clipped to ±127): per tensor, per column, per row.

/** Rounds to the nearest integer, ties to even (numpy's `round`, ONNX's rounding in QuantizeLinear). */
export function roundHalfToEven(x: number): number {
  const r = Math.round(x);
  // Math.round sends every tie up; a tie that landed on an odd integer belongs one lower. `+ 0` turns −0 into 0.
  return (r - x === 0.5 && r % 2 !== 0 ? r - 1 : r) + 0;
}

/** int8 values with the float scale of each group (one per tensor, column or row). */
export interface Int8Weights {
  values: Int8Array;
  /** float32 scales: 1 for a whole tensor, N for per-column, R for per-row. */
  scales: Float32Array;
}

/** The scale onnxruntime gives a group whose largest magnitude is `absMax` (1 for an all-zero group, as it does). */
function symmetricScale(absMax: number): number {
  const scale = Math.fround(absMax / 127);
  return scale < 1.1754943508222875e-38 ? 1 : scale;
}

function quantizeValue(w: number, scale: number): number {
  const q = roundHalfToEven(Math.fround(w / scale));
  return q > 127 ? 127 : q < -127 ? -127 : q;
}

/**
 * Quantizes a row-major [rows, cols] matrix with one scale per group: `'tensor'` (one scale),
 * `'column'` (one per column, the per-channel form MatMulInteger's 1-D b_zero_point allows) or
 * `'row'` (one per row: embedding tables, dequantized after Gather).
 *
 * @example
 * ```ts
 * quantizeSymmetric(Float32Array.of(0.5, -1, 0.25, 2), 2, 2, 'column');
 * // { values: Int8Array [ 127, -64, 64, 127 ], scales: Float32Array [ 0.003937…, 0.015748… ] }
 * ```
 */
export function quantizeSymmetric(w: Float32Array, rows: number, cols: number, group: 'tensor' | 'column' | 'row'): Int8Weights {
  if (w.length !== rows * cols) throw new RangeError(`'w' has ${w.length} values, not rows × cols = ${rows * cols}`);
  const groups = group === 'tensor' ? 1 : group === 'column' ? cols : rows;
  const absMax = new Float64Array(groups);
  const groupOf = (r: number, c: number) => (group === 'tensor' ? 0 : group === 'column' ? c : r);
  for (let r = 0; r < rows; r++)
    for (let c = 0; c < cols; c++) {
      const g = groupOf(r, c);
      const a = Math.abs(w[r * cols + c]!);
      if (a > absMax[g]!) absMax[g] = a;
    }
  const scales = Float32Array.from(absMax, symmetricScale);
  const values = new Int8Array(rows * cols);
  for (let r = 0; r < rows; r++)
    for (let c = 0; c < cols; c++) values[r * cols + c] = quantizeValue(w[r * cols + c]!, scales[groupOf(r, c)]!);
  return { values, scales };
}
