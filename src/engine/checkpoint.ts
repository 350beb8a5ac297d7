// Trainer checkpoints: parameters, optimizer state (dense per parameter, sparse per table),
// step and RNG in one checksummed safetensors file, written atomically; a resume restores them
// bit-identically and refuses another model or optimizer.
import { dirname } from 'node:path';
import { OptionError } from '../errors.js';
import type { Buffered, DenseSlot } from './buffers.js';
import type { FloatDType } from './dtype.js';
import type { OptimizerConfig, ScheduleConfig } from './optim.js';
import type { FloatArray, ParameterStore } from './params.js';
import type { Rng } from './rng.js';
import { DamagedFileError, loadSafetensors, saveSafetensors, type NamedTensor } from './safetensors.js';
import type { SparseRuntime } from './sparse-rows.js';
import { flatState } from './train-graph.js';

/** What a checkpoint holds, as the trainer keeps it. */
export interface CheckpointParts {
  dtype: FloatDType;
  store: ParameterStore;
  optimizer: OptimizerConfig;
  schedule: ScheduleConfig | undefined;
  slots: readonly string[];
  /** Flat optimizer state per slot, under flatState(slot). */
  states: ReadonlyMap<string, Buffered>;
  denseSlots: readonly DenseSlot[];
  sparse: readonly SparseRuntime[];
  rng: Rng;
  stepCount: number;
}

const stateInput = (slot: string, name: string) => `opt/${slot}/${name}`;

/** Calls `visit` with each optimizer-state tensor's key, shape and host values. */
function eachState(c: CheckpointParts, visit: (key: string, shape: readonly number[], data: FloatArray) => void): void {
  for (const slot of c.slots) {
    const state = c.states.get(flatState(slot));
    if (state)
      for (const d of c.denseSlots) visit(stateInput(slot, d.spec.name), d.spec.shape, state.cur.subarray(d.offset, d.offset + d.length));
  }
  for (const s of c.sparse) for (const [slot, table] of s.states) visit(stateInput(slot, s.info.spec.name), s.info.spec.shape, table);
}

/** Saves parameters, optimizer state, step and RNG atomically to one safetensors file. */
export function saveCheckpoint(path: string, c: CheckpointParts, metadata: Record<string, string> = {}): void {
  const dtype = c.dtype;
  const tensors = new Map<string, NamedTensor>();
  for (const spec of c.store.specs) tensors.set(`param/${spec.name}`, { dtype, shape: spec.shape, data: c.store.get(spec.name) });
  eachState(c, (key, shape, data) => tensors.set(key, { dtype, shape, data }));
  tensors.set('trainer/rng', { dtype: 'int32', shape: [4], data: new Int32Array(c.rng.state.buffer.slice(0)) });
  saveSafetensors(
    path,
    tensors,
    {
      ...metadata,
      format: 'kd-checkpoint',
      version: '1',
      step: String(c.stepCount),
      dtype,
      optimizer: JSON.stringify(c.optimizer),
      schedule: JSON.stringify(c.schedule ?? null),
    },
    { checksum: true },
  );
}

/**
 * Restores a checkpoint written by `saveCheckpoint` into `c`'s buffers and RNG (same model and
 * optimizer); returns its metadata and step. A damaged file (its checksum fails) is a
 * DamagedFileError; another model or optimizer is an OptionError.
 */
export function loadCheckpoint(path: string, c: CheckpointParts): { metadata: Record<string, string>; step: number } {
  const remedy = `Delete the run folder (or ${dirname(path)}) and start the run anew without --resume`;
  const { tensors, metadata } = loadSafetensors(path, { requireChecksum: true, remedy });
  if (metadata.format !== 'kd-checkpoint')
    throw new DamagedFileError(path, `not a kd checkpoint (format ${metadata.format ?? 'missing'})`, remedy);
  const changed = (what: string) =>
    new OptionError(`${path}: ${what}. Resume with the options the run was started with, or start a new run in another folder`);
  if (metadata.optimizer !== JSON.stringify(c.optimizer))
    throw changed(`saved with optimizer ${metadata.optimizer}, this run asks for ${JSON.stringify(c.optimizer)}`);
  if (metadata.schedule !== JSON.stringify(c.schedule ?? null))
    throw changed(`saved with learning-rate schedule ${metadata.schedule}, this run asks for ${JSON.stringify(c.schedule ?? null)}`);
  const take = (key: string, into: FloatArray) => {
    const t = tensors.get(key);
    if (!t) throw changed(`the checkpoint has no tensor '${key}': it was saved from another model`);
    if (t.data.length !== into.length || t.dtype !== c.dtype)
      throw changed(`tensor '${key}' has ${t.data.length} ${t.dtype} values, this model has ${into.length} ${c.dtype}`);
    into.set(t.data as FloatArray);
  };
  for (const spec of c.store.specs) take(`param/${spec.name}`, c.store.get(spec.name));
  eachState(c, (key, _shape, data) => take(key, data));
  const rng = tensors.get('trainer/rng');
  if (!rng) throw new DamagedFileError(path, "no tensor 'trainer/rng' (the RNG state)", remedy);
  c.rng.state.set(new Uint32Array((rng.data as Int32Array).buffer.slice(0)));
  return { metadata, step: Number(metadata.step) };
}
