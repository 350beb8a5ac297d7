// Recipes for `kd distill`: the YAML is read and every field checked against one schema before
// any stage runs, so a typo fails in the first second (file, field path, fix), not hours in.
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import { ConfigError } from '../data/errors.js';
import { FORMATS } from '../data/formats/types.js';
import { getMethod, METHODS, parseMethodOptions } from '../distill/registry.js';
import { MethodOptionError } from '../distill/method.js';
import { resolveTeacherConfig, TEACHER_PRESETS } from '../teacher/default-config.js';
import { parseEmbeddingMode } from '../cache/build.js';
import { UserError } from '../errors.js';
import { packageRoot } from '../util/versions.js';
import { resolveStudentSettings, STUDENTS } from '../student/registry.js';
import type { StudentDefinition } from '../student/student.js';

/** A student's registry name (src/student/registry.ts). */
export type StudentKind = string;
const STUDENT_NAMES: readonly StudentKind[] = Object.keys(STUDENTS);

export type Method = { loss: string } & Record<string, unknown>;

export interface Recipe {
  name: string;
  classes: number;
  data: {
    split: { files: string[]; dev: number; test: number; seed: number };
    extraTrain?: string[];
    test?: string[];
    /**
     * Transfer sets: unlabelled in-domain files (read in `format`, default auto) and augmented copies of the
     * training split (`augment`: kd augment's options). Used by runs.transfer.
     */
    transfer?: { files?: string[]; format?: string; augment?: Record<string, unknown> };
  };
  /**
   * `tune`: labelled files the default teacher's ensemble is fitted on (`dev` = its dev split); see
   * TrainTeacherOptions.tuneFiles. `extraTrain`: labelled files the trained teacher learns from besides the split's
   * train file and data.extraTrain; no student trains on them and they are not cached (another domain, say).
   */
  teacher: { preset?: string; dir?: string; tune?: string[]; extraTrain?: string[] };
  cache: { embedding: string; dtype: 'float16' | 'float32' };
  /** Settings per student (its option keys and epochs, batchSize, lr), merged onto the student's defaults. */
  students: Record<StudentKind, Record<string, number> | undefined>;
  runs: {
    seeds: number[];
    students: StudentKind[];
    methods: Method[];
    lateSwitch?: Method & { kdStart: number[]; students?: StudentKind[] };
    /**
     * One parameter varied around a method, e.g.
     * { student: ngram, loss: kd, lambda: 0.5, tau: 2, param: lambda, values: [0.25, 0.75, 1] }.
     */
    sweeps?: (Method & { student: StudentKind; param: string; values: (number | string)[]; seeds?: number[] })[];
    /**
     * Few-label runs: each k keeps a seeded stratified k-row subset of the training split labelled; the rest of the
     * split becomes transfer rows. Runs are named `<student>-<method>-k<k>`.
     */
    labels?: number[];
    /**
     * Transfer variants of the main methods that have a teacher term on transfer rows: `plain` (the transfer files,
     * and with runs.labels the rest of the split) and `aug` (plus augmented copies; names end in `-aug`).
     */
    transfer?: ('plain' | 'aug')[];
  };
  quick?: { limit?: number; extraTrain?: boolean; teacherPreset?: string; seeds?: number[]; epochs?: number; labels?: number[] };
  caveats?: string[];
}

/** ${SHARED} in recipe paths: $KD_SHARED_DIR, or ../shared beside the package. */
export function sharedRoot(): string {
  return resolve(process.env.KD_SHARED_DIR ?? join(packageRoot, '..', 'shared'));
}

export type Job = {
  student: StudentKind;
  method: Method;
  name: string;
  kind: 'main' | 'late' | 'sweep';
  seeds?: number[];
  /** Few-label runs: the size of the labelled subset. */
  labels?: number;
  /** The transfer set it learns from as well: none, the plain transfer rows, or those plus augmented copies. */
  transfer?: 'plain' | 'aug';
  /** The recipe field the run comes from, for errors. */ field: string;
};

