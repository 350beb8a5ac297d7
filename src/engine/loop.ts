// The training loop shared by the default teacher and the students: epochs of seeded batch
// orders, periodic dev evaluation, early stopping, best and last checkpoints, resume, a
// metrics log and a progress line. A resumed run refuses options other than the checkpoint's
// and cuts the metrics log back to the checkpoint, so a killed run resumes to the same bytes.
import { closeSync, constants, existsSync, lstatSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { StepTrainer, StepResult } from './trainer.js';
import { DamagedFileError, loadSafetensors, saveSafetensors, type NamedTensor } from './safetensors.js';
import { OptionError, UserError } from '../errors.js';
import { writeFileAtomicSync } from '../util/fs.js';
import type { ort } from './session.js';
import type { FloatArray } from './params.js';
import { Rng } from './rng.js';
import { Progress } from '../util/progress.js';

export interface DevResult {
  /** Higher is better (accuracy). */
  score: number;
  details?: Record<string, number>;
}

export interface LoopOptions<B> {
  trainer: StepTrainer;
  outDir: string;
  epochs: number;
  seed: number;
  /** The batches of an epoch, in order; `rng` is seeded from (seed, epoch). */
  batches: (epoch: number, rng: Rng) => B[];
  feed: (batch: B) => Record<string, ort.Tensor>;
  /** Dev-set evaluation with the current parameters. */
  evaluate: () => Promise<DevResult>;
  /** Evaluate every N steps (default: once per epoch). */
  evalEvery?: number;
  /** Stop after this many evaluations without improvement (default: never). */
  patience?: number;
  /** Continue from outDir/last.safetensors when it exists. */
  resume?: boolean;
  /**
   * The run's resolved settings (JSON): stored in every checkpoint, and a resume with any other
   * value is refused naming the field (see checkResumable). Leave out what may change on resume.
   */
  runConfig?: Record<string, unknown>;
  /** Checkpoint every N steps (default: at each evaluation). */
  checkpointEvery?: number;
  label?: string;
  log?: (line: string) => void;
  /** Stop after this many steps in total (e.g. a time-boxed run). */
  maxSteps?: number;
  /** At the end, load the best checkpoint's parameters (outDir/best.safetensors) into the trainer. */
  restoreBest?: boolean;
}

export interface LoopResult {
  steps: number;
  epochsRun: number;
  bestScore: number;
  bestStep: number;
  stoppedEarly: boolean;
  lastLoss: number;
  secondsTraining: number;
}

interface LoopState {
  epoch: number;
  batchIndex: number;
  bestScore: number;
  bestStep: number;
  badEvals: number;
  done: boolean;
  /** Lines of metrics.jsonl at this checkpoint: a resumed run cuts the log back to them. */
  metricsLines: number;
  /** Step of the last dev evaluation (-1: none yet). */
  lastEvalStep: number;
}

/** The first place two JSON values differ, as a field path and both values; null when equal. */
export function firstDifference(stored: unknown, current: unknown, path = ''): { field: string; stored: unknown; current: unknown } | null {
  const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  if (Array.isArray(stored) && Array.isArray(current)) {
    if (stored.length !== current.length) return { field: path, stored, current };
    for (let i = 0; i < stored.length; i++) {
      const d = firstDifference(stored[i], current[i], `${path}[${i}]`);
      if (d) return d;
    }
    return null;
  }
  if (isObject(stored) && isObject(current)) {
    for (const key of [...new Set([...Object.keys(stored), ...Object.keys(current)])].sort()) {
      const d = firstDifference(stored[key], current[key], path ? `${path}.${key}` : key);
      if (d) return d;
    }
    return null;
  }
  return JSON.stringify(stored) === JSON.stringify(current) ? null : { field: path, stored, current };
}

/** Refuses a `current` run config that differs from the `stored` one, naming the field and both values. */
export function assertSameRunConfig(stored: unknown, current: Record<string, unknown>, where: string): void {
  const d = firstDifference(stored, JSON.parse(JSON.stringify(current)));
  if (!d) return;
  const show = (v: unknown) => (v === undefined ? '(not set)' : JSON.stringify(v));
  throw new OptionError(
    `${where} was trained with ${d.field} = ${show(d.stored)}; this run asks for ${show(d.current)}. Resume with the same ` +
      `settings, or start a new run in another --out (or delete the run folder)`,
  );
}

/** Refuses to write through a symbolic link inside a run folder: it could point at any file. */
export function refuseSymlinks(...paths: string[]): void {
  for (const p of paths) {
    let link = false;
    try {
      link = lstatSync(p).isSymbolicLink();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    if (link)
      throw new UserError(
        `${p} is a symbolic link; kd writes run files only as plain files in the run folder. Remove the link, or choose another --out`,
      );
  }
}

const checkpointRemedy = (outDir: string) => `Delete the run folder (or ${outDir}) and start the run anew without --resume`;

/**
 * Before anything of a resumed run is written: verifies `outDir/last.safetensors` (its checksum)
 * and refuses a `runConfig` other than the one stored in it. Returns the checkpoint's step, or
 * null when there is no checkpoint to resume from.
 */
export function checkResumable(outDir: string, runConfig: Record<string, unknown> | undefined): { step: number } | null {
  const lastPath = join(outDir, 'last.safetensors');
  refuseSymlinks(outDir, lastPath);
  if (!existsSync(lastPath)) return null;
  const { metadata } = loadSafetensors(lastPath, { requireChecksum: true, remedy: checkpointRemedy(outDir) });
  if (runConfig) {
    if (metadata.runConfig === undefined)
      throw new DamagedFileError(lastPath, 'has no run config stored in it (written by an older kd)', checkpointRemedy(outDir));
    assertSameRunConfig(JSON.parse(metadata.runConfig), runConfig, lastPath);
  }
  return { step: Number(metadata.step) };
}

/** Appends one line to metrics.jsonl, never through a symbolic link (O_NOFOLLOW). */
function appendMetricsLine(path: string, line: string): void {
  refuseSymlinks(path);
  const fd = openSync(path, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW, 0o644);
  try {
    writeSync(fd, line);
  } finally {
    closeSync(fd);
  }
}

/** Cuts metrics.jsonl back to its first `lines` lines (the rows of the checkpoint's run). */
function truncateMetrics(path: string, lines: number, outDir: string): void {
  refuseSymlinks(path);
  const text = existsSync(path) ? readFileSync(path, 'utf8') : '';
  const rows = text.split('\n').filter((l, i, all) => l !== '' || i < all.length - 1);
  if (rows.length < lines)
    throw new DamagedFileError(
      path,
      `has ${rows.length} lines, the checkpoint was written after ${lines}: the log was cut or replaced`,
      checkpointRemedy(outDir),
    );
  writeFileAtomicSync(
    path,
    rows
      .slice(0, lines)
      .map((l) => `${l}\n`)
      .join(''),
  );
}

/** Writes the current parameters as `path` (safetensors, atomic). */
export function saveParameters(trainer: StepTrainer, path: string, metadata: Record<string, string> = {}): void {
  const tensors = new Map<string, NamedTensor>();
  for (const spec of trainer.store.specs)
    tensors.set(spec.name, { dtype: trainer.store.dtype, shape: spec.shape, data: trainer.store.get(spec.name) });
  saveSafetensors(path, tensors, metadata, { checksum: true });
}

/** Loads parameters written by saveParameters into the trainer's store (checksum required). */
export function restoreParameters(trainer: StepTrainer, path: string): void {
  const { tensors } = loadSafetensors(path, { requireChecksum: true, remedy: 'Delete the run folder and start the run anew' });
  for (const [name, t] of tensors) trainer.store.get(name).set(t.data as FloatArray);
}

export async function runTrainingLoop<B>(o: LoopOptions<B>): Promise<LoopResult> {
  mkdirSync(o.outDir, { recursive: true });
  const lastPath = join(o.outDir, 'last.safetensors');
  const bestPath = join(o.outDir, 'best.safetensors');
  const metricsPath = join(o.outDir, 'metrics.jsonl');
  const log = o.log ?? (() => undefined);
  refuseSymlinks(o.outDir, lastPath, bestPath, metricsPath);
  let state: LoopState = {
    epoch: 0,
    batchIndex: 0,
    bestScore: -Infinity,
    bestStep: -1,
    badEvals: 0,
    done: false,
    metricsLines: 0,
    lastEvalStep: -1,
  };
  if (o.resume && checkResumable(o.outDir, o.runConfig)) {
    const meta = o.trainer.load(lastPath);
    const saved = JSON.parse(meta.loop ?? 'null') as LoopState | null;
    if (!saved || typeof saved.metricsLines !== 'number')
      throw new DamagedFileError(lastPath, 'no loop state in the checkpoint (written by an older kd)', checkpointRemedy(o.outDir));
    // JSON has no -Infinity: a checkpoint before the first evaluation stores null.
    state = { ...saved, bestScore: saved.bestScore ?? -Infinity, lastEvalStep: saved.lastEvalStep ?? -1 };
    truncateMetrics(metricsPath, state.metricsLines, o.outDir);
    log(`resumed from ${lastPath} at step ${o.trainer.stepCount} (epoch ${state.epoch + 1}, batch ${state.batchIndex})`);
  } else {
    // A fresh run starts its log anew: rows of an earlier run in this folder are not its own.
    writeFileAtomicSync(metricsPath, '');
  }
  const checkpoint = () =>
    o.trainer.save(lastPath, { loop: JSON.stringify(state), ...(o.runConfig ? { runConfig: JSON.stringify(o.runConfig) } : {}) });
  const started = performance.now();
  let lastLoss = NaN;
  let lossSum = 0;
  let lossCount = 0;
  /** Sums of the loss's named scalar terms (ce, kd, transfer_kd, ...) since the last evaluation. */
  let termSums: Record<string, number> = {};
  const evaluate = async (epoch: number): Promise<void> => {
    const dev = await o.evaluate();
    state.lastEvalStep = o.trainer.stepCount;
    const improved = dev.score > state.bestScore;
    if (improved) {
      state.bestScore = dev.score;
      state.bestStep = o.trainer.stepCount;
      state.badEvals = 0;
      saveParameters(o.trainer, bestPath, { step: String(o.trainer.stepCount), score: String(dev.score) });
    } else {
      state.badEvals += 1;
    }
    const row = {
      step: o.trainer.stepCount,
      epoch: epoch + 1,
      trainLoss: lossCount ? lossSum / lossCount : null,
      ...(Object.keys(termSums).length && lossCount
        ? { terms: Object.fromEntries(Object.entries(termSums).map(([k, v]) => [k, v / lossCount])) }
        : {}),
      dev: dev.score,
      ...dev.details,
      best: state.bestScore,
      seconds: (performance.now() - started) / 1000,
    };
    appendMetricsLine(metricsPath, `${JSON.stringify(row)}\n`);
    state.metricsLines += 1;
    log(
      `step ${row.step} epoch ${row.epoch}: train loss ${row.trainLoss?.toFixed(4) ?? '-'}, dev ` +
        `${dev.score.toFixed(4)}${improved ? ' (best)' : ''}`,
    );
    lossSum = 0;
    lossCount = 0;
    termSums = {};
    if (o.patience !== undefined && state.badEvals >= o.patience) state.done = true;
  };
  let steps = 0;
  const stepLimitReached = () => o.maxSteps !== undefined && steps >= o.maxSteps;
  while (state.epoch < o.epochs && !state.done) {
    const batches = o.batches(state.epoch, new Rng(o.seed * 1000003 + state.epoch));
    const progress = new Progress(`${o.label ?? 'train'} epoch ${state.epoch + 1}/${o.epochs}`, { unit: 'batches', total: batches.length });
    while (state.batchIndex < batches.length && !state.done && !stepLimitReached()) {
      // Up to stepsPerCall batches per call, never across an evaluation, checkpoint, epoch end
      // or step limit: the same groups on a resumed run as on an uninterrupted one.
      const untilMultiple = (every: number | undefined) => (every ? every - (o.trainer.stepCount % every) : Infinity);
      const n = Math.min(
        o.trainer.stepsPerCall,
        batches.length - state.batchIndex,
        untilMultiple(o.evalEvery),
        untilMultiple(o.checkpointEvery),
        o.maxSteps === undefined ? Infinity : o.maxSteps - steps,
      );
      const first = o.trainer.stepCount;
      const results: StepResult[] = await o.trainer.steps(batches.slice(state.batchIndex, state.batchIndex + n).map((b) => o.feed(b)));
      results.forEach((result, k) => {
        if (!Number.isFinite(result.loss))
          throw new OptionError(
            `training diverged at step ${first + k + 1}: loss ${result.loss} (learning rate ${result.lr.toExponential(2)} at ` +
              `that step). Lower the learning rate (--lr) and start a new run in another --out (or delete the run folder): a ` +
              `checkpoint resumes only with the settings it was trained with`,
          );
        lossSum += result.loss;
        lossCount += 1;
        for (const [k, v] of Object.entries(result.metrics)) if (typeof v === 'number') termSums[k] = (termSums[k] ?? 0) + v;
      });
      const result = results.at(-1)!;
      state.batchIndex += n;
      steps += n;
      lastLoss = result.loss;
      progress.update(state.batchIndex, `loss ${result.loss.toFixed(4)} lr ${result.lr.toExponential(2)}`);
      if (o.evalEvery && o.trainer.stepCount % o.evalEvery === 0) {
        await evaluate(state.epoch);
        checkpoint();
      } else if (o.checkpointEvery && o.trainer.stepCount % o.checkpointEvery === 0) {
        checkpoint();
      }
    }
    progress.finish();
    // A step limit can stop between evaluations: the parameters it stops at are evaluated too,
    // so there is always a best checkpoint to restore.
    if (stepLimitReached() && !state.done && state.lastEvalStep !== o.trainer.stepCount) await evaluate(state.epoch);
    if (state.done || stepLimitReached()) break;
    if (!o.evalEvery) await evaluate(state.epoch);
    state.epoch += 1;
    state.batchIndex = 0;
    checkpoint();
  }
  state.done = true;
  checkpoint();
  if (o.restoreBest) restoreParameters(o.trainer, bestPath);
  return {
    steps: o.trainer.stepCount,
    epochsRun: Math.min(o.epochs, state.epoch + 1),
    bestScore: state.bestScore,
    bestStep: state.bestStep,
    stoppedEarly: o.patience !== undefined && state.badEvals >= o.patience,
    lastLoss,
    secondsTraining: (performance.now() - started) / 1000,
  };
}
