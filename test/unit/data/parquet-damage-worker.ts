// Worker for parquet-damage.test.ts: reads each damaged copy of a Parquet file and reports, case
// by case, whether it gave rows, a UserError or something else (a bug).
import { parentPort, workerData } from 'node:worker_threads';
import { writeFileSync } from 'node:fs';
import { DatasetReader } from '../../../src/data/read.js';
import { UserError } from '../../../src/errors.js';

const { good, cases, start, file } = workerData as { good: Uint8Array; cases: [number, number][]; start: number; file: string };
for (let k = start; k < cases.length; k++) {
  const damaged = Buffer.from(good);
  damaged[cases[k]![0]] = cases[k]![1];
  writeFileSync(file, damaged);
  let outcome = 'rows';
  try {
    for await (const _ of new DatasetReader([file], { format: 'auto', classes: 2 }));
  } catch (e) {
    outcome = e instanceof UserError ? 'user' : `${(e as Error).name}: ${(e as Error).message}`;
  }
  parentPort!.postMessage({ k, outcome });
}
