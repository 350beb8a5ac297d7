// The tfjs peer of the engine benchmark (child process): the same MLP and transformer student,
// trained with tf.train.adam on the fastest backend that installs here (wasm, SIMD).
import * as tf from '@tensorflow/tfjs';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { readFileSync } from 'node:fs';
import { MLP, TRANSFORMER } from './engine-models.js';

const require = createRequire(import.meta.url);

async function useFastestBackend(): Promise<string> {
  try {
    setWasmPaths(`${dirname(require.resolve('@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm'))}/`);
    if (await tf.setBackend('wasm')) return 'wasm';
  } catch {
    /* fall through */
  }
  await tf.setBackend('cpu');
  return 'cpu';
}

function timeSteps(step: () => tf.Scalar, warmup: number, steps: number): Promise<number> {
  return (async () => {
    for (let i = 0; i < warmup; i++) await step().data();
    const t0 = performance.now();
    for (let i = 0; i < steps; i++) {
      const loss = step();
      await loss.data();
      loss.dispose();
    }
    return (performance.now() - t0) / 1000 / steps;
  })();
}

function mlp(steps: number): Promise<number> {
  const w1 = tf.variable(tf.randomNormal([MLP.input, MLP.hidden], 0, 0.02));
  const b1 = tf.variable(tf.zeros([MLP.hidden]));
  const w2 = tf.variable(tf.randomNormal([MLP.hidden, MLP.classes], 0, 0.02));
  const b2 = tf.variable(tf.zeros([MLP.classes]));
  const x = tf.randomNormal([MLP.batch, MLP.input]);
  const y = tf.oneHot(tf.randomUniform([MLP.batch], 0, MLP.classes, 'int32'), MLP.classes);
  const opt = tf.train.adam(1e-3);
  return timeSteps(
    () =>
      opt.minimize(
        () => tf.losses.softmaxCrossEntropy(y, tf.add(tf.matMul(tf.relu(tf.add(tf.matMul(x, w1), b1)), w2), b2)) as tf.Scalar,
        true,
      )!,
    5,
    steps,
  );
}

function layerNorm(x: tf.Tensor, g: tf.Variable, b: tf.Variable): tf.Tensor {
  const { mean, variance } = tf.moments(x, -1, true);
  return tf.add(tf.mul(tf.div(tf.sub(x, mean), tf.sqrt(tf.add(variance, 1e-12))), g), b);
}

export interface TfTransformerConfig {
  vocab: number;
  hidden: number;
  layers: number;
  heads: number;
  intermediate: number;
  seq: number;
  batch: number;
  classes: number;
  dropout: number;
}

function transformer(steps: number, t: TfTransformerConfig = TRANSFORMER, kdTau = 0): Promise<number> {
  const v = (shape: number[]) => tf.variable(tf.randomNormal(shape, 0, 0.02));
  const z = (n: number) => tf.variable(tf.zeros([n]));
  const o = (n: number) => tf.variable(tf.ones([n]));
  const emb = v([t.vocab, t.hidden]);
  const pos = v([t.seq, t.hidden]);
  const embG = o(t.hidden);
  const embB = z(t.hidden);
  const layers = Array.from({ length: t.layers }, () => ({
    wq: v([t.hidden, t.hidden]),
    bq: z(t.hidden),
    wk: v([t.hidden, t.hidden]),
    bk: z(t.hidden),
    wv: v([t.hidden, t.hidden]),
    bv: z(t.hidden),
    wo: v([t.hidden, t.hidden]),
    bo: z(t.hidden),
    g1: o(t.hidden),
    b1: z(t.hidden),
    wi: v([t.hidden, t.intermediate]),
    bi: z(t.intermediate),
    wf: v([t.intermediate, t.hidden]),
    bf: z(t.hidden),
    g2: o(t.hidden),
    b2: z(t.hidden),
  }));
  const wp = v([t.hidden, t.hidden]);
  const bp = z(t.hidden);
  const wc = v([t.hidden, t.classes]);
  const bc = z(t.classes);
  const ids = tf.randomUniform([t.batch, t.seq], 0, t.vocab, 'int32');
  const mask = tf.ones([t.batch, t.seq]);
  const y = tf.oneHot(tf.randomUniform([t.batch], 0, t.classes, 'int32'), t.classes);
  const hd = t.hidden / t.heads;
  const opt = tf.train.adam(1e-3);
  const dense = (x: tf.Tensor, w: tf.Tensor, b: tf.Tensor) =>
    tf.add(tf.matMul(x.reshape([-1, w.shape[0]!]), w).reshape([t.batch, t.seq, w.shape[1]!]), b);
  const heads = (x: tf.Tensor) => x.reshape([t.batch, t.seq, t.heads, hd]).transpose([0, 2, 1, 3]);
  // The wasm backend lacks UnsortedSegmentSum (the gradient tfjs gives tf.gather), so the
  // lookup's gradient is written with ScatterNd, which it has (duplicates are summed).
  const lookup = tf.customGrad((...args: unknown[]) => {
    const [table, index, save] = args as [tf.Tensor, tf.Tensor, (ts: tf.Tensor[]) => void];
    save([index]);
    return {
      value: tf.gather(table, index),
      gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => [
        tf.scatterND(saved[0]!.reshape([-1, 1]), (dy as tf.Tensor).reshape([-1, t.hidden]), table.shape),
        tf.zerosLike(saved[0]!),
      ],
    };
  });
  const forward = () => {
    let h = tf.add(lookup(emb, ids) as tf.Tensor, pos);
    h = tf.dropout(layerNorm(h, embG, embB), t.dropout);
    const bias = tf.mul(tf.sub(1, mask), -10000).reshape([t.batch, 1, 1, t.seq]);
    for (const L of layers) {
      const q = heads(dense(h, L.wq, L.bq));
      const k = heads(dense(h, L.wk, L.bk));
      const vv = heads(dense(h, L.wv, L.bv));
      const probs = tf.dropout(tf.softmax(tf.add(tf.mul(tf.matMul(q, k, false, true), 1 / Math.sqrt(hd)), bias)), t.dropout);
      const ctx = tf.matMul(probs, vv).transpose([0, 2, 1, 3]).reshape([t.batch, t.seq, t.hidden]);
      h = layerNorm(tf.add(h, tf.dropout(dense(ctx, L.wo, L.bo), t.dropout)), L.g1, L.b1);
      const inter = dense(h, L.wi, L.bi);
      const gelu = tf.mul(tf.mul(inter, 0.5), tf.add(tf.erf(tf.mul(inter, Math.SQRT1_2)), 1));
      h = layerNorm(tf.add(h, tf.dropout(dense(gelu, L.wf, L.bf), t.dropout)), L.g2, L.b2);
    }
    const cls = h.slice([0, 0, 0], [t.batch, 1, t.hidden]).reshape([t.batch, t.hidden]);
    const pooled = tf.dropout(tf.tanh(tf.add(tf.matMul(cls, wp), bp)), t.dropout);
    const logits = tf.add(tf.matMul(pooled, wc), bc);
    return (kdTau > 0 ? kdLoss(logits, y, teacher, kdTau) : tf.losses.softmaxCrossEntropy(y, logits)) as tf.Scalar;
  };
  const teacher = tf.randomNormal([t.batch, t.classes]);
  return timeSteps(() => opt.minimize(forward, true)!, 2, steps);
}

