// Deterministic, stratified train/dev/test splits by id hash and seed, with duplicate ids
// removed across all inputs. Two streaming passes: the first decides, the second writes.
import { existsSync, statSync } from 'node:fs';
import { OptionError, UserError } from '../errors.js';
import { join } from 'node:path';
import type { Example } from './example.js';
import type { Reject } from './errors.js';
import { LABEL_NAMES } from './labels.js';
import { DatasetReader, type ReadOptions, type ReadSummary } from './read.js';
import { unitHash } from '../util/hash.js';
import { AtomicFileWriter, ensureFolder, writeFileAtomicSync } from '../util/fs.js';
import { runVersions, type RunVersions } from '../util/versions.js';

export const SPLIT_NAMES = ['train', 'dev', 'test'] as const;
export type SplitName = (typeof SPLIT_NAMES)[number];

export interface SplitOptions extends ReadOptions {
  /** Fraction of each class for dev and test, in [0, 1), summing below 1. */
  dev: number;
  test: number;
  seed: number;
  /** Output folder: train.jsonl, dev.jsonl, test.jsonl, rejects.jsonl, split.json. */
  out: string;
  /** Keep a seeded random subset of N unique examples (for quick runs). */
  limit?: number;
}

export interface SplitManifest {
  kind: 'kd-split';
  version: 1;
  config: { files: string[]; format: string; classes: number; dev: number; test: number; seed: number; limit: number | null };
  /** Labelled rows per split and class. */
  counts: Record<SplitName, Record<string, number>>;
  /** Unlabelled rows per split: all in train (dev and test need labels), never stratified. */
  unlabeled: Record<SplitName, number>;
  unique: number;
  duplicatesRemoved: number;
  /** Duplicate ids whose label differed from the first occurrence's (the first wins). */
  duplicateLabelConflicts: number;
  read: ReadSummary;
  versions: RunVersions;
  createdAt: string;
}

/** One line of a split file; `kd data stats` and every later stage read it back as JSONL. */
export function exampleToJsonl(ex: Example, labelNames: readonly string[]): string {
  // An unlabelled row keeps `"label": null` (read back with --unlabeled).
  const label = ex.label === null ? null : labelNames[ex.label];
  const row: Record<string, unknown> = { id: ex.id, textHash: ex.textHash, label, text: ex.text };
  if (ex.title !== undefined) {
    row.title = ex.title;
    row.body = ex.body;
  }
  row.source = `${ex.file}:${ex.line}`;
  return JSON.stringify(row);
}

function checkFraction(name: string, value: number): void {
  if (!Number.isFinite(value) || value < 0 || value >= 1) throw new OptionError(`'--${name}' must be a fraction in [0, 1), got ${value}`);
}

/** `labels` value of an unlabelled row in {@link assignSplits}: in no class, so it stays in train. */
export const SPLIT_NO_LABEL = 255;

/**
 * Assigns each class's examples to test, dev and train by sorting them on a seeded hash
 * of their id: exact per-class proportions, and the same assignment on every machine. Rows of no
 * class (label {@link SPLIT_NO_LABEL}: unlabelled) go to train: dev and test are for measuring, which needs labels.
 */
export function assignSplits(keys: Float64Array, labels: Uint8Array, classes: number, dev: number, test: number): Uint8Array {
  const split = new Uint8Array(keys.length);
  for (let c = 0; c < classes; c++) {
    const members: number[] = [];
    for (let i = 0; i < labels.length; i++) if (labels[i] === c) members.push(i);
    members.sort((a, b) => keys[a]! - keys[b]! || a - b);
    const nTest = Math.round(members.length * test);
    const nDev = Math.round(members.length * dev);
    members.forEach((idx, rank) => (split[idx] = rank < nTest ? 2 : rank < nTest + nDev ? 1 : 0));
  }
  return split;
}