/** Training options a method entry may override for its runs (sweeps over `epochs`, `lr`, `batchSize`). */
const TRAINING_OVERRIDES = ['epochs', 'lr', 'batchSize'] as const;

export function splitMethod(method: Method): {
  loss: string;
  lossOptions: Record<string, unknown>;
  training: { epochs?: number; lr?: number; batchSize?: number };
} {
  const { loss, ...rest } = method;
  const training: Record<string, number> = {};
  for (const k of TRAINING_OVERRIDES) {
    if (rest[k] !== undefined) training[k] = rest[k] as number;
    delete rest[k];
  }
  return { loss, lossOptions: rest, training };
}

/**
 * The few-label runs of a recipe with runs.labels: per k, every main method; ce on the k rows alone, the methods with
 * a transfer term once per runs.transfer variant (default plain).
 */
function fewLabelJobs(recipe: Recipe, quick: boolean): Job[] {
  const jobs: Job[] = [];
  for (const k of (quick && recipe.quick?.labels) || recipe.runs.labels!)
    for (const student of recipe.runs.students)
      recipe.runs.methods.forEach((m, i) => {
        const base = { student, method: m, kind: 'main' as const, labels: k, field: `runs.methods[${i}]` };
        if (!getMethod(m.loss).transfer) jobs.push({ ...base, name: `${student}-${m.loss}-k${k}` });
        else
          for (const t of recipe.runs.transfer ?? ['plain'])
            jobs.push({ ...base, name: `${student}-${m.loss}-k${k}${t === 'aug' ? '-aug' : ''}`, transfer: t });
      });
  return jobs;
}

/** Every run a recipe asks for: students × methods, the late switch, the sweeps (or the few-label runs). */
export function planJobs(recipe: Recipe, quick: boolean): Job[] {
  if (recipe.runs.labels?.length) return fewLabelJobs(recipe, quick);
  const jobs: Job[] = [];
  for (const student of recipe.runs.students) {
    recipe.runs.methods.forEach((m, i) => {
      jobs.push({ student, method: m, name: `${student}-${m.loss}`, kind: 'main', field: `runs.methods[${i}]` });
      // With every row labelled, a transfer variant adds the transfer files (plain) or those and augmented copies (aug).
      if (getMethod(m.loss).transfer)
        for (const t of recipe.runs.transfer ?? [])
          jobs.push({
            student,
            method: m,
            name: `${student}-${m.loss}-${t === 'aug' ? 'aug' : 'transfer'}`,
            kind: 'main',
            transfer: t,
            field: `runs.methods[${i}]`,
          });
    });
    const ls = recipe.runs.lateSwitch;
    if (ls && (!ls.students || ls.students.includes(student))) {
      const { kdStart: _all, students: _s, ...rest } = ls;
      ls.kdStart.forEach((f, i) =>
        jobs.push({
          student,
          method: { ...rest, kdStart: f },
          name: `${student}-${ls.loss}-late${f}`,
          kind: 'late',
          field: `runs.lateSwitch.kdStart[${i}]`,
        }),
      );
    }
  }
  (recipe.runs.sweeps ?? []).forEach((sw, i) => {
    const { student, param, values, seeds: sweepSeeds, ...method } = sw;
    values.forEach((v, j) =>
      jobs.push({
        student,
        method: { ...method, [param]: v } as Method,
        name: `${student}-${method.loss}-${param}${v}`,
        kind: 'sweep',
        field: `runs.sweeps[${i}].values[${j}]`,
        ...(sweepSeeds && !quick ? { seeds: sweepSeeds } : {}),
      }),
    );
  });
  return jobs;
}

// The schema: each node checks a value at a field path and throws a FieldError naming it.
class FieldError extends Error {
  constructor(
    readonly field: string,
    readonly problem: string,
  ) {
    super(`${field}: ${problem}`);
  }
}

type Schema = (value: unknown, field: string) => void;

