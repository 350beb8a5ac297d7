// A cache manifest is untrusted input: entries naming files outside the cache, links, FIFOs,
// devices or the wrong size are refused before any read, naming the entry. Caches are written
// here without a teacher (synthetic rows through the real shard writer), then manifests crafted.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { appendFileSync, closeSync, mkdirSync, openSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { writeShard } from '../../../src/cache/build.js';
import { CacheReader, mergeCaches, verifyCache } from '../../../src/cache/reader.js';
import { hashOpenFile, UnsafeCachePathError } from '../../../src/cache/files.js';
import { BLOCK_BYTES, CACHE_FORMAT, CACHE_VERSION, CacheMismatchError, type CacheManifest } from '../../../src/cache/manifest.js';
import { saveSafetensors } from '../../../src/engine/safetensors.js';
import { UserError } from '../../../src/errors.js';
import { repoRoot, tempDir } from '../../helpers.js';

const ROWS = 6;
const CLASSES = 2;

/** A real 2-shard cache (3 rows each, no embedding) written by the library's shard writer. */
function makeCache(dir: string, part: CacheManifest['part'] = null, indices = [0, 1]): CacheManifest {
  const shards = indices.map((index) => {
    const ids = [0, 1, 2].map((r) => `id-${index * 3 + r}`);
    const logits = Float32Array.from({ length: 3 * CLASSES }, (_, i) => index + i / 10);
    return writeShard(
      dir,
      index,
      {
        ids,
        textHashes: ids.map((id) => createHash('sha256').update(id).digest('hex').slice(0, 16)),
        labels: Int32Array.of(0, 1, 0),
        logits,
        classes: CLASSES,
        embedding: null,
        dim: 0,
      },
      'float16',
    );
  });
  saveSafetensors(join(dir, 'classifier.safetensors'), new Map(), { format: 'kd-cache-extras' });
  const extras = readFileSync(join(dir, 'classifier.safetensors'));
  const manifest: CacheManifest = {
    format: CACHE_FORMAT,
    version: CACHE_VERSION,
    tool: { name: 'kd-toolkit', version: 'test' },
    teacher: {
      fingerprint: { model: 'm', tokenizer: 't', config: 'c' },
      labels: ['negative', 'positive'],
      modelType: 'bert',
      classifier: { rows: 0, cols: 0, found: 'none' },
    },
    data: {
      files: [{ path: 'data.jsonl', sha256: '0'.repeat(64), bytes: 0 }],
      format: 'jsonl',
      classes: CLASSES,
      labels: ['negative', 'positive'],
      rows: ROWS,
      duplicatesRemoved: 0,
      skippedMalformed: 0,
      skippedNeutral: 0,
    },
    maxLength: 16,
    embedding: { mode: 'none', dim: 0, sourceDim: 0, dtype: 'float16' },
    shardRows: 3,
    shardCount: 2,
    part,
    shards,
    extras: { path: 'classifier.safetensors', sha256: createHash('sha256').update(extras).digest('hex'), bytes: extras.length },
  };
  writeManifest(dir, manifest);
  return manifest;
}

function writeManifest(dir: string, m: CacheManifest): void {
  writeFileSync(join(dir, 'manifest.json'), JSON.stringify(m, null, 2));
}

/** The cache with shard 1's entry pointing at `path`. */
function crafted(path: string, setup?: (dir: string) => void): string {
  const dir = tempDir('kd-crafted-');
  const m = makeCache(dir);
  setup?.(dir);
  m.shards[1] = { ...m.shards[1]!, path };
  writeManifest(dir, m);
  return dir;
}

/** Both readers refuse the cache quickly with a UserError naming shard 1's entry. */
function assertRefused(dir: string, path: string, why: RegExp): void {
  for (const open of [() => verifyCache(dir), () => CacheReader.open(dir)]) {
    const t0 = performance.now();
    assert.throws(open, (e: Error) => {
      assert.ok(e instanceof UnsafeCachePathError && e instanceof UserError, `${e.name}: ${e.message}`);
      assert.ok(e.message.includes(`shard 1 ${JSON.stringify(path)}`), e.message);
      assert.match(e.message, why);
      return true;
    });
    assert.ok(performance.now() - t0 < 1000, 'refused before reading');
  }
}

