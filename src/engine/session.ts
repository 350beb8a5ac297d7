// ONNX Runtime sessions and execution providers: CPU by default; CUDA and WebGPU when the
// runtime has them; a missing provider is a clear error, or a CPU fallback when allowed.
import { UserError } from '../errors.js';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createRequire } from 'node:module';
import * as ort from 'onnxruntime-node';
import onnxProto from 'onnx-proto';

export type Device = 'cpu' | 'cuda' | 'webgpu';
export const DEVICES: readonly Device[] = ['cpu', 'cuda', 'webgpu'];

export interface SessionOptions {
  device?: Device;
  /** Run on CPU (with a warning) when the device's provider is missing. */
  allowFallback?: boolean;
  /** Intra-op threads (default: ONNX Runtime's choice, one per core). */
  threads?: number;
  /** Called with a warning line (default: stderr). */
  warn?: (message: string) => void;
  /**
   * The folder external data (e.g. `model.onnx_data`) is read from when `model` is bytes;
   * without it ONNX Runtime resolves it against the current directory.
   */
  externalDataDir?: string;
  /**
   * How long (µs) an idle intra-op thread spins before it sleeps (default: ONNX Runtime's, about 45 ms after a run
   * here). Set it short for a session that takes turns with another: the one that just ran spins on a core the other
   * needs.
   */
  spinMicros?: number;
}

export interface SessionHandle {
  session: ort.InferenceSession;
  device: Device;
}

export class DeviceError extends UserError {
  constructor(message: string) {
    super(message);
    this.name = 'DeviceError';
  }
}

const require = createRequire(import.meta.url);

/** Folder of onnxruntime-node's native binding (where provider libraries must live). */
function bindingDir(): string {
  const pkg = dirname(require.resolve('onnxruntime-node/package.json'));
  return join(pkg, 'bin', 'napi-v6', process.platform, process.arch);
}

/** Why `device` cannot run here, or null when it may. CPU always may. */
export function deviceProblem(device: Device): string | null {
  if (device === 'cpu') return null;
  if (device === 'cuda') {
    if (!existsSync(join(bindingDir(), 'libonnxruntime_providers_cuda.so'))) {
      return (
        'the CUDA execution provider is not installed in onnxruntime-node. On a machine with CUDA 12 and cuDNN 9 run ' +
        '`ONNXRUNTIME_NODE_INSTALL=cuda12 node node_modules/onnxruntime-node/script/install.js`'
      );
    }
    return null;
  }
  if (!ort.listSupportedBackends().some((b) => b.name === 'webgpu')) return 'this onnxruntime-node build has no WebGPU provider';
  return null;
}

let warnedFallback = new Set<Device>();

function unavailable(device: Device, reason: string): DeviceError {
  return new DeviceError(`--device ${device}: ${reason}. Use --device cpu, or pass --allow-cpu-fallback to run on CPU with a warning`);
}

/** Throws the error createSession would, before any work, when `device` cannot run here and no fallback is allowed. */
export function assertDeviceUsable(opts: Pick<SessionOptions, 'device' | 'allowFallback'>): void {
  const problem = opts.device && !opts.allowFallback ? deviceProblem(opts.device) : null;
  if (problem) throw unavailable(opts.device!, problem);
}

/**
 * `session.x64quantprecision`: on an x86-64 CPU without VNNI (AVX2, or AVX-512 without VNNI) ONNX Runtime's u8×s8
 * integer products add pairs in 16 bits and saturate where a weight lies outside [-64, 63]; with this entry it turns
 * those MatMuls (MatMulInteger, DynamicQuantizeMatMul, QAttention) into u8×u8 ones, which do not saturate. With VNNI
 * the u8×s8 kernel is exact, and faster than the u8×u8 one the entry forces: the int8 DistilBERT-base teacher ran
 * 1.57× slower with it on a Zen 4 VM (AVX-512 VNNI), with the same logits to the bit. So a session carries it only
 * where a probe finds the products saturating (quantProductsSaturate): an int8 model's results do not depend on the
 * CPU it meets, and a CPU that needs no fix pays none.
 */