const got = (v: unknown) => (v === undefined ? 'nothing' : JSON.stringify(v));
const join2 = (field: string, key: string | number) => (typeof key === 'number' ? `${field}[${key}]` : field ? `${field}.${key}` : key);

function int(min = -Infinity, max = Infinity): Schema {
  return (v, at) => {
    if (typeof v !== 'number' || !Number.isInteger(v)) throw new FieldError(at, `must be an integer, got ${got(v)}`);
    if (v < min || v > max)
      throw new FieldError(at, `must be an integer ${max === Infinity ? `of at least ${min}` : `in [${min}, ${max}]`}, got ${v}`);
  };
}

/** A number in [min, max] (or [min, max) when `below` is set). */
function number(min: number, max: number, opts: { below?: boolean; above?: boolean } = {}): Schema {
  return (v, at) => {
    const range =
      max === Infinity
        ? `${opts.above ? 'above' : 'at least'} ${min}`
        : `in ${opts.above ? '(' : '['}${min}, ${max}${opts.below ? ')' : ']'}`;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new FieldError(at, `must be a number ${range}, got ${got(v)}`);
    if (v < min || v > max || (opts.below && v === max) || (opts.above && v === min))
      throw new FieldError(at, `must be a number ${range}, got ${v}`);
  };
}

const text: Schema = (v, at) => {
  if (typeof v !== 'string' || v === '') throw new FieldError(at, `must be a non-empty string, got ${got(v)}`);
};

const bool: Schema = (v, at) => {
  if (typeof v !== 'boolean') throw new FieldError(at, `must be true or false, got ${got(v)}`);
};

function oneOf(known: readonly (string | number)[], what: string): Schema {
  return (v, at) => {
    if (!known.includes(v as string | number)) throw new FieldError(at, `unknown ${what} ${got(v)}; known: ${known.join(', ')}`);
  };
}

function list(item: Schema, opts: { min?: number; unique?: boolean } = {}): Schema {
  return (v, at) => {
    if (!Array.isArray(v)) throw new FieldError(at, `must be a list (e.g. [a, b]), got ${got(v)}`);
    if (v.length < (opts.min ?? 0)) throw new FieldError(at, `must list at least ${opts.min} item${opts.min === 1 ? '' : 's'}`);
    v.forEach((x, i) => {
      item(x, join2(at, i));
      if (opts.unique && v.indexOf(x) !== i)
        throw new FieldError(join2(at, i), `${got(x)} is listed twice (also ${join2(at, v.indexOf(x))}); remove the duplicate`);
    });
  };
}

type Fields = Record<string, { schema: Schema; required?: boolean; hint?: string }>;

/** A mapping with these fields; any other field is a typo that would be ignored, so it is refused. */
function object(fields: Fields, opts: { extra?: boolean; check?: (o: Record<string, unknown>, at: string) => void } = {}): Schema {
  return (v, at) => {
    if (v === null || typeof v !== 'object' || Array.isArray(v))
      throw new FieldError(at || 'the recipe', `must be a mapping (key: value lines), got ${got(v)}`);
    const o = v as Record<string, unknown>;
    for (const [key, f] of Object.entries(fields)) {
      if (o[key] === undefined || o[key] === null) {
        if (f.required) throw new FieldError(join2(at, key), `is missing${f.hint ? `; add ${f.hint}` : ''}`);
        continue;
      }
      f.schema(o[key], join2(at, key));
    }
    if (!opts.extra) {
      for (const key of Object.keys(o)) {
        if (!(key in fields))
          throw new FieldError(join2(at, key), `unknown field; ${at || 'the top level'} takes ${Object.keys(fields).join(', ')}`);
      }
    }
    opts.check?.(o, at);
  };
}

