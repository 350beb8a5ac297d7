// The sources are as `npm run format` leaves them (Prettier, .prettierrc.json), and no line of
// code is longer than 140 characters: CI fails on an unformatted file, naming it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import * as prettier from 'prettier';
import { repoRoot } from '../helpers.js';

const MAX_LINE = 140;

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return e.name === 'fixtures' ? [] : sourceFiles(path);
    return /\.(ts|js|mjs)$/.test(e.name) && !e.name.endsWith('.d.ts') ? [path] : [];
  });
}

test('every source file is formatted with Prettier and has no line over 140 characters', async () => {
  const files = ['src', 'test', 'scripts', 'bin'].flatMap((d) => sourceFiles(join(repoRoot, d)));
  assert.ok(files.length > 100, `found only ${files.length} source files`);
  const unformatted: string[] = [];
  const long: string[] = [];
  for (const file of files) {
    const text = readFileSync(file, 'utf8');
    const options = await prettier.resolveConfig(file);
    if (!(await prettier.check(text, { ...options, filepath: file }))) unformatted.push(relative(repoRoot, file));
    text.split('\n').forEach((line, i) => {
      if (line.length > MAX_LINE) long.push(`${relative(repoRoot, file)}:${i + 1} (${line.length})`);
    });
  }
  assert.deepEqual(unformatted, [], 'run npm run format');
  assert.deepEqual(long, [], `lines over ${MAX_LINE} characters`);
});
