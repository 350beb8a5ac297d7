// The main thread's side of the host trainer's worker (bag-worker.ts): starts it on the SIMD rows' shared memory, posts
// a step's phases and waits for them: a spin first (a phase takes tens of microseconds, a sleep and wake-up about as
// much), then through the event loop, so that a worker that throws or dies is an error of the step, never a hang.
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
import { CTRL, PHASE, type BagWorkerData } from './bag-kernels.js';
import type { SimdRowsHandle } from './simd-rows.js';

/** How long the main thread spins for a phase before it waits through the event loop, in milliseconds. */
const MAIN_SPIN_MS = 5;
/** How long the worker spins for its next phase before it sleeps, in microseconds: the gap between two steps' phases. */
export const WORKER_SPIN_US = 300;
/** A synchronous wait gives up after this long: a phase takes milliseconds at most, a worker that died never ends it. */
const SYNC_WAIT_LIMIT_MS = 60_000;

export class BagWorker {
  readonly ctrl: Int32Array;
  readonly scalars: Float64Array;
  private seq = 0;
  /** Why the worker cannot go on (it threw, or exited): every later wait throws it. */
  private failure: Error | null = null;
  private disposed = false;

  private constructor(
    private readonly worker: Worker,
    private readonly port: MessagePort,
    control: SharedArrayBuffer,
  ) {
    this.ctrl = new Int32Array(control, 0, CTRL.INTS);
    this.scalars = new Float64Array(control, CTRL.FLOAT_AT, CTRL.FLOATS);
    worker.on('error', (e: Error) => (this.failure ??= new Error(`the host trainer's worker thread failed: ${e.message}`)));
    worker.on('exit', (code) => (this.failure ??= new Error(`the host trainer's worker thread exited (code ${code})`)));
  }

  /**
   * Starts the worker on `handle`'s shared memory for a model of `layers` ([in, out] each).
   * @throws {Error} The worker could not start (its script, dist/src/engine/bag-worker.js, missing or failing).
   */
  static async start(handle: SimdRowsHandle, layers: [number, number][]): Promise<BagWorker> {
    const control = new SharedArrayBuffer(CTRL.FLOAT_AT + 8 * CTRL.FLOATS);
    const ctrl = new Int32Array(control, 0, CTRL.INTS);
    ctrl[CTRL.SPIN_US] = WORKER_SPIN_US;
    const { port1, port2 } = new MessageChannel();
    const workerData: BagWorkerData = { handle, control, layers, port: port2 };
    const worker = new Worker(new URL('./bag-worker.js', import.meta.url), { workerData, transferList: [port2] });
    try {
      await new Promise<void>((resolve, reject) => {
        port1.once('message', () => resolve());
        worker.once('error', reject);
        worker.once('exit', (code) => reject(new Error(`exited with code ${code} before it started`)));
      });
    } catch (e) {
      port1.close();
      await worker.terminate();
      throw new Error(`the host trainer's worker thread could not start: ${(e as Error).message}`);
    }
    worker.removeAllListeners();
    port1.removeAllListeners();
    // Neither keeps the process alive: a trainer never disposed must not hold a finished program open.
    worker.unref();
    port1.unref();
    return new BagWorker(worker, port1, control);
  }

  /** Starts `phase` (PHASE bits) on the worker, with the fields already written to `ctrl` and `scalars`. */
  post(phase: number): void {
    if (this.failure) throw this.failure;
    if (!this.done()) throw new Error('the host trainer posted a phase to its worker thread before the last one ended');
    this.ctrl[CTRL.PHASE] = phase;
    Atomics.store(this.ctrl, CTRL.SEQ, ++this.seq);
    Atomics.notify(this.ctrl, CTRL.SEQ);
  }

  private done(): boolean {
    return Atomics.load(this.ctrl, CTRL.DONE) === this.seq;
  }

  /** Waits for the last posted phase: returns at once when it ends within the spin, else a promise of its end. */
  wait(): Promise<void> | void {
    if (this.disposed) return;
    if (!this.done()) {
      const until = performance.now() + MAIN_SPIN_MS;
      for (let i = 0; !this.done(); i++) if ((i & 255) === 255 && performance.now() > until) return this.waitLoop();
    }
    this.check();
  }

  /**
   * Waits for the last posted phase without the event loop (for reads of the parameters outside a step): a spin, then
   * sleeps of a millisecond; a worker that ended without saying so fails it after SYNC_WAIT_LIMIT_MS.
   */
  waitSync(): void {
    if (this.disposed) return;
    if (!this.done() && this.failure) throw this.failure;
    const start = performance.now();
    for (let i = 0; !this.done(); i++) {
      if ((i & 255) !== 255) continue;
      const waited = performance.now() - start;
      if (waited > SYNC_WAIT_LIMIT_MS)
        throw (this.failure = new Error(`the host trainer's worker thread did not end its phase within ${waited.toFixed(0)} ms`));
      if (waited > MAIN_SPIN_MS) Atomics.wait(this.ctrl, CTRL.DONE, this.seq - 1, 1);
    }
    this.check();
  }

  private async waitLoop(): Promise<void> {
    // Each turn of the event loop lets the worker's 'error' and 'exit' events in.
    while (!this.done()) {
      if (this.failure) throw this.failure;
      await new Promise((resolve) => setImmediate(resolve));
    }
    this.check();
  }

  private check(): void {
    if (Atomics.load(this.ctrl, CTRL.FAILED) === 0) return;
    if (!this.failure) {
      const m = receiveMessageOnPort(this.port)?.message as { error?: string } | undefined;
      this.failure = new Error(`the host trainer's worker thread failed: ${m?.error ?? 'no message'}`);
    }
    throw this.failure;
  }

  /** Stops the worker, once its last phase has ended (the caller waited for it); later waits return at once. */
  async dispose(): Promise<void> {
    if (!this.failure && this.done()) this.post(PHASE.QUIT);
    this.failure ??= new Error('the host trainer was disposed');
    this.disposed = true;
    this.port.close();
    await this.worker.terminate();
  }
}
