// Shared benchmark helpers: flags, timing, peak RSS of a child process, the PyTorch peers.
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export function flag(args: string[], name: string, fallback: number): number {
  const hit = args.find((a) => a.startsWith(`--${name}=`));
  if (!hit) return fallback;
  const value = Number(hit.slice(name.length + 3));
  if (!Number.isFinite(value)) throw new TypeError(`'--${name}' must be a number, got ${JSON.stringify(hit)}`);
  return value;
}

/** The upper median of `xs` (left unsorted). */
export function median(xs: readonly number[]): number {
  return [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
}

export function log(line: string): void {
  process.stdout.write(`${line}\n`);
}

/**
 * Runs `node script args` and returns its last stdout line as JSON plus the peak RSS
 * the kernel recorded for it (VmHWM via /proc), sampled every 20 ms.
 */
export async function runNodeChild(script: string, args: string[]): Promise<{ result: Record<string, unknown>; peakRssMb: number }> {
  const child = spawn(process.execPath, ['--expose-gc', script, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const { readFileSync } = await import('node:fs');
  let peak = 0;
  const timer = setInterval(() => {
    try {
      const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
      const m = /VmHWM:\s+(\d+) kB/.exec(status);
      if (m) peak = Math.max(peak, Number(m[1]) / 1024);
    } catch {
      /* process gone */
    }
  }, 20);
  const code: number = await new Promise((resolve) => child.on('close', (c) => resolve(c ?? -1)));
  clearInterval(timer);
  if (code !== 0) throw new Error(`${script} exited with ${code}`);
  const result = JSON.parse(out.trimEnd().split('\n').at(-1)!) as Record<string, unknown>;
  return { result, peakRssMb: Math.max(peak, Number(result.peakRssMb ?? 0)) };
}

/**
 * Runs a PyTorch peer (`scripts/bench/<script>` under Debian's /usr/bin/python3) and returns the
 * JSON object on its last stdout line, or why it was skipped (python3-torch missing, a failure).
 */
export function runTorchPeer<T>(script: string, args: string[], input?: string): T | { skipped: string } {
  const path = fileURLToPath(new URL(`../../../scripts/bench/${script}`, import.meta.url));
  const r = spawnSync('/usr/bin/python3', [path, ...args], { encoding: 'utf8', ...(input !== undefined ? { input } : {}) });
  if (r.error || r.status !== 0) {
    const why = r.error
      ? r.error.message
      : r.stderr.includes('No module named')
        ? 'python3-torch is not installed (apt-get install python3-torch)'
        : r.stderr.trim().split('\n').at(-1);
    return { skipped: why ?? 'failed' };
  }
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as T;
}
