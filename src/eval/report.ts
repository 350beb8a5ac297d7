// `kd report`: one self-contained HTML page (inline SVG, inline CSS, no scripts, no network)
// comparing runs: methods × datasets × students, late switch and sweeps, learning curves,
// calibration, the deviation diagnostic, gradient variance, size and speed, and caveats.
import { ConfigError } from '../data/errors.js';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { EvalReport } from './evaluate.js';
import { barChart, escapeXml, lineChart, type Series } from './svg.js';
import { toolVersion } from '../util/versions.js';

interface Summary {
  student: string;
  loss: string;
  lossOptions: Record<string, unknown>;
  summary: { seeds: number[]; dev: Stat; test: Stat | null };
  runs: { seed: number; dev: number; test: number | null; steps: number; bestStep: number }[];
}

interface Stat {
  mean: number;
  std: number;
  ci95: [number, number];
}

export interface ReportRun {
  dir: string;
  /** main (a method), late (late-switch point) or sweep (one parameter varied). */
  kind: 'main' | 'late' | 'sweep';
  dataset: string;
  student: string;
  loss: string;
  label: string;
  options: Record<string, unknown>;
  summary: Summary;
  eval: EvalReport | null;
  evalTrain: EvalReport | null;
  curves: { seed: number; points: { step: number; dev: number }[] }[];
  /** Few-label runs (a recipe's runs.labels): the gold-labelled rows the student saw, and its transfer set. */
  labels?: { k: number; transfer: string | null; transferRows: number };
}

/** Context a pipeline adds: the teacher, baselines and data caveats, per dataset. */
export interface ReportContext {
  dataset: string;
  teacher?: { dir: string; eval?: EvalReport; devAccuracy?: number; note?: string };
  baselines?: { name: string; accuracy: number; interval95?: [number, number]; note?: string }[];
  caveats?: string[];
}

function readJson<T>(path: string): T | null {
  return existsSync(path) ? (JSON.parse(readFileSync(path, 'utf8')) as T) : null;
}

