// Test helpers: where the shared data lives, temp folders, and running the CLI.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { packageRoot } from '../src/util/versions.js';

export const repoRoot = packageRoot;

/** `../shared` beside the checkout, or $KD_SHARED_DIR. */
export const sharedDir: string = resolve(process.env.KD_SHARED_DIR ?? join(repoRoot, '..', 'shared'));

export function sharedPath(...parts: string[]): string {
  const p = join(sharedDir, ...parts);
  if (!existsSync(p)) throw new Error(`shared test data missing: ${p} (set KD_SHARED_DIR to the shared folder)`);
  return p;
}

export const S140_20K = () => sharedPath('datasets', 'sentiment140', 'train_sample_20k_head9999neg_tail10001pos.csv');
export const S140_10K = () => sharedPath('datasets', 'sentiment140', 'train_sample_10k_head5000neg_mid5000pos.csv');
export const S140_RANDOM = () => sharedPath('datasets', 'sentiment140', 'train_random_sample_33477.csv');
export const AMAZON_TEST_HEAD = () => sharedPath('datasets', 'amazon_polarity', 'test_head_part1_4459.ft.txt');
export const AMAZON_TRAIN = () => sharedPath('datasets', 'amazon_polarity', 'train_random_sample_9992.ft.txt');

/** The shared datasets' sample files (tweets, Amazon reviews, UCI sentences): every text a tokenizer test compares. */
export const SHARED_SAMPLE_FILES = (): string[] => [
  ...['train_random_sample_33477.csv', 'train_sample_10k_head5000neg_mid5000pos.csv', 'train_sample_20k_head9999neg_tail10001pos.csv'].map(
    (f) => sharedPath('datasets', 'sentiment140', f),
  ),
  ...[
    'test_head_part1_4459.ft.txt',
    'test_lines_6460_10000.ft.txt',
    'test_random_sample_6814.ft.txt',
    'train_random_sample_9992.ft.txt',
  ].map((f) => sharedPath('datasets', 'amazon_polarity', f)),
  ...['imdb_labelled.jsonl', 'yelp_labelled.jsonl'].map((f) => sharedPath('datasets', 'uci_sentences', f)),
];

export function fixturePath(...parts: string[]): string {
  return join(repoRoot, 'test', 'fixtures', ...parts);
}

const madeDirs: string[] = [];
process.on('exit', () => {
  if (process.env.KD_KEEP_TEST_DIRS) return;
  for (const d of madeDirs) rmSync(d, { recursive: true, force: true });
});

/** A fresh temporary folder, removed when the test process exits (kept with KD_KEEP_TEST_DIRS=1). */
export function tempDir(prefix = 'kd-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  madeDirs.push(dir);
  return dir;
}

export interface CliResult {
  status: number;
  stdout: string;
  stderr: string;
  /** The last stdout line parsed as JSON (for --json). */
  json: () => any;
}

/** Runs `kd` as a user would (bin/kd.js over the compiled code). */
export function runKd(args: string[], opts: { cwd?: string; env?: Record<string, string> } = {}): CliResult {
  const r = spawnSync(process.execPath, [join(repoRoot, 'bin', 'kd.js'), ...args], {
    cwd: opts.cwd ?? repoRoot,
    encoding: 'utf8',
    env: { ...process.env, ...opts.env },
    maxBuffer: 1 << 28,
  });
  const stdout = r.stdout ?? '';
  return {
    status: r.status ?? -1,
    stdout,
    stderr: r.stderr ?? '',
    json: () => JSON.parse(stdout.trimEnd().split('\n').at(-1)!),
  };
}

/** The folders of a split and a cache of it made by {@link splitAndCache}. */
export interface SplitAndCache {
  split: string;
  cache: string;
  /** `<split>/<name>.jsonl` (train, dev, test). */
  files: (name: string) => string;
}

/** Where {@link splitAndCache} writes under `root`: `<root>/split` and `<root>/cache`. */
export function splitAndCachePaths(root: string): SplitAndCache {
  const split = join(root, 'split');
  return { split, cache: join(root, 'cache'), files: (name) => join(split, `${name}.jsonl`) };
}

/**
 * `kd data split` of `data` into `<root>/split` and `kd cache build` of its three files with the
 * tiny random BERT into `<root>/cache`: the set-up the training tests share. Both must succeed.
 */
export function splitAndCache(root: string, data: string, splitArgs: string[], cacheArgs: string[] = []): SplitAndCache {
  const paths = splitAndCachePaths(root);
  const { split, cache, files } = paths;
  const s = runKd(['data', 'split', data, ...splitArgs, '--out', split]);
  assert.equal(s.status, 0, `kd data split: ${s.stderr}`);
  const teacher = sharedPath('fixtures', 'hf', 'tiny-random-bert');
  const c = runKd([
    'cache',
    'build',
    '--teacher',
    teacher,
    '--data',
    files('train'),
    files('dev'),
    files('test'),
    '--out',
    cache,
    ...cacheArgs,
  ]);
  assert.equal(c.status, 0, `kd cache build: ${c.stderr}`);
  return paths;
}