test('an intact crafted cache opens and verifies (so each refusal below is the crafted entry)', () => {
  const dir = tempDir();
  makeCache(dir);
  assert.deepEqual(verifyCache(dir), { ok: true, shards: 2, rows: ROWS, problems: [] });
  const reader = CacheReader.open(dir);
  assert.equal(reader.rows, ROWS);
  assert.deepEqual(
    Array.from(reader.read(Int32Array.of(4)).logits, (x) => Math.round(x * 10) / 10),
    [1.2, 1.3],
  );
  reader.close();
});

test('an absolute path (/etc/passwd, /dev/zero) is refused without reading it or printing its size', () => {
  for (const p of ['/etc/passwd', '/dev/zero']) {
    const dir = crafted(p);
    assertRefused(dir, p, /is an absolute path/);
    assert.throws(
      () => verifyCache(dir),
      (e: Error) => !/\d+ bytes/.test(e.message),
    );
  }
});

test('a ../ path leaving the cache is refused', () => {
  const p = '../../../../../../../../etc/passwd';
  assertRefused(crafted(p), p, /resolves to \/etc\/passwd, outside the cache/);
});

test('a symbolic link to /etc/passwd or /dev/zero, or a linked folder, is refused; so is a link inside the cache', () => {
  const p = 'shards/evil.kdc';
  assertRefused(
    crafted(p, (d) => symlinkSync('/etc/passwd', join(d, p))),
    p,
    /resolves to \/etc\/passwd, outside the cache/,
  );
  assertRefused(
    crafted(p, (d) => symlinkSync('/dev/zero', join(d, p))),
    p,
    /resolves to \/dev\/zero, outside the cache/,
  );
  const q = 'etc/passwd';
  assertRefused(
    crafted(q, (d) => symlinkSync('/etc', join(d, 'etc'))),
    q,
    /resolves to \/etc\/passwd, outside the cache/,
  );
  assertRefused(
    crafted(p, (d) => symlinkSync('shard-00001.kdc', join(d, p))),
    p,
    /is a symbolic link/,
  );
});

test('a FIFO is refused at once, by kd cache verify and by the reader (kd cache info)', (t) => {
  const p = 'shards/fifo.kdc';
  let dir: string;
  try {
    dir = crafted(p, (d) => execFileSync('mkfifo', [join(d, p)]));
  } catch (e) {
    t.skip(`mkfifo is not available here: ${(e as Error).message}`);
    return;
  }
  assertRefused(dir, p, /is not a regular file/);
  // Also through the CLI, in a child with a time limit: a regression would hang, not fail.
  for (const args of [
    ['cache', 'verify', dir],
    ['cache', 'info', dir],
  ]) {
    const r = spawnSync(process.execPath, [join(repoRoot, 'bin', 'kd.js'), ...args], { encoding: 'utf8', timeout: 20000 });
    assert.equal(r.signal, null, `kd ${args.join(' ')} hung on the FIFO`);
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /^kd: error: .*manifest\.json: shard 1 "shards\/fifo\.kdc" is not a regular file/);
  }
});

test('a shard whose size differs from the manifest is refused by the reader and reported by verify, before hashing', () => {
  const dir = tempDir();
  const m = makeCache(dir);
  appendFileSync(join(dir, m.shards[1]!.path), Buffer.alloc(4096));
  assert.throws(
    () => CacheReader.open(dir),
    (e: Error) =>
      e instanceof CacheMismatchError &&
      e.message.includes(`${join(dir, 'shards/shard-00001.kdc')}: has 4096 extra bytes after offset ${m.shards[1]!.bytes}`) &&
      /rebuild it/.test(e.message),
  );
  assert.deepEqual(verifyCache(dir).problems, [
    { shard: 'shards/shard-00001.kdc', problem: `has 4096 extra bytes after offset ${m.shards[1]!.bytes}` },
  ]);
  // A manifest claiming more bytes than the file has: reported as truncated, nothing read past the end.
  const big = tempDir();
  const n = makeCache(big);
  n.shards[0] = { ...n.shards[0]!, bytes: 3 * BLOCK_BYTES, blocks: ['a', 'b', 'c'].map((c) => c.repeat(64)) };
  writeManifest(big, n);
  assert.deepEqual(verifyCache(big).problems, [
    { shard: 'shards/shard-00000.kdc', problem: `truncated at offset ${m.shards[0]!.bytes} (expected ${3 * BLOCK_BYTES} bytes)` },
  ]);
  assert.throws(() => CacheReader.open(big), /shard-00000\.kdc: truncated at offset/);
});