function label(loss: string, options: Record<string, unknown>): string {
  const parts = Object.entries(options)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}=${v}`);
  return parts.length ? `${loss} (${parts.join(', ')})` : loss;
}

/**
 * Reads a `kd train` output folder (summary.json, each seed's metrics, eval.json when there is
 * one) into what {@link buildReport} draws.
 *
 * @param dir - The folder `trainStudentSeeds` wrote (`<out>` holding summary.json and seed-N/).
 * @returns The run: dataset, student, loss and label, the seed summary, eval reports, learning curves.
 * @throws {ConfigError} No summary.json in `dir`.
 *
 * @example
 * ```ts
 * import { loadRun } from 'kd-toolkit';
 * const run = loadRun('runs');
 * console.log(run.kind, run.student, run.loss, run.label, run.curves.length);
 * // main ngram kd kd (lambda=0.5, tau=2) 2
 * ```
 */
export function loadRun(dir: string): ReportRun {
  const summary = readJson<Summary>(join(dir, 'summary.json'));
  if (!summary) throw new ConfigError(`${dir}: no summary.json (a run folder of kd train)`);
  const meta =
    readJson<{
      dataset?: string;
      label?: string;
      kind?: ReportRun['kind'];
      labels?: number | null;
      transfer?: string | null;
      transferRows?: number;
    }>(join(dir, 'run.json')) ?? {};
  const seedDirs = readdirSync(dir)
    .filter((d) => d.startsWith('seed-'))
    .sort();
  const config = seedDirs.length ? readJson<{ cache?: { data?: { path: string }[] } }>(join(dir, seedDirs[0]!, 'config.json')) : null;
  const curves = seedDirs.map((d) => {
    const path = join(dir, d, 'training', 'metrics.jsonl');
    const points = existsSync(path)
      ? readFileSync(path, 'utf8')
          .trim()
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l) as { step: number; dev: number })
          .map((r) => ({ step: r.step, dev: r.dev }))
      : [];
    return { seed: Number(d.slice(5)), points };
  });
  return {
    dir,
    kind: meta.kind ?? (summary.lossOptions.kdStart !== undefined && Number(summary.lossOptions.kdStart) > 0 ? 'late' : 'main'),
    dataset: meta.dataset ?? (config?.cache?.data?.[0] ? basename(config.cache.data[0].path) : 'data'),
    student: summary.student,
    loss: summary.loss,
    label: meta.label ?? label(summary.loss, summary.lossOptions),
    options: summary.lossOptions,
    summary,
    eval: readJson<EvalReport>(join(dir, 'eval.json')),
    evalTrain: readJson<EvalReport>(join(dir, 'eval-train.json')),
    curves,
    ...(typeof meta.labels === 'number'
      ? { labels: { k: meta.labels, transfer: meta.transfer ?? null, transferRows: meta.transferRows ?? 0 } }
      : {}),
  };
}

const pct = (x: number | null | undefined, digits = 2) =>
  x === null || x === undefined || !Number.isFinite(x) ? '–' : (100 * x).toFixed(digits);

function cell(key: string, value: number | null | undefined, text?: string): string {
  return `<td data-key="${escapeXml(key)}" data-value="${value ?? ''}">${text ?? pct(value)}</td>`;
}

function groupBy<T>(xs: T[], key: (x: T) => string): Map<string, T[]> {
  const m = new Map<string, T[]>();
  for (const x of xs) {
    const k = key(x);
    const list = m.get(k);
    if (list) list.push(x);
    else m.set(k, [x]);
  }
  return m;
}

/**
 * Runs that differ from each other only in `param`. For the late switch a run without
 * `kdStart` is the f = 0 point of its sweep.
 */
function sweeps(runs: ReportRun[], param: string): { key: string; runs: ReportRun[] }[] {
  const withDefault = runs.map((r) =>
    param === 'kdStart' && r.options.kdStart === undefined && r.loss !== 'ce' ? { ...r, options: { ...r.options, kdStart: 0 } } : r,
  );
  const groups = groupBy(
    withDefault.filter((r) => r.options[param] !== undefined),
    (r) =>
      `${r.dataset}|${r.student}|${r.loss}|${JSON.stringify(Object.fromEntries(Object.entries(r.options).filter(([k]) => k !== param)))}`,
  );
  return [...groups.entries()]
    .filter(([, rs]) => new Set(rs.map((r) => String(r.options[param]))).size >= 2)
    .map(([key, rs]) => ({ key, runs: rs.sort((a, b) => Number(a.options[param]) - Number(b.options[param])) }));
}

/** The comparison table in Markdown (for READMEs and notes). */
export function buildMarkdownTable(runs: ReportRun[], contexts: ReportContext[]): string {
  const lines = [
    '| dataset | student | method | test accuracy % (mean ± std) | 95% CI of the mean | dev % | seeds |',
    '|---|---|---|---|---|---|---|',
  ];
  const datasets = [...new Set([...contexts.map((c) => c.dataset), ...runs.map((r) => r.dataset)])];
  for (const ds of datasets) {
    const t = contexts.find((c) => c.dataset === ds)?.teacher?.eval;
    if (t)
      lines.push(
        `| ${ds} | teacher | ${basename(contexts.find((c) => c.dataset === ds)!.teacher!.dir)} | ${pct(t.accuracy)} | ` +
          `${pct(t.interval95.low)}–${pct(t.interval95.high)} (Wilson) | ` +
          `${pct(contexts.find((c) => c.dataset === ds)!.teacher!.devAccuracy)} | – |`,
      );
    for (const r of runs.filter((x) => x.dataset === ds)) {
      const test = r.summary.summary.test;
      lines.push(
        `| ${ds} | ${r.student} | ${r.label} | ${test ? `${pct(test.mean)} ± ${pct(test.std)}` : '–'} | ` +
          `${test ? `${pct(test.ci95[0])}–${pct(test.ci95[1])}` : '–'} | ${pct(r.summary.summary.dev.mean)} | ` +
          `${r.summary.summary.seeds.length} |`,
      );
    }
  }
  return `${lines.join('\n')}\n`;
}

/** The run's test summary, or its dev summary when it has no test split. */
const score = (r: ReportRun) => r.summary.summary.test ?? r.summary.summary.dev;

/** 1. The comparison table: teacher, baselines and every run, per dataset. */
function comparisonSection(runs: ReportRun[], contexts: ReportContext[], datasets: string[]): string {
  const rows: string[] = [];
  for (const ds of datasets) {
    const ctx = contexts.find((c) => c.dataset === ds);
    if (ctx?.teacher?.eval) {
      const t = ctx.teacher.eval;
      rows.push(
        [
          `<tr class="teacher"><td>${escapeXml(ds)}</td><td>teacher</td><td>${escapeXml(basename(ctx.teacher.dir))}</td>`,
          cell(`${ds}|teacher|test-mean`, t.accuracy),
          `<td>–</td><td>${pct(t.interval95.low)}–${pct(t.interval95.high)}</td>`,
          cell(`${ds}|teacher|dev-mean`, ctx.teacher.devAccuracy ?? null),
          '<td>1</td></tr>',
        ].join(''),
      );
    }
    for (const b of ctx?.baselines ?? []) {
      rows.push(
        [
          `<tr class="baseline"><td>${escapeXml(ds)}</td><td>baseline</td><td>${escapeXml(b.name)}</td>`,
          cell(`${ds}|baseline|${b.name}|test-mean`, b.accuracy),
          `<td>–</td><td>${b.interval95 ? `${pct(b.interval95[0])}–${pct(b.interval95[1])}` : '–'}</td>`,
          `<td>–</td><td>${escapeXml(b.note ?? '')}</td></tr>`,
        ].join(''),
      );
    }
    for (const r of runs.filter((x) => x.dataset === ds)) {
      const test = r.summary.summary.test;
      rows.push(
        [
          `<tr><td>${escapeXml(ds)}</td><td>${escapeXml(r.student)}</td><td>${escapeXml(r.label)}</td>`,
          cell(`${ds}|${r.student}|${r.label}|test-mean`, test?.mean ?? null),
          cell(`${ds}|${r.student}|${r.label}|test-std`, test?.std ?? null),
          `<td>${test ? `${pct(test.ci95[0])}–${pct(test.ci95[1])}` : '–'}</td>`,
          cell(`${ds}|${r.student}|${r.label}|dev-mean`, r.summary.summary.dev.mean),
          `<td>${r.summary.summary.seeds.length}</td></tr>`,
        ].join(''),
      );
    }
  }
  return (
    '<section id="comparison"><h2>Comparison</h2><p>Accuracy on the held-out test split (mean ± std over seeds; ' +
    'the interval is the 95% t-interval of the mean), and on dev.</p>\n' +
    '<table><thead><tr><th>dataset</th><th>student</th><th>method</th><th>test mean %</th><th>test std %</th>' +
    `<th>95% CI of mean %</th><th>dev mean %</th><th>seeds</th></tr></thead><tbody>${rows.join('\n')}</tbody></table></section>`
  );
}

/** 2. Bar charts per dataset (students as groups, methods as series), main runs only. */
function methodsSection(main: ReportRun[], datasets: string[]): string | null {
  const plots: string[] = [];
  for (const ds of datasets) {
    const rs = main.filter((r) => r.dataset === ds);
    if (!rs.length) continue;
    const students = [...new Set(rs.map((r) => r.student))];
    const methods = [...new Set(rs.map((r) => r.label))];
    plots.push(
      barChart(
        `methods-${ds}`,
        `${ds}: test accuracy by method`,
        students,
        methods.map((m) => {
          const of = (st: string) => {
            const run = rs.find((r) => r.student === st && r.label === m);
            return run ? score(run) : null;
          };
          return { name: m, values: students.map((st) => of(st)?.mean ?? null), errors: students.map((st) => of(st)?.std ?? null) };
        }),
        'accuracy',
      ),
    );
  }
  return plots.length ? `<section id="methods"><h2>Methods</h2>${plots.join('')}</section>` : null;
}

/** 3. Late switch and sweeps. */
function sweepsSection(runs: ReportRun[]): string | null {
  const sweepSections: string[] = [];
  for (const [param, name] of [
    ['kdStart', 'late switch (fraction trained with CE first)'],
    ['lambda', 'λ'],
    ['tau', 'τ'],
    ['subclasses', 'S (LELP subclasses)'],
  ] as const) {
    for (const sw of sweeps(runs, param)) {
      const first = sw.runs[0]!;
      const series: Series[] = [
        {
          name: `${first.dataset}/${first.student}/${first.loss}`,
          points: sw.runs.map((r) => ({
            x: Number(r.options[param]),
            y: score(r).mean,
            lo: score(r).mean - score(r).std,
            hi: score(r).mean + score(r).std,
          })),
        },
      ];
      let extra = '';
      if (param === 'kdStart') {
        const ce = runs.find((r) => r.dataset === first.dataset && r.student === first.student && r.loss === 'ce');
        const full = sw.runs.find((r) => Number(r.options.kdStart) === 0);
        if (ce && full) {
          const gain = score(full).mean - score(ce).mean;
          const head =
            '<table><thead><tr><th>f</th><th>accuracy %</th><th>recovered gain (acc_f − acc_CE)/(acc_KD − acc_CE)</th></tr></thead>';
          extra = `${head}<tbody>${sw.runs
            .map((r) => {
              const rec = Math.abs(gain) > 1e-12 ? (score(r).mean - score(ce).mean) / gain : NaN;
              return (
                `<tr><td>${r.options.kdStart}</td>` +
                cell(`${first.dataset}|${first.student}|late|${r.options.kdStart}`, score(r).mean) +
                '<td ' +
                `data-value="${rec}">${Number.isFinite(rec) ? rec.toFixed(2) : '–'}</td></tr>`
              );
            })
            .join('')}</tbody></table>`;
        }
      }
      sweepSections.push(
        `<h3>${escapeXml(name)}: ` +
          `${escapeXml(series[0]!.name)}</h3>${lineChart(`sweep-${param}-${sw.key}`, `${name} sweep`, series, param, 'accuracy')}${extra}`,
      );
    }
  }
  return sweepSections.length ? `<section id="sweeps"><h2>Late switch and sweeps</h2>${sweepSections.join('')}</section>` : null;
}

/** 4. Learning curves (first seed of each run), per dataset and student. */
function curvesSection(main: ReportRun[]): string | null {
  const curvePlots: string[] = [];
  for (const [key, rs] of groupBy(main, (r) => `${r.dataset}|${r.student}`)) {
    const series = rs
      .map((r) => ({ name: r.label, points: (r.curves[0]?.points ?? []).map((p) => ({ x: p.step, y: p.dev })) }))
      .filter((s) => s.points.length);
    if (series.length) curvePlots.push(lineChart(`curves-${key}`, `${key}: dev accuracy while training`, series, 'step', 'dev accuracy'));
  }
  return curvePlots.length ? `<section id="curves"><h2>Learning curves</h2>${curvePlots.join('')}</section>` : null;
}

/**
 * The "labels used" axis (few-label runs): test accuracy against k gold labels per method, with the teacher's line,
 * and the fraction of the teacher's accuracy each student keeps.
 */
function labelsSection(runs: ReportRun[], contexts: ReportContext[]): string | null {
  const few = runs.filter((r) => r.labels);
  if (!few.length) return null;
  const parts: string[] = [];
  for (const [key, rs] of groupBy(few, (r) => `${r.dataset}|${r.student}`)) {
    const [dataset, student] = key.split('|') as [string, string];
    const teacher = contexts.find((c) => c.dataset === dataset)?.teacher?.eval?.accuracy;
    const ks = [...new Set(rs.map((r) => r.labels!.k))].sort((a, b) => a - b);
    const methods = groupBy(rs, (r) => r.label.replace(/-k\d+/, ''));
    const header = `<tr><th>method</th>${ks.map((k) => `<th>k = ${k}: test %</th><th>of teacher</th>`).join('')}</tr>`;
    const rows = [...methods].map(([m, xs]) => {
      const cells = ks.map((k) => {
        const r = xs.find((x) => x.labels!.k === k);
        const sc = r ? score(r) : null;
        const kept = sc && teacher ? `${pct(sc.mean / teacher, 1)}%` : '–';
        return sc ? `<td>${pct(sc.mean)} ± ${pct(sc.std)}</td><td>${kept}</td>` : '<td>–</td><td>–</td>';
      });
      return `<tr><td>${escapeXml(m)}</td>${cells.join('')}</tr>`;
    });
    const teacherRow =
      teacher === undefined
        ? ''
        : `<tr class="teacher"><td>teacher (all labels)</td>${ks.map(() => `<td>${pct(teacher)}</td><td>100%</td>`).join('')}</tr>`;
    const series = [...methods].map(([m, xs]) => ({
      name: m,
      points: xs.map((x) => ({ x: x.labels!.k, y: score(x).mean })).sort((a, b) => a.x - b.x),
    }));
    if (teacher !== undefined) series.push({ name: 'teacher', points: ks.map((k) => ({ x: k, y: teacher })) });
    parts.push(
      `<h3>${escapeXml(dataset)}, ${escapeXml(student)} student</h3><table>${header}${teacherRow}${rows.join('')}</table>` +
        lineChart(`labels-${key}`, `${key}: test accuracy against gold labels used`, series, 'gold labels (k)', 'test accuracy'),
    );
  }
  const intro =
    'Each student saw k gold-labelled rows; runs with a transfer set also learnt from the rest of the training rows through ' +
    "the teacher's outputs alone (-aug: plus augmented copies).";
  return `<section id="labels"><h2>Labels used</h2><p>${intro}</p>${parts.join('')}</section>`;
}

/** 5. Calibration and confidence. */
function calibrationSection(evaluated: ReportRun[]): string {
  const calPlots: string[] = [];
  for (const [key, rs] of groupBy(evaluated, (r) => `${r.dataset}|${r.student}`)) {
    calPlots.push(
      lineChart(
        `reliability-${key}`,
        `${key}: reliability`,
        rs.map((r) => ({
          name: r.label,
          points: r.eval!.reliability.filter((b) => b.count > 0).map((b) => ({ x: b.confidence, y: b.accuracy })),
        })),
        'confidence',
        'accuracy',
        { diagonal: true },
      ),
    );
    const first = rs[0]!.eval!;
    const bins = first.confidenceHistogram.map((_, i) => `${(i / first.confidenceHistogram.length).toFixed(2)}`);
    const hist: { name: string; values: (number | null)[]; errors: (number | null)[] }[] = [];
    if (first.teacher)
      hist.push({
        name: 'teacher',
        values: first.teacher.confidenceHistogram.map((c) => c / first.n),
        errors: first.teacher.confidenceHistogram.map(() => null),
      });
    for (const r of rs)
      hist.push({
        name: r.label,
        values: r.eval!.confidenceHistogram.map((c) => c / r.eval!.n),
        errors: r.eval!.confidenceHistogram.map(() => null),
      });
    calPlots.push(
      barChart(`confidence-${key}`, `${key}: confidence histograms`, bins, hist, 'share of examples', [
        0,
        Math.max(...hist.flatMap((h) => h.values as number[])) * 1.05,
      ]),
    );
  }
  const calTable = evaluated.map(
    (r) =>
      `<tr><td>${escapeXml(r.dataset)}</td><td>${escapeXml(r.student)}</td><td>${escapeXml(r.label)}</td>` +
      `${cell(`${r.dataset}|${r.student}|${r.label}|eval-accuracy`, r.eval!.accuracy)}<td>` +
      `${r.eval!.nll.toFixed(4)}</td><td data-value="${r.eval!.ece}">${r.eval!.ece.toFixed(4)}</td><td>` +
      `${r.eval!.macroF1.toFixed(4)}</td><td>${r.eval!.teacher ? pct(r.eval!.teacher.agreement) : '–'}</td></tr>`,
  );
  return (
    `<section id="calibration"><h2>Calibration and agreement</h2><table><thead><tr><th>dataset</th><th>student</th>` +
    `<th>method</th><th>accuracy %</th><th>NLL</th><th>ECE</th><th>macro-F1</th><th>agreement with teacher %</th>` +
    `</tr></thead><tbody>${calTable.join('')}</tbody></table>${calPlots.join('')}</section>`
  );
}

/** 6. Deviation diagnostic and gradient variance. */
function deviationSection(evaluated: ReportRun[]): string | null {
  const dev = evaluated.filter((r) => r.eval!.teacher);
  if (!dev.length) return null;
  const devPlots: string[] = [];
  for (const [key, rs] of groupBy(dev, (r) => `${r.dataset}|${r.student}`)) {
    devPlots.push(
      lineChart(
        `deviation-${key}`,
        `${key}: logit of the student vs the teacher on the teacher's top class (binned means)`,
        rs.map((r) => ({ name: r.label, points: r.eval!.teacher!.deviation.binned.map((b) => ({ x: b.u, y: b.v })) })),
        'logit p_teacher(k)',
        'logit p_student(k)',
        { diagonal: true },
      ),
    );
  }
  const devRows = dev.map((r) => {
    const d = r.eval!.teacher!.deviation;
    const tr = r.evalTrain?.teacher?.deviation;
    const gv = r.eval!.teacher!.gradientVariance;
    return (
      `<tr><td>${escapeXml(r.dataset)}</td><td>${escapeXml(r.student)}</td><td>${escapeXml(r.label)}</td>` +
      `<td data-value="${d.slope}">${d.slope.toFixed(3)} (${d.slopeCi95[0].toFixed(3)}–${d.slopeCi95[1].toFixed(3)}` +
      `)</td><td>` +
      `${tr ? `${tr.slope.toFixed(3)} (${tr.slopeCi95[0].toFixed(3)}–${tr.slopeCi95[1].toFixed(3)})` : '–'}</td>` +
      `<td>${gv.variance['0']!.toFixed(4)}</td><td>${gv.variance['0.5']!.toFixed(4)}</td><td>` +
      `${gv.lambdaStar.toFixed(3)}</td><td>${gv.variance.lambdaStar!.toFixed(4)}</td></tr>`
    );
  });
  return (
    '<section id="deviation"><h2>Student–teacher deviation and gradient variance</h2><p>Slope a of logit p_student(k) = ' +
    "a·logit p_teacher(k) + c on the teacher's top class (a &gt; 1: the student exaggerates the teacher's uncertainty), " +
    "with a 1,000-resample bootstrap 95% interval. Gradient variance: variance over examples of the head's logit gradient " +
    '(p_s − y) − λ(p_t − y) at the trained student, for CE (λ = 0), λ = 0.5 and the variance-minimizing λ*.</p>\n' +
    '<table><thead><tr><th>dataset</th><th>student</th><th>method</th><th>slope, held-out</th><th>slope, train</th>' +
    '<th>grad var CE</th><th>grad var λ=0.5</th><th>λ*</th><th>grad var λ*</th></tr></thead>' +
    `<tbody>${devRows.join('')}</tbody></table>${devPlots.join('')}</section>`
  );
}

