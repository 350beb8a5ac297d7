// The sources are as `npm run format` leaves them (Prettier, .prettierrc.json), and no line of code or of the
// Markdown docs (README.md, docs/, models/, datasets/) is longer than 140 characters; the docs' relative links
// resolve, #anchors included. CI fails naming the file and line.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
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
  const files = ['src', 'test', 'scripts', 'bin', 'examples'].flatMap((d) => sourceFiles(join(repoRoot, d)));
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

/** README.md and every Markdown file under docs/, models/ and datasets/. */
function markdownFiles(): string[] {
  const under = (dir: string): string[] =>
    readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
      e.isDirectory() ? under(join(dir, e.name)) : e.name.endsWith('.md') ? [join(dir, e.name)] : [],
    );
  return [join(repoRoot, 'README.md'), ...['docs', 'models', 'datasets'].flatMap((d) => under(join(repoRoot, d)))];
}

/** A line whose only overlong part is one URL (which cannot be broken) is allowed; nothing else is. */
const onlyAnUrlIsLong = (line: string) => line.replace(/<?https?:\/\/\S+/g, 'URL').length <= MAX_LINE;

test('no line of the Markdown docs is over 140 characters (tables included; a bare URL excepted)', () => {
  const files = markdownFiles();
  assert.ok(files.length >= 8, `found only ${files.length} Markdown files`);
  const long: string[] = [];
  for (const file of files)
    readFileSync(file, 'utf8')
      .split('\n')
      .forEach((line, i) => {
        if (line.length > MAX_LINE && !onlyAnUrlIsLong(line)) long.push(`${relative(repoRoot, file)}:${i + 1} (${line.length})`);
      });
  assert.deepEqual(long, [], `lines over ${MAX_LINE} characters: reflow prose, shorten table cells or make the table a list`);
});

/** GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens; repeats get -1, -2, … */
function anchors(markdown: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  let fenced = false;
  for (const line of markdown.split('\n')) {
    if (line.startsWith('```')) fenced = !fenced;
    const m = !fenced && /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (!m) continue;
    const slug = m[1]!
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-');
    const n = seen.get(slug) ?? 0;
    seen.set(slug, n + 1);
    out.add(n ? `${slug}-${n}` : slug);
  }
  return out;
}

test('relative links in the Markdown docs name files that exist and anchors those files have', () => {
  const broken: string[] = [];
  for (const file of markdownFiles()) {
    const text = readFileSync(file, 'utf8');
    const outsideCode = text.replace(/```[\s\S]*?```/g, '').replace(/`[^`\n]*`/g, '');
    for (const [, target] of outsideCode.matchAll(/\]\(([^)\s]+)\)/g)) {
      if (/^[a-z]+:/i.test(target!)) continue; // http:, https:, mailto:
      const [path, anchor] = target!.split('#') as [string, string | undefined];
      const to = path ? join(dirname(file), path) : file;
      const where = `${relative(repoRoot, file)}: (${target})`;
      if (!existsSync(to)) broken.push(`${where}: no file ${relative(repoRoot, to)}`);
      else if (anchor && to.endsWith('.md') && !anchors(readFileSync(to, 'utf8')).has(anchor))
        broken.push(`${where}: no heading #${anchor} in ${relative(repoRoot, to)}`);
    }
  }
  assert.deepEqual(broken, []);
});
