// Static shapes with symbolic dimensions ("B", "T", products like "B*T"): enough to decide
// broadcasting and reductions when building gradients, with sizes known only at run time.

export type Dim = number | string;
export type Shape = readonly Dim[];

export function formatShape(s: Shape): string {
  return `[${s.join(', ')}]`;
}

/** Canonical symbolic product of dims ("B*T"); numbers multiply out. */
export function dimProduct(dims: readonly Dim[]): Dim {
  let num = 1;
  const syms: string[] = [];
  for (const d of dims) {
    if (typeof d === 'number') num *= d;
    else syms.push(...d.split('*').filter((s) => s !== ''));
  }
  if (syms.length === 0) return num;
  syms.sort();
  if (num !== 1) syms.unshift(String(num));
  return syms.join('*');
}

export function sameDim(a: Dim, b: Dim): boolean {
  return a === b || (typeof a === 'string' && typeof b === 'string' && dimProduct([a]) === dimProduct([b]));
}

/** Numpy broadcasting of static shapes; throws when dims cannot be proven compatible. */
export function broadcastShapes(a: Shape, b: Shape, what = 'broadcast'): Dim[] {
  const rank = Math.max(a.length, b.length);
  const out: Dim[] = [];
  for (let i = 0; i < rank; i++) {
    const da = i - (rank - a.length) >= 0 ? a[i - (rank - a.length)]! : 1;
    const db = i - (rank - b.length) >= 0 ? b[i - (rank - b.length)]! : 1;
    if (da === 1) out.push(db);
    else if (db === 1) out.push(da);
    else if (sameDim(da, db)) out.push(da);
    else throw new RangeError(`${what}: shapes ${formatShape(a)} and ${formatShape(b)} do not broadcast (dim ${i}: ${da} vs ${db})`);
  }
  return out;
}

/**
 * Axes of `out` that a value of shape `inp` was broadcast along: the leading axes it lacks,
 * and the axes where it has 1 and `out` does not. Summing a gradient over them (keeping the
 * non-leading ones) and reshaping gives the gradient for `inp`.
 */
export function broadcastAxes(inp: Shape, out: Shape): { leading: number[]; kept: number[] } {
  const lead = out.length - inp.length;
  const leading = Array.from({ length: lead }, (_, i) => i);
  const kept: number[] = [];
  for (let i = 0; i < inp.length; i++) {
    if (inp[i] === 1 && out[i + lead] !== 1) kept.push(i + lead);
  }
  return { leading, kept };
}

export function normalizeAxis(axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) throw new RangeError(`axis ${axis} is out of range for rank ${rank}`);
  return a;
}

/** Number of elements when every dim is numeric, else null. */
export function staticSize(s: Shape): number | null {
  let n = 1;
  for (const d of s) {
    if (typeof d !== 'number') return null;
    n *= d;
  }
  return n;
}
