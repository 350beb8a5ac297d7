// The teacher-output cache on a foreign teacher and real tweets: contents, a real kill -9 and
// resume to identical bytes, sharded builds and merge, verification, PCA and refusals.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { CacheReader, verifyCache } from '../../src/cache/reader.js';
import { Teacher } from '../../src/teacher/teacher.js';
import { readAllExamples } from '../../src/data/read.js';
import { repoRoot, runKd, S140_10K, sharedPath, tempDir } from '../helpers.js';

const TEACHER = () => sharedPath('fixtures', 'hf', 'tiny-random-bert');
const OTHER = () => sharedPath('fixtures', 'hf', 'tiny-random-distilbert');

function tree(dir: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  const walk = (d: string) => {
    for (const f of readdirSync(d)) {
      const p = join(d, f);
      if (statSync(p).isDirectory()) walk(p);
      else out.set(relative(dir, p), readFileSync(p));
    }
  };
  walk(dir);
  return out;
}

function build(out: string, extra: string[] = []) {
  return runKd(['cache', 'build', '--teacher', TEACHER(), '--data', S140_10K(), '--out', out, '--shard-rows', '1000', '--json', ...extra]);
}

test('a cache holds the teacher outputs of every unique row, readable by index', async () => {
  const out = join(tempDir(), 'cache');
  const r = build(out);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.json().rows, 10000);
  assert.equal(r.json().shards, 10);
  const v = verifyCache(out);
  assert.deepEqual([v.ok, v.shards, v.rows], [true, 10, 10000]);
  const reader = CacheReader.open(out);
  const { examples } = await readAllExamples([S140_10K()], { progress: false });
  const keys = reader.keys();
  assert.deepEqual(
    keys.ids.slice(0, 3),
    examples.slice(0, 3).map((e) => e.id),
  );
  assert.equal(keys.textHashes[9999], examples[9999]!.textHash);
  const rows = Int32Array.of(0, 4321, 9999, 17);
  const cached = reader.read(rows);
  const teacher = await Teacher.load(TEACHER(), { warn: () => undefined });
  const p = await teacher.predict(Array.from(rows, (i) => examples[i]!.text));
  await teacher.dispose();
  for (let k = 0; k < rows.length; k++) {
    assert.equal(cached.labels[k], examples[rows[k]!]!.label);
    for (let c = 0; c < 2; c++) assert.ok(Math.abs(cached.logits[k * 2 + c]! - p.logits[k * 2 + c]!) < 1e-6);
    for (let d = 0; d < 64; d++)
      assert.ok(
        Math.abs(cached.embedding![k * 64 + d]! - p.embedding[k * 64 + d]!) <= 1e-3 * Math.max(1, Math.abs(p.embedding[k * 64 + d]!)),
      );
  }
  const { weight, bias } = reader.extras();
  assert.equal(weight!.length, 2 * 64);
  assert.equal(bias!.length, 2);
  const info = runKd(['cache', 'info', out, '--json']).json();
  assert.equal(info.rows, 10000);
  assert.ok(info.teacherAccuracy > 0 && info.teacherAccuracy < 1);
  reader.close();
});

test('kill -9 in the middle of a build, rerun: the finished cache is byte-identical', async () => {
  const straight = join(tempDir(), 'straight');
  assert.equal(build(straight).status, 0);
  const killed = join(tempDir(), 'killed');
  const child = spawn(
    process.execPath,
    [
      join(repoRoot, 'bin', 'kd.js'),
      'cache',
      'build',
      '--teacher',
      TEACHER(),
      '--data',
      S140_10K(),
      '--out',
      killed,
      '--shard-rows',
      '1000',
    ],
    { stdio: 'ignore' },
  );
  const progress = join(killed, 'progress.json');
  for (let i = 0; i < 600; i++) {
    if (existsSync(progress) && Object.keys(JSON.parse(readFileSync(progress, 'utf8')).done).length >= 3) break;
    await new Promise((r) => setTimeout(r, 25));
  }
  child.kill('SIGKILL');
  await new Promise((r) => child.on('close', r));
  assert.equal(existsSync(join(killed, 'manifest.json')), false, 'killed before finishing');
  const unfinished = runKd(['cache', 'info', killed]);
  assert.equal(unfinished.status, 2);
  assert.match(unfinished.stderr, /no manifest\.json: the build is not finished \(rerun the same kd cache build command to resume it\)/);
  const resumed = build(killed);
  assert.equal(resumed.status, 0, resumed.stderr);
  const a = tree(straight);
  const b = tree(killed);
  assert.deepEqual([...b.keys()].sort(), [...a.keys()].sort());
  for (const [name, bytes] of a) assert.ok(bytes.equals(b.get(name)!), `${name} differs`);
});

test('a cache built with another teacher is refused, naming the field that differs', () => {
  const out = join(tempDir(), 'c');
  assert.equal(build(out).status, 0);
  const r = runKd(['cache', 'build', '--teacher', OTHER(), '--data', S140_10K(), '--out', out, '--shard-rows', '1000']);
  assert.equal(r.status, 2);
  assert.match(
    r.stderr.trimEnd().split('\n').at(-1)!,
    new RegExp(
      String.raw`^kd: error: the cache at .* was built with a different teacher: teacher\.fingerprint\.model is "a94ca6e3[0-9a-f]+", ` +
        String.raw`this run has "[0-9a-f]+"\. Use another --out, or delete .* to rebuild\.$`,
    ),
  );
  assert.throws(
    () => CacheReader.open(out, { teacherFingerprint: { model: 'x', tokenizer: 'y', config: 'z' } }),
    /was built with a different model: model is/,
  );
});

