// What keeps a cache trustworthy end to end, with the tiny foreign teacher on 3,000 real tweets:
// kd train / kd eval refuse a damaged shard (unless --no-verify), one build at a time per
// folder (lock), identity on disk first, kd cache merge never into a part, labels named.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { decodeHeader, HEADER_BYTES } from '../../src/cache/format.js';
import { mergeCaches, verifyCache } from '../../src/cache/reader.js';
import { OptionError } from '../../src/errors.js';
import type { CacheManifest } from '../../src/cache/manifest.js';
import { LOCK_FILE } from '../../src/util/lock.js';
import { repoRoot, runKd, S140_RANDOM, sharedPath, tempDir, type CliResult } from '../helpers.js';

const TEACHER = () => sharedPath('fixtures', 'hf', 'tiny-random-bert');
const OTHER = () => sharedPath('fixtures', 'hf', 'tiny-random-distilbert');
const root = tempDir('kd-cache-safety-');
const split = join(root, 'split');
const cache = join(root, 'cache');
const files = (s: string) => join(split, `${s}.jsonl`);
const lastLine = (r: CliResult) => r.stderr.trimEnd().split('\n').at(-1)!;
const manifestOf = (dir: string) => JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as CacheManifest;

function build(out: string, data: string[], extra: string[] = [], teacher = TEACHER()) {
  return runKd(['cache', 'build', '--teacher', teacher, '--data', ...data, '--out', out, '--shard-rows', '1000', ...extra]);
}

function train(cacheDir: string, out: string, extra: string[] = []) {
  return runKd([
    'train',
    '--cache',
    cacheDir,
    '--train',
    files('train'),
    '--dev',
    files('dev'),
    '--out',
    out,
    '--epochs',
    '1',
    '--limit',
    '400',
    ...extra,
  ]);
}

before(() => {
  const s = runKd(['data', 'split', S140_RANDOM(), '--limit', '3000', '--out', split]);
  assert.equal(s.status, 0, s.stderr);
  const c = build(cache, [files('train'), files('dev'), files('test')]);
  assert.equal(c.status, 0, c.stderr);
});

test('a logit set to 1e30 in a shard: kd train and kd eval --cache refuse the cache naming the shard; --no-verify skips the check', () => {
  const damaged = join(root, 'damaged');
  cpSync(cache, damaged, { recursive: true });
  const shard = join(damaged, 'shards', 'shard-00001.kdc');
  const bytes = Buffer.from(readFileSync(shard));
  const layout = decodeHeader(bytes.subarray(0, HEADER_BYTES), bytes.length, shard);
  bytes.writeFloatLE(1e30, layout.offsets.logits + 4 * layout.classes * 17); // row 17, class 0
  writeFileSync(shard, bytes);
  const bad = bytes.length;
  const refusal = new RegExp(
    `^kd: error: ${damaged.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/shards/shard-00001\\.kdc: altered: checksum differs; damaged ` +
      `block\\(s\\) at offsets 0–${bad - 1}\\. The cache is damaged: rebuild it \\(delete .* and rerun the kd cache build ` +
      `command that made it\\); kd cache verify .* lists every damaged file$`,
  );

  const refused = train(damaged, join(root, 'run-refused'));
  assert.equal(refused.status, 2, refused.stderr);
  assert.match(lastLine(refused), refusal);
  assert.equal(existsSync(join(root, 'run-refused', 'seed-13', 'model')), false, 'nothing trained');
  const skipped = train(damaged, join(root, 'run-skipped'), ['--no-verify']);
  assert.equal(skipped.status, 0, skipped.stderr);

  const evalArgs = ['eval', '--model', TEACHER(), '--data', files('test'), '--cache', damaged, '--limit', '50'];
  const evalRefused = runKd(evalArgs);
  assert.equal(evalRefused.status, 2, evalRefused.stderr);
  assert.match(lastLine(evalRefused), refusal);
  const evalSkipped = runKd([...evalArgs, '--no-verify', '--json']);
  assert.equal(evalSkipped.status, 0, evalSkipped.stderr);
  assert.ok(evalSkipped.json().teacher.agreement >= 0);
});

