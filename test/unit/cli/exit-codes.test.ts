// Bad options are the user's mistake: commander's own errors (a value outside .choices(), an unknown
// option or command, a missing required option or argument) exit 2 with one line, like every UserError;
// --help and --version still exit 0.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Command } from 'commander';
import { buildProgram, main } from '../../../src/cli/main.js';
import { ConfigError } from '../../../src/data/errors.js';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { repoRoot } from '../../helpers.js';

/** Runs `kd` in this process and returns its exit code and what it wrote to stderr. */
async function kd(args: string[], program?: Command): Promise<{ code: number; stderr: string }> {
  let stderr = '';
  const write = process.stderr.write;
  process.stderr.write = ((chunk: string | Uint8Array) => ((stderr += String(chunk)), true)) as typeof process.stderr.write;
  try {
    return { code: await main(['node', 'kd', ...args], program), stderr };
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

test("a UserError or a file-system error on the user's path is one line, exit 2; other errors are bugs: a stack, exit 1", async (t) => {
  /** kd with a command `throw` whose action throws what `make` returns. */
  const throwing = (make: () => unknown) => buildProgram().addCommand(new Command('throw').action(() => Promise.reject(make())));
  const userError = () => new ConfigError('data.jsonl:3: field "text" is missing; add it or pass --text-field');
  const missing = () => Object.assign(new Error("ENOENT: no such file or directory, open 'x.csv'"), { code: 'ENOENT' });
  const bugs = [() => new TypeError("Cannot read properties of undefined (reading 'cache')"), () => new RangeError('Invalid array length')];
  t.after(() => delete process.env.KD_DEBUG);
  delete process.env.KD_DEBUG;
  for (const [make, line] of [
    [userError, 'kd: error: data.jsonl:3: field "text" is missing; add it or pass --text-field\n'],
    [missing, "kd: error: ENOENT: no such file or directory, open 'x.csv'\n"],
  ] as const) {
    const r = await kd(['throw'], throwing(make));
    assert.deepEqual(r, { code: 2, stderr: line });
  }
  for (const make of bugs) {
    const r = await kd(['throw'], throwing(make));
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /^kd: unexpected error \(a bug in kd; please report it with this trace\): (TypeError|RangeError): /);
    assert.match(r.stderr, /\n\s+at /, 'the stack is printed');
  }
  process.env.KD_DEBUG = '1';
  const debug = await kd(['throw'], throwing(userError));
  assert.equal(debug.code, 2);
  assert.match(debug.stderr, /^kd: error: data\.jsonl:3: .*\nConfigError: data\.jsonl:3: [^\n]*\n\s+at /, 'KD_DEBUG=1 adds the stack');
});

test('a reader that closes the pipe early (kd train --help | head -c 20) ends kd quietly', () => {
  const kd = join(repoRoot, 'bin', 'kd.js');
  // The help is longer than a pipe's first read; `head` exits after 20 bytes and kd's next write meets EPIPE.
  const r = spawnSync('bash', ['-c', `set -o pipefail; "${process.execPath}" "${kd}" train --help | head -c 20 >/dev/null`], {
    encoding: 'utf8',
  });
  assert.equal(r.stderr, '', 'no stack trace');
  assert.equal(r.status, 0);
});