const positiveInt = int(1);
const seedList = list(int(), { min: 1, unique: true });
const preset: Schema = (v, at) => {
  text(v, at);
  if (!((v as string) in TEACHER_PRESETS) && !existsSync(v as string))
    throw new FieldError(
      at,
      `unknown teacher preset ${got(v)}; known: ${Object.keys(TEACHER_PRESETS).join(', ')} (or a JSON file of settings)`,
    );
  // A JSON file of settings is read now too: a syntax error or a bad shape fails before any stage.
  try {
    resolveTeacherConfig(v as string, {});
  } catch (e) {
    if (e instanceof UserError || e instanceof SyntaxError) throw new FieldError(at, `${String(v)}: ${(e as Error).message}`);
    throw e;
  }
};
/** A swept value: a number, or a word for a method's choice option (lambdaSchedule: linear). */
const sweepValue: Schema = (v, at) => {
  if (!(typeof v === 'number' && Number.isFinite(v)) && !(typeof v === 'string' && v !== ''))
    throw new FieldError(at, `must be a number or a word, got ${got(v)}`);
};
const fraction: Schema = number(0, 1, { below: true });
const embedding: Schema = (v, at) => {
  if (typeof v !== 'string' || !/^(full|none|pca:[1-9]\d*)$/.test(v))
    throw new FieldError(at, `must be full, none or pca:K (K > 0), got ${got(v)}`);
};

/** A method entry: `loss` plus its options (checked by the method's own parser) and training overrides. */
const methodFields: Fields = {
  loss: { schema: oneOf(Object.keys(METHODS), 'loss'), required: true, hint: `loss: one of ${Object.keys(METHODS).join(', ')}` },
  epochs: { schema: positiveInt },
  lr: { schema: number(0, Infinity, { above: true }) },
  batchSize: { schema: positiveInt },
};

const trainingFields: Fields = {
  epochs: { schema: positiveInt },
  batchSize: { schema: positiveInt },
  lr: { schema: number(0, Infinity, { above: true }) },
};

/** `students.<name>`: the student's own options (their minimum from its declaration) and the training settings. */
function studentSchema(st: StudentDefinition<unknown>): Schema {
  const fields: Fields = Object.fromEntries(st.options.map((opt) => [opt.key, { schema: int(opt.min) }]));
  return object(
    { ...fields, ...trainingFields },
    {
      check: (s, at) => {
        const problem = st.check?.(resolveStudentSettings(st.name, s));
        if (problem) throw new FieldError(`${at}.${problem.key}`, problem.problem);
      },
    },
  );
}

