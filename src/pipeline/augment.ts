// `kd augment`: a transfer set built from data files by the rules of Tang et al. (2019, §3.3), N
// seeded copies a row written as unlabelled JSONL (each naming its source row), and a sidecar.
import { accessSync, constants, statSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { resolve } from 'node:path';
import { OptionError, UserError } from '../errors.js';
import { ConfigError } from '../data/errors.js';
import { DatasetReader, type ReadOptions, type ReadSummary } from '../data/read.js';
import { resolveFormat } from '../data/detect.js';
import { augmentText, splitWords, WordListReplacer, type AugmentRules, type WordReplacer } from '../text/augment.js';
import { TextTokenizer } from '../text/tokenizer.js';
import { Rng } from '../engine/rng.js';
import type { SessionOptions } from '../engine/session.js';
import { EmbeddingNeighbours, type EmbeddingNeighboursInfo } from '../teacher/word-neighbours.js';
import { shortHash } from '../util/hash.js';
import { AtomicFileWriter, writeFileAtomicSync } from '../util/fs.js';
import { runVersions, type RunVersions } from '../util/versions.js';

/** The paper's rates (Tang et al. 2019: p_mask = p_pos = 0.1, p_ng = 0.25, n in 1..5) and our copy count. */
export const AUGMENT_DEFAULTS = { copies: 4, seed: 13, pMask: 0.1, pReplace: 0.1, pNgram: 0.25, maxNgram: 5, neighbours: 10 } as const;

export interface AugmentOptions extends ReadOptions {
  /** Output JSONL; the sidecar is `<out>.json`. */
  out: string;
  /** Copies drawn per source row (default 4). */
  copies?: number;
  seed?: number;
  pMask?: number;
  /** Default 0.1 with a replacement source (`teacher` or `wordList`); without one, replacement is off and a value above 0 is an error. */
  pReplace?: number;
  pNgram?: number;
  maxNgram?: number;
  /** Teacher folder: replacements are neighbours in its input-embedding space; its tokenizer gives the mask token. */
  teacher?: string;
  /** Word list: one group of interchangeable words a line. */
  wordList?: string;
  /** k of the embedding neighbours a replacement is drawn from (default 10). */
  neighbours?: number;
  /** Folder with tokenizer.json whose mask token (else unknown token) masks words; default `teacher`, else `[MASK]`. */
  tokenizer?: string;
  /** ONNX Runtime session for the neighbour search (device, threads); default CPU. */
  session?: SessionOptions;
}

/** The resolved settings, as saved in the sidecar. */
export interface AugmentConfig {
  files: string[];
  format: string;
  copies: number;
  seed: number;
  pMask: number;
  pReplace: number;
  pNgram: number;
  maxNgram: number;
  maskToken: string;
  /** Where the mask token came from: a tokenizer folder's mask or unknown token, or the default. */
  maskTokenFrom: string;
  replacement:
    | { kind: 'off' }
    | ({ kind: 'embedding-neighbours' } & EmbeddingNeighboursInfo)
    | { kind: 'word-list'; file: string; groups: number; words: number };
}

/** What `kd augment` did: the sidecar `<out>.json` holds it. */
export interface AugmentSummary {
  kind: 'kd-augment';
  version: 1;
  out: string;
  config: AugmentConfig;
  rowsRead: number;
  /** Source rows whose id was seen before in the input (left out: their copies would repeat ids). */
  duplicateSourceIds: number;
  copiesWritten: number;
  skipped: {
    /** Copies whose text came out identical to their source's. */
    identicalToSource: number;
    /** Copies identical to an earlier copy of the same source. */
    repeatedCopy: number;
  };
  /** Written copies whose text another source row's copy (or an earlier row) already has: kept, counted. */
  duplicateTextsKept: number;
  /**
   * Over the written copies: words of their sources, and words masked and replaced in the whole text (before an
   * n-gram cut, which keeps only some of them), copies cut to an n-gram.
   */
  words: number;
  masked: number;
  replaced: number;
  /** Replacement drawn for a word without candidates (not in the vocabulary or word list): it stayed. */
  replaceMissed: number;
  ngramCopies: number;
  read: ReadSummary;
  versions: RunVersions;
  createdAt: string;
}

/**
 * The random stream of one copy: xoshiro128** (engine/rng.ts) whose 128-bit state is the first
 * 16 bytes of SHA-256("kd-augment\0<seed>\0<source id>\0<copy>"). A row's copies depend on the
 * seed, its id, its text and the options only, never on the other rows of the file.
 */
export function augmentStream(seed: number, sourceId: string, copy: number): Rng {
  const digest = createHash('sha256').update(`kd-augment\u0000${seed}\u0000${sourceId}\u0000${copy}`, 'utf8').digest();
  const state = new Uint32Array([digest.readUInt32LE(0), digest.readUInt32LE(4), digest.readUInt32LE(8), digest.readUInt32LE(12)]);
  if (state.every((x) => x === 0)) state[0] = 1;
  return new Rng(state);
}

/** The id of copy `copy` of row `sourceId`. */
export function augmentedId(sourceId: string, copy: number): string {
  return `${sourceId}.aug${copy}`;
}

function checkProbability(flag: string, value: number): void {
  if (!Number.isFinite(value) || value < 0 || value > 1) throw new OptionError(`'--${flag}' must be a probability in [0, 1], got ${value}`);
}

function checkInteger(flag: string, value: number, min: number): void {
  if (!Number.isSafeInteger(value) || value < min) throw new OptionError(`'--${flag}' must be an integer ≥ ${min}, got ${value}`);
}

/** Each input must be a readable, non-empty file: checked before anything is loaded or read. */
function checkInputFile(file: string): void {
  let size: number;
  try {
    const st = statSync(file);
    if (!st.isFile()) throw new UserError(`'--data' ${file}: is a folder, not a data file; name the files inside it`);
    size = st.size;
    accessSync(file, constants.R_OK);
  } catch (e) {
    if (e instanceof UserError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'not readable (permission denied)' : `cannot read it (${code})`;
    throw new UserError(`'--data' ${file}: ${why}; nothing was augmented`);
  }
  if (size === 0) throw new UserError(`'--data' ${file}: the file is empty; there is nothing to augment`);
}

function maskTokenOf(dir: string | undefined): { token: string; from: string } {
  if (dir === undefined) return { token: '[MASK]', from: 'default' };
  const tok = TextTokenizer.fromFolder(dir);
  for (const [token, kind] of [
    [tok.specials.mask, 'mask'],
    [tok.specials.unk, 'unknown'],
  ] as const)
    if (tok.native.tokenToId(token) !== null && tok.native.tokenToId(token) !== undefined)
      return { token, from: `${dir}/tokenizer.json (${kind} token)` };
  throw new ConfigError(`${dir}/tokenizer.json: neither its mask token ${tok.specials.mask} nor its unknown token is in its vocabulary`);
}

/** Validates every option and input and loads what the rules need; throws before any row is read. */
async function prepare(
  files: readonly string[],
  o: AugmentOptions,
): Promise<{ config: Omit<AugmentConfig, 'format'>; rules: AugmentRules; replacer?: WordReplacer }> {
  if (files.length === 0) throw new OptionError("'--data' names no file; give one or more data files");
  const copies = o.copies ?? AUGMENT_DEFAULTS.copies;
  const seed = o.seed ?? AUGMENT_DEFAULTS.seed;
  const maxNgram = o.maxNgram ?? AUGMENT_DEFAULTS.maxNgram;
  const neighbours = o.neighbours ?? AUGMENT_DEFAULTS.neighbours;
  checkInteger('copies', copies, 1);
  checkInteger('seed', seed, 0);
  checkInteger('max-ngram', maxNgram, 1);
  checkInteger('neighbours', neighbours, 1);
  const pMask = o.pMask ?? AUGMENT_DEFAULTS.pMask;
  const pNgram = o.pNgram ?? AUGMENT_DEFAULTS.pNgram;
  checkProbability('p-mask', pMask);
  checkProbability('p-ngram', pNgram);
  if (o.pReplace !== undefined) checkProbability('p-replace', o.pReplace);
  if (o.teacher !== undefined && o.wordList !== undefined)
    throw new OptionError("'--teacher' and '--word-list' are two sources of replacements; give one");
  const hasSource = o.teacher !== undefined || o.wordList !== undefined;
  if (!hasSource && o.pReplace !== undefined && o.pReplace > 0)
    throw new OptionError(
      `'--p-replace' ${o.pReplace} needs words to replace with: give --teacher DIR (embedding neighbours) or --word-list FILE`,
    );
  const pReplace = hasSource ? (o.pReplace ?? AUGMENT_DEFAULTS.pReplace) : 0;
  if (pMask + pReplace > 1)
    throw new OptionError(`'--p-mask' + '--p-replace' must be at most 1 (one draw per word picks one rule), got ${pMask + pReplace}`);
  for (const f of files) checkInputFile(f);
  // The format too (binary, compressed, blank files), so such an input fails before the teacher is loaded.
  for (const f of files) await resolveFormat(f, o.format ?? 'auto');
  const out = resolve(o.out);
  if (files.some((f) => resolve(f) === out)) throw new OptionError(`'--out' ${o.out} is one of the input files; write elsewhere`);
  if (statSync(o.out, { throwIfNoEntry: false })?.isDirectory())
    throw new OptionError(`'--out' ${o.out} is a folder; it names the JSONL file to write (its sidecar is <out>.json)`);

  let replacer: WordReplacer | undefined;
  let replacement: AugmentConfig['replacement'] = { kind: 'off' };
  if (o.teacher !== undefined) {
    const near = await EmbeddingNeighbours.fromTeacher(o.teacher, { k: neighbours, ...(o.session ? { session: o.session } : {}) });
    replacer = near;
    replacement = { kind: 'embedding-neighbours', ...near.info };
  } else if (o.wordList !== undefined) {
    const list = WordListReplacer.fromFile(o.wordList);
    replacer = list;
    replacement = { kind: 'word-list', file: o.wordList, groups: list.lines, words: list.words };
  }
  const mask = maskTokenOf(o.tokenizer ?? o.teacher);
  const rules: AugmentRules = { pMask, pReplace, pNgram, maxNgram, maskToken: mask.token, ...(replacer ? { replacer } : {}) };
  const config = {
    files: [...files],
    copies,
    seed,
    pMask,
    pReplace,
    pNgram,
    maxNgram,
    maskToken: mask.token,
    maskTokenFrom: mask.from,
    replacement,
  };
  return { config, rules, ...(replacer ? { replacer } : {}) };
}

/**
 * Writes `copies` augmented copies of every row of `files` to `out` (JSONL, one row a copy:
 * `{"id", "textHash", "label": null, "text", "source_id", "copy"}`), in input order, copy by copy,
 * and the summary to `<out>.json`. Each copy masks words, replaces words of the same kind and
 * samples an n-gram span ({@link augmentText}) from its own stream ({@link augmentStream}), so the
 * file is byte-identical for the same input, options and seed. A copy identical to its source or to
 * an earlier copy of it is skipped and counted; equal texts from different rows are kept (the
 * output for a row never depends on the other rows). Rows whose id was seen before are left out.
 * Every option and input is checked before the first row is read; the output appears only whole.
 *
 * @example
 * ```ts
 * import { augmentExamples } from 'kd-toolkit';
 * // The 9,992-review Amazon sample, 4 copies, masking and n-grams only (no teacher, no word list):
 * const s = await augmentExamples(['train_random_sample_9992.ft.txt'], { out: 'transfer.jsonl', copies: 4, seed: 13 });
 * [s.copiesWritten, s.skipped.identicalToSource, s.skipped.repeatedCopy, s.duplicateTextsKept]; // [39556, 388, 24, 1409]
 * // transfer.jsonl, line 1 (text shortened):
 * // {"id":"hb2ea29f7ddee3567.aug0","textHash":"0db6f5581353ba9f","label":null,
 * //  "text":"Great travel guide to Europe!: … The combination of good [MASK], illustration and [MASK] [MASK] perfect. …",
 * //  "source_id":"hb2ea29f7ddee3567","copy":0}
 * ```
 */
export async function augmentExamples(files: readonly string[], options: AugmentOptions): Promise<AugmentSummary> {
  const { config, rules } = await prepare(files, options);
  const reader = new DatasetReader(files, options);
  const writer = await AtomicFileWriter.create(options.out);
  const seenIds = new Set<string>();
  const seenTexts = new Set<string>();
  const counts = { rowsRead: 0, duplicateSourceIds: 0, copiesWritten: 0, identicalToSource: 0, repeatedCopy: 0, duplicateTextsKept: 0 };
  const done = { words: 0, masked: 0, replaced: 0, replaceMissed: 0, ngramCopies: 0 };
  try {
    for await (const ex of reader) {
      counts.rowsRead += 1;
      if (seenIds.has(ex.id)) {
        counts.duplicateSourceIds += 1;
        continue;
      }
      seenIds.add(ex.id);
      seenTexts.add(ex.textHash);
      const copies = new Set<string>();
      const split = splitWords(ex.text);
      let lines = '';
      for (let copy = 0; copy < config.copies; copy++) {
        const a = augmentText(split, rules, augmentStream(config.seed, ex.id, copy));
        if (a.text === ex.text) {
          counts.identicalToSource += 1;
          continue;
        }
        if (copies.has(a.text)) {
          counts.repeatedCopy += 1;
          continue;
        }
        copies.add(a.text);
        const textHash = shortHash(a.text);
        if (seenTexts.has(textHash)) counts.duplicateTextsKept += 1;
        seenTexts.add(textHash);
        const row = { id: augmentedId(ex.id, copy), textHash, label: null, text: a.text, source_id: ex.id, copy };
        lines += `${JSON.stringify(row)}\n`;
        counts.copiesWritten += 1;
        done.words += a.words;
        done.masked += a.masked;
        done.replaced += a.replaced;
        done.replaceMissed += a.replaceMissed;
        if (a.ngram !== null) done.ngramCopies += 1;
      }
      if (lines) await writer.write(lines);
    }
    if (counts.rowsRead === 0) {
      const s = reader.summary;
      throw new UserError(
        `${files.join(', ')}: no rows to augment (${s.skipped.malformed} malformed, ${s.skipped.neutral} neutral, ` +
          `${s.blankLines} blank lines skipped); nothing was written`,
      );
    }
    await writer.commit();
  } catch (e) {
    await writer.abort();
    throw e;
  }
  const summary: AugmentSummary = {
    kind: 'kd-augment',
    version: 1,
    out: options.out,
    config: { ...config, format: reader.summary.format },
    rowsRead: counts.rowsRead,
    duplicateSourceIds: counts.duplicateSourceIds,
    copiesWritten: counts.copiesWritten,
    skipped: { identicalToSource: counts.identicalToSource, repeatedCopy: counts.repeatedCopy },
    duplicateTextsKept: counts.duplicateTextsKept,
    ...done,
    read: reader.summary,
    versions: runVersions(),
    createdAt: new Date().toISOString(),
  };
  writeFileAtomicSync(`${options.out}.json`, `${JSON.stringify(summary, null, 2)}\n`);
  return summary;
}
