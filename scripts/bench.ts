// `npm run bench -- [name...]`: speed and memory against a peer in the same run.
// Benchmarks are not tests: they print figures and ratios; the last line is one JSON object.
import { benchData } from './bench/data.js';
import { benchEngine } from './bench/engine.js';
import { benchTeacher } from './bench/teacher.js';
import { benchCache } from './bench/cache.js';
import { benchTrain } from './bench/train.js';
import { benchQuantize } from './bench/quantize.js';
import { benchBrowser } from './bench/browser.js';

type Bench = (args: string[]) => Promise<Record<string, unknown>>;

const BENCHES: Record<string, Bench> = {
  data: benchData,
  engine: benchEngine,
  teacher: benchTeacher,
  cache: benchCache,
  train: benchTrain,
  quantize: benchQuantize,
  browser: benchBrowser,
};

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const names = argv.filter((a) => !a.startsWith('--'));
  const flags = argv.filter((a) => a.startsWith('--'));
  // `browser` needs trained students (--models), so it runs only when named.
  const chosen = names.length ? names : Object.keys(BENCHES).filter((n) => n !== 'browser');
  for (const name of chosen) {
    if (!BENCHES[name]) throw new Error(`Unknown benchmark '${name}'. Known: ${Object.keys(BENCHES).join(', ')}`);
  }
  const results: Record<string, unknown>[] = [];
  for (const name of chosen) {
    process.stdout.write(`\n== bench ${name} ==\n`);
    const result = await BENCHES[name]!(flags);
    results.push(result);
    process.stdout.write(`${JSON.stringify(result)}\n`);
  }
  if (results.length > 1) process.stdout.write(`${JSON.stringify({ bench: 'all', results })}\n`);
}

main().catch((e: unknown) => {
  process.stderr.write(`bench: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
