// Optimizing a teacher graph for what kd reads from it (logits and embedding), with a check: the
// optimized graph must reproduce the original's outputs on probe batches, or it is not used.
import onnxProto from 'onnx-proto';
import { dirname } from 'node:path';
import { createSession, externalDataOptions, ort, type Device, type SessionOptions } from '../engine/session.js';
import { decodeModelBytes, encodeModel, QUANTIZED_OPS, type ModelProto } from './onnx-model.js';
import { rewriteForFusion } from './fusable.js';
import { foldSingleQueryAttention, fuseAttention } from './attention-fusion.js';
import { dropMaskExpands, PROBE_SHAPES, pruneToSelectedRows, type ProbeDims } from './row-prune.js';

const { onnx } = onnxProto;

export interface OptimizeOptions {
  /** Where its ONNX Runtime sessions run (device, threads, CPU fallback). */
  session?: SessionOptions;
  /** Token ids of the probe batches stay below this. */
  vocabSize: number;
  /** Outputs compared between the original and the optimized graph. */
  outputs: readonly string[];
}

export interface OptimizeResult {
  model: ModelProto;
  /** What was done, or why nothing was (for logs). */
  note: string;
  applied: boolean;
}

type Feeds = Record<string, ort.Tensor>;

/** Probe feeds for [batch, seq] integer inputs, or null when the graph has other inputs. */
function probeFeeds(session: ort.InferenceSession, batch: number, seq: number, vocabSize: number): Feeds | null {
  const feeds: Feeds = {};
  const n = batch * seq;
  for (const name of session.inputNames) {
    const values = new BigInt64Array(n);
    if (name === 'input_ids') for (let i = 0; i < n; i++) values[i] = BigInt(1 + ((i * 7) % Math.max(1, Math.min(vocabSize - 1, 97))));
    else if (name === 'attention_mask')
      for (let i = 0; i < n; i++) values[i] = i >= n - 2 ? 0n : 1n; // the last row is padded
    else if (name === 'position_ids') for (let i = 0; i < n; i++) values[i] = BigInt(i % seq);
    else if (name !== 'token_type_ids') return null;
    const meta = session.inputMetadata.find((m) => m.name === name);
    const type = meta && 'type' in meta ? meta.type : 'int64';
    if (type === 'int64') feeds[name] = new ort.Tensor('int64', values, [batch, seq]);
    else if (type === 'int32') feeds[name] = new ort.Tensor('int32', Int32Array.from(values, Number), [batch, seq]);
    else return null;
  }
  return feeds;
}

function maxRelativeError(a: ort.Tensor, b: ort.Tensor): number {
  if (a.dims.join() !== b.dims.join()) return Infinity;
  const x = a.data as Float32Array;
  const y = b.data as Float32Array;
  let worst = 0;
  for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(x[i]! - y[i]!) / Math.max(1, Math.abs(y[i]!)));
  return worst;
}

/**
 * Returns `model` rewritten for what kd reads from it — masks that Where broadcasts not expanded first and then
 * position 0 only (row-prune.ts), the last attention folded to its single query and the others fused
 * (attention-fusion.ts), GELU and layer norms in fusable form (fusable.ts) — or the model unchanged with the reason.
 * Never returns a graph whose outputs differ from the original's (a quantized one's as ONNX Runtime runs it optimized)
 * by more than 1e-4 (relative) on the probe batches; 1e-2 when the check runs on a GPU against the CPU reference, since
 * GPU matrix products (TF32 on CUDA) differ from the CPU's by more than 1e-4 with or without a rewrite. A wrong rewrite
 * is off by far more than either.
 */
