// Every single-byte damage of a small Parquet file (each byte set to 0x00 and to 0xff) ends in
// rows or a one-line UserError, within seconds: before the page-header checks, hyparquet 1.33
// decoded some damaged pages forever, and a damaged schema was a TypeError.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { join } from 'node:path';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { tempDir } from '../../helpers.js';

/** A case that has not finished after this long is a hang. */
const HANG_MS = 10_000;

test('every single-byte damage of a Parquet file gives rows or a UserError, never a hang or another error', async () => {
  const good = new Uint8Array(
    parquetWriteBuffer({
      columnData: [
        { name: 'label', data: [1n, 0n, 1n, 0n], type: 'INT64' },
        { name: 'text', data: ['great product', 'broke quickly', 'works well', 'returned it'], type: 'STRING' },
      ],
      rowGroupSize: 2,
    }),
  );
  const cases: [number, number][] = [];
  for (const value of [0x00, 0xff]) for (let at = 0; at < good.length; at++) if (good[at] !== value) cases.push([at, value]);
  const outcomes = new Map<string, number>();
  const hangs: [number, number][] = [];
  const bugs: string[] = [];
  const file = join(tempDir(), 'damaged.parquet');
  let next = 0;
  while (next < cases.length) {
    // One worker reads cases in order until one hangs; it is then stopped and the next starts after it.
    await new Promise<void>((resolve, reject) => {
      const worker = new Worker(new URL('./parquet-damage-worker.js', import.meta.url), { workerData: { good, cases, start: next, file } });
      let timer = setTimeout(() => undefined, 0);
      const arm = () => {
        clearTimeout(timer);
        timer = setTimeout(() => {
          hangs.push(cases[next]!);
          next += 1;
          void worker.terminate();
        }, HANG_MS);
      };
      arm();
      worker.on('message', ({ k, outcome }: { k: number; outcome: string }) => {
        const kind = outcome === 'rows' || outcome === 'user' ? outcome : 'bug';
        outcomes.set(kind, (outcomes.get(kind) ?? 0) + 1);
        if (kind === 'bug') bugs.push(`byte ${cases[k]![0]} = ${cases[k]![1]}: ${outcome}`);
        next = k + 1;
        arm();
      });
      worker.on('error', reject);
      worker.on('exit', () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
  assert.deepEqual(hangs, [], `damage that hangs the reader (byte, value): ${JSON.stringify(hangs)}`);
  assert.deepEqual(bugs, []);
  assert.equal((outcomes.get('rows') ?? 0) + (outcomes.get('user') ?? 0), cases.length);
  // Most damage is caught; some (inside a value) still reads as rows.
  assert.ok((outcomes.get('user') ?? 0) > cases.length / 4, JSON.stringify(Object.fromEntries(outcomes)));
});
