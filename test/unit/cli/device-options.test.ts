// --device, --threads, --allow-cpu-fallback: declared once on `kd`, read before or after the
// sub-command, handed to the library as one SessionOptions object; each session-using command's help names them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Command } from 'commander';
import { buildProgram } from '../../../src/cli/main.js';
import { DEVICE_HELP, sessionOptions } from '../../../src/cli/common.js';
import type { SessionOptions } from '../../../src/engine/session.js';
import { OptionError } from '../../../src/errors.js';

/** The command at `path` under a fresh `kd`, with its action replaced by one that records its session options. */
function probe(path: string[]): { program: Command; cmd: Command; seen: SessionOptions[] } {
  const program = buildProgram().exitOverride();
  let cmd = program;
  for (const name of path) cmd = cmd.commands.find((c) => c.name() === name)!;
  const seen: SessionOptions[] = [];
  cmd.action(() => {
    seen.push(sessionOptions(cmd));
  });
  return { program, cmd, seen };
}

async function sessionFor(path: string[], before: string[], after: string[]): Promise<SessionOptions> {
  const { program, seen } = probe(path);
  await program.parseAsync(['node', 'kd', ...before, ...path, ...after]);
  assert.equal(seen.length, 1);
  return seen[0]!;
}

test('the device options mean the same before and after the sub-command, and default to CPU', async () => {
  const flags = ['--device', 'cuda', '--threads', '3', '--allow-cpu-fallback'];
  const predict = ['--model', 'm', '--text', 'a', 'b'];
  const expected = { device: 'cuda', threads: 3, allowFallback: true };
  assert.deepEqual(await sessionFor(['teacher', 'predict'], [], [...predict, ...flags]), expected);
  assert.deepEqual(await sessionFor(['teacher', 'predict'], flags, predict), expected);
  // After a variadic option of the sub-command, as the e2e tests and the README write it.
  assert.deepEqual(await sessionFor(['predict'], [], ['--model', 'm', '--text', 'a', 'b', '--device', 'cuda']), { device: 'cuda' });
  assert.deepEqual(await sessionFor(['distill'], [], ['--recipe', 'r.yaml']), { device: 'cpu' });
});

test('--threads is checked where it is read, naming the option', async () => {
  await assert.rejects(sessionFor(['predict'], [], ['--model', 'm', '--text', 'a', '--threads', '0']), (e: unknown) => {
    assert.ok(e instanceof OptionError);
    assert.equal(e.message, "'--threads' must be in [1, inf], got 0");
    return true;
  });
});

test('each command that opens a session says in its help that the device options are global', () => {
  const sessionCommands = [
    ['teacher', 'predict'],
    ['teacher', 'eval'],
    ['teacher', 'train'],
    ['cache', 'build'],
    ['train'],
    ['predict'],
    ['eval'],
    ['distill'],
    ['augment'],
  ];
  for (const path of sessionCommands) {
    const { cmd } = probe(path);
    let help = '';
    cmd.configureOutput({ writeOut: (s) => (help += s) });
    cmd.outputHelp();
    assert.ok(help.trimEnd().endsWith(DEVICE_HELP), `kd ${path.join(' ')} --help ends with the global options line`);
    assert.ok(!/^\s+--device </m.test(help), `kd ${path.join(' ')} --help does not declare --device itself`);
  }
  let root = '';
  const program = buildProgram().configureOutput({ writeOut: (s) => (root += s) });
  program.outputHelp();
  for (const flag of ['--device <device>', '--threads <n>', '--allow-cpu-fallback'])
    assert.ok(root.includes(flag), `kd --help lists ${flag}`);
});
