// `kd distill --recipe FILE`: data → split → teacher (trained when the recipe names none) →
// cache → students with each method → eval → report. Each stage records the hash of its
// settings (chained with the stages before it): done with the same settings, it is skipped;
// killed, it resumes from its checkpoints; with other settings, it starts anew in a clean folder.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { exampleToJsonl, labelledSubset, splitDataset } from '../data/split.js';
import { readAllExamples } from '../data/read.js';
import { augmentExamples } from './augment.js';
import type { Example } from '../data/example.js';
import type { Format } from '../data/formats/types.js';
import { LABEL_NAMES, parseClassCount, type ClassCount } from '../data/labels.js';
import { resolveTeacherConfig } from '../teacher/default-config.js';
import { trainDefaultTeacher } from '../teacher/default-train.js';
import { buildCache } from '../cache/build.js';
import { verifyCache } from '../cache/reader.js';
import { trainStudentSeeds, type StudentRunOptions } from '../train/student-run.js';
import { evaluateModel } from '../eval/evaluate.js';
import { buildMarkdownTable, buildReport, loadRun, type ReportContext } from '../eval/report.js';
import { writeFileAtomicSync } from '../util/fs.js';
import { runVersions } from '../util/versions.js';
import { acquireFolderLock, LOCK_FILE, type FolderLock } from '../util/lock.js';
import { loadRecipe, planJobs, splitMethod, type Job, type Recipe } from './recipe.js';
import { resolveStudentSettings } from '../student/registry.js';
import { assertDeviceUsable, type SessionOptions } from '../engine/session.js';
import { ConfigError } from '../data/errors.js';

export interface DistillOptions {
  recipe: string;
  out: string;
  quick?: boolean;
  /** Use this teacher folder instead of the recipe's. */
  teacher?: string;
  /** Stop after this stage (the later ones are not run; rerun without it to go on). */
  until?: DistillStage;
  /** Where every stage's sessions run; `allowFallback` applies to each (teacher, cache, trainer, eval). */
  session?: SessionOptions;
  /** false: export the students without onnx/model_quantized.onnx (`--no-quantize`). */
  quantize?: boolean;
  log?: (line: string) => void;
}

/** The stages `--until` can stop after, in pipeline order. */
export const DISTILL_STAGES = ['split', 'teacher', 'cache', 'students'] as const;
export type DistillStage = (typeof DISTILL_STAGES)[number];

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
 * stage never mixes outputs of two settings. Settings named in `inPlace` (top-level keys) are
 * the exception: when only they changed, the stage runs again in its folder, resuming what it
 * can (the teacher refits its ensemble on new tuning files without retraining its members).
 * Returns the settings' key: downstream stages include it in theirs, so redoing a stage redoes
 * everything after it.
 */
