// The training loop shared by the default teacher and the students: epochs of seeded batch
// orders, periodic dev evaluation, early stopping, best and last checkpoints, resume, a
// metrics log and a progress line.
import { existsSync, appendFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Trainer, StepResult } from './train-step.js';
import { saveSafetensors, type NamedTensor } from './safetensors.js';
import type { ort } from './session.js';
import { Rng } from './rng.js';
import { Progress } from '../util/progress.js';

export interface DevResult {
  /** Higher is better (accuracy). */
  score: number;
  details?: Record<string, number>;
}

export interface LoopOptions<B> {
  trainer: Trainer;
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
  /** Checkpoint every N steps (default: at each evaluation). */
  checkpointEvery?: number;
  label?: string;
  log?: (line: string) => void;
  /** Stop after this many steps in total (e.g. a time-boxed run). */
  maxSteps?: number;
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
}

/** Writes the current parameters as `path` (safetensors, atomic). */
export function saveParameters(trainer: Trainer, path: string, metadata: Record<string, string> = {}): void {
  const tensors = new Map<string, NamedTensor>();
  for (const spec of trainer.store.specs) tensors.set(spec.name, { dtype: trainer.store.dtype, shape: spec.shape, data: trainer.store.get(spec.name) });
  saveSafetensors(path, tensors, metadata);
}

export async function runTrainingLoop<B>(o: LoopOptions<B>): Promise<LoopResult> {
  mkdirSync(o.outDir, { recursive: true });
  const lastPath = join(o.outDir, 'last.safetensors');
  const bestPath = join(o.outDir, 'best.safetensors');
  const metricsPath = join(o.outDir, 'metrics.jsonl');
  const log = o.log ?? (() => undefined);
  let state: LoopState = { epoch: 0, batchIndex: 0, bestScore: -Infinity, bestStep: -1, badEvals: 0, done: false };
  if (o.resume && existsSync(lastPath)) {
    const meta = o.trainer.load(lastPath);
    state = JSON.parse(meta.loop ?? 'null') as LoopState;
    if (!state) throw new Error(`${lastPath}: no loop state in the checkpoint`);
    log(`resumed from ${lastPath} at step ${o.trainer.stepCount} (epoch ${state.epoch + 1}, batch ${state.batchIndex})`);
  }
  const checkpoint = () => o.trainer.save(lastPath, { loop: JSON.stringify(state) });
  const started = performance.now();
  let lastLoss = NaN;
  let lossSum = 0;
  let lossCount = 0;
  const evaluate = async (epoch: number): Promise<void> => {
    const dev = await o.evaluate();
    const improved = dev.score > state.bestScore;
    if (improved) {
      state.bestScore = dev.score;
      state.bestStep = o.trainer.stepCount;
      state.badEvals = 0;
      saveParameters(o.trainer, bestPath, { step: String(o.trainer.stepCount), score: String(dev.score) });
    } else {
      state.badEvals += 1;
    }
    const row = { step: o.trainer.stepCount, epoch: epoch + 1, trainLoss: lossCount ? lossSum / lossCount : null, dev: dev.score, ...dev.details, best: state.bestScore, seconds: (performance.now() - started) / 1000 };
    appendFileSync(metricsPath, `${JSON.stringify(row)}\n`);
    log(`step ${row.step} epoch ${row.epoch}: train loss ${row.trainLoss?.toFixed(4) ?? '-'}, dev ${dev.score.toFixed(4)}${improved ? ' (best)' : ''}`);
    lossSum = 0;
    lossCount = 0;
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
      const n = Math.min(o.trainer.stepsPerCall, batches.length - state.batchIndex, untilMultiple(o.evalEvery), untilMultiple(o.checkpointEvery), o.maxSteps === undefined ? Infinity : o.maxSteps - steps);
      const first = o.trainer.stepCount;
      const results: StepResult[] = await o.trainer.steps(batches.slice(state.batchIndex, state.batchIndex + n).map((b) => o.feed(b)));
      results.forEach((result, k) => {
        if (!Number.isFinite(result.loss)) throw new Error(`training diverged at step ${first + k + 1}: loss ${result.loss}. Lower the learning rate or enable clipping`);
        lossSum += result.loss;
        lossCount += 1;
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
    if (state.done || stepLimitReached()) break;
    if (!o.evalEvery) await evaluate(state.epoch);
    state.epoch += 1;
    state.batchIndex = 0;
    checkpoint();
  }
  state.done = true;
  checkpoint();
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
