// Streaming reader benchmark: a generated Amazon-polarity-sized CSV (default 1.6 GB) read
// with bounded memory. Peer: node:readline over the same file (line splitting only, no
// parsing), the floor any line-based reader pays.
import { createWriteStream, existsSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tmpdir } from 'node:os';
import { flag, log, runNodeChild } from './util.js';

const WORDS =
  'the quality sound great terrible works broke after week love hate recommend would not buy again fast shipping cheap plastic ' +
  'battery screen book movie album story characters'.split(' ');

async function generate(path: string, megabytes: number): Promise<number> {
  const out = createWriteStream(path);
  let bytes = 0;
  let rows = 0;
  let seed = 12345;
  const rand = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 4294967296;
  const target = megabytes * 1e6;
  while (bytes < target) {
    const parts: string[] = [];
    for (let k = 0; k < 2000; k++) {
      const n = 30 + Math.floor(rand() * 120);
      const words = Array.from({ length: n }, () => WORDS[Math.floor(rand() * WORDS.length)]).join(' ');
      const title = `Title ${rows} "quoted"`.replace(/"/g, '""');
      const line = `"${rand() < 0.5 ? 1 : 2}","${title}","${words}, really."\n`;
      parts.push(line);
      rows += 1;
    }
    const chunk = parts.join('');
    bytes += Buffer.byteLength(chunk);
    if (!out.write(chunk)) await new Promise<void>((r) => out.once('drain', () => r()));
  }
  await new Promise<void>((r) => out.end(() => r()));
  return rows;
}

export async function benchData(args: string[]): Promise<Record<string, unknown>> {
  const megabytes = flag(args, 'mb', 1600);
  const dir = join(tmpdir(), 'kd-bench');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `amazon_${megabytes}mb.csv`);
  if (!existsSync(file)) {
    log(`generating ${megabytes} MB of Amazon-style CSV at ${file} …`);
    await generate(file, megabytes);
  }
  const size = statSync(file).size;
  const worker = fileURLToPath(new URL('./data-worker.js', import.meta.url));
  const ours = await runNodeChild(worker, ['kd', file]);
  const peer = await runNodeChild(worker, ['readline', file]);
  const mb = size / 1e6;
  const oursSeconds = Number(ours.result.seconds);
  const peerSeconds = Number(peer.result.seconds);
  const summary = {
    bench: 'data',
    file_mb: Number(mb.toFixed(1)),
    rows: ours.result.rows,
    seconds: Number(oursSeconds.toFixed(2)),
    rows_per_s: Math.round(Number(ours.result.rows) / oursSeconds),
    mb_per_s: Number((mb / oursSeconds).toFixed(1)),
    peak_rss_mb: Math.round(ours.peakRssMb),
    rss_target_mb: 300,
    readline_mb_per_s: Number((mb / peerSeconds).toFixed(1)),
    readline_peak_rss_mb: Math.round(peer.peakRssMb),
    ratio_vs_readline: Number((peerSeconds / oursSeconds).toFixed(2)),
  };
  log(
    `kd reader: ${summary.rows} rows, ${summary.file_mb} MB in ${summary.seconds}s = ${summary.rows_per_s} rows/s, ` +
      `${summary.mb_per_s} MB/s, peak RSS ${summary.peak_rss_mb} MB (target < 300)`,
  );
  log(
    `readline (split lines only): ${summary.readline_mb_per_s} MB/s, peak RSS ${summary.readline_peak_rss_mb} MB; kd/readline ` +
      `speed ratio ${summary.ratio_vs_readline}`,
  );
  return summary;
}