async function stage(
  dir: string,
  settings: unknown,
  log: (l: string) => void,
  name: string,
  work: () => Promise<unknown>,
  valid: () => boolean = () => true,
  inPlace: readonly string[] = [],
): Promise<string> {
  const markerPath = join(dir, 'stage.json');
  const recorded: unknown = JSON.parse(JSON.stringify(settings));
  const key = hash(recorded);
  const marker = existsSync(markerPath) ? (JSON.parse(readFileSync(markerPath, 'utf8')) as StageMarker) : null;
  const changed = marker && marker.key !== key ? changedSettings(marker.settings, recorded) : [];
  if (changed.length > 0 && changed.every((path) => inPlace.includes(path.split('.')[0]!))) {
    log(`${name}: ${[...new Set(changed.map((p) => p.split('.')[0]!))].join(', ')} changed — redoing ${name} in place (${dir})`);
  } else if (marker?.key === key) {
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

/** Where every stage runs: the fallback applies to each session (teacher, cache, trainer, eval). */

/** What the stages share: the recipe, the output folder, where sessions run, the log. */
interface DistillContext {
  recipe: Recipe;
  out: string;
  quick: NonNullable<Recipe['quick']> | null;
  classes: ClassCount;
  read: { classes: ClassCount; progress: false };
  session: SessionOptions | undefined;
  quantize: boolean;
  log: (line: string) => void;
}

/** The split's files and the stage key downstream stages chain on. */
interface SplitFiles {
  splitKey: string;
  splitDir: string;
  extra: string[];
  trainFiles: string[];
  devFiles: string[];
  testFiles: string[];
  /** The recipe's transfer files as one unlabelled JSONL (data.transfer.files), and augmented copies (data.transfer.augment). */
  transfer: { plain: string | null; augmented: string | null; key: string };
  /** Few-label runs: per k, the labelled subset of the training split and the rest of it, unlabelled. */
  labels: Map<number, { labelled: string; rest: string }>;
}

/** Stages remove their own folders when their settings change: only inside a folder kd distill made. */
function prepareOutput(o: DistillOptions, recipe: Recipe): FolderLock {
  const out = o.out;
  // One run at a time in a folder (see util/lock): a second kd distill into this --out is refused naming the pid. The lock
  // comes first, so a run that has just taken it and not yet written recipe.resolved.json is "in use", not "not ours".
  const lock = acquireFolderLock(out, 'kd distill', o.log);
  // A lock file alone is what a run killed before writing recipe.resolved.json leaves.
  const entries = readdirSync(out).filter((f) => !f.startsWith(LOCK_FILE));
  if (entries.length > 0 && !existsSync(join(out, 'recipe.resolved.json'))) {
    lock.release();
    throw new ConfigError(
      `--out ${out}: the folder exists and is not a kd distill output (no recipe.resolved.json); ` +
        'kd distill removes stage folders in it when settings change, so give a new or empty folder',
    );
  }
  writeFileAtomicSync(
    join(out, 'recipe.resolved.json'),
    `${JSON.stringify({ recipe, quick: Boolean(o.quick), teacherOverride: o.teacher ?? null, versions: runVersions() }, null, 2)}\n`,
  );
  return lock;
}

/** Extra training files (data.extraTrain, teacher.extraTrain): none in a --quick run whose quick.extraTrain is false. */
function unlessQuick(c: DistillContext, files: string[] | undefined): string[] {
  return c.quick && c.quick.extraTrain === false ? [] : (files ?? []);
}

/** 1. Split. */
async function splitStage(c: DistillContext): Promise<SplitFiles> {
  const { recipe, quick } = c;
  const splitDir = join(c.out, 'data');
  const splitSettings = {
    ...recipe.data.split,
    limit: quick?.limit ?? null,
    classes: c.classes,
    inputs: fileStamps(recipe.data.split.files),
  };
  const splitKey = await stage(
    splitDir,
    splitSettings,
    c.log,
    'split',
    () =>
      splitDataset(recipe.data.split.files, {
        ...c.read,
        dev: recipe.data.split.dev,
        test: recipe.data.split.test,
        seed: recipe.data.split.seed,
        out: splitDir,
        ...(quick?.limit ? { limit: quick.limit } : {}),
      }),
    () => existsSync(join(splitDir, 'train.jsonl')),
  );
  const extra = unlessQuick(c, recipe.data.extraTrain);
  return {
    splitKey,
    splitDir,
    extra,
    trainFiles: [join(splitDir, 'train.jsonl'), ...extra],
    devFiles: [join(splitDir, 'dev.jsonl')],
    testFiles: recipe.data.test?.length ? recipe.data.test : [join(splitDir, 'test.jsonl')],
    transfer: { plain: null, augmented: null, key: '' },
    labels: new Map(),
  };
}

/** Writes `examples` as unlabelled JSONL rows (the form kd data split writes, with `"label": null`). */
function writeUnlabelled(path: string, examples: readonly Example[], classes: ClassCount): void {
  const names = LABEL_NAMES[classes];
  writeFileAtomicSync(path, examples.map((e) => `${exampleToJsonl({ ...e, label: null }, names)}\n`).join(''));
}

/**
 * 1b. Transfer sets (data.transfer): the recipe's files read unlabelled into `<out>/transfer/transfer.jsonl`, and, when
 * the runs ask for `aug`, augmented copies of the training split (and those files) in `augmented.jsonl`.
 */
async function transferStage(c: DistillContext, f: SplitFiles, jobs: readonly Job[], teacherDir: string, teacher: object): Promise<void> {
  const t = c.recipe.data.transfer;
  const wantsAug = jobs.some((j) => j.transfer === 'aug');
  if (!t?.files && !wantsAug) return;
  const dir = join(c.out, 'transfer');
  const plain = t?.files ? join(dir, 'transfer.jsonl') : null;
  const augmented = wantsAug ? join(dir, 'augmented.jsonl') : null;
  const augment = wantsAug ? t!.augment! : null;
  // Replacement words are the teacher's embedding neighbours unless `replace: none`.
  const byTeacher = augment !== null && augment.replace !== 'none';
  const settings = {
    split: f.splitKey,
    files: t?.files ?? [],
    inputs: fileStamps(t?.files ?? []),
    format: t?.format ?? 'auto',
    augment,
    ...(byTeacher ? { teacher } : {}),
  };
  const key = await stage(
    dir,
    settings,
    c.log,
    'transfer',
    async () => {
      const read = { ...c.read, unlabeled: true, ...(t?.format ? { format: t.format as Format } : {}) };
      const external = t?.files ? (await readAllExamples(t.files, read)).examples : [];
      if (plain) writeUnlabelled(plain, external, c.classes);
      if (augmented) {
        const { replace: _r, ...rules } = augment as Record<string, unknown>;
        const summary = await augmentExamples([join(f.splitDir, 'train.jsonl'), ...(plain ? [plain] : [])], {
          ...c.read,
          unlabeled: true,
          out: augmented,
          ...rules,
          ...(byTeacher ? { teacher: teacherDir } : {}),
          ...(c.session ? { session: c.session } : {}),
        });
        c.log(`augment: ${summary.copiesWritten} copies of ${summary.rowsRead} rows in ${augmented}`);
      }
    },
    () => (!plain || existsSync(plain)) && (!augmented || existsSync(augmented)),
  );
  f.transfer = { plain, augmented, key };
}

/** 1c. Few-label runs: per k, the seeded stratified k-row subset of the training split and the rest of it, unlabelled. */
async function labelsStage(c: DistillContext, f: SplitFiles, jobs: readonly Job[]): Promise<void> {
  const ks = [...new Set(jobs.flatMap((j) => (j.labels === undefined ? [] : [j.labels])))];
  if (!ks.length) return;
  const dir = join(c.out, 'labels');
  const seed = c.recipe.data.split.seed;
  const files = new Map(ks.map((k) => [k, { labelled: join(dir, `k${k}`, 'labelled.jsonl'), rest: join(dir, `k${k}`, 'rest.jsonl') }]));
  await stage(
    dir,
    { split: f.splitKey, labels: ks, seed },
    c.log,
    'labelled subsets',
    async () => {
      const train = (await readAllExamples([join(f.splitDir, 'train.jsonl')], c.read)).examples;
      const names = LABEL_NAMES[c.classes];
      for (const [k, out] of files) {
        const { subset, rest } = labelledSubset(
          train.map((e) => e.label!),
          train.map((e) => e.id),
          Math.min(k, train.length),
          seed,
          c.classes,
        );
        mkdirSync(join(dir, `k${k}`), { recursive: true });
        writeFileAtomicSync(out.labelled, Array.from(subset, (i) => `${exampleToJsonl(train[i]!, names)}\n`).join(''));
        writeUnlabelled(
          out.rest,
          Array.from(rest, (i) => train[i]!),
          c.classes,
        );
      }
    },
    () => [...files.values()].every((x) => existsSync(x.labelled) && existsSync(x.rest)),
  );
  f.labels = files;
}

/** 2. Teacher: the given folder, or one trained from the recipe's preset. Returns its folder. */
async function teacherStage(c: DistillContext, f: SplitFiles, override: string | undefined): Promise<string> {
  const given = override ? resolve(override) : c.recipe.teacher.dir;
  if (override) {
    // --teacher replaces the teacher the recipe would train: say which of its settings go unused.
    const t = c.recipe.teacher;
    const unused = [t.preset && 'preset', t.tune?.length && 'tune', t.extraTrain?.length && 'extraTrain'].filter(Boolean);
    if (unused.length) c.log(`teacher: using --teacher ${given}; the recipe's teacher.${unused.join(', teacher.')} are not used`);
  }
  if (given) return given;
  const teacherDir = join(c.out, 'teacher');
  const preset = c.quick?.teacherPreset ?? c.recipe.teacher.preset!;
  const config = resolveTeacherConfig(preset, {});
  const { trainFiles, devFiles } = f;
  // The tuning files (not `dev`) are inputs of this stage: a changed one refits the ensemble (members resume as trained).
  const tuneFiles = c.recipe.teacher.tune ?? [];
  const tuneInputs = fileStamps(tuneFiles.filter((t) => t !== 'dev'));
  // The teacher's own extra rows (teacher.extraTrain): trained on here only, never student rows nor cached.
  const extraTrain = unlessQuick(c, c.recipe.teacher.extraTrain);
  await stage(
    teacherDir,
    {
      preset,
      config,
      trainFiles,
      devFiles,
      split: f.splitKey,
      inputs: fileStamps(f.extra),
      ...(extraTrain.length ? { extraTrain, extraInputs: fileStamps(extraTrain) } : {}),
      ...(tuneFiles.length ? { tuneFiles, tuneInputs } : {}),
    },
    c.log,
    'teacher',
    () =>
      trainDefaultTeacher({
        trainFiles: [...trainFiles, ...extraTrain],
        devFiles,
        ...(tuneFiles.length ? { tuneFiles } : {}),
        read: c.read,
        out: teacherDir,
        config,
        resume: true,
        session: c.session,
        log: c.log,
      }),
    () => existsSync(join(teacherDir, 'onnx', 'model.onnx')),
    ['tuneFiles', 'tuneInputs'],
  );
  return teacherDir;
}

/** 3. Cache over every file a student reads. Returns the cache folder and its stage key. */
async function cacheStage(c: DistillContext, f: SplitFiles, teacherDir: string, teacher: Record<string, string>) {
  const cacheDir = join(c.out, 'cache');
  // Transfer files (unlabelled JSONL) are cached with the rest; the few-label files are rows of the split's train file.
  const transferFiles = [f.transfer.plain, f.transfer.augmented].filter((x): x is string => x !== null);
  const cacheFiles = [...new Set([...f.trainFiles, ...f.devFiles, ...f.testFiles, ...transferFiles])];
  const outsideFiles = cacheFiles.filter((file) => !file.startsWith(`${f.splitDir}/`) && !transferFiles.includes(file));
  const cacheKey = await stage(
    cacheDir,
    {
      teacherDir,
      teacher,
      split: f.splitKey,
      cacheFiles,
      inputs: fileStamps(outsideFiles),
      cache: c.recipe.cache,
      ...(transferFiles.length ? { transfer: f.transfer.key } : {}),
    },
    c.log,
    'cache',
    () =>
      buildCache({
        teacher: teacherDir,
        data: cacheFiles,
        read: transferFiles.length ? { ...c.read, unlabeled: true } : c.read,
        out: cacheDir,
        dtype: c.recipe.cache.dtype,
        embedding: c.recipe.cache.embedding,
        session: c.session,
        log: c.log,
      }),
    () => existsSync(join(cacheDir, 'manifest.json')) && verifyCache(cacheDir).ok,
  );
  return { cacheDir, cacheKey };
}

/** A job's training options: the student's defaults, the recipe's `students.<name>` on them, then the method's overrides. */
function jobRunOptions(c: DistillContext, f: SplitFiles, cacheDir: string, job: Job, dir: string, seed: number): StudentRunOptions {
  const { loss, lossOptions, training } = splitMethod(job.method);
  const s = resolveStudentSettings(job.student, { ...c.recipe.students[job.student], ...training });
  const few = job.labels === undefined ? null : f.labels.get(job.labels)!;
  const transfer = !job.transfer
    ? []
    : [
        // Few-label runs: the rest of the split and the extra training files (their labels unused) are transfer rows.
        ...(few ? [few.rest, ...f.extra] : []),
        ...(f.transfer.plain ? [f.transfer.plain] : []),
        ...(job.transfer === 'aug' && f.transfer.augmented ? [f.transfer.augmented] : []),
      ];
  return {
    cache: cacheDir,
    train: few ? [few.labelled] : f.trainFiles,
    ...(transfer.length ? { transfer } : {}),
    dev: f.devFiles,
    test: f.testFiles,
    read: c.read,
    student: job.student,
    settings: s,
    loss,
    lossOptions,
    epochs: c.quick?.epochs ?? s.epochs,
    batchSize: s.batchSize,
    lr: s.lr,
    weightDecay: 0.01,
    warmupRatio: 0.06,
    evalEvery: 0,
    patience: 3,
    seed,
    out: dir,
    resume: true,
    session: c.session,
    ...(c.quantize ? {} : { quantize: false }),
    log: c.log,
  };
}

/** 4. One job: the student trained with one method over its seeds, then evaluated on test (and part of train). */
async function studentStage(c: DistillContext, f: SplitFiles, cache: { cacheDir: string; cacheKey: string }, job: Job, seeds: number[]) {
  const dir = join(c.out, 'runs', job.name);
  const jobSeeds = job.seeds ?? seeds;
  const options = jobRunOptions(c, f, cache.cacheDir, job, dir, jobSeeds[0]!);
  const s = c.recipe.students[job.student] ?? {};
  const { cacheDir } = cache;
  // The cache's key stands for the teacher and the split too: any of them changed redoes the run.
  await stage(
    dir,
    {
      student: job.student,
      method: job.method,
      seeds: jobSeeds,
      cache: cache.cacheKey,
      s,
      quick: c.quick,
      ...(job.labels !== undefined ? { labels: job.labels } : {}),
      ...(job.transfer ? { transfer: job.transfer } : {}),
    },
    c.log,
    `train ${job.name}`,
    async () => {
      const r = await trainStudentSeeds(options, jobSeeds);
      const meta = {
        dataset: c.recipe.name,
        label: job.name.replace(`${job.student}-`, ''),
        kind: job.kind,
        student: job.student,
        method: job.method,
        labels: job.labels ?? null,
        transfer: job.transfer ?? null,
        transferRows: r.runs[0]!.transferRows ?? 0,
      };
      writeFileAtomicSync(join(dir, 'run.json'), `${JSON.stringify(meta, null, 2)}\n`);
      const best = r.runs[0]!;
      const ev = await evaluateModel({ model: best.model, data: f.testFiles, read: c.read, cache: cacheDir, session: c.session });
      writeFileAtomicSync(join(dir, 'eval.json'), `${JSON.stringify(ev)}\n`);
      const evTrain = await evaluateModel({
        model: best.model,
        data: [f.trainFiles[0]!],
        read: c.read,
        cache: cacheDir,
        limit: 5000,
        session: c.session,
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
  return dir;
}

/** 5. The teacher's own evaluation on test. Returns the eval.json path. */
async function teacherEvalStage(
  c: DistillContext,
  f: SplitFiles,
  teacherDir: string,
  teacher: Record<string, string>,
  cache: { cacheDir: string; cacheKey: string },
) {
  const teacherEvalDir = join(c.out, 'teacher-eval');
  const teacherEval = join(teacherEvalDir, 'eval.json');
  const { testFiles } = f;
  await stage(
    teacherEvalDir,
    { teacher, testFiles, cache: cache.cacheKey },
    c.log,
    'teacher eval',
    async () => {
      const ev = await evaluateModel({ model: teacherDir, data: testFiles, read: c.read, cache: cache.cacheDir, session: c.session });
      writeFileAtomicSync(teacherEval, `${JSON.stringify(ev)}\n`);
    },
    () => existsSync(teacherEval),
  );
  return teacherEval;
}

/** The report's context: the dataset, the teacher and its figures, the caveats (a quick run says so). */
function reportContext(c: DistillContext, teacherDir: string, teacherEval: string, seeds: number[]): ReportContext {
  const { recipe, quick } = c;
  const teacherConfig = existsSync(join(teacherDir, 'config.json'))
    ? (JSON.parse(readFileSync(join(teacherDir, 'config.json'), 'utf8')) as { kd?: { training?: { devAccuracy?: number } } })
    : {};
  const quickCaveat = quick
    ? [
        `QUICK RUN (--quick): ${quick.limit ?? 'all'} rows, teacher preset ${quick.teacherPreset ?? recipe.teacher.preset}, ` +
          `${seeds.length} seed(s), ${quick.epochs ?? 'recipe'} epoch(s); figures are smoke-test values, not results.`,
      ]
    : [];
  return {
    dataset: recipe.name,
    teacher: {
      dir: teacherDir,
      eval: JSON.parse(readFileSync(teacherEval, 'utf8')),
      ...(teacherConfig.kd?.training?.devAccuracy !== undefined ? { devAccuracy: teacherConfig.kd.training.devAccuracy } : {}),
    },
    caveats: [...(recipe.caveats ?? []), ...quickCaveat],
  };
}

/** report.html and results.md over the runs. Returns the report's path. */
function writeReport(c: DistillContext, context: ReportContext, runDirs: string[]): string {
  writeFileAtomicSync(join(c.out, 'context.json'), `${JSON.stringify(context, null, 2)}\n`);
  const report = join(c.out, 'report.html');
  rmSync(report, { force: true });
  const loaded = runDirs.map(loadRun);
  writeFileAtomicSync(report, buildReport(loaded, [context], `${c.recipe.name}: distillation report`));
  writeFileAtomicSync(join(c.out, 'results.md'), buildMarkdownTable(loaded, [context]));
  return report;
}

/**
 * The whole pipeline of a recipe (`kd distill`): split → teacher (trained when the recipe names
 * none) → cache → students × methods → eval → report. Each stage done with the same settings is
 * skipped on a rerun; a killed one resumes; one whose settings changed starts anew.
 *
 * @param o - Recipe file, output folder, `quick` (the recipe's quick settings), a teacher folder to use instead of
 *   the recipe's, device, fallback, threads, log sink.
 * @returns The report's path (`<out>/report.html`; null when `until` stopped the run before it), every run folder,
 *   and the last stage run.
 * @throws {ConfigError} No such recipe, a recipe field missing or malformed (named as file: field), or an `out`
 *   folder that is not a kd distill output; and what each stage throws ({@link buildCache}, {@link trainStudent}, …).
 * @throws {DeviceError} `device` is not available and `allowFallback` is not set (checked before any stage runs).
 *
 * @example
 * ```ts
 * import { runDistill } from 'kd-toolkit';
 * // mini.yaml: a 600-row Sentiment140 split (quick.limit), teacher.dir tiny-random-bert, students.ngram
 * // { dim: 16, buckets: 65536, epochs: 1 }, runs { seeds: [13], students: [ngram], methods: [{ loss: kd }] }
 * console.log(await runDistill({ recipe: 'mini.yaml', out: 'd', quick: true }));
 * // { report: 'd/report.html', runs: [ 'd/runs/ngram-kd' ] }   (8.2 s on 2 CPU cores)
 * await runDistill({ recipe: 'nope.yaml', out: 'd2' });
 * // ConfigError: --recipe nope.yaml: no such file. Recipes ship in recipes/ (sentiment140.yaml, amazon_polarity.yaml)
 * ```
 */
export async function runDistill(
  o: DistillOptions,
): Promise<{ report: string | null; runs: string[]; stoppedAfter: DistillStage | 'report' }> {
  const log = o.log ?? (() => undefined);
  const recipe = loadRecipe(o.recipe);
  // A missing provider fails now, not after the split and the teacher's data are prepared.
  assertDeviceUsable(o.session ?? {});
  const classes: ClassCount = parseClassCount(recipe.classes ?? 2);
  const quick = o.quick ? (recipe.quick ?? {}) : null;
  const jobs = planJobs(recipe, Boolean(quick));
  const c: DistillContext = {
    recipe,
    out: o.out,
    quick,
    classes,
    read: { classes, progress: false },
    session: o.session,
    quantize: o.quantize !== false,
    log,
  };
  const lock = prepareOutput(o, recipe);
  try {
    return await distillLocked(o, c, jobs, quick);
  } finally {
    lock.release();
  }
}

async function distillLocked(
  o: DistillOptions,
  c: DistillContext,
  jobs: ReturnType<typeof planJobs>,
  quick: DistillContext['quick'],
): Promise<{ report: string | null; runs: string[]; stoppedAfter: DistillStage | 'report' }> {
  const log = c.log;
  const recipe = c.recipe;
  const stop = (after: DistillStage, runs: string[] = []) => {
    log(`stopped after the ${after} stage (--until ${after}); run again without --until to go on`);
    return { report: null, runs, stoppedAfter: after };
  };
  const files = await splitStage(c);
  if (o.until === 'split') return stop('split');
  await labelsStage(c, files, jobs);
  const teacherDir = await teacherStage(c, files, o.teacher);
  if (o.until === 'teacher') return stop('teacher');
  const teacher = teacherFingerprint(teacherDir);
  await transferStage(c, files, jobs, teacherDir, teacher);
  const cache = await cacheStage(c, files, teacherDir, teacher);
  if (o.until === 'cache') return stop('cache');
  // Students × methods (and the late switch) over seeds, each evaluated on test.
  const seeds = quick?.seeds ?? recipe.runs.seeds;
  const runDirs: string[] = [];
  for (const job of jobs) runDirs.push(await studentStage(c, files, cache, job, seeds));
  if (o.until === 'students') return stop('students', runDirs);
  const teacherEval = await teacherEvalStage(c, files, teacherDir, teacher, cache);
  const report = writeReport(c, reportContext(c, teacherDir, teacherEval, seeds), runDirs);
  log(`report: ${report}`);
  return { report, runs: runDirs, stoppedAfter: 'report' };
}