export async function splitDataset(files: readonly string[], options: SplitOptions): Promise<SplitManifest> {
  checkFraction('dev', options.dev);
  checkFraction('test', options.test);
  if (options.dev + options.test >= 1) throw new OptionError(`'--dev' + '--test' must be below 1, got ${options.dev + options.test}`);
  if (!Number.isInteger(options.seed)) throw new OptionError(`'--seed' must be an integer, got ${options.seed}`);
  // Before the first pass (which may read millions of rows), so a wrong --out fails at once.
  if (existsSync(options.out) && !statSync(options.out).isDirectory()) {
    throw new OptionError(
      `'--out' ${options.out} is a file; it names the folder the split is written into ` +
        `(${SPLIT_NAMES.map((n) => `${n}.jsonl`).join(', ')}, rejects.jsonl, split.json): give a folder path`,
    );
  }
  ensureFolder(options.out);
  const limit = options.limit ?? Infinity;
  const classes = options.classes ?? 2;
  const labelNames = LABEL_NAMES[classes];

  // Pass 1: unique ids in read order, their class and seeded key.
  const rejects: Reject[] = [];
  const first = new DatasetReader(files, { ...options, onReject: (r) => rejects.push(r) });
  const firstLabel = new Map<string, number | null>();
  let keys = new Float64Array(1024);
  let labels = new Uint8Array(1024);
  let unique = 0;
  let duplicates = 0;
  let conflicts = 0;
  for await (const ex of first) {
    const seenLabel = firstLabel.get(ex.id);
    if (seenLabel !== undefined) {
      duplicates += 1;
      if (seenLabel !== ex.label) conflicts += 1;
      continue;
    }
    firstLabel.set(ex.id, ex.label);
    if (unique === keys.length) {
      const k2 = new Float64Array(keys.length * 2);
      k2.set(keys);
      keys = k2;
      const l2 = new Uint8Array(labels.length * 2);
      l2.set(labels);
      labels = l2;
    }
    keys[unique] = unitHash(options.seed, ex.id);
    labels[unique] = ex.label ?? SPLIT_NO_LABEL;
    unique += 1;
  }
  // A limit keeps the rows with the smallest seeded keys: a random subset, not the first N
  // (files are often sorted by label).
  const kept = new Uint8Array(unique).fill(1);
  if (unique > limit) {
    const cut = Float64Array.from(keys.subarray(0, unique)).sort()[limit - 1]!;
    let n = 0;
    for (let k = 0; k < unique; k++) {
      kept[k] = keys[k]! <= cut && n < limit ? 1 : 0;
      n += kept[k]!;
    }
  }
  const keptIndex: number[] = [];
  for (let k = 0; k < unique; k++) if (kept[k]) keptIndex.push(k);
  const keptSplit = assignSplits(
    Float64Array.from(keptIndex, (k) => keys[k]!),
    Uint8Array.from(keptIndex, (k) => labels[k]!),
    classes,
    options.dev,
    options.test,
  );
  const split = new Uint8Array(unique).fill(255);
  keptIndex.forEach((k, i) => (split[k] = keptSplit[i]!));

  // Pass 2: write each unique example to its split.
  const writers = await Promise.all(SPLIT_NAMES.map((name) => AtomicFileWriter.create(join(options.out, `${name}.jsonl`))));
  const counts = Object.fromEntries(
    SPLIT_NAMES.map((s) => [s, Object.fromEntries(labelNames.map((n) => [n, 0]))]),
  ) as SplitManifest['counts'];
  const unlabeled: SplitManifest['unlabeled'] = { train: 0, dev: 0, test: 0 };
  try {
    const seen = new Set<string>();
    let k = 0;
    const second = new DatasetReader(files, { ...options, progress: false });
    for await (const ex of second) {
      if (seen.has(ex.id)) continue;
      seen.add(ex.id);
      const s = split[k]!;
      k += 1;
      if (s === 255) continue;
      if (ex.label === null) unlabeled[SPLIT_NAMES[s]!] += 1;
      else counts[SPLIT_NAMES[s]!][labelNames[ex.label]!]! += 1;
      await writers[s]!.write(`${exampleToJsonl(ex, labelNames)}\n`);
    }
    if (k !== unique)
      throw new UserError(
        `${files.join(', ')}: the input changed while splitting (${unique} unique rows on the first pass, ${k} on the second); ` +
          `nothing was written: run again once no other process writes these files`,
      );
    await Promise.all(writers.map((w) => w.commit()));
  } catch (e) {
    await Promise.all(writers.map((w) => w.abort()));
    throw e;
  }
  writeFileAtomicSync(join(options.out, 'rejects.jsonl'), rejects.map((r) => `${JSON.stringify(r)}\n`).join(''));
  const manifest: SplitManifest = {
    kind: 'kd-split',
    version: 1,
    config: {
      files: [...files],
      format: first.summary.format,
      classes,
      dev: options.dev,
      test: options.test,
      seed: options.seed,
      limit: options.limit ?? null,
    },
    counts,
    unlabeled,
    unique: keptIndex.length,
    duplicatesRemoved: duplicates,
    duplicateLabelConflicts: conflicts,
    read: first.summary,
    versions: runVersions(),
    createdAt: new Date().toISOString(),
  };
  writeFileAtomicSync(join(options.out, 'split.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  return manifest;
}

/**
 * A seeded, stratified subset of `k` labelled examples (few-label runs): each class gets its share of `k`
 * (largest remainders), taking the examples with the smallest seeded hash of their id: the same subset wherever the
 * rows lie and whatever their order. Returns the indices of the subset and of the rest, both in input order.
 *
 * @param labels - The class of each example.
 * @param ids - Each example's id (the hash key).
 * @throws {OptionError} `k` is not an integer in [classes, n].
 */
export function labelledSubset(
  labels: ArrayLike<number>,
  ids: readonly string[],
  k: number,
  seed: number,
  classes: number,
): { subset: Int32Array; rest: Int32Array } {
  const n = labels.length;
  if (!Number.isInteger(k) || k < classes || k > n)
    throw new OptionError(`a labelled subset of ${k} rows: must be an integer in [${classes}, ${n}] (the training rows)`);
  const byClass: number[][] = Array.from({ length: classes }, () => []);
  for (let i = 0; i < n; i++) byClass[labels[i]!]!.push(i);
  const exact = byClass.map((m) => (k * m.length) / n);
  const take = exact.map(Math.floor);
  const order = exact.map((x, c) => ({ c, r: x - Math.floor(x) })).sort((a, b) => b.r - a.r || a.c - b.c);
  for (let j = 0; j < k - take.reduce((a, b) => a + b, 0); j++) take[order[j]!.c]! += 1;
  const chosen = new Uint8Array(n);
  byClass.forEach((members, c) => {
    const keyed = members.map((i) => ({ i, key: unitHash(seed, ids[i]!) })).sort((a, b) => a.key - b.key || a.i - b.i);
    for (const { i } of keyed.slice(0, take[c]!)) chosen[i] = 1;
  });
  const subset: number[] = [];
  const rest: number[] = [];
  for (let i = 0; i < n; i++) (chosen[i] ? subset : rest).push(i);
  return { subset: Int32Array.from(subset), rest: Int32Array.from(rest) };
}
