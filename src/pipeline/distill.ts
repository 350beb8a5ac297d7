// `kd distill --recipe FILE`: data → split → teacher (trained when the recipe names none) →
// cache → students with each method → eval → report. Each stage records the hash of its
// settings (chained with the stages before it): done with the same settings, it is skipped;
// killed, it resumes from its checkpoints; with other settings, it starts anew in a clean folder.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { splitDataset } from '../data/split.js';
import { parseClassCount, type ClassCount } from '../data/labels.js';
import { resolveTeacherConfig } from '../teacher/default-config.js';
import { trainDefaultTeacher } from '../teacher/default-train.js';
import { buildCache } from '../cache/build.js';
import { verifyCache } from '../cache/reader.js';
import { trainStudentSeeds, type StudentRunOptions } from '../train/student-run.js';
import { evaluateModel } from '../eval/evaluate.js';
import { buildMarkdownTable, buildReport, loadRun, type ReportContext } from '../eval/report.js';
import { writeFileAtomicSync } from '../util/fs.js';
import { runVersions } from '../util/versions.js';
import { loadRecipe, planJobs, splitMethod } from './recipe.js';
import { assertDeviceUsable, type Device } from '../engine/session.js';
import { ConfigError } from '../data/errors.js';

export interface DistillOptions {
  recipe: string;
  out: string;
  quick?: boolean;
  /** Use this teacher folder instead of the recipe's. */
  teacher?: string;
  device?: Device;
  /** Run on CPU with a warning when `device` is not available (every stage's sessions). */
  allowFallback?: boolean;
  threads?: number;
  log?: (line: string) => void;
}

function hash(v: unknown): string {
  return createHash('sha256').update(JSON.stringify(v)).digest('hex').slice(0, 16);
}

/** What `<stage dir>/stage.json` records: written as `running` before the work, `done` after. */
interface StageMarker {
  key: string;
  settings: unknown;
  /** Absent in markers of older versions, which were only written when a stage was done. */
  state?: 'running' | 'done';
}

/** Dotted paths at which two settings differ (`s.dim`, `cache`), for the log. */
export function changedSettings(before: unknown, after: unknown, at = ''): string[] {
  const isMap = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
  if (isMap(before) && isMap(after)) {
    return [...new Set([...Object.keys(before), ...Object.keys(after)])].flatMap((k) =>
      changedSettings(before[k], after[k], at ? `${at}.${k}` : k),
    );
  }
  return JSON.stringify(before) === JSON.stringify(after) ? [] : [at || 'all settings'];
}

/**
 * Runs `work` in `dir` unless `<dir>/stage.json` records these settings as done (and `valid`).
 * The same settings left `running` by a killed run resume in place (the stages resume from
 * their checkpoints); other settings, or a folder with no record, are removed first, so a
 * stage never mixes outputs of two settings. Returns the settings' key: downstream stages
 * include it in theirs, so redoing a stage redoes everything after it.
 */
async function stage(
  dir: string,
  settings: unknown,
  log: (l: string) => void,
  name: string,
  work: () => Promise<unknown>,
  valid: () => boolean = () => true,
): Promise<string> {
  const markerPath = join(dir, 'stage.json');
  const recorded: unknown = JSON.parse(JSON.stringify(settings));
  const key = hash(recorded);
  const marker = existsSync(markerPath) ? (JSON.parse(readFileSync(markerPath, 'utf8')) as StageMarker) : null;
  if (marker?.key === key) {
    if ((marker.state ?? 'done') === 'done' && valid()) {
      log(`${name}: done before, skipped (${dir})`);
      return key;
    }
    log(`${name}: resuming with the same settings (${dir})`);
  } else if (marker || (existsSync(dir) && readdirSync(dir).length > 0)) {
    const what = marker
      ? `settings changed: ${changedSettings(marker.settings, recorded).slice(0, 8).join(', ')}`
      : `${dir} has no record of its settings`;
    log(`${name}: ${what} — starting ${name} anew (removing ${dir})`);
    rmSync(dir, { recursive: true, force: true });
  }
  mkdirSync(dir, { recursive: true });
  const write = (extra: Record<string, unknown>) =>
    writeFileAtomicSync(markerPath, `${JSON.stringify({ key, settings: recorded, ...extra, versions: runVersions() }, null, 2)}\n`);
  write({ state: 'running' });
  log(`${name}: running`);
  const t0 = Date.now();
  await work();
  write({ state: 'done', seconds: (Date.now() - t0) / 1000 });
  return key;
}

/** SHA-256 over the files a teacher is (config, tokenizer, graph): a retrained or replaced teacher redoes the cache. */
function teacherFingerprint(dir: string): Record<string, string> {
  const files = ['config.json', 'tokenizer.json', join('onnx', 'model.onnx')];
  return Object.fromEntries(
    files.map((f) => [
      f,
      existsSync(join(dir, f))
        ? createHash('sha256')
            .update(readFileSync(join(dir, f)))
            .digest('hex')
        : 'missing',
    ]),
  );
}