const X64_QUANT_PRECISION = { x64quantprecision: '1' } as const;

/**
 * The probe: y = a·b, MatMulInteger, a uint8 [1, 2] fed, b int8 [2, 1] = (127, 127) constant. For a = (255, 255) it
 * is 64,770 where products do not saturate, 32,767 where a pair is added in 16 bits.
 */
function saturationProbe(): Uint8Array {
  const { ModelProto, TensorProto } = onnxProto.onnx;
  const info = (name: string, elemType: number, dims: number[]) => ({
    name,
    type: { tensorType: { elemType, shape: { dim: dims.map((dimValue) => ({ dimValue })) } } },
  });
  const model = ModelProto.create({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 14 }],
    graph: {
      name: 'saturation_probe',
      node: [{ opType: 'MatMulInteger', input: ['a', 'b'], output: ['y'] }],
      initializer: [
        { name: 'b', dataType: TensorProto.DataType.INT8, dims: [2, 1], rawData: new Uint8Array(Int8Array.of(127, 127).buffer) },
      ],
      input: [info('a', TensorProto.DataType.UINT8, [1, 2])],
      output: [info('y', TensorProto.DataType.INT32, [1, 1])],
    },
  });
  return ModelProto.encode(model).finish();
}

let saturating: Promise<boolean> | null = null;

/**
 * Whether this CPU's u8×s8 integer products saturate in ONNX Runtime's kernels (x86-64 without VNNI): the probe run
 * once per process, optimized as kd's sessions are, without the entry. A probe that cannot run counts as saturating:
 * the entry costs speed, never correctness.
 */
export function quantProductsSaturate(): Promise<boolean> {
  saturating ??= (async () => {
    let session: ort.InferenceSession | null = null;
    try {
      session = await ort.InferenceSession.create(saturationProbe(), {
        graphOptimizationLevel: 'all',
        executionProviders: ['cpu'],
        logSeverityLevel: 3,
        intraOpNumThreads: 1,
      });
      const { y } = await session.run({ a: new ort.Tensor('uint8', Uint8Array.of(255, 255), [1, 2]) });
      return (y!.data as Int32Array)[0] !== 2 * 255 * 127;
    } catch {
      return true;
    } finally {
      await session?.release();
    }
  })();
  return saturating;
}

/** The config entries that keep this CPU's integer products exact: the entry where they saturate, none elsewhere. */
async function quantPrecisionConfig(): Promise<Record<string, string>> {
  return (await quantProductsSaturate()) ? { ...X64_QUANT_PRECISION } : {};
}

/**
 * The same entries as transformers.js's `session_options` take them (`pipeline(task, model, { session_options })`):
 * what kd's own sessions carry on this CPU.
 */
export async function quantPrecisionOptions(): Promise<{ extra: { session: Record<string, string> } }> {
  return { extra: { session: await quantPrecisionConfig() } };
}

/** Creates a session on `device`, failing clearly (or falling back to CPU when allowed). */
export async function createSession(model: Uint8Array | string, opts: SessionOptions = {}): Promise<SessionHandle> {
  const device = opts.device ?? 'cpu';
  if (!DEVICES.includes(device)) throw new RangeError(`Unknown device '${String(device)}'. Known: ${DEVICES.join(', ')}`);
  const base: ort.InferenceSession.SessionOptions = {
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    logSeverityLevel: 3,
    ...(opts.threads ? { intraOpNumThreads: opts.threads, interOpNumThreads: 1 } : {}),
  };
  const config = {
    ...(await quantPrecisionConfig()),
    ...(opts.externalDataDir !== undefined ? externalDataConfig(opts.externalDataDir) : {}),
    ...(opts.spinMicros !== undefined ? spinOptions(opts.spinMicros) : {}),
  };
  base.extra = { session: config };
  const fallback = async (reason: string): Promise<SessionHandle> => {
    if (!opts.allowFallback) throw unavailable(device, reason);
    if (!warnedFallback.has(device)) {
      warnedFallback.add(device);
      (opts.warn ?? ((m: string) => process.stderr.write(`${m}\n`)))(
        `warning: --device ${device} is not available (${reason}); running on CPU`,
      );
    }
    return { session: await create(model, { ...base, executionProviders: ['cpu'] }), device: 'cpu' };
  };
  const problem = deviceProblem(device);
  if (problem) return fallback(problem);
  try {
    return { session: await create(model, { ...base, executionProviders: device === 'cpu' ? ['cpu'] : [device, 'cpu'] }), device };
  } catch (e) {
    if (device === 'cpu') throw e;
    return fallback(providerFailure(device, (e as Error).message));
  }
}

