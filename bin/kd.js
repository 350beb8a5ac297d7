#!/usr/bin/env node
// Runs the compiled CLI. `npm ci` compiles it (the `prepare` script); `npm run build` redoes it.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const entry = new URL('../dist/src/cli/main.js', import.meta.url);
if (!existsSync(fileURLToPath(entry))) {
  process.stderr.write('kd: the compiled code is missing (dist/). Run `npm run build` in the package folder.\n');
  process.exit(1);
}
// A reader that stops early (`kd train --help | head`) closes the pipe: stop quietly, as other command-line tools do.
for (const stream of [process.stdout, process.stderr])
  stream.on('error', (e) => {
    if (e.code === 'EPIPE') process.exit(0);
    throw e;
  });
const { main } = await import(entry.href);
process.exitCode = await main(process.argv);