/** 7. Size and speed. */
function sizeSection(evaluated: ReportRun[], contexts: ReportContext[]): string {
  const sizeRows: string[] = [];
  for (const ctx of contexts) {
    const t = ctx.teacher?.eval;
    if (t)
      sizeRows.push(
        `<tr><td>${escapeXml(ctx.dataset)}</td><td>teacher</td><td>${t.size.parameters.toLocaleString('en-US')}` +
          `</td><td>${(t.size.onnxBytes / 1e6).toFixed(1)}</td><td>${t.latency.batch1MsMedian.toFixed(2)}</td><td>` +
          `${t.latency.batchedTextsPerSecond.toFixed(0)}</td></tr>`,
      );
  }
  for (const [, rs] of groupBy(evaluated, (r) => `${r.dataset}|${r.student}`)) {
    const r = rs[0]!;
    sizeRows.push(
      `<tr><td>${escapeXml(r.dataset)}</td><td>${escapeXml(r.student)} student</td><td data-value="` +
        `${r.eval!.size.parameters}">${r.eval!.size.parameters.toLocaleString('en-US')}</td><td>` +
        `${(r.eval!.size.onnxBytes / 1e6).toFixed(1)}</td><td>${r.eval!.latency.batch1MsMedian.toFixed(2)}</td><td>` +
        `${r.eval!.latency.batchedTextsPerSecond.toFixed(0)}</td></tr>`,
    );
  }
  return (
    `<section id="size"><h2>Teacher and student size and speed</h2><table><thead><tr><th>dataset</th><th>model</th>` +
    `<th>parameters</th><th>ONNX MB</th><th>ms/example, batch 1</th><th>texts/s, batched</th></tr></thead><tbody>` +
    `${sizeRows.join('')}</tbody></table></section>`
  );
}

