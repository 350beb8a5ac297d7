// `kd distill --recipe FILE`: data → split → teacher (trained when the recipe names none) →
// cache → students with each method → eval → report. Each stage writes a marker with the
// hash of its settings and skips itself when that marker and its outputs are there, so a
// killed run resumes where it stopped (the stages themselves resume from checkpoints).
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { splitDataset } from '../data/split.js';
import { parseClassCount, type ClassCount } from '../data/labels.js';
import { resolveTeacherConfig, trainDefaultTeacher } from '../teacher/default-teacher.js';
import { buildCache } from '../cache/build.js';
import { verifyCache } from '../cache/reader.js';
import { trainStudentSeeds, type StudentRunOptions } from '../train/student-run.js';
import { evaluateModel } from '../eval/evaluate.js';
import { buildMarkdownTable, buildReport, loadRun, type ReportContext } from '../eval/report.js';
import { writeFileAtomicSync } from '../util/fs.js';
import { packageRoot, runVersions } from '../util/versions.js';
import { ConfigError } from '../data/errors.js';
import { parseMethodOptions } from '../distill/registry.js';
import type { Device } from '../engine/session.js';

type Method = { loss: string } & Record<string, unknown>;

export interface Recipe {
  name: string;
  classes: number;
  data: { split: { files: string[]; dev: number; test: number; seed: number }; extraTrain?: string[]; test?: string[] };
  teacher: { preset?: string; dir?: string };
  cache: { embedding: string; dtype: 'float16' | 'float32' };
  students: { ngram?: Record<string, number>; transformer?: Record<string, number> };
  runs: {
    seeds: number[];
    students: ('ngram' | 'transformer')[];
    methods: Method[];
    lateSwitch?: Method & { kdStart: number[]; students?: string[] };
    /** One parameter varied around a method, e.g. { student: ngram, loss: kd, lambda: 0.5, tau: 2, param: lambda, values: [0.25, 0.75, 1] }. */
    sweeps?: (Method & { student: 'ngram' | 'transformer'; param: string; values: number[]; seeds?: number[] })[];
  };
  quick?: { limit?: number; extraTrain?: boolean; teacherPreset?: string; seeds?: number[]; epochs?: number };
  caveats?: string[];
}

/** ${SHARED} in recipe paths: $KD_SHARED_DIR, or ../shared beside the package. */
export function sharedRoot(): string {
  return resolve(process.env.KD_SHARED_DIR ?? join(packageRoot, '..', 'shared'));
}

export type Job = { student: 'ngram' | 'transformer'; method: Method; name: string; kind: 'main' | 'late' | 'sweep'; seeds?: number[] };

/** Training options a method entry may override for its runs (sweeps over `epochs`, `lr`, `batchSize`). */
const TRAINING_OVERRIDES = ['epochs', 'lr', 'batchSize'] as const;

function splitMethod(method: Method): { loss: string; lossOptions: Record<string, unknown>; training: { epochs?: number; lr?: number; batchSize?: number } } {
  const { loss, ...rest } = method;
  const training: Record<string, number> = {};
  for (const k of TRAINING_OVERRIDES) {
    if (rest[k] !== undefined) training[k] = rest[k] as number;
    delete rest[k];
  }
  return { loss, lossOptions: rest, training };
}

/** Every run a recipe asks for: students × methods, the late switch, the sweeps. */
export function planJobs(recipe: Recipe, quick: boolean): Job[] {
  const jobs: Job[] = [];
  for (const student of recipe.runs.students) {
    for (const m of recipe.runs.methods) jobs.push({ student, method: m, name: `${student}-${m.loss}`, kind: 'main' });
    const ls = recipe.runs.lateSwitch;
    if (ls && (!ls.students || ls.students.includes(student))) {
      const { kdStart: _all, students: _s, ...rest } = ls;
      for (const f of ls.kdStart) {
        jobs.push({ student, method: { ...rest, kdStart: f }, name: `${student}-${ls.loss}-late${f}`, kind: 'late' });
      }
    }
  }
  for (const sw of recipe.runs.sweeps ?? []) {
    const { student, param, values, seeds: sweepSeeds, ...method } = sw;
    for (const v of values) jobs.push({ student, method: { ...method, [param]: v } as Method, name: `${student}-${method.loss}-${param}${v}`, kind: 'sweep', ...(sweepSeeds && !quick ? { seeds: sweepSeeds } : {}) });
  }
  return jobs;
}