const RECIPE_SCHEMA = object({
  name: { schema: text, required: true, hint: 'name: <dataset name shown in the report>' },
  classes: { schema: oneOf([2, 3, 5], 'class count') },
  data: {
    required: true,
    schema: object({
      split: {
        required: true,
        hint: 'split: { files: [...], dev: 0.1, test: 0.1, seed: 13 }',
        schema: object(
          {
            files: { schema: list(text, { min: 1 }), required: true },
            dev: { schema: fraction, required: true },
            test: { schema: fraction, required: true },
            seed: { schema: int(), required: true },
          },
          {
            check: (s, at) => {
              if ((s.dev as number) + (s.test as number) >= 1)
                throw new FieldError(`${at}.dev`, `dev + test must be below 1, got ${(s.dev as number) + (s.test as number)}`);
            },
          },
        ),
      },
      extraTrain: { schema: list(text) },
      test: { schema: list(text) },
      transfer: {
        schema: object({
          files: { schema: list(text, { min: 1 }) },
          format: { schema: oneOf([...FORMATS, 'auto'], 'format') },
          augment: {
            hint: 'augment: { copies: 2, seed: 13 } (kd augment: pMask, pReplace, pNgram, maxNgram, neighbours, replace)',
            schema: object({
              copies: { schema: positiveInt, required: true },
              seed: { schema: int(), required: true },
              pMask: { schema: number(0, 1) },
              pReplace: { schema: number(0, 1) },
              pNgram: { schema: number(0, 1) },
              maxNgram: { schema: positiveInt },
              neighbours: { schema: positiveInt },
              replace: { schema: oneOf(['teacher', 'none'], 'replacement source') },
            }),
          },
        }),
      },
    }),
  },
  teacher: {
    required: true,
    hint: 'teacher: { preset: base } or teacher: { dir: <HF-layout teacher folder> }',
    schema: object(
      {
        preset: { schema: preset },
        dir: { schema: text },
        tune: { schema: list(text, { min: 1, unique: true }) },
        extraTrain: { schema: list(text, { min: 1, unique: true }) },
      },
      {
        check: (t, at) => {
          if (t.preset === undefined && t.dir === undefined)
            throw new FieldError(at, 'needs preset (a teacher kd trains) or dir (a teacher folder)');
          if (t.tune !== undefined && t.dir !== undefined)
            throw new FieldError(`${at}.tune`, 'tunes a teacher kd trains (preset); a teacher folder (dir) is used as it is: remove one');
          if (t.extraTrain !== undefined && t.dir !== undefined)
            throw new FieldError(
              `${at}.extraTrain`,
              'is training data for a teacher kd trains (preset); a teacher folder (dir) is used as it is: remove one',
            );
        },
      },
    ),
  },
  cache: {
    required: true,
    hint: 'cache: { embedding: full, dtype: float16 }',
    schema: object({
      embedding: { schema: embedding, required: true },
      dtype: { schema: oneOf(['float16', 'float32'], 'dtype'), required: true },
    }),
  },
  students: { schema: object(Object.fromEntries(Object.values(STUDENTS).map((st) => [st.name, { schema: studentSchema(st) }]))) },
  runs: {
    required: true,
    schema: object({
      seeds: { schema: seedList, required: true, hint: 'seeds: [13]' },
      students: {
        schema: list(oneOf(STUDENT_NAMES, 'student'), { min: 1, unique: true }),
        required: true,
        hint: `students: [${STUDENT_NAMES.join(', ')}]`,
      },
      methods: {
        schema: list(object(methodFields, { extra: true }), { min: 1 }),
        required: true,
        hint: 'methods: [{ loss: kd, lambda: 0.5, tau: 2 }]',
      },
      lateSwitch: {
        schema: object(
          {
            ...methodFields,
            kdStart: { schema: list(number(0, 1), { min: 1, unique: true }), required: true },
            students: { schema: list(oneOf(STUDENT_NAMES, 'student'), { unique: true }) },
          },
          { extra: true },
        ),
      },
      sweeps: {
        schema: list(
          object(
            {
              ...methodFields,
              student: { schema: oneOf(STUDENT_NAMES, 'student'), required: true },
              param: { schema: text, required: true },
              values: { schema: list(sweepValue, { min: 1, unique: true }), required: true },
              seeds: { schema: seedList },
            },
            {
              extra: true,
              check: (s, at) => {
                if (['loss', 'student', 'param', 'values', 'seeds'].includes(s.param as string))
                  throw new FieldError(`${at}.param`, `cannot sweep ${got(s.param)}; sweep a loss option or epochs, lr, batchSize`);
              },
            },
          ),
        ),
      },
      labels: { schema: list(positiveInt, { min: 1, unique: true }) },
      transfer: { schema: list(oneOf(['plain', 'aug'], 'transfer variant'), { min: 1, unique: true }) },
    }),
  },
  quick: {
    schema: object({
      limit: { schema: positiveInt },
      extraTrain: { schema: bool },
      teacherPreset: { schema: preset },
      seeds: { schema: seedList },
      epochs: { schema: positiveInt },
      labels: { schema: list(positiveInt, { min: 1, unique: true }) },
    }),
  },
  caveats: { schema: list(text) },
});

/**
 * Each run's loss options through the method's own parser, and run names unique (two runs with
 * one name would share a folder). A method error names its option: it becomes that option's field.
 */
