// Bad options are the user's mistake: commander's own errors (a value outside .choices(), an unknown
// option or command, a missing required option or argument) exit 2 with one line, like every UserError;
// --help and --version still exit 0.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { main } from '../../../src/cli/main.js';

/** Runs `kd` in this process and returns its exit code and what it wrote to stderr. */
async function kd(args: string[]): Promise<{ code: number; stderr: string }> {
  let stderr = '';
  const write = process.stderr.write;
  process.stderr.write = ((chunk: string | Uint8Array) => ((stderr += String(chunk)), true)) as typeof process.stderr.write;
  try {
    return { code: await main(['node', 'kd', ...args]), stderr };
  } finally {
    process.stderr.write = write;
  }
}

test("commander's errors exit 2 with its one line; help and --version exit 0", async () => {
  const cases: [string[], RegExp][] = [
    [['train', '--student', 'cnn'], /^error: option '--student <kind>' argument 'cnn' is invalid\. Allowed choices are /],
    [['--device', 'tpu', 'data', 'stats', 'x'], /^error: option '--device <device>' argument 'tpu' is invalid/],
    [['data', 'stats', 'x', '--format', 'xml'], /^error: option '--format <format>' argument 'xml' is invalid/],
    [['train', '--cache', 'c', '--train', 't', '--dev', 'd', '--out', 'o', '--bogus'], /^error: unknown option '--bogus'/],
    [['trian'], /^error: unknown command 'trian'/],
    [['train', '--cache', 'c'], /^error: required option '--train <file\.\.\.>' not specified/],
    [['data', 'stats'], /^error: missing required argument 'file'/],
  ];
  for (const [args, message] of cases) {
    const r = await kd(args);
    assert.equal(r.code, 2, `kd ${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message, `kd ${args.join(' ')}`);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  }
  // (Help's text goes to stdout, which the test runner reads: --version's one line is enough to show exit 0.)
  assert.equal((await kd(['--version'])).code, 0);
});