/** The fields a recipe may have, by section: anything else is a typo that would be ignored. */
const RECIPE_FIELDS: Record<string, readonly string[]> = {
  '': ['name', 'classes', 'data', 'teacher', 'cache', 'students', 'runs', 'quick', 'caveats'],
  data: ['split', 'extraTrain', 'test'],
  'data.split': ['files', 'dev', 'test', 'seed'],
  teacher: ['preset', 'dir'],
  cache: ['embedding', 'dtype'],
  students: ['ngram', 'transformer'],
  'students.ngram': ['dim', 'hidden', 'buckets', 'epochs', 'batchSize', 'lr'],
  'students.transformer': ['layers', 'hidden', 'heads', 'intermediate', 'maxLength', 'vocabSize', 'epochs', 'batchSize', 'lr'],
  runs: ['seeds', 'students', 'methods', 'lateSwitch', 'sweeps'],
  quick: ['limit', 'extraTrain', 'teacherPreset', 'seeds', 'epochs'],
};

function checkRecipeFields(path: string, r: Recipe): void {
  for (const [section, known] of Object.entries(RECIPE_FIELDS)) {
    const value = section === '' ? r : section.split('.').reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], r);
    if (value === null || typeof value !== 'object' || Array.isArray(value)) continue;
    for (const k of Object.keys(value)) {
      if (!known.includes(k)) throw new ConfigError(`${path}: unknown field '${section ? `${section}.` : ''}${k}'; ${section || 'the top level'} takes ${known.join(', ')}`);
    }
  }
}

export function loadRecipe(path: string): Recipe {
  if (!existsSync(path)) throw new ConfigError(`--recipe ${path}: no such file. Recipes ship in recipes/ (sentiment140.yaml, amazon_polarity.yaml)`);
  const text = readFileSync(path, 'utf8').replace(/\$\{SHARED\}/g, sharedRoot());
  const r = parseYaml(text) as Recipe;
  const need = (cond: unknown, field: string) => {
    if (!cond) throw new ConfigError(`${path}: '${field}' is missing or invalid`);
  };
  need(r?.name, 'name');
  need(r.data?.split?.files?.length, 'data.split.files');
  need(r.runs?.methods?.length, 'runs.methods');
  need(r.runs?.seeds?.length, 'runs.seeds');
  need(r.runs?.students?.length, 'runs.students');
  need(r.teacher?.preset || r.teacher?.dir, 'teacher.preset or teacher.dir');
  checkRecipeFields(path, r);
  // Every run's loss options, checked now rather than when that run's turn comes hours later.
  for (const job of planJobs(r, false)) {
    const { loss, lossOptions } = splitMethod(job.method);
    try {
      parseMethodOptions(loss, lossOptions);
    } catch (e) {
      throw new ConfigError(`${path}: run ${job.name}: ${(e as Error).message}`);
    }
  }
  const base = dirname(resolve(path));
  const abs = (p: string) => resolve(base, '..', p);
  r.data.split.files = r.data.split.files.map(abs);
  r.data.extraTrain = (r.data.extraTrain ?? []).map(abs);
  r.data.test = (r.data.test ?? []).map(abs);
  if (r.teacher.dir) r.teacher.dir = abs(r.teacher.dir);
  for (const f of [...r.data.split.files, ...r.data.extraTrain, ...r.data.test]) if (!existsSync(f)) throw new ConfigError(`${path}: data file ${f} does not exist (set KD_SHARED_DIR if ../shared is elsewhere)`);
  return r;
}

export interface DistillOptions {
  recipe: string;
  out: string;
  quick?: boolean;
  /** Use this teacher folder instead of the recipe's. */
  teacher?: string;
  device?: Device;
  threads?: number;
  log?: (line: string) => void;
}

function hash(v: unknown): string {
  return createHash('sha256').update(JSON.stringify(v)).digest('hex').slice(0, 16);
}

/** Runs `work` unless `<dir>/stage.json` records the same settings; records them after. */
async function stage<T>(dir: string, settings: unknown, log: (l: string) => void, name: string, work: () => Promise<T>, valid: () => boolean = () => true): Promise<T | null> {
  const marker = join(dir, 'stage.json');
  const key = hash(settings);
  if (existsSync(marker) && (JSON.parse(readFileSync(marker, 'utf8')) as { key: string }).key === key && valid()) {
    log(`${name}: done before, skipped (${dir})`);
    return null;
  }
  mkdirSync(dir, { recursive: true });
  log(`${name}: running`);
  const t0 = Date.now();
  const result = await work();
  writeFileAtomicSync(marker, `${JSON.stringify({ key, settings, seconds: (Date.now() - t0) / 1000, versions: runVersions() }, null, 2)}\n`);
  return result;
}