/** (1 − λ)·CE + λ·τ²·KL(softmax(zt/τ) ‖ softmax(zs/τ)) with λ = 0.5, as kd's `kd` loss. */
function kdLoss(logits: tf.Tensor, y: tf.Tensor, teacher: tf.Tensor, tau: number): tf.Tensor {
  const ce = tf.losses.softmaxCrossEntropy(y, logits);
  const logPt = tf.logSoftmax(tf.div(teacher, tau));
  const logPs = tf.logSoftmax(tf.div(logits, tau));
  const kl = tf.mean(tf.sum(tf.mul(tf.exp(logPt), tf.sub(logPt, logPs)), -1));
  return tf.add(tf.mul(ce, 0.5), tf.mul(kl, 0.5 * tau * tau));
}

/** The hashed n-gram student with KD on real feature batches (ids, mask, labels, teacher logits). */
function ngramKd(steps: number, batchesFile: string): Promise<number> {
  const spec = JSON.parse(readFileSync(batchesFile, 'utf8')) as {
    buckets: number;
    dim: number;
    classes: number;
    tau: number;
    batches: { ids: number[]; mask: number[]; width: number; labels: number[]; teacher: number[] }[];
  };
  const table = tf.variable(tf.randomUniform([spec.buckets, spec.dim], -1 / spec.dim, 1 / spec.dim));
  const w = tf.variable(tf.randomNormal([spec.dim, spec.classes], 0, 0.02));
  const b = tf.variable(tf.zeros([spec.classes]));
  const lookup = tf.customGrad((...args: unknown[]) => {
    const [tbl, index, save] = args as [tf.Tensor, tf.Tensor, (ts: tf.Tensor[]) => void];
    save([index]);
    return {
      value: tf.gather(tbl, index),
      gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => [
        tf.scatterND(saved[0]!.reshape([-1, 1]), (dy as tf.Tensor).reshape([-1, spec.dim]), tbl.shape),
        tf.zerosLike(saved[0]!),
      ],
    };
  });
  const batches = spec.batches.map((x) => ({
    ids: tf.tensor2d(x.ids, [x.labels.length, x.width], 'int32'),
    mask: tf.tensor3d(x.mask, [x.labels.length, x.width, 1]),
    y: tf.oneHot(tf.tensor1d(x.labels, 'int32'), spec.classes),
    teacher: tf.tensor2d(x.teacher, [x.labels.length, spec.classes]),
  }));
  const opt = tf.train.adam(5e-3);
  let k = 0;
  return timeSteps(
    () => {
      const x = batches[k++ % batches.length]!;
      return opt.minimize(() => {
        const e = lookup(table, x.ids) as tf.Tensor;
        const pooled = tf.div(tf.sum(tf.mul(e, x.mask), 1), tf.maximum(tf.sum(x.mask, 1), 1));
        return kdLoss(tf.add(tf.matMul(pooled, w), b), x.y, x.teacher, spec.tau) as tf.Scalar;
      }, true)!;
    },
    3,
    steps,
  );
}

const [which, stepsArg, extra] = process.argv.slice(2);
const backend = await useFastestBackend();
const steps = Number(stepsArg);
const secondsPerStep =
  which === 'mlp'
    ? await mlp(steps)
    : which === 'ngram-kd'
      ? await ngramKd(steps, extra!)
      : which === 'transformer-kd'
        ? await transformer(steps, JSON.parse(extra!) as TfTransformerConfig, 2)
        : await transformer(steps);
process.stdout.write(`${JSON.stringify({ backend, secondsPerStep, peakRssMb: process.resourceUsage().maxRSS / 1024 })}\n`);