export async function optimizeTeacherGraph(model: ModelProto, modelPath: string, opts: OptimizeOptions): Promise<OptimizeResult> {
  const unchanged = (note: string): OptimizeResult => ({ model, note, applied: false });
  const bytes = encodeModel(model);
  const probe = decodeModelBytes(bytes);
  const g = probe.graph!;
  const existing = new Set((g.output ?? []).map((o) => o.name!));
  const initializers = new Set((g.initializer ?? []).map((t) => t.name!));
  for (const n of g.node ?? []) {
    if (n.opType === 'Constant') continue;
    for (const o of n.output ?? [])
      if (o && !existing.has(o) && !initializers.has(o)) g.output!.push(onnx.ValueInfoProto.create({ name: o }));
  }
  const dims: ProbeDims = new Map();
  const reference: Record<string, ort.Tensor>[] = [];
  const feedsList: Feeds[] = [];
  let session: ort.InferenceSession;
  try {
    // Unoptimized: ONNX Runtime 1.30 can crash exposing a tensor that an optimization rewrote.
    session = await ort.InferenceSession.create(encodeModel(probe), {
      graphOptimizationLevel: 'disabled',
      logSeverityLevel: 3,
      ...(opts.session?.threads ? { intraOpNumThreads: opts.session.threads } : {}),
      ...externalDataOptions(dirname(modelPath)),
    });
  } catch (e) {
    return unchanged(`graph not optimized: probing it failed (${(e as Error).message.split('\n')[0]})`);
  }
  try {
    for (const [batch, seq] of PROBE_SHAPES) {
      const feeds = probeFeeds(session, batch, seq, opts.vocabSize);
      if (!feeds)
        return unchanged(`graph not optimized: inputs ${session.inputNames.join(', ')} are not all [batch, sequence] token inputs`);
      const out = await session.run(feeds);
      for (const [name, t] of Object.entries(out)) (dims.get(name) ?? dims.set(name, []).get(name)!).push([...t.dims]);
      for (const [name, t] of Object.entries(feeds)) (dims.get(name) ?? dims.set(name, []).get(name)!).push([...t.dims]);
      reference.push(Object.fromEntries(opts.outputs.map((o) => [o, out[o]!])));
      feedsList.push(feeds);
    }
  } catch (e) {
    return unchanged(`graph not optimized: probing it failed (${(e as Error).message.split('\n')[0]})`);
  } finally {
    await session.release();
  }
  // A quantized graph's reference is the original as kd runs it (createSession, optimized, on CPU), not the unoptimized
  // probe: unoptimized, ONNX Runtime computes the integer products with kernels its optimizer replaces (u8×s8 products
  // that saturate on an x86-64 CPU without VNNI, since the entry createSession adds acts in the optimizer only; QDQ pairs
  // in float), and every rewrite of such a graph failed the check by up to 1e-1 for reasons that were not the rewrite's
  // (measured on such a CPU: no quantized teacher was optimized).
  if ((model.graph!.node ?? []).some((n) => QUANTIZED_OPS.has(n.opType ?? ''))) {
    const threads = opts.session?.threads;
    const ran = await probeOutputs(bytes, modelPath, feedsList, opts.outputs, threads ? { threads } : {}, 'the quantized graph');
    if (typeof ran === 'string') return unchanged(`graph not optimized: ${ran}`);
    reference.splice(0, reference.length, ...ran.outputs);
  }

  const build = (attention: boolean) => {
    const rewritten = decodeModelBytes(bytes);
    const rewrittenDims = new Map(dims);
    const expands = dropMaskExpands(rewritten, rewrittenDims);
    const pruned = pruneToSelectedRows(rewritten, modelPath, rewrittenDims);
    const folded = pruned ? foldSingleQueryAttention(rewritten, modelPath) : 0;
    const fused = rewriteForFusion(rewritten, modelPath);
    const attentions = attention ? fuseAttention(rewritten, modelPath) : 0;
    const done = [
      expands ? `${expands} mask Expands left to Where's broadcasting` : null,
      pruned ? `${pruned.prunedNodes} nodes compute position 0 only, ${pruned.removedNodes} removed` : null,
      folded ? `${folded} single-query attention blocks without key/value projections` : null,
      fused ? `${fused} patterns put in fusable form` : null,
      attentions ? `${attentions} attention blocks fused` : null,
    ].filter(Boolean);
    return { model: rewritten, done, attentions };
  };
  let candidate = build(true);
  if (candidate.done.length === 0) return unchanged('graph not optimized: nothing found to rewrite');
  let failure = await sameOutputs(candidate.model, modelPath, feedsList, reference, opts);
  // A device without ONNX Runtime's fused attention kernel still gets the other rewrites.
  if (failure && candidate.attentions > 0) {
    candidate = build(false);
    failure = candidate.done.length ? await sameOutputs(candidate.model, modelPath, feedsList, reference, opts) : failure;
  }
  if (failure || candidate.done.length === 0) return unchanged(`graph not optimized: ${failure}`);
  return { model: candidate.model, note: `graph optimized: ${candidate.done.join('; ')}`, applied: true };
}

/**
 * `outputs` of `bytes` on each probe batch, in a session with `session` options (external data read beside `modelPath`),
 * and the device it ran on; or what failed, naming the graph as `what`.
 */
async function probeOutputs(
  bytes: Uint8Array,
  modelPath: string,
  feedsList: Feeds[],
  outputs: readonly string[],
  session: SessionOptions,
  what: string,
): Promise<{ outputs: Record<string, ort.Tensor>[]; device: Device } | string> {
  let handle: Awaited<ReturnType<typeof createSession>>;
  try {
    handle = await createSession(bytes, { ...session, externalDataDir: dirname(modelPath) });
  } catch (e) {
    return `${what} did not load (${(e as Error).message.split('\n')[0]})`;
  }
  try {
    const out: Record<string, ort.Tensor>[] = [];
    for (const feeds of feedsList) out.push(await handle.session.run(feeds, [...outputs]));
    return { outputs: out, device: handle.device };
  } catch (e) {
    return `${what} failed on a probe batch (${(e as Error).message.split('\n')[0]})`;
  } finally {
    await handle.session.release();
  }
}

/** '' when `model` reproduces the reference outputs on the probe feeds, else what differed. */
async function sameOutputs(
  model: ModelProto,
  modelPath: string,
  feedsList: Feeds[],
  reference: Record<string, ort.Tensor>[],
  opts: OptimizeOptions,
): Promise<string> {
  const ran = await probeOutputs(encodeModel(model), modelPath, feedsList, opts.outputs, opts.session ?? {}, 'the rewritten graph');
  if (typeof ran === 'string') return ran;
  const tolerance = ran.device === 'cpu' ? 1e-4 : 1e-2;
  for (let p = 0; p < feedsList.length; p++)
    for (const o of opts.outputs) {
      const err = maxRelativeError(ran.outputs[p]![o]!, reference[p]![o]!);
      if (!(err <= tolerance))
        return `the rewritten graph's '${o}' differs from the original's by ${err.toExponential(2)} on a probe batch`;
    }
  return '';
}