function checkRuns(r: Recipe): void {
  const seen = new Map<string, string>();
  for (const job of planJobs(r, false)) {
    const entry = job.field.replace(/\.(values|kdStart)\[\d+\]$/, '');
    const { loss, lossOptions, training } = splitMethod(job.method);
    let options: unknown;
    try {
      options = parseMethodOptions(loss, lossOptions);
    } catch (e) {
      if (!(e instanceof MethodOptionError)) throw e;
      // The swept (or switched) value is the field at fault when it is the option that failed.
      const swept =
        job.kind === 'sweep'
          ? r.runs.sweeps![Number(/sweeps\[(\d+)\]/.exec(job.field)![1])]!.param
          : job.kind === 'late'
            ? 'kdStart'
            : null;
      // A swept option the loss does not read at all is the sweep's `param`, not one of its values.
      const field =
        e.option === undefined
          ? entry
          : e.option === swept
            ? e.unread && job.kind === 'sweep'
              ? `${entry}.param`
              : job.field
            : `${entry}.${e.option}`;
      throw new FieldError(field, `${e.option === undefined ? e.message : e.problem} (run ${job.name})`);
    }
    // What the method needs of the cache (LELP: embeddings) is known from the recipe's cache section.
    try {
      getMethod(loss).check?.(options as never, { embeddingMode: parseEmbeddingMode(r.cache.embedding).mode, hasClassifier: true });
    } catch (e) {
      if (!(e instanceof MethodOptionError)) throw e;
      throw new FieldError('cache.embedding', `${r.cache.embedding} cannot serve ${entry} (run ${job.name}): ${e.message}`);
    }
    // A swept training override (epochs, lr, batchSize) is checked like the method's own.
    for (const [k, v] of Object.entries(training)) {
      const check = trainingFields[k]!.schema;
      check(v, job.kind === 'sweep' ? job.field : `${entry}.${k}`);
    }
    const other = seen.get(job.name);
    if (other)
      throw new FieldError(
        entry,
        `makes run ${job.name}, as ${other} does (they would share runs/${job.name}); remove one, or make it a sweep`,
      );
    seen.set(job.name, entry);
  }
}

/** ${SHARED} in every string of the parsed recipe (after parsing, so YAML positions stay true). */
function substituteShared(v: unknown, shared: string): unknown {
  if (typeof v === 'string') return v.replace(/\$\{SHARED\}/g, shared);
  if (Array.isArray(v)) return v.map((x) => substituteShared(x, shared));
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, substituteShared(x, shared)]));
  return v;
}

/** What runs.labels and runs.transfer need of the data section. */
function checkTransfer(r: Recipe): void {
  const t = r.runs.transfer ?? [];
  if (t.includes('aug') && !r.data.transfer?.augment)
    throw new FieldError(
      'runs.transfer',
      "lists aug, but data.transfer.augment is not set: give kd augment's options there (copies, seed)",
    );
  if (t.includes('plain') && !r.runs.labels?.length && !r.data.transfer?.files)
    throw new FieldError('runs.transfer', 'lists plain, but there is no transfer set: give data.transfer.files (or runs.labels)');
  if (r.runs.labels?.length && (r.runs.lateSwitch || r.runs.sweeps?.length))
    throw new FieldError('runs.labels', 'few-label runs take runs.methods only; move lateSwitch and sweeps to another recipe');
}

/**
 * teacher.extraTrain against the recipe's other files (resolved, existing): a file the split draws dev/test rows from,
 * or a test file, would put evaluation rows in the teacher's training set; data.extraTrain's files it trains on already;
 * the tuning files are kept out of every member's training (the ensemble is fitted on them).
 */