test('a malformed manifest is a UserError naming the field, not a crash', () => {
  const dir = tempDir();
  const m = makeCache(dir);
  writeFileSync(join(dir, 'manifest.json'), '{"format": ');
  assert.throws(
    () => CacheReader.open(dir),
    (e: Error) => e instanceof CacheMismatchError && /manifest\.json: not valid JSON/.test(e.message),
  );
  writeManifest(dir, { ...m, shards: [{ ...m.shards[0]!, path: 7 as unknown as string }] });
  assert.throws(() => verifyCache(dir), /manifest\.json: shards\[0\]\.path must be a file name, got 7/);
  writeManifest(dir, { ...m, shards: [{ ...m.shards[0]!, bytes: -1 }] });
  assert.throws(() => verifyCache(dir), /shards\[0\]\.bytes must be a non-negative integer, got -1/);
  writeManifest(dir, { ...m, data: undefined as unknown as CacheManifest['data'] });
  assert.throws(
    () => CacheReader.open(dir),
    (e: Error) => e instanceof CacheMismatchError && /manifest\.json: data must be \{ files, labels, rows, \.\.\. \}/.test(e.message),
  );
});

test('a merged manifest reads only from part folders that are kd caches, and only their own shards', () => {
  const root = tempDir();
  const parts = [0, 1].map((k) => {
    const d = join(root, `part-${k}`);
    mkdirSync(d);
    makeCache(d, { k, n: 2 }, [k]);
    return d;
  });
  const out = join(root, 'merged');
  mergeCaches(out, parts);
  assert.equal(verifyCache(out).ok, true);
  const merged = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8')) as CacheManifest;
  assert.deepEqual(merged.parts, ['../part-0', '../part-1']);
  // Listing /etc as a "part" does not make /etc/passwd readable.
  writeManifest(out, {
    ...merged,
    parts: [...merged.parts!, '/etc'],
    shards: [merged.shards[0]!, { ...merged.shards[1]!, path: '/etc/passwd' }],
  });
  assert.throws(() => verifyCache(out), /part "\/etc" is not a kd cache/);
  // A path outside the parts' listed shards (here: part-0's classifier file as shard 1) is refused.
  writeManifest(out, { ...merged, shards: [merged.shards[0]!, { ...merged.shards[1]!, path: '../part-0/classifier.safetensors' }] });
  assert.throws(
    () => CacheReader.open(out),
    /shard 1 "\.\.\/part-0\/classifier\.safetensors" is not shard 1 of part \.\.\/part-0 as that part's manifest lists it/,
  );
});

test('checksums are streamed in 1 MiB blocks and equal the whole-file digest', () => {
  const path = join(tempDir(), 'blob');
  const bytes = Buffer.alloc(Math.round(3.5 * BLOCK_BYTES));
  for (let i = 0; i < bytes.length; i += 997) bytes[i] = i & 0xff;
  writeFileSync(path, bytes);
  const fd = openSync(path, 'r');
  const h = hashOpenFile(fd, bytes.length);
  closeSync(fd);
  assert.equal(h.sha256, createHash('sha256').update(bytes).digest('hex'));
  assert.equal(h.blocks.length, 4);
  assert.equal(
    h.blocks[3],
    createHash('sha256')
      .update(bytes.subarray(3 * BLOCK_BYTES))
      .digest('hex'),
  );
});
