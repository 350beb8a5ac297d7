// Child process of the data benchmark: reads one file and prints rows and seconds.
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { DatasetReader } from '../../src/data/read.js';

const [mode, file] = process.argv.slice(2) as [string, string];
const start = process.hrtime.bigint();
let rows = 0;
if (mode === 'kd') {
  const reader = new DatasetReader([file], { format: 'amazon-csv', progress: false });
  for await (const ex of reader) if (ex.text.length > 0) rows += 1;
} else {
  const rl = createInterface({ input: createReadStream(file), crlfDelay: Infinity });
  for await (const line of rl) if (line.length > 0) rows += 1;
}
const seconds = Number(process.hrtime.bigint() - start) / 1e9;
process.stdout.write(`${JSON.stringify({ rows, seconds, peakRssMb: process.resourceUsage().maxRSS / 1024 })}\n`);
