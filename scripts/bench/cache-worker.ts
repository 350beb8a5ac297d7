// Child process of the cache benchmark. `write OUT ROWS DIM` or `read OUT`.
import { readdirSync, readSync, openSync, closeSync, fstatSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { writeShard } from '../../src/cache/build.js';
import { CacheReader } from '../../src/cache/reader.js';
import { CACHE_FORMAT, CACHE_VERSION, type CacheManifest, type ShardEntry } from '../../src/cache/manifest.js';
import { saveSafetensors } from '../../src/engine/safetensors.js';
import { Rng } from '../../src/engine/rng.js';
import { writeFileAtomicSync } from '../../src/util/fs.js';

const [mode, out, rowsArg, dimArg] = process.argv.slice(2) as [string, string, string?, string?];
const SHARD = 4096;

if (mode === 'write') {
  const rows = Number(rowsArg);
  const dim = Number(dimArg);
  const rng = new Rng(1);
  // One chunk of random outputs, reused with fresh ids: the benchmark measures writing, not RNG.
  const embedding = dim ? Float32Array.from({ length: SHARD * dim }, () => rng.normal()) : null;
  const logits = Float32Array.from({ length: SHARD * 2 }, () => rng.normal());
  const labels = Int32Array.from({ length: SHARD }, () => rng.int(2));
  const t0 = performance.now();
  const shards: ShardEntry[] = [];
  for (let start = 0, index = 0; start < rows; start += SHARD, index++) {
    const n = Math.min(SHARD, rows - start);
    const ids = Array.from({ length: n }, (_, i) => String(1_000_000_000 + start + i));
    const textHashes = ids.map((id) => (Number(id) * 2654435761).toString(16).padStart(16, '0').slice(-16));
    shards.push(
      writeShard(
        out,
        index,
        {
          ids,
          textHashes,
          labels: labels.subarray(0, n),
          logits: logits.subarray(0, n * 2),
          classes: 2,
          embedding: embedding ? embedding.subarray(0, n * dim) : null,
          dim,
        },
        'float16',
      ),
    );
  }
  saveSafetensors(join(out, 'classifier.safetensors'), new Map());
  const manifest: CacheManifest = {
    format: CACHE_FORMAT,
    version: CACHE_VERSION,
    tool: { name: 'kd-toolkit', version: 'bench' },
    teacher: {
      fingerprint: { model: 'bench', tokenizer: 'bench', config: 'bench' },
      labels: ['negative', 'positive'],
      modelType: 'bench',
      classifier: { rows: 2, cols: dim, found: 'bench' },
    },
    data: {
      files: [],
      format: 'bench',
      classes: 2,
      labels: ['negative', 'positive'],
      rows,
      duplicatesRemoved: 0,
      skippedMalformed: 0,
      skippedNeutral: 0,
    },
    maxLength: 128,
    embedding: { mode: dim ? 'full' : 'none', dim, sourceDim: dim, dtype: 'float16' },
    shardRows: SHARD,
    shardCount: shards.length,
    part: null,
    shards,
    extras: { path: 'classifier.safetensors', sha256: '' },
  };
  writeFileAtomicSync(join(out, 'manifest.json'), JSON.stringify(manifest));
  const seconds = (performance.now() - t0) / 1000;
  const bytes = shards.reduce((s, e) => s + e.bytes, 0) + statSync(join(out, 'manifest.json')).size;
  process.stdout.write(`${JSON.stringify({ seconds, bytes, peakRssMb: process.resourceUsage().maxRSS / 1024 })}\n`);
} else {
  const reader = CacheReader.open(out);
  // Warm the page cache with one raw pass, then time the raw read (peer) and the reader.
  const files = readdirSync(join(out, 'shards')).map((f) => join(out, 'shards', f));
  const buf = Buffer.alloc(16 << 20);
  const rawPass = () => {
    let bytes = 0;
    for (const f of files) {
      const fd = openSync(f, 'r');
      const size = fstatSync(fd).size;
      for (let off = 0; off < size; off += buf.length) bytes += readSync(fd, buf, 0, Math.min(buf.length, size - off), off);
      closeSync(fd);
    }
    return bytes;
  };
  rawPass();
  let t0 = performance.now();
  const rawBytes = rawPass();
  const rawSeconds = (performance.now() - t0) / 1000;
  const storedBytesPerRow = 4 + 8 + reader.dim * 2;
  t0 = performance.now();
  let storedBytes = 0;
  for (const part of reader.sequential({ decode: false })) storedBytes += part.labels.length * storedBytesPerRow;
  const storedSeconds = (performance.now() - t0) / 1000;
  t0 = performance.now();
  let sequentialBytes = 0;
  for (const part of reader.sequential()) sequentialBytes += part.labels.length * storedBytesPerRow;
  const sequentialSeconds = (performance.now() - t0) / 1000;
  const rng = new Rng(2);
  t0 = performance.now();
  let shuffledRows = 0;
  while (performance.now() - t0 < 5000) {
    const rows = Int32Array.from({ length: 256 }, () => rng.int(reader.rows));
    reader.read(rows);
    shuffledRows += rows.length;
  }
  const shuffledSeconds = (performance.now() - t0) / 1000;
  reader.close();
  process.stdout.write(
    `${JSON.stringify({
      rawBytes,
      rawSeconds,
      storedBytes,
      storedSeconds,
      sequentialBytes,
      sequentialSeconds,
      shuffledRows,
      shuffledSeconds,
      peakRssMb: process.resourceUsage().maxRSS / 1024,
    })}\n`,
  );
}
