// Plots as inline SVG strings (the report is one self-contained page: no scripts, no network).

export interface Series {
  name: string;
  points: { x: number; y: number; lo?: number; hi?: number }[];
}

const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#17becf', '#8c564b', '#e377c2'];

export function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

interface Frame {
  width: number;
  height: number;
  left: number;
  right: number;
  top: number;
  bottom: number;
  xmin: number;
  xmax: number;
  ymin: number;
  ymax: number;
}

function ticks(min: number, max: number, count = 5): number[] {
  if (!(max > min)) return [min];
  const raw = (max - min) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
  const out: number[] = [];
  for (let v = Math.ceil(min / step) * step; v <= max + 1e-12; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

function frame(
  f: Frame,
  xLabel: string,
  yLabel: string,
  xTicks?: { v: number; label: string }[],
): { sx: (x: number) => number; sy: (y: number) => number; axes: string } {
  const sx = (x: number) => f.left + ((x - f.xmin) / (f.xmax - f.xmin || 1)) * (f.width - f.left - f.right);
  const sy = (y: number) => f.height - f.bottom - ((y - f.ymin) / (f.ymax - f.ymin || 1)) * (f.height - f.top - f.bottom);
  const parts: string[] = [];
  parts.push(`<line x1="${f.left}" y1="${f.height - f.bottom}" x2="${f.width - f.right}" y2="${f.height - f.bottom}" stroke="#333"/>`);
  parts.push(`<line x1="${f.left}" y1="${f.top}" x2="${f.left}" y2="${f.height - f.bottom}" stroke="#333"/>`);
  for (const t of ticks(f.ymin, f.ymax)) {
    parts.push(
      `<line x1="${f.left - 4}" y1="${sy(t)}" x2="${f.width - f.right}" y2="${sy(t)}" stroke="#ddd"/><text x="${f.left - 6}" ` +
        `y="${sy(t) + 4}" text-anchor="end" font-size="11">${t}</text>`,
    );
  }
  for (const t of xTicks ?? ticks(f.xmin, f.xmax).map((v) => ({ v, label: String(v) }))) {
    parts.push(`<text x="${sx(t.v)}" y="${f.height - f.bottom + 15}" text-anchor="middle" font-size="11">${escapeXml(t.label)}</text>`);
  }
  parts.push(
    `<text x="${(f.left + f.width - f.right) / 2}" y="${f.height - 4}" text-anchor="middle" font-size="12">${escapeXml(xLabel)}</text>`,
  );
  parts.push(
    `<text transform="translate(12 ${(f.top + f.height - f.bottom) / 2}) rotate(-90)" text-anchor="middle" ` +
      `font-size="12">${escapeXml(yLabel)}</text>`,
  );
  return { sx, sy, axes: parts.join('') };
}

function svg(name: string, title: string, width: number, height: number, body: string): string {
  return (
    `<svg data-plot="${escapeXml(name)}" xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 ` +
    `0 ${width} ${height}" role="img"><title>${escapeXml(title)}</title>${body}</svg>`
  );
}

function legend(names: string[], x: number, y: number): string {
  return names
    .map(
      (n, i) =>
        `<rect x="${x}" y="${y + i * 16 - 9}" width="10" height="10" fill="${PALETTE[i % PALETTE.length]}"/><text x="${x + 14}" ` +
        `y="${y + i * 16}" font-size="11">${escapeXml(n)}</text>`,
    )
    .join('');
}

/** A chart's SVG: its axes and marks, and the legend of its series at the right of the frame. */
function chartSvg(name: string, title: string, f: Frame, series: readonly { name: string }[], body: string): string {
  const key = legend(
    series.map((s) => s.name),
    f.width - f.right + 12,
    f.top + 10,
  );
  return svg(name, title, f.width, f.height, `${body}${key}`);
}

/** Grouped bars with error bars: groups along x, one bar per series. */
export function barChart(
  name: string,
  title: string,
  groups: string[],
  series: { name: string; values: (number | null)[]; errors: (number | null)[] }[],
  yLabel: string,
  yRange?: [number, number],
): string {
  const width = 760;
  const height = 320;
  const all = series.flatMap((s) => s.values.map((v, i) => [v, s.errors[i]] as const)).filter(([v]) => v !== null) as [
    number,
    number | null,
  ][];
  const ymin = yRange?.[0] ?? Math.max(0, Math.min(...all.map(([v, e]) => v - (e ?? 0))) - 0.02);
  const ymax = yRange?.[1] ?? Math.min(1, Math.max(...all.map(([v, e]) => v + (e ?? 0))) + 0.02);
  const f: Frame = { width, height, left: 55, right: 170, top: 20, bottom: 45, xmin: 0, xmax: groups.length, ymin, ymax };
  const { sx, sy, axes } = frame(
    f,
    '',
    yLabel,
    groups.map((g, i) => ({ v: i + 0.5, label: g })),
  );
  const bw = (sx(1) - sx(0)) / (series.length + 1);
  const bars: string[] = [];
  series.forEach((s, k) => {
    s.values.forEach((v, g) => {
      if (v === null) return;
      const x = sx(g) + bw * (k + 0.5);
      const y = sy(v);
      bars.push(
        `<rect data-series="${escapeXml(s.name)}" data-group="${escapeXml(groups[g]!)}" data-value="${v}" x="${x}" y="${y}" ` +
          `width="${bw * 0.9}" height="${Math.max(0, sy(ymin) - y)}" fill="${PALETTE[k % PALETTE.length]}"/>`,
      );
      const e = s.errors[g];
      if (e) bars.push(`<line x1="${x + bw * 0.45}" y1="${sy(v - e)}" x2="${x + bw * 0.45}" y2="${sy(v + e)}" stroke="#000"/>`);
    });
  });
  return chartSvg(name, title, f, series, `${axes}${bars.join('')}`);
}

/** Lines with optional error bars. */
export function lineChart(
  name: string,
  title: string,
  series: Series[],
  xLabel: string,
  yLabel: string,
  opts: { diagonal?: boolean; yRange?: [number, number] } = {},
): string {
  const width = 560;
  const height = 320;
  const pts = series.flatMap((s) => s.points);
  if (pts.length === 0) return svg(name, title, width, height, '<text x="20" y="40">no data</text>');
  let xmin = Math.min(...pts.map((p) => p.x));
  let xmax = Math.max(...pts.map((p) => p.x));
  let ymin = opts.yRange?.[0] ?? Math.min(...pts.map((p) => p.lo ?? p.y));
  let ymax = opts.yRange?.[1] ?? Math.max(...pts.map((p) => p.hi ?? p.y));
  if (opts.diagonal) {
    xmin = ymin = Math.min(xmin, ymin);
    xmax = ymax = Math.max(xmax, ymax);
  }
  if (xmax === xmin) xmax = xmin + 1;
  if (ymax === ymin) ymax = ymin + 1;
  const f: Frame = { width, height, left: 55, right: 150, top: 20, bottom: 45, xmin, xmax, ymin, ymax };
  const { sx, sy, axes } = frame(f, xLabel, yLabel);
  const parts: string[] = [];
  if (opts.diagonal)
    parts.push(`<line x1="${sx(xmin)}" y1="${sy(xmin)}" x2="${sx(xmax)}" y2="${sy(xmax)}" stroke="#999" stroke-dasharray="4 3"/>`);
  series.forEach((s, k) => {
    const color = PALETTE[k % PALETTE.length];
    const d = s.points.map((p, i) => `${i ? 'L' : 'M'}${sx(p.x).toFixed(1)},${sy(p.y).toFixed(1)}`).join(' ');
    parts.push(`<path data-series="${escapeXml(s.name)}" d="${d}" fill="none" stroke="${color}" stroke-width="2"/>`);
    for (const p of s.points) {
      parts.push(`<circle cx="${sx(p.x)}" cy="${sy(p.y)}" r="3" fill="${color}" data-x="${p.x}" data-y="${p.y}"/>`);
      if (p.lo !== undefined && p.hi !== undefined)
        parts.push(`<line x1="${sx(p.x)}" y1="${sy(p.lo)}" x2="${sx(p.x)}" y2="${sy(p.hi)}" stroke="${color}"/>`);
    }
  });
  return chartSvg(name, title, f, series, `${axes}${parts.join('')}`);
}