/** Size and modification time of input files (as make does): a data file edited in place redoes what read it. */
function fileStamps(files: readonly string[]): { file: string; bytes: number; mtimeMs: number }[] {
  return files.map((file) => {
    const st = statSync(file);
    return { file, bytes: st.size, mtimeMs: st.mtimeMs };
  });
}

export async function runDistill(o: DistillOptions): Promise<{ report: string; runs: string[] }> {
  const log = o.log ?? (() => undefined);
  const recipe = loadRecipe(o.recipe);
  // A missing provider fails now, not after the split and the teacher's data are prepared.
  assertDeviceUsable(o);
  const classes: ClassCount = parseClassCount(recipe.classes ?? 2);
  const quick = o.quick ? (recipe.quick ?? {}) : null;
  const jobs = planJobs(recipe, Boolean(quick));
  const read = { classes, progress: false };
  const out = o.out;
  // Where every stage runs; the fallback applies to each session (teacher, cache, trainer, eval).
  const placement = { ...(o.device ? { device: o.device } : {}), ...(o.allowFallback ? { allowFallback: true } : {}) };
  const threads = o.threads ? { threads: o.threads } : {};
  // Stages remove their own folders when their settings change: only inside a folder kd distill made.
  if (existsSync(out) && readdirSync(out).length > 0 && !existsSync(join(out, 'recipe.resolved.json'))) {
    throw new ConfigError(
      `--out ${out}: the folder exists and is not a kd distill output (no recipe.resolved.json); kd distill removes stage folders in it when settings change, so give a new or empty folder`,
    );
  }
  mkdirSync(out, { recursive: true });
  writeFileAtomicSync(
    join(out, 'recipe.resolved.json'),
    `${JSON.stringify({ recipe, quick: Boolean(o.quick), teacherOverride: o.teacher ?? null, versions: runVersions() }, null, 2)}\n`,
  );

  // 1. Split.
  const splitDir = join(out, 'data');
  const splitSettings = { ...recipe.data.split, limit: quick?.limit ?? null, classes, inputs: fileStamps(recipe.data.split.files) };
  const splitKey = await stage(
    splitDir,
    splitSettings,
    log,
    'split',
    () =>
      splitDataset(recipe.data.split.files, {
        ...read,
        dev: recipe.data.split.dev,
        test: recipe.data.split.test,
        seed: recipe.data.split.seed,
        out: splitDir,
        ...(quick?.limit ? { limit: quick.limit } : {}),
      }),
    () => existsSync(join(splitDir, 'train.jsonl')),
  );
  const extra = quick && quick.extraTrain === false ? [] : (recipe.data.extraTrain ?? []);
  const trainFiles = [join(splitDir, 'train.jsonl'), ...extra];
  const devFiles = [join(splitDir, 'dev.jsonl')];
  const testFiles = recipe.data.test?.length ? recipe.data.test : [join(splitDir, 'test.jsonl')];

  // 2. Teacher.
  let teacherDir = o.teacher ? resolve(o.teacher) : recipe.teacher.dir;
  if (!teacherDir) {
    teacherDir = join(out, 'teacher');
    const preset = quick?.teacherPreset ?? recipe.teacher.preset!;
    const config = resolveTeacherConfig(preset, {});
    const teacherOut = teacherDir;
    await stage(
      teacherDir,
      { preset, config, trainFiles, devFiles, split: splitKey, inputs: fileStamps(extra) },
      log,
      'teacher',
      () => trainDefaultTeacher({ trainFiles, devFiles, read, out: teacherOut, config, resume: true, ...placement, ...threads, log }),
      () => existsSync(join(teacherOut, 'onnx', 'model.onnx')),
    );
  }
  const teacher = teacherFingerprint(teacherDir);

  // 3. Cache over every file a student reads.
  const cacheDir = join(out, 'cache');
  const cacheFiles = [...new Set([...trainFiles, ...devFiles, ...testFiles])];
  const outsideFiles = cacheFiles.filter((f) => !f.startsWith(`${splitDir}/`));
  const cacheKey = await stage(
    cacheDir,
    { teacherDir, teacher, split: splitKey, cacheFiles, inputs: fileStamps(outsideFiles), cache: recipe.cache },
    log,
    'cache',
    () =>
      buildCache({
        teacher: teacherDir!,
        data: cacheFiles,
        read,
        out: cacheDir,
        dtype: recipe.cache.dtype,
        embedding: recipe.cache.embedding,
        ...placement,
        ...threads,
        log,
      }),
    () => existsSync(join(cacheDir, 'manifest.json')) && verifyCache(cacheDir).ok,
  );

  // 4. Students × methods (and the late switch) over seeds, each evaluated on test.
  const seeds = quick?.seeds ?? recipe.runs.seeds;
  const runDirs: string[] = [];
  for (const job of jobs) {
    const dir = join(out, 'runs', job.name);
    runDirs.push(dir);
    const s = recipe.students[job.student] ?? {};
    // A method may override the student's training length and rate (sweeps over `epochs`, `lr`, `batchSize`).
    const { loss, lossOptions, training } = splitMethod(job.method);
    const options: StudentRunOptions = {
      cache: cacheDir,
      train: trainFiles,
      dev: devFiles,
      test: testFiles,
      read,
      student: job.student,
      ngram: { dim: s.dim ?? 32, hidden: s.hidden ?? 0, ngrams: { buckets: s.buckets ?? 262144, maxN: 2, maxFeatures: 256 }, dropout: 0 },
      transformer: {
        layers: s.layers ?? 1,
        hidden: s.hidden ?? 64,
        heads: s.heads ?? 2,
        intermediate: s.intermediate ?? 256,
        maxLength: s.maxLength ?? 128,
        vocabSize: s.vocabSize ?? 8192,
        dropout: 0.1,
      },
      loss,
      lossOptions,
      epochs: quick?.epochs ?? training.epochs ?? s.epochs ?? 4,
      batchSize: training.batchSize ?? s.batchSize ?? 32,
      lr: training.lr ?? s.lr ?? 1e-3,
      weightDecay: 0.01,
      warmupRatio: 0.06,
      evalEvery: 0,
      patience: 3,
      seed: seeds[0]!,
      out: dir,
      resume: true,
      ...placement,
      ...threads,
      log,
    };
    const jobSeeds = job.seeds ?? seeds;
    // The cache's key stands for the teacher and the split too: any of them changed redoes the run.
    await stage(
      dir,
      { student: job.student, method: job.method, seeds: jobSeeds, cache: cacheKey, s, quick },
      log,
      `train ${job.name}`,
      async () => {
        const r = await trainStudentSeeds({ ...options, seed: jobSeeds[0]! }, jobSeeds);
        writeFileAtomicSync(
          join(dir, 'run.json'),
          `${JSON.stringify({ dataset: recipe.name, label: job.name.replace(`${job.student}-`, ''), kind: job.kind, student: job.student, method: job.method }, null, 2)}\n`,
        );
        const best = r.runs[0]!;
        const ev = await evaluateModel({ model: best.model, data: testFiles, read, cache: cacheDir, ...placement });
        writeFileAtomicSync(join(dir, 'eval.json'), `${JSON.stringify(ev)}\n`);
        const evTrain = await evaluateModel({
          model: best.model,
          data: [trainFiles[0]!],
          read,
          cache: cacheDir,
          limit: 5000,
          ...placement,
        });
        writeFileAtomicSync(join(dir, 'eval-train.json'), `${JSON.stringify(evTrain)}\n`);
      },
      () => existsSync(join(dir, 'eval.json')),
    );
    const meta = join(dir, 'run.json');
    if (existsSync(meta)) {
      const m = JSON.parse(readFileSync(meta, 'utf8')) as Record<string, unknown>;
      if (m.kind !== job.kind) writeFileAtomicSync(meta, `${JSON.stringify({ ...m, kind: job.kind }, null, 2)}\n`);
    }
  }

  // 5. Teacher evaluation and the report.
  const teacherEvalDir = join(out, 'teacher-eval');
  const teacherEval = join(teacherEvalDir, 'eval.json');
  await stage(
    teacherEvalDir,
    { teacher, testFiles, cache: cacheKey },
    log,
    'teacher eval',
    async () =>
      writeFileAtomicSync(
        teacherEval,
        `${JSON.stringify(await evaluateModel({ model: teacherDir, data: testFiles, read, cache: cacheDir, ...placement }))}\n`,
      ),
    () => existsSync(teacherEval),
  );
  const teacherConfig = existsSync(join(teacherDir, 'config.json'))
    ? (JSON.parse(readFileSync(join(teacherDir, 'config.json'), 'utf8')) as { kd?: { training?: { devAccuracy?: number } } })
    : {};
  const context: ReportContext = {
    dataset: recipe.name,
    teacher: {
      dir: teacherDir,
      eval: JSON.parse(readFileSync(teacherEval, 'utf8')),
      ...(teacherConfig.kd?.training?.devAccuracy !== undefined ? { devAccuracy: teacherConfig.kd.training.devAccuracy } : {}),
    },
    caveats: [
      ...(recipe.caveats ?? []),
      ...(quick
        ? [
            `QUICK RUN (--quick): ${quick.limit ?? 'all'} rows, teacher preset ${quick.teacherPreset ?? recipe.teacher.preset}, ${seeds.length} seed(s), ${quick.epochs ?? 'recipe'} epoch(s); figures are smoke-test values, not results.`,
          ]
        : []),
    ],
  };
  writeFileAtomicSync(join(out, 'context.json'), `${JSON.stringify(context, null, 2)}\n`);
  const report = join(out, 'report.html');
  rmSync(report, { force: true });
  const loaded = runDirs.map(loadRun);
  writeFileAtomicSync(report, buildReport(loaded, [context], `${recipe.name}: distillation report`));
  writeFileAtomicSync(join(out, 'results.md'), buildMarkdownTable(loaded, [context]));
  log(`report: ${report}`);
  return { report, runs: runDirs };
}
