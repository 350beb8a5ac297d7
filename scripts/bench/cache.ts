// Cache benchmark: a generated cache of 1,000,000 rows × 768-dim float16 embeddings
// (~1.5 GB) written through the same shard writer as kd cache build; RSS while writing,
// warm sequential and shuffled reads, size on disk for full, pca:64 and none. Peer: reading
// the same shard files raw with fs (no decoding), the ceiling a reader can reach.
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { flag, log, runNodeChild } from './util.js';

export async function benchCache(args: string[]): Promise<Record<string, unknown>> {
  const rows = flag(args, 'rows', 1_000_000);
  const dim = flag(args, 'dim', 768);
  const root = join(tmpdir(), 'kd-bench-cache');
  rmSync(root, { recursive: true, force: true });
  mkdirSync(root, { recursive: true });
  const worker = fileURLToPath(new URL('./cache-worker.js', import.meta.url));
  const sizes: Record<string, number> = {};
  let write: { result: Record<string, unknown>; peakRssMb: number } | null = null;
  for (const [mode, d] of [
    ['full', dim],
    ['pca64', 64],
    ['none', 0],
  ] as const) {
    const w = await runNodeChild(worker, ['write', join(root, mode), String(rows), String(d)]);
    sizes[mode] = Number(w.result.bytes);
    if (mode === 'full') write = w;
    log(
      `write ${mode}: ${rows} rows × ${d} in ${Number(w.result.seconds).toFixed(1)}s ` +
        `(${(Number(w.result.bytes) / 1e6 / Number(w.result.seconds)).toFixed(0)} MB/s), ` +
        `${(Number(w.result.bytes) / 1e6).toFixed(0)} MB, peak RSS ${w.peakRssMb.toFixed(0)} MB`,
    );
  }
  const read = await runNodeChild(worker, ['read', join(root, 'full')]);
  const r = read.result as Record<string, number>;
  log(
    `sequential read through the reader: ${(r.storedBytes / 1e9 / r.storedSeconds).toFixed(2)} GB/s as stored (float16), ` +
      `${(r.sequentialBytes / 1e9 / r.sequentialSeconds).toFixed(2)} GB/s decoded to float32; raw fs read of the same files: ` +
      `${(r.rawBytes / 1e9 / r.rawSeconds).toFixed(2)} GB/s`,
  );
  log(
    `shuffled batches of 256 rows: ${Math.round(r.shuffledRows / r.shuffledSeconds)} rows/s, peak RSS while reading ` +
      `${read.peakRssMb.toFixed(0)} MB`,
  );
  rmSync(root, { recursive: true, force: true });
  const result = {
    bench: 'cache',
    rows,
    dim,
    write_mb_per_s: Math.round(sizes.full! / 1e6 / Number(write!.result.seconds)),
    write_rows_per_s: Math.round(rows / Number(write!.result.seconds)),
    build_peak_rss_mb: Math.round(write!.peakRssMb),
    rss_target_mb: 1500,
    sequential_read_gb_per_s: round(r.storedBytes / 1e9 / r.storedSeconds),
    sequential_read_decoded_gb_per_s: round(r.sequentialBytes / 1e9 / r.sequentialSeconds),
    raw_read_gb_per_s: round(r.rawBytes / 1e9 / r.rawSeconds),
    ratio_vs_raw_read: round(r.storedBytes / r.storedSeconds / (r.rawBytes / r.rawSeconds)),
    read_target_gb_per_s: 1,
    shuffled_rows_per_s: Math.round(r.shuffledRows / r.shuffledSeconds),
    read_peak_rss_mb: Math.round(read.peakRssMb),
    size_on_disk_mb: { full: Math.round(sizes.full! / 1e6), pca64: Math.round(sizes.pca64! / 1e6), none: Math.round(sizes.none! / 1e6) },
  };
  return result;
}

function round(x: number): number {
  return Number(x.toFixed(2));
}