test('--shard k/n builds parts that kd cache merge joins without copying; shards equal a single build', () => {
  const whole = join(tempDir(), 'whole');
  assert.equal(build(whole).status, 0);
  const root = tempDir();
  const parts = [0, 1, 2].map((k) => join(root, `part-${k}`));
  parts.forEach((p, k) => assert.equal(build(p, ['--shard', `${k}/3`]).status, 0));
  assert.deepEqual(readdirSync(join(parts[1]!, 'shards')), ['shard-00001.kdc', 'shard-00004.kdc', 'shard-00007.kdc']);
  const merged = join(root, 'merged');
  const m = runKd(['cache', 'merge', '--out', merged, ...parts]);
  assert.equal(m.status, 0, m.stderr);
  assert.deepEqual(readdirSync(merged), ['manifest.json']);
  assert.equal(verifyCache(merged).ok, true);
  const a = CacheReader.open(whole);
  const b = CacheReader.open(merged);
  const rows = Int32Array.of(0, 999, 1000, 5555, 9999);
  assert.deepEqual(b.read(rows), a.read(rows));
  for (let i = 0; i < 10; i++) {
    const name = `shard-${String(i).padStart(5, '0')}.kdc`;
    assert.ok(readFileSync(join(whole, 'shards', name)).equals(readFileSync(join(parts[i % 3]!, 'shards', name))));
  }
  a.close();
  b.close();
  const incomplete = runKd(['cache', 'merge', '--out', join(root, 'bad'), parts[0]!, parts[2]!]);
  assert.equal(incomplete.status, 2);
  assert.match(incomplete.stderr, /the parts lack shard\(s\) 1, 4, 7 of 10: a part is missing or unfinished/);
});

test('kd cache verify names a truncated and an altered shard, with offsets', () => {
  const out = join(tempDir(), 'c');
  assert.equal(build(out).status, 0);
  const s2 = join(out, 'shards', 'shard-00002.kdc');
  const s5 = join(out, 'shards', 'shard-00005.kdc');
  const bytes2 = readFileSync(s2);
  writeFileSync(s2, bytes2.subarray(0, 5000));
  const bytes5 = Buffer.from(readFileSync(s5));
  bytes5[200] = bytes5[200]! ^ 0xff;
  writeFileSync(s5, bytes5);
  const r = runKd(['cache', 'verify', out, '--json']);
  assert.equal(r.status, 1);
  const j = r.json();
  assert.equal(j.ok, false);
  assert.deepEqual(j.problems, [
    { shard: 'shards/shard-00002.kdc', problem: `truncated at offset 5000 (expected ${bytes2.length} bytes)` },
    { shard: 'shards/shard-00005.kdc', problem: `altered: checksum differs; damaged block(s) at offsets 0–${bytes5.length - 1}` },
  ]);
});

test('--embedding pca:K stores the projection fitted on the data; none stores no embedding', () => {
  const full = join(tempDir(), 'full');
  assert.equal(build(full).status, 0);
  const pca = join(tempDir(), 'pca');
  const r = build(pca, ['--embedding', 'pca:8', '--dtype', 'float32']);
  assert.equal(r.status, 0, r.stderr);
  const a = CacheReader.open(full);
  const b = CacheReader.open(pca);
  assert.equal(b.dim, 8);
  const { pca: proj } = b.extras();
  // Components are orthonormal rows.
  for (let i = 0; i < 8; i++)
    for (let j = 0; j < 8; j++) {
      let dot = 0;
      for (let d = 0; d < 64; d++) dot += proj!.components[i * 64 + d]! * proj!.components[j * 64 + d]!;
      assert.ok(Math.abs(dot - (i === j ? 1 : 0)) < 1e-5);
    }
  // Stored = (full embedding − mean) · Uᵀ (full is float16, so a loose tolerance).
  const row = a.read(Int32Array.of(123)).embedding!;
  const z = b.read(Int32Array.of(123)).embedding!;
  for (let j = 0; j < 8; j++) {
    let s = 0;
    for (let d = 0; d < 64; d++) s += (row[d]! - proj!.mean[d]!) * proj!.components[j * 64 + d]!;
    assert.ok(Math.abs(s - z[j]!) < 2e-2, `component ${j}: ${s} vs ${z[j]}`);
  }
  const none = join(tempDir(), 'none');
  assert.equal(build(none, ['--embedding', 'none']).status, 0);
  const c = CacheReader.open(none);
  assert.equal(c.read(Int32Array.of(1)).embedding, null);
  assert.ok(statSync(join(none, 'shards', 'shard-00000.kdc')).size < statSync(join(pca, 'shards', 'shard-00000.kdc')).size);
  for (const x of [a, b, c]) x.close();
  assert.match(
    runKd(['cache', 'build', '--teacher', TEACHER(), '--data', S140_10K(), '--out', tempDir(), '--embedding', 'pca']).stderr,
    /'--embedding' must be full, none or pca:K \(K > 0\), got "pca"/,
  );
});