function checkTeacherExtraTrain(r: Recipe): void {
  const real = (f: string) => realpathSync(f);
  const others = new Map<string, string>();
  const note = (files: readonly string[], field: string, why: string) =>
    files.forEach((f, i) => {
      if (f !== 'dev' && !others.has(real(f))) others.set(real(f), `${field}[${i}] (${why})`);
    });
  note(r.data.split.files, 'data.split.files', 'the split takes dev and test rows from it');
  note(r.data.test ?? [], 'data.test', 'a test file');
  note(r.data.extraTrain ?? [], 'data.extraTrain', 'the teacher trains on it already');
  note(r.teacher.tune ?? [], 'teacher.tune', 'the ensemble is fitted on it, so no member may train on it');
  (r.teacher.extraTrain ?? []).forEach((f, i) => {
    const other = others.get(real(f));
    if (other) throw new FieldError(`teacher.extraTrain[${i}]`, `${f} is also ${other}; remove it from teacher.extraTrain`);
  });
}

/** Runs `check`, turning its FieldError into a ConfigError `<file>: <field path>: <problem and fix>`. */
function atRecipe(path: string, check: () => void): void {
  try {
    check();
  } catch (e) {
    if (e instanceof FieldError) throw new ConfigError(`${path}: ${e.message}`);
    throw e;
  }
}

/** Checks a parsed recipe; throws a ConfigError `<file>: <field path>: <problem and fix>`. */
export function validateRecipe(path: string, raw: unknown): Recipe {
  atRecipe(path, () => {
    RECIPE_SCHEMA(raw, '');
    checkTransfer(raw as Recipe);
    checkRuns(raw as Recipe);
  });
  return raw as Recipe;
}

/** Reads, validates and resolves a recipe: relative data paths are relative to the package root. */
export function loadRecipe(path: string): Recipe {
  if (!existsSync(path))
    throw new ConfigError(`--recipe ${path}: no such file. Recipes ship in recipes/ (sentiment140.yaml, amazon_polarity.yaml)`);
  let parsed: unknown;
  try {
    parsed = parseYaml(readFileSync(path, 'utf8'));
  } catch (e) {
    if (!(e instanceof YAMLParseError)) throw e;
    const pos = e.linePos?.[0];
    // The library's message ends with "at line L, column C:" and a code frame: one line is kept.
    const reason = e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
    throw new ConfigError(`${path}${pos ? `:${pos.line}:${pos.col}` : ''}: YAML syntax error: ${reason}. Fix the recipe there`);
  }
  const r = validateRecipe(path, substituteShared(parsed, sharedRoot()));
  const base = dirname(resolve(path));
  const abs = (p: string) => resolve(base, '..', p);
  r.data.split.files = r.data.split.files.map(abs);
  r.data.extraTrain = (r.data.extraTrain ?? []).map(abs);
  r.data.test = (r.data.test ?? []).map(abs);
  if (r.data.transfer?.files) r.data.transfer.files = r.data.transfer.files.map(abs);
  if (r.teacher.dir) r.teacher.dir = abs(r.teacher.dir);
  if (r.teacher.tune) r.teacher.tune = r.teacher.tune.map((f) => (f === 'dev' ? f : abs(f)));
  if (r.teacher.extraTrain) r.teacher.extraTrain = r.teacher.extraTrain.map(abs);
  for (const [field, files] of [
    ['data.split.files', r.data.split.files],
    ['data.extraTrain', r.data.extraTrain],
    ['data.test', r.data.test],
    ['data.transfer.files', r.data.transfer?.files ?? []],
    ['teacher.tune', (r.teacher.tune ?? []).map((f) => (f === 'dev' ? '' : f))],
    ['teacher.extraTrain', r.teacher.extraTrain ?? []],
  ] as const) {
    files.forEach((f, i) => {
      if (f !== '' && !existsSync(f))
        throw new ConfigError(`${path}: ${field}[${i}]: data file ${f} does not exist (set KD_SHARED_DIR if ../shared is elsewhere)`);
    });
  }
  if (r.teacher.dir && !existsSync(r.teacher.dir))
    throw new ConfigError(
      `${path}: teacher.dir: ${r.teacher.dir} does not exist; give an HF-layout teacher folder (config.json, tokenizer.json, ` +
        `onnx/model.onnx)`,
    );
  atRecipe(path, () => checkTeacherExtraTrain(r));
  return r;
}