/**
 * The reason a provider failed to start, for one line: ONNX Runtime's message is a C++ assertion (source path,
 * function, condition), of which the user needs the last sentence. WebGPU without an adapter also says what to
 * install: onnxruntime-node's WebGPU provider (Dawn) runs on Vulkan on Linux.
 *
 * @example
 * ```ts
 * providerFailure('webgpu', '/ort/webgpu_context.cc:136 …::<lambda()> adapter_result.status == …Success was false. ' +
 *   'Failed to get a WebGPU adapter: No supported adapters.');
 * // 'no WebGPU adapter ("No supported adapters"); on Linux ONNX Runtime reaches the GPU through Vulkan: install the
 * // GPU's Vulkan driver, or Mesa's lavapipe (a CPU one) to try the path'
 * ```
 */
export function providerFailure(device: Device, message: string): string {
  const line = message.split('\n')[0]!.trim();
  const adapter = /Failed to get a WebGPU adapter:\s*([^.]*)/.exec(line);
  if (device === 'webgpu' && adapter) {
    const graphics = process.platform === 'win32' ? 'D3D12' : process.platform === 'darwin' ? 'Metal' : 'Vulkan';
    return (
      `no WebGPU adapter ("${adapter[1]!.trim() || 'none found'}"); on ${process.platform === 'linux' ? 'Linux' : process.platform} ` +
      `ONNX Runtime reaches the GPU through ${graphics}: install the GPU's ${graphics} driver` +
      (graphics === 'Vulkan' ? ", or Mesa's lavapipe (a CPU one) to try the path" : '')
    );
  }
  // "…/file.cc:123 function … condition was false. What went wrong." → "What went wrong."
  const after = /\bwas false\.\s*(.+)$/.exec(line);
  return (after ? after[1]! : line).replace(/\.$/, '');
}

/**
 * Session options that make ONNX Runtime read external data from `dir` (it also refuses, there,
 * a location that leaves `dir`). onnxruntime-node 1.30 passes `extra.session` entries to the
 * session config although its typings say only the WebAssembly backend does; the teacher tests
 * load a model whose weights are all in `model.onnx_data` from bytes to prove it.
 */
export function externalDataOptions(dir: string): Pick<ort.InferenceSession.SessionOptions, 'extra'> {
  return { extra: { session: externalDataConfig(dir) } };
}

/** The session config entry `session.model_external_initializers_file_folder_path`. */
function externalDataConfig(dir: string): { model_external_initializers_file_folder_path: string } {
  return { model_external_initializers_file_folder_path: dir };
}

/** Session config entries `session.{intra,inter}_op.spin_duration_us` (ONNX Runtime 1.26 and later). */
function spinOptions(micros: number): Record<string, { spin_duration_us: string }> {
  if (!Number.isInteger(micros) || micros < 0) throw new RangeError(`spinMicros must be a whole number ≥ 0, got ${micros}`);
  return { intra_op: { spin_duration_us: String(micros) }, inter_op: { spin_duration_us: String(micros) } };
}

function create(model: Uint8Array | string, options: ort.InferenceSession.SessionOptions): Promise<ort.InferenceSession> {
  return typeof model === 'string' ? ort.InferenceSession.create(model, options) : ort.InferenceSession.create(model, options);
}

/** For tests: forget which fallbacks were already warned about. */
export function resetFallbackWarnings(): void {
  warnedFallback = new Set();
}

export { ort };