export async function runDistill(o: DistillOptions): Promise<{ report: string; runs: string[] }> {
  const log = o.log ?? (() => undefined);
  const recipe = loadRecipe(o.recipe);
  const classes: ClassCount = parseClassCount(recipe.classes ?? 2);
  const quick = o.quick ? (recipe.quick ?? {}) : null;
  const jobs = planJobs(recipe, Boolean(quick));
  const read = { classes, progress: false };
  const out = o.out;
  mkdirSync(out, { recursive: true });
  writeFileAtomicSync(join(out, 'recipe.resolved.json'), `${JSON.stringify({ recipe, quick: Boolean(o.quick), teacherOverride: o.teacher ?? null, versions: runVersions() }, null, 2)}\n`);

  // 1. Split.
  const splitDir = join(out, 'data');
  const splitSettings = { ...recipe.data.split, limit: quick?.limit ?? null, classes };
  await stage(splitDir, splitSettings, log, 'split', () => splitDataset(recipe.data.split.files, { ...read, dev: recipe.data.split.dev, test: recipe.data.split.test, seed: recipe.data.split.seed, out: splitDir, ...(quick?.limit ? { limit: quick.limit } : {}) }), () => existsSync(join(splitDir, 'train.jsonl')));
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
    await stage(teacherDir, { preset, config, trainFiles, devFiles }, log, 'teacher', () => trainDefaultTeacher({ trainFiles, devFiles, read, out: teacherOut, config, resume: true, ...(o.device ? { device: o.device } : {}), ...(o.threads ? { threads: o.threads } : {}), log }), () => existsSync(join(teacherOut, 'onnx', 'model.onnx')));
  }

  // 3. Cache over every file a student reads.
  const cacheDir = join(out, 'cache');
  const cacheFiles = [...new Set([...trainFiles, ...devFiles, ...testFiles])];
  await stage(cacheDir, { teacherDir, cacheFiles, cache: recipe.cache }, log, 'cache', () => buildCache({ teacher: teacherDir!, data: cacheFiles, read, out: cacheDir, dtype: recipe.cache.dtype, embedding: recipe.cache.embedding, ...(o.device ? { device: o.device } : {}), ...(o.threads ? { threads: o.threads } : {}), log }), () => existsSync(join(cacheDir, 'manifest.json')) && verifyCache(cacheDir).ok);

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
      transformer: { layers: s.layers ?? 1, hidden: s.hidden ?? 64, heads: s.heads ?? 2, intermediate: s.intermediate ?? 256, maxLength: s.maxLength ?? 128, vocabSize: s.vocabSize ?? 8192, dropout: 0.1 },
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
      ...(o.device ? { device: o.device } : {}),
      ...(o.threads ? { threads: o.threads } : {}),
      log,
    };
    const jobSeeds = job.seeds ?? seeds;
    await stage(join(dir, 'stage'), { student: job.student, method: job.method, seeds: jobSeeds, cacheDir, s, quick }, log, `train ${job.name}`, async () => {
      const r = await trainStudentSeeds({ ...options, seed: jobSeeds[0]! }, jobSeeds);
      writeFileAtomicSync(join(dir, 'run.json'), `${JSON.stringify({ dataset: recipe.name, label: job.name.replace(`${job.student}-`, ''), kind: job.kind, student: job.student, method: job.method }, null, 2)}\n`);
      const best = r.runs[0]!;
      const ev = await evaluateModel({ model: best.model, data: testFiles, read, cache: cacheDir, ...(o.device ? { device: o.device } : {}) });
      writeFileAtomicSync(join(dir, 'eval.json'), `${JSON.stringify(ev)}\n`);
      const evTrain = await evaluateModel({ model: best.model, data: [trainFiles[0]!], read, cache: cacheDir, limit: 5000 });
      writeFileAtomicSync(join(dir, 'eval-train.json'), `${JSON.stringify(evTrain)}\n`);
      return r;
    }, () => existsSync(join(dir, 'eval.json')));
    const meta = join(dir, 'run.json');
    if (existsSync(meta)) {
      const m = JSON.parse(readFileSync(meta, 'utf8')) as Record<string, unknown>;
      if (m.kind !== job.kind) writeFileAtomicSync(meta, `${JSON.stringify({ ...m, kind: job.kind }, null, 2)}\n`);
    }
  }

  // 5. Teacher evaluation and the report.
  const teacherEval = join(out, 'teacher-eval.json');
  if (!existsSync(teacherEval)) writeFileAtomicSync(teacherEval, `${JSON.stringify(await evaluateModel({ model: teacherDir, data: testFiles, read, cache: cacheDir }))}\n`);
  const teacherConfig = existsSync(join(teacherDir, 'config.json')) ? (JSON.parse(readFileSync(join(teacherDir, 'config.json'), 'utf8')) as { kd?: { training?: { devAccuracy?: number } } }) : {};
  const context: ReportContext = {
    dataset: recipe.name,
    teacher: { dir: teacherDir, eval: JSON.parse(readFileSync(teacherEval, 'utf8')), ...(teacherConfig.kd?.training?.devAccuracy !== undefined ? { devAccuracy: teacherConfig.kd.training.devAccuracy } : {}) },
    caveats: [...(recipe.caveats ?? []), ...(quick ? [`QUICK RUN (--quick): ${quick.limit ?? 'all'} rows, teacher preset ${quick.teacherPreset ?? recipe.teacher.preset}, ${seeds.length} seed(s), ${quick.epochs ?? 'recipe'} epoch(s); figures are smoke-test values, not results.`] : [])],
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
