// Progress lines (rate, ETA) for long work: drawn on a TTY only, silent in CI and pipes.

export interface ProgressOptions {
  /** What is being counted, e.g. "rows" or "MB". */
  unit: string;
  /** Total expected, when known, for percentage and ETA. */
  total?: number;
  /** Where to draw; defaults to stderr. */
  stream?: NodeJS.WriteStream;
  /** Force on or off; by default on only when the stream is a TTY and CI is unset. */
  enabled?: boolean;
  /** Minimum milliseconds between redraws. */
  intervalMs?: number;
}

export class Progress {
  private readonly label: string;
  private readonly opts: ProgressOptions;
  private readonly stream: NodeJS.WriteStream;
  private readonly enabled: boolean;
  private readonly startedAt = Date.now();
  private lastDraw = 0;
  private done = 0;
  private extra = '';

  constructor(label: string, opts: ProgressOptions) {
    this.label = label;
    this.opts = opts;
    this.stream = opts.stream ?? process.stderr;
    this.enabled = opts.enabled ?? (Boolean(this.stream.isTTY) && !process.env.CI);
  }

  /** Sets the absolute count done so far and redraws if due. */
  update(done: number, extra = ''): void {
    this.done = done;
    this.extra = extra;
    if (!this.enabled) return;
    const now = Date.now();
    if (now - this.lastDraw < (this.opts.intervalMs ?? 200)) return;
    this.lastDraw = now;
    this.draw(now);
  }

  /** Increments the count by `n`. */
  tick(n = 1, extra = ''): void {
    this.update(this.done + n, extra);
  }

  /** Final line; leaves the cursor on a new line. */
  finish(extra = ''): void {
    if (!this.enabled) return;
    this.extra = extra || this.extra;
    this.draw(Date.now());
    this.stream.write('\n');
  }

  private draw(now: number): void {
    const seconds = Math.max((now - this.startedAt) / 1000, 1e-3);
    const rate = this.done / seconds;
    const total = this.opts.total;
    let line = `${this.label}: ${formatCount(this.done)}`;
    if (total !== undefined && total > 0) {
      const pct = Math.min(100, (100 * this.done) / total);
      const eta = rate > 0 ? (total - this.done) / rate : Infinity;
      line +=
        `/${formatCount(total)} ${this.opts.unit} (${pct.toFixed(1)}%) ${formatCount(rate)} ${this.opts.unit}/s ETA ` +
        `${formatDuration(eta)}`;
    } else {
      line += ` ${this.opts.unit} ${formatCount(rate)} ${this.opts.unit}/s`;
    }
    if (this.extra) line += ` ${this.extra}`;
    this.stream.write(`\r\x1b[2K${line}`);
  }
}

export function formatCount(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  if (Math.abs(n) >= 1e9) return `${(n / 1e9).toFixed(2)}G`;
  if (Math.abs(n) >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  if (Math.abs(n) >= 1e4) return `${(n / 1e3).toFixed(1)}k`;
  return Number.isInteger(n) ? String(n) : n.toFixed(1);
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '--';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = s % 60;
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : m > 0 ? `${m}m${String(r).padStart(2, '0')}s` : `${r}s`;
}