/** 8. Caveats. */
function caveatsSection(contexts: ReportContext[]): string | null {
  const caveats = contexts.flatMap((c) => (c.caveats ?? []).map((x) => `<li><b>${escapeXml(c.dataset)}</b>: ${escapeXml(x)}</li>`));
  return caveats.length ? `<section id="caveats"><h2>Caveats of the data</h2><ul>${caveats.join('')}</ul></section>` : null;
}

/**
 * The `kd report` page: one self-contained HTML document (inline SVG and CSS, no scripts, no
 * network) comparing runs, with learning curves, calibration, diagnostics, size and speed.
 *
 * @param runs - Runs read by {@link loadRun}.
 * @param contexts - Per dataset: the teacher (and its eval), baselines, caveats.
 * @param title - The page title.
 * @returns The HTML text (write it to a .html file).
 *
 * @example
 * ```ts
 * import { buildReport, loadRun } from 'kd-toolkit';
 * const html = buildReport([loadRun('runs')], [{ dataset: 'sentiment140', caveats: ['600-row sample'] }], 'Example');
 * console.log(html.length, html.slice(0, 60), html.match(/<svg/g).length);
 * // 19392 <!doctype html><html lang="en"><head><meta charset="utf-8">< 5
 * ```
 */
export function buildReport(runs: ReportRun[], contexts: ReportContext[], title = 'Distillation report'): string {
  const datasets = [...new Set([...runs.map((r) => r.dataset), ...contexts.map((c) => c.dataset)])];
  const main = runs.filter((r) => r.kind === 'main');
  const evaluated = runs.filter((r) => r.eval);
  const sections = [
    comparisonSection(runs, contexts, datasets),
    methodsSection(main, datasets),
    labelsSection(runs, contexts),
    sweepsSection(runs),
    curvesSection(main),
    ...(evaluated.length ? [calibrationSection(evaluated), deviationSection(evaluated), sizeSection(evaluated, contexts)] : []),
    caveatsSection(contexts),
  ].filter((x): x is string => x !== null);

  const style =
    `body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:24px auto;max-width:1100px;color:#222;line-height:1.4}
table{border-collapse:collapse;margin:12px 0;font-size:13px}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}` +
    `td:nth-child(-n+3),th:nth-child(-n+3){text-align:left}
tr.teacher{background:#eef5ff}tr.baseline{background:#f6f6f6}` +
    `h2{border-bottom:2px solid #1f77b4;padding-bottom:2px;margin-top:32px}svg{display:block;margin:12px 0;background:#fff}`;
  return (
    `<!doctype html><html lang="en"><head><meta ` +
    `charset="utf-8"><title>${escapeXml(title)}</title><style>${style}</style></head><body><h1>${escapeXml(title)}</h1><p>Generated ` +
    `by kd-toolkit ${escapeXml(toolVersion)} from ${runs.length} run(s): ` +
    `${runs.map((r) => escapeXml(basename(r.dir))).join(', ')}.</p>${sections.join('\n')}</body></html>\n`
  );
}