test("a build into a folder locked by a live process is refused naming the pid and lock file; a dead owner's lock is taken over", () => {
  const out = join(tempDir(), 'c');
  const lock = join(out, LOCK_FILE);
  const live = { pid: process.pid, host: hostname(), command: 'kd cache build' };
  mkdirSync(out, { recursive: true });
  writeFileSync(lock, JSON.stringify(live));
  const refused = build(out, [files('dev')]);
  assert.equal(refused.status, 2, refused.stderr);
  assert.equal(
    lastLine(refused),
    `kd: error: ${out} is in use by kd cache build (pid ${process.pid}; lock file ${lock}). Wait for it to finish or use ` +
      `another folder; if no such process is running, delete ${lock}`,
  );
  assert.equal(existsSync(join(out, 'progress.json')), false, 'the refused build wrote nothing');
  assert.deepEqual(JSON.parse(readFileSync(lock, 'utf8')), live, 'the live lock is left alone');

  const dead = spawnSync(process.execPath, ['-e', '']).pid!;
  writeFileSync(lock, JSON.stringify({ ...live, pid: dead }));
  const taken = build(out, [files('dev')]);
  assert.equal(taken.status, 0, taken.stderr);
  assert.ok(
    taken.stderr.includes(`kd cache build: took over the stale lock ${lock} of pid ${dead} (kd cache build), which is no longer running`),
    taken.stderr,
  );
  assert.equal(existsSync(lock), false, 'released at the end');
  assert.equal(verifyCache(out).ok, true);
});

test(
  "two concurrent builds with different teachers into one --out: exactly one succeeds, and the cache is that one's " + 'and verifies',
  async () => {
    {
      const order = [TEACHER(), OTHER()];
      const out = join(tempDir(), 'race');
      const runs = order.map((teacher) => {
        const child = spawn(
          process.execPath,
          [
            join(repoRoot, 'bin', 'kd.js'),
            'cache',
            'build',
            '--teacher',
            teacher,
            '--data',
            files('train'),
            '--out',
            out,
            '--shard-rows',
            '500',
            '--json',
          ],
          { stdio: ['ignore', 'pipe', 'pipe'] },
        );
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (d) => (stdout += d));
        child.stderr.on('data', (d) => (stderr += d));
        return new Promise<{ teacher: string; status: number | null; stdout: string; stderr: string }>((done) =>
          child.on('close', (status) => done({ teacher, status, stdout, stderr })),
        );
      });
      const results = await Promise.all(runs);
      const winners = results.filter((r) => r.status === 0);
      assert.equal(winners.length, 1, results.map((r) => `${r.status}: ${r.stderr}`).join('\n'));
      const loser = results.find((r) => r.status !== 0)!;
      assert.equal(loser.status, 2);
      // Refused by the lock while the winner runs, or by the identity once it has finished.
      assert.match(
        loser.stderr,
        /kd: error: .* (is in use by kd cache build \(pid \d+; lock file .*\.kd-lock\)|was built with a different teacher)/,
      );
      assert.equal(verifyCache(out).ok, true);
      const won = JSON.parse(winners[0]!.stdout.trimEnd().split('\n').at(-1)!) as { teacher: Record<string, string> };
      assert.deepEqual(manifestOf(out).teacher.fingerprint, won.teacher);
      assert.equal(existsSync(join(out, LOCK_FILE)), false);
    }
  },
);

test('the identity is on disk before the first shard: a build that stops early still refuses another teacher', () => {
  const data = join(tempDir(), 'broken.jsonl');
  const lines = readFileSync(files('dev'), 'utf8').split('\n').slice(0, 20);
  writeFileSync(data, `${lines.join('\n')}\n{"text": "no label and a broken quote\n`);
  const out = join(tempDir(), 'c');
  const first = build(out, [data], ['--strict', '--format', 'jsonl']);
  assert.equal(first.status, 2, first.stderr);
  assert.equal(existsSync(join(out, 'shards', 'shard-00000.kdc')), false, 'stopped before any shard');
  const other = build(out, [data], ['--strict', '--format', 'jsonl'], OTHER());
  assert.equal(other.status, 2);
  assert.match(
    lastLine(other),
    new RegExp(
      String.raw`^kd: error: the unfinished cache at .* was built with a different teacher: teacher\.fingerprint\.model is "[0-9a-f]+` +
        String.raw`", this run has "[0-9a-f]+"\. Use another --out, or delete .* to rebuild\.$`,
    ),
  );
});

