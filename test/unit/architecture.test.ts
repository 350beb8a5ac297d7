// The shape of src/: no import cycle between files (type-only imports included), and the folders
// depend on each other in the pipeline's order (../shared/docs/STYLE.md, "Layout").
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, sep } from 'node:path';
import { repoRoot } from '../helpers.js';

/** file (relative to src/, '/'-separated) → the files of src/ it imports. */
type ImportGraph = Map<string, Set<string>>;

/**
 * The module specifiers of `source`'s `import … from`, `import type … from`, `export … from`,
 * `export * from`, side-effect `import '…'` and `import('…')`. Statements start a line (as
 * Prettier writes them), so commented-out and quoted imports are not read.
 */
function importSpecifiers(source: string): string[] {
  const specifiers: string[] = [];
  const patterns = [
    // No quote or semicolon before `from`: the match cannot run past the end of its statement.
    /^[ \t]*(?:import|export)\b[^;'"`]*?\bfrom\s*(['"])([^'"\n]+)\1/gm,
    /^[ \t]*import\s*(['"])([^'"\n]+)\1/gm,
    /\bimport\(\s*(['"])([^'"\n]+)\1\s*\)/g,
  ];
  for (const re of patterns) for (const m of source.matchAll(re)) specifiers.push(m[2]!);
  return specifiers;
}

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return tsFiles(path);
    return e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [path] : [];
  });
}

/** The import graph of every .ts file under `srcDir` (imports of packages and of files outside it left out). */
function importGraph(srcDir: string): ImportGraph {
  const graph: ImportGraph = new Map();
  for (const file of tsFiles(srcDir)) {
    const from = relative(srcDir, file).split(sep).join('/');
    const targets = new Set<string>();
    for (const spec of importSpecifiers(readFileSync(file, 'utf8'))) {
      if (!spec.startsWith('.')) continue;
      const base = join(dirname(file), spec.replace(/\.js$/, ''));
      const resolved = [`${base}.ts`, join(base, 'index.ts')].find((p) => existsSync(p));
      if (!resolved) {
        // A relative import of a non-TypeScript file (package.json) or outside src/ (none today).
        if (!/\.(json|node)$/.test(spec)) assert.fail(`${from}: cannot resolve the import '${spec}'`);
        continue;
      }
      const to = relative(srcDir, resolved).split(sep).join('/');
      if (!to.startsWith('..')) targets.add(to);
    }
    graph.set(from, targets);
  }
  return graph;
}

/**
 * The cycles of `graph`, each as the path that closes it (`a → b → a`), one per edge that closes a
 * loop in a depth-first walk: an acyclic graph gives none, a cyclic one at least one.
 */
function findCycles(graph: ImportGraph): string[][] {
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const cycles: string[][] = [];
  const visit = (node: string): void => {
    state.set(node, 'open');
    stack.push(node);
    for (const next of [...(graph.get(node) ?? [])].sort()) {
      const s = state.get(next);
      if (s === 'open') cycles.push([...stack.slice(stack.indexOf(next)), next]);
      else if (s === undefined) visit(next);
    }
    stack.pop();
    state.set(node, 'done');
  };
  for (const node of [...graph.keys()].sort()) if (!state.has(node)) visit(node);
  return cycles;
}

/**
 * The pipeline's line (STYLE.md): a folder imports only from folders before it; cli/ from anything.
 * Below the line, leaves anyone may import: errors.ts (imports nothing of ours) and util/ (file
 * writes, hashes, progress, stats, versions; imports only errors.ts).
 */
// eval/ stands before train/: kd train measures its runs with eval/metrics.ts, and nothing in eval/
// imports train/ (the report reads runs from their files).
// quantize/ stands after teacher/ (it reads and edits models with teacher/onnx-model.ts) and before
// student/ (every student export writes its int8 copy); it reads nothing of the cache or the methods.
const LINE = ['data', 'text', 'engine', 'teacher', 'quantize', 'cache', 'distill', 'student', 'eval', 'train', 'pipeline', 'cli'];
const LEAVES = new Set(['errors.ts', 'util']);
/**
 * engine/ depends on nothing of ours except errors.ts, as STYLE.md asks, and util/: a departure
 * measured in the code, not a rule from STYLE.md. engine/loop.ts and engine/safetensors.ts write
 * checkpoints through util/fs.ts (atomic writes) and loop.ts reports through util/progress.ts;
 * util/ is a leaf (it imports only errors.ts), so engine/ still reaches nothing on the line.
 */
const ENGINE_MAY_IMPORT = new Set(['errors.ts', 'util']);

/** A file's folder: its first path segment (errors.ts and index.ts are their own). */
function folderOf(file: string): string {
  return file.split('/')[0]!;
}

/** Why `from` may not import `to` under the folder rule, or null when it may. */
function folderRuleBreak(from: string, to: string): string | null {
  const a = folderOf(from);
  const b = folderOf(to);
  if (a === b) return null;
  if (a === 'errors.ts') return 'errors.ts imports nothing of ours';
  if (a === 'util') return b === 'errors.ts' ? null : 'util/ is a leaf: it imports only errors.ts';
  if (b === 'index.ts') return 'index.ts is the public entry point: nothing inside src/ imports it';
  // index.ts is the library's front door: it re-exports from any folder but the command line.
  if (a === 'index.ts') return b === 'cli' ? 'the library (index.ts) does not import the command line' : null;
  if (a === 'engine') return ENGINE_MAY_IMPORT.has(b) ? null : 'engine/ depends on nothing of ours except errors.ts and util/';
  if (LEAVES.has(b)) return null;
  const ia = LINE.indexOf(a);
  const ib = LINE.indexOf(b);
  if (ia < 0) return `${a} is not a folder of the line ${LINE.join(' → ')}; add it there`;
  if (ib < 0) return `${b} is not a folder of the line ${LINE.join(' → ')}; add it there`;
  if (a === 'cli' || ib < ia) return null;
  return `${b}/ comes after ${a}/ in the line ${LINE.join(' → ')}`;
}

function folderRuleBreaks(graph: ImportGraph): string[] {
  const breaks: string[] = [];
  for (const [from, targets] of graph)
    for (const to of targets) {
      const why = folderRuleBreak(from, to);
      if (why) breaks.push(`${from} → ${to}: ${why}`);
    }
  return breaks.sort();
}

const SRC = join(repoRoot, 'src');

test('importSpecifiers reads every import and export-from form, and no comment', () => {
  const source = [
    "import { a, type B } from './a.js';",
    'import {',
    '  c,',
    '  d,',
    "} from '../c.js';",
    "import type { E } from './e.js';",
    "import * as f from './f.js';",
    "export { g } from './g.js';",
    "export type { H } from './h.js';",
    "export * from './i.js';",
    "import './side-effect.js';",
    "const j = await import('./j.js');",
    "import { Command } from 'commander';",
    "// import { k } from './k.js';",
    " * import { l } from './l.js';",
    'const s = \'import { m } from "./m.js"\';',
    'export const n = 1;',
    "export function o(): string { return p.from('./p.js'); }",
  ].join('\n');
  assert.deepEqual(importSpecifiers(source).sort(), [
    '../c.js',
    './a.js',
    './e.js',
    './f.js',
    './g.js',
    './h.js',
    './i.js',
    './j.js',
    './side-effect.js',
    'commander',
  ]);
});

test('findCycles names a crafted cycle, a self-import and none in a diamond', () => {
  const graph = (edges: Record<string, string[]>): ImportGraph => new Map(Object.entries(edges).map(([k, v]) => [k, new Set(v)]));
  assert.deepEqual(findCycles(graph({ 'a.ts': ['b.ts'], 'b.ts': ['c.ts'], 'c.ts': ['a.ts', 'd.ts'], 'd.ts': [] })), [
    ['a.ts', 'b.ts', 'c.ts', 'a.ts'],
  ]);
  assert.deepEqual(findCycles(graph({ 'a.ts': ['a.ts'] })), [['a.ts', 'a.ts']]);
  // Two paths to one file (a diamond) are no cycle.
  assert.deepEqual(findCycles(graph({ 'a.ts': ['b.ts', 'c.ts'], 'b.ts': ['d.ts'], 'c.ts': ['d.ts'], 'd.ts': [] })), []);
  // The type-only half of a cycle counts like any other import (the graph does not tell them apart).
  assert.equal(findCycles(graph({ 'teacher/x.ts': ['teacher/y.ts'], 'teacher/y.ts': ['teacher/x.ts'] })).length, 1);
});

test('folderRuleBreak refuses a later folder, engine/ importing the line, and anything importing cli/', () => {
  assert.equal(folderRuleBreak('cli/train.ts', 'pipeline/distill.ts'), null);
  assert.equal(folderRuleBreak('train/student-run.ts', 'teacher/teacher.ts'), null);
  assert.equal(folderRuleBreak('engine/loop.ts', 'util/fs.ts'), null);
  assert.equal(folderRuleBreak('data/read.ts', 'errors.ts'), null);
  assert.equal(folderRuleBreak('index.ts', 'pipeline/distill.ts'), null);
  assert.match(folderRuleBreak('teacher/teacher.ts', 'cache/reader.ts')!, /cache\/ comes after teacher\//);
  assert.match(folderRuleBreak('engine/graph.ts', 'data/read.ts')!, /engine\/ depends on nothing of ours/);
  assert.match(folderRuleBreak('pipeline/distill.ts', 'cli/common.ts')!, /cli\/ comes after pipeline\//);
  assert.match(folderRuleBreak('util/fs.ts', 'data/read.ts')!, /util\/ is a leaf/);
  assert.match(folderRuleBreak('index.ts', 'cli/main.ts')!, /does not import the command line/);
  assert.match(folderRuleBreak('cli/main.ts', 'index.ts')!, /nothing inside src\/ imports it/);
  assert.match(folderRuleBreak('models/x.ts', 'engine/graph.ts')!, /models is not a folder of the line/);
});

test('src/ has no import cycle (type-only imports included)', () => {
  const graph = importGraph(SRC);
  assert.ok(graph.size > 50, `read ${graph.size} files under ${SRC}`);
  assert.ok(graph.get('cli/main.ts')?.has('cli/train.ts'), 'the graph holds the imports of cli/main.ts');
  const cycles = findCycles(graph);
  assert.deepEqual(
    cycles.map((c) => c.join(' → ')),
    [],
    `import cycles in src/ (break each, e.g. by moving the shared piece into its own module):\n${cycles
      .map((c) => `  ${c.join(' → ')}`)
      .join('\n')}`,
  );
});

test("src/'s folders import only from folders before them in the pipeline's line", () => {
  const breaks = folderRuleBreaks(importGraph(SRC));
  assert.deepEqual(breaks, [], `imports against the folder rule (STYLE.md, "Layout"):\n${breaks.map((b) => `  ${b}`).join('\n')}`);
  // Every folder of src/ is on the line or a leaf: a new folder has to be placed.
  const folders = readdirSync(SRC, { withFileTypes: true })
    .filter((e) => e.isDirectory())
    .map((e) => e.name);
  for (const f of folders) assert.ok(LINE.includes(f) || LEAVES.has(f), `src/${f}/ is not on the line ${LINE.join(' → ')}`);
});
