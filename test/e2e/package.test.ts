// The package as users get it: `npm pack`, installed from the tarball into a fresh project
// (offline, with onnxruntime-node's download skipped), then a small distillation through the
// public API only (`from 'kd-toolkit'`): split, cache from a tiny teacher, an n-gram student
// with KD, eval; the exports map refuses deep imports, the types resolve for TypeScript, and
// the installed `kd` command runs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, posix } from 'node:path';
import { repoRoot, S140_RANDOM, sharedPath, tempDir } from '../helpers.js';

// Without the npm_* variables `npm test` sets (npm_config_local_prefix would point a nested
// npm at this checkout, npm_config_onnxruntime_node_install comes from the repo's .npmrc).
const cleanEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k)));

function run(cmd: string, args: string[], cwd: string, env: Record<string, string> = {}) {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', env: { ...cleanEnv, ...env }, maxBuffer: 1 << 26 });
  const out = `${r.stdout ?? ''}${r.stderr ?? ''}`;
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')} (in ${cwd}) failed:\n${out.slice(-4000)}`);
  return r.stdout ?? '';
}

const installedVersion = (name: string) =>
  (JSON.parse(readFileSync(join(repoRoot, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;

// What the consumer runs: public API only.
const CONSUMER = `
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { splitDataset, buildCache, CacheReader, METHODS, getMethod, trainStudent, evaluateModel, UserError, OptionError } from 'kd-toolkit';
const [data, teacher, work] = process.argv.slice(2);
const split = await splitDataset([data], { dev: 0.15, test: 0.15, seed: 13, limit: 400, out: join(work, 'split'), progress: false });
const f = (s) => join(work, 'split', s + '.jsonl');
const manifest = await buildCache({ teacher, data: [f('train'), f('dev'), f('test')], read: { classes: 2 }, out: join(work, 'cache') });
const cache = CacheReader.open(join(work, 'cache'));
const cached = { rows: cache.rows, classes: cache.classes, dim: cache.dim };
cache.close();
const run = await trainStudent({
  cache: join(work, 'cache'), train: [f('train')], dev: [f('dev')], test: [f('test')], read: { classes: 2 },
  student: 'ngram', settings: { dim: 16, buckets: 65536 }, loss: 'kd', lossOptions: { lambda: 0.5, tau: 2 },
  epochs: 1, batchSize: 32, lr: 5e-3, weightDecay: 0, warmupRatio: 0, evalEvery: 0, patience: 0, seed: 13, out: join(work, 'run'),
});
const ev = await evaluateModel({ model: run.model, data: [f('test')], read: { classes: 2 }, cache: join(work, 'cache') });
let refused = null;
try { getMethod('no-such-loss'); } catch (e) { refused = { user: e instanceof UserError, option: e instanceof OptionError, name: e.name }; }
let deep = null;
try { await import('kd-toolkit/dist/src/cache/build.js'); } catch (e) { deep = e.code; }
console.log(JSON.stringify({
  counts: split.counts, cacheRows: manifest.shards.reduce((a, s) => a + s.rows, 0), cached, methods: Object.keys(METHODS),
  run: {
    trainRows: run.trainRows, dev: run.dev.accuracy, test: run.test && run.test.accuracy, testN: run.test && run.test.n,
    steps: run.loop.steps,
  },
  model: run.model, files: ['onnx/model.onnx', 'kd-student.json'].map((p) => existsSync(join(run.model, p))),
  result: existsSync(join(work, 'run', 'result.json')),
  eval: { n: ev.n, accuracy: ev.accuracy, agreement: ev.teacher && ev.teacher.agreement, kind: ev.kind },
  refused, deep,
}));
`;

// Type-checked, not run: the exports map's `types` condition gives TypeScript the declarations.
const TYPES = `
import { trainStudent, Teacher, type StudentRunOptions, type EvalReport, UserError } from 'kd-toolkit';
const o: Pick<StudentRunOptions, 'loss' | 'epochs'> = { loss: 'kd', epochs: 1 };
const load: (dir: string) => Promise<Teacher> = (dir) => Teacher.load(dir);
const acc = (r: EvalReport): number => r.accuracy;
export { o, load, acc, trainStudent, UserError };
`;

test('the packed tarball installs offline into a fresh project and distills through the public API', () => {
  const t0 = performance.now();
  const lap = (() => {
    let last = t0;
    return (what: string) => {
      const now = performance.now();
      console.log(`package test: ${what} ${((now - last) / 1000).toFixed(1)} s`);
      last = now;
    };
  })();
  const root = tempDir('kd-package-');
  // --ignore-scripts: this test runs from the compiled dist/ (tsc ran before it); `prepare`
  // would only recompile it, under the feet of the tests running beside this one.
  const packed = JSON.parse(run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', root], repoRoot)) as {
    filename: string;
    files: { path: string }[];
  }[];
  const shipped = packed[0]!.files.map((f) => f.path);
  for (const p of ['package.json', 'LICENSE', 'bin/kd.js', 'dist/src/index.js', 'dist/src/index.d.ts', 'dist/src/cli/main.js'])
    assert.ok(shipped.includes(p), `the tarball lacks ${p}`);
  assert.deepEqual(
    shipped.filter((p) => !/^(bin\/|dist\/src\/|src\/|recipes\/|package\.json$|README\.md$|LICENSE$)/.test(p)),
    [],
    'only bin/, dist/src/, src/, recipes/ and the package files ship',
  );
  // Every source map points at sources the tarball holds (a stack trace or debugger opens them).
  const maps = shipped.filter((p) => p.endsWith('.js.map'));
  assert.ok(maps.length > 50, `source maps ship (${maps.length})`);
  for (const m of maps) {
    const { sources } = JSON.parse(readFileSync(join(repoRoot, m), 'utf8')) as { sources: string[] };
    for (const s of sources) {
      const target = posix.normalize(posix.join(posix.dirname(m), s));
      assert.ok(shipped.includes(target), `${m} points at ${target}, which the tarball lacks`);
    }
  }
  lap('npm pack');

  const project = join(root, 'project');
  mkdirSync(project);
  // @types/node pinned to the repo's: protobufjs 6 asks for any @types/node, and without a lock
  // npm would pick the newest, which the offline cache does not hold.
  const consumerPackage = {
    name: 'kd-consumer',
    private: true,
    type: 'module',
    overrides: { '@types/node': installedVersion('@types/node') },
  };
  writeFileSync(join(project, 'package.json'), `${JSON.stringify(consumerPackage)}\n`);
  // ONNXRUNTIME_NODE_INSTALL=skip: onnxruntime-node's install script would fetch its CUDA
  // provider from NuGet (the repo's .npmrc, which skips it, does not travel with the package).
  run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', join(root, packed[0]!.filename)], project, {
    ONNXRUNTIME_NODE_INSTALL: 'skip',
  });
  assert.ok(existsSync(join(project, 'node_modules', 'kd-toolkit', 'dist', 'src', 'index.js')));
  const version = (JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string }).version;
  assert.equal(run(join(project, 'node_modules', '.bin', 'kd'), ['--version'], project).trim(), version, 'the kd command is installed');
  lap('npm install');

  writeFileSync(join(project, 'types.ts'), TYPES);
  run(
    process.execPath,
    [
      join(repoRoot, 'node_modules', 'typescript', 'bin', 'tsc'),
      '--noEmit',
      '--strict',
      '--skipLibCheck',
      '--module',
      'nodenext',
      '--moduleResolution',
      'nodenext',
      '--target',
      'es2022',
      '--types',
      'node',
      'types.ts',
    ],
    project,
  );
  lap('tsc over a consumer');

  writeFileSync(join(project, 'consumer.mjs'), CONSUMER);
  const work = join(root, 'work');
  const stdout = run(
    process.execPath,
    [join(project, 'consumer.mjs'), S140_RANDOM(), sharedPath('fixtures', 'hf', 'tiny-random-bert'), work],
    project,
  );
  const r = JSON.parse(stdout.trimEnd().split('\n').at(-1)!);
  lap('distillation through the API');

  const { train, dev, test: held } = r.counts as Record<string, Record<string, number>>;
  const sum = (c: Record<string, number>) => Object.values(c).reduce((a, b) => a + b, 0);
  assert.equal(sum(train!) + sum(dev!) + sum(held!), 400);
  assert.equal(r.cacheRows, 400);
  assert.deepEqual(r.cached, { rows: 400, classes: 2, dim: 64 });
  assert.deepEqual(r.methods, ['ce', 'kd', 'dtkd', 'lelp']);
  assert.equal(r.run.trainRows, sum(train!));
  assert.equal(r.run.testN, sum(held!));
  assert.ok(r.run.steps >= 1);
  for (const a of [r.run.dev, r.run.test, r.eval.accuracy, r.eval.agreement]) assert.ok(a >= 0 && a <= 1, `accuracy ${a}`);
  assert.equal(r.eval.n, sum(held!));
  assert.equal(r.eval.accuracy, r.run.test, "kd eval of the exported model reproduces the run's test accuracy");
  assert.equal(r.eval.kind, 'student:ngram');
  assert.deepEqual(r.files, [true, true]);
  assert.equal(r.result, true);
  assert.deepEqual(r.refused, { user: true, option: true, name: 'OptionError' });
  assert.equal(r.deep, 'ERR_PACKAGE_PATH_NOT_EXPORTED');
  console.log(`package test: ${((performance.now() - t0) / 1000).toFixed(1)} s in all`);
});