test('kd cache merge refuses an --out that is one of its parts, however it is spelled', () => {
  const dir = tempDir();
  const parts = [0, 1].map((k) => join(dir, `part-${k}`));
  parts.forEach((p, k) => assert.equal(build(p, [files('dev')], ['--shard', `${k}/2`, '--shard-rows', '100']).status, 0));
  const before = readFileSync(join(parts[0]!, 'manifest.json'));
  symlinkSync(parts[0]!, join(dir, 'link'));
  const refusal =
    /^'--out' .* is the part .*part-0 \(both are .*part-0\): the merged manifest would replace that part's own\. Give a new folder/;
  for (const out of [parts[0]!, `${parts[0]}/./`, `${dir}/part-1/../part-0`]) {
    assert.throws(
      () => mergeCaches(out, parts),
      (e: Error) => e instanceof OptionError && refusal.test(e.message),
      out,
    );
  }
  const r = runKd(['cache', 'merge', '--out', join(dir, 'link'), ...parts]);
  assert.equal(r.status, 2, r.stderr);
  assert.match(lastLine(r).replace(/^kd: error: /, ''), refusal);
  assert.ok(readFileSync(join(parts[0]!, 'manifest.json')).equals(before), "the part's manifest is untouched");
  assert.equal(verifyCache(parts[0]!).ok, true);
  mergeCaches(join(dir, 'merged'), parts);
  assert.equal(verifyCache(join(dir, 'merged')).ok, true);
  assert.throws(
    () => mergeCaches(cache, parts),
    /holds a cache of its own \(a shards folder or an unfinished build\): the merged manifest would orphan it/,
  );
});

test('a label or class mismatch with the cache names the labels, the file and line, the cache and the fix', () => {
  const swapped = train(cache, join(root, 'swapped'), ['--label-map', 'negative=positive,positive=negative']);
  assert.equal(swapped.status, 2, swapped.stderr);
  const first = JSON.parse(readFileSync(files('train'), 'utf8').split('\n')[0]!) as { id: string; label: string };
  const other = first.label === 'negative' ? 'positive' : 'negative';
  const idx = (l: string) => (l === 'negative' ? 0 : 1);
  assert.equal(
    lastLine(swapped),
    `kd: error: ${files('train')}:1: id ${first.id} is labelled '${other}' (class ${idx(other)}) here but '${first.label}' ` +
      `(class ${idx(first.label)}) in the cache ${cache} (built from ${files('train')}, ${files('dev')}, ${files('test')}); 400 ` +
      `of 400 rows differ. Read the data as the cache build did (the same --label-map and --classes), or rebuild the cache over ` +
      `these files`,
  );
  const three = train(cache, join(root, 'three'), ['--classes', '3']);
  assert.equal(three.status, 2, three.stderr);
  assert.equal(
    lastLine(three),
    `kd: error: the cache ${cache} holds 2 classes (negative, positive), built with --classes 2 from ${files('train')}, ` +
      `${files('dev')}, ${files('test')}; this run reads 3 (negative, neutral, positive). Pass --classes 2 (and the --label-map ` +
      `the cache was built with), or rebuild the cache with --classes 3`,
  );
  const evalSwapped = runKd([
    'eval',
    '--model',
    TEACHER(),
    '--data',
    files('test'),
    '--cache',
    cache,
    '--limit',
    '50',
    '--label-map',
    'negative=positive,positive=negative',
  ]);
  assert.equal(evalSwapped.status, 2, evalSwapped.stderr);
  assert.match(
    lastLine(evalSwapped),
    new RegExp(
      String.raw`test\.jsonl:1: id \d+ is labelled '(negative|positive)' \(class [01]\) here but '(negative|positive)' \(class [01]\)` +
        String.raw` in the cache .*; 50 of 50 rows differ`,
    ),
  );
});
