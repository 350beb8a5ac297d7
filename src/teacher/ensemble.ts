// The default teacher's ensemble: weights tuned on dev over a grid of the simplex, the
// parameters of the exported graph (members' classifiers scaled and stacked), and the teacher
// folder in the Hugging Face layout.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { modelParamSpecs } from '../engine/context.js';
import { ParameterStore } from '../engine/params.js';
import type { TextTokenizer } from '../text/tokenizer.js';
import { writeFileAtomicSync } from '../util/fs.js';
import { logSoftmaxRows } from '../util/stats.js';
import { writeBertConfig } from './bert-config.js';
import { BIGRAM_PRIME, type DefaultTeacherConfig } from './default-config.js';
import { ensembleModel } from './default-model.js';
import type { LexiconTables } from './lexicon.js';

/** Weight vectors on the simplex in steps of 1/steps. */
function simplexGrid(k: number, steps: number): number[][] {
  if (k === 1) return [[1]];
  const out: number[][] = [];
  for (let i = 0; i <= steps; i++)
    for (const rest of simplexGrid(k - 1, steps - i)) out.push([i / steps, ...rest.map((r) => (r * (steps - i)) / steps)]);
  return out;
}

/**
 * Ensemble weights maximizing dev accuracy of Σ_k w_k·log p_k (ties: lower dev NLL), on a
 * grid of the simplex.
 */
export function tuneEnsembleWeights(
  memberLogits: Float32Array[],
  labels: Int32Array,
  classes: number,
): { weights: number[]; accuracy: number; nll: number } {
  const logp = memberLogits.map((l) => logSoftmaxRows(l, classes));
  const n = labels.length;
  let best = { weights: memberLogits.map(() => 1 / memberLogits.length), accuracy: -1, nll: Infinity };
  for (const w of simplexGrid(memberLogits.length, memberLogits.length > 3 ? 5 : 10)) {
    let right = 0;
    let nll = 0;
    const score = new Float64Array(classes);
    for (let i = 0; i < n; i++) {
      score.fill(0);
      w.forEach((wk, k) => {
        for (let c = 0; c < classes; c++) score[c]! += wk * logp[k]![i * classes + c]!;
      });
      let arg = 0;
      let max = -Infinity;
      for (let c = 0; c < classes; c++) if (score[c]! > max) ((max = score[c]!), (arg = c));
      let sum = 0;
      for (let c = 0; c < classes; c++) sum += Math.exp(score[c]! - max);
      nll += max + Math.log(sum) - score[labels[i]!]!;
      if (arg === labels[i]) right += 1;
    }
    const accuracy = right / n;
    if (accuracy > best.accuracy + 1e-12 || (Math.abs(accuracy - best.accuracy) <= 1e-12 && nll / n < best.nll))
      best = { weights: w, accuracy, nll: nll / n };
  }
  return best;
}

/**
 * The stacked ensemble fitted on a tuning set: logits_c = Σ_k w_k·log p_k,c + Σ_l u_l,c·s_l + β_c
 * (w ≥ 0 for the trained members' log-probabilities, a row u_l per lexicon score s_l, a bias).
 */
export interface StackedEnsemble {
  weights: number[];
  lexiconRows: number[][];
  bias: number[];
  /** Accuracy and mean NLL on the tuning rows. */
  accuracy: number;
  nll: number;
}

/** Solves A·x = b (A symmetric positive definite, small) by Gaussian elimination with partial pivoting. */
function solve(A: number[][], b: number[]): number[] {
  const n = b.length;
  const M = A.map((row, i) => [...row, b[i]!]);
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(M[r]![c]!) > Math.abs(M[p]![c]!)) p = r;
    [M[c], M[p]] = [M[p]!, M[c]!];
    for (let r = c + 1; r < n; r++) {
      const f = M[r]![c]! / M[c]![c]!;
      for (let k = c; k <= n; k++) M[r]![k]! -= f * M[c]![k]!;
    }
  }
  const x = new Array<number>(n).fill(0);
  for (let r = n - 1; r >= 0; r--) {
    let v = M[r]![n]!;
    for (let k = r + 1; k < n; k++) v -= M[r]![k]! * x[k]!;
    x[r] = v / M[r]![r]!;
  }
  return x;
}

/**
 * Fits a {@link StackedEnsemble} by minimizing mean NLL + (l2/2)·|θ|² (convex: the logits are
 * linear in θ) with damped Newton steps, w projected onto w ≥ 0 and each step halved until the
 * objective falls. Deterministic; a dozen parameters at most, so the Hessian is solved exactly.
 */
export function fitStackedEnsemble(
  memberLogits: Float32Array[],
  lexiconScores: Float64Array[],
  labels: Int32Array,
  classes: number,
  l2 = 1e-3,
): StackedEnsemble {
  const C = classes;
  const K = memberLogits.length;
  const L = lexiconScores.length;
  const n = labels.length;
  const logp = memberLogits.map((l) => logSoftmaxRows(l, C));
  const P = K + (L + 1) * C;
  // d logit_c / d θ_j for row i: member weights read log p_k,c; lexicon row l, class c reads s_l on logit c; bias 1 on logit c.
  const feature = (i: number, c: number, j: number): number => {
    if (j < K) return logp[j]![i * C + c]!;
    const r = j - K;
    const l = Math.floor(r / C);
    if (r % C !== c) return 0;
    return l < L ? lexiconScores[l]![i]! : 1;
  };
  const logitsOf = (theta: number[], i: number, out: Float64Array) => {
    for (let c = 0; c < C; c++) {
      let z = 0;
      for (let j = 0; j < P; j++) z += theta[j]! * feature(i, c, j);
      out[c] = z;
    }
  };
  const z = new Float64Array(C);
  const evaluate = (theta: number[]) => {
    let nll = 0;
    let right = 0;
    for (let i = 0; i < n; i++) {
      logitsOf(theta, i, z);
      let max = -Infinity;
      let arg = 0;
      for (let c = 0; c < C; c++) if (z[c]! > max) ((max = z[c]!), (arg = c));
      let sum = 0;
      for (let c = 0; c < C; c++) sum += Math.exp(z[c]! - max);
      nll += max + Math.log(sum) - z[labels[i]!]!;
      if (arg === labels[i]) right += 1;
    }
    return { objective: nll / n + (l2 / 2) * theta.reduce((s, t) => s + t * t, 0), nll: nll / n, accuracy: right / n };
  };
  let theta = new Array<number>(P).fill(0);
  for (let k = 0; k < K; k++) theta[k] = 1 / K;
  let current = evaluate(theta);
  const p = new Float64Array(C);
  for (let iter = 0; iter < 100; iter++) {
    const grad = new Array<number>(P).fill(0);
    const H = Array.from({ length: P }, () => new Array<number>(P).fill(0));
    for (let i = 0; i < n; i++) {
      logitsOf(theta, i, z);
      const max = Math.max(...z);
      let sum = 0;
      for (let c = 0; c < C; c++) sum += p[c] = Math.exp(z[c]! - max);
      for (let c = 0; c < C; c++) p[c]! /= sum;
      const f = Array.from({ length: C }, (_, c) => Array.from({ length: P }, (_, j) => feature(i, c, j)));
      const mean = Array.from({ length: P }, (_, j) => f.reduce((s, fc, c) => s + p[c]! * fc[j]!, 0));
      for (let j = 0; j < P; j++) grad[j]! += (mean[j]! - f[labels[i]!]![j]!) / n;
      for (let a = 0; a < P; a++)
        for (let b = a; b < P; b++) {
          let h = -mean[a]! * mean[b]!;
          for (let c = 0; c < C; c++) h += p[c]! * f[c]![a]! * f[c]![b]!;
          H[a]![b]! += h / n;
        }
    }
    for (let a = 0; a < P; a++) {
      grad[a]! += l2 * theta[a]!;
      H[a]![a]! += l2;
      for (let b = 0; b < a; b++) H[a]![b] = H[b]![a]!;
    }
    const step = solve(H, grad);
    let t = 1;
    let accepted = false;
    while (t > 1e-6) {
      const next = theta.map((v, j) => v - t * step[j]!).map((v, j) => (j < K ? Math.max(0, v) : v));
      const e = evaluate(next);
      if (e.objective < current.objective - 1e-12) {
        theta = next;
        current = e;
        accepted = true;
        break;
      }
      t /= 2;
    }
    if (!accepted || Math.sqrt(grad.reduce((s, g) => s + g * g, 0)) < 1e-9) break;
  }
  return {
    weights: theta.slice(0, K),
    lexiconRows: Array.from({ length: L }, (_, l) => theta.slice(K + l * C, K + (l + 1) * C)),
    bias: theta.slice(K + L * C),
    accuracy: current.accuracy,
    nll: current.nll,
  };
}

/** Accuracy of a fitted stacked ensemble on other rows (their member logits and lexicon scores). */
export function stackedAccuracy(
  fit: Pick<StackedEnsemble, 'weights' | 'lexiconRows' | 'bias'>,
  memberLogits: Float32Array[],
  lexiconScores: Float64Array[],
  labels: Int32Array,
  classes: number,
): number {
  const logp = memberLogits.map((l) => logSoftmaxRows(l, classes));
  let right = 0;
  const z = new Float64Array(classes);
  for (let i = 0; i < labels.length; i++) {
    for (let c = 0; c < classes; c++) {
      let v = fit.bias[c]!;
      fit.weights.forEach((w, k) => (v += w * logp[k]![i * classes + c]!));
      fit.lexiconRows.forEach((u, l) => (v += u[c]! * lexiconScores[l]![i]!));
      z[c] = v;
    }
    let arg = 0;
    for (let c = 1; c < classes; c++) if (z[c]! > z[arg]!) arg = c;
    if (arg === labels[i]) right += 1;
  }
  return right / labels.length;
}

/** What the exported graph's final layer adds for the lexicon members: a row per member and a bias. */
export interface LexiconHead {
  tables: LexiconTables[];
  rows: number[][];
  bias: number[];
}

/**
 * Parameters of the exported ensemble: members under `member<k>.`, classifiers scaled and
 * stacked, then the lexicon members' rows; the bias is Σ_k w_k·b_k plus the lexicon head's.
 */
export function ensembleStore(
  cfg: DefaultTeacherConfig,
  classes: number,
  members: ParameterStore[],
  weights: number[],
  lexicon: LexiconHead = { tables: [], rows: [], bias: [] },
): ParameterStore {
  const store = new ParameterStore('float32');
  const specs = modelParamSpecs(ensembleModel(cfg, classes, lexicon.tables));
  const dims = members.map((m) => m.spec('classifier.weight').shape[0]!);
  const total = dims.reduce((a, b) => a + b, 0) + lexicon.tables.length;
  for (const spec of specs) {
    store.specs.push(spec);
    if (spec.name === 'classifier.weight') {
      const w = new Float32Array(total * classes);
      let row = 0;
      members.forEach((m, k) => {
        const wk = m.get('classifier.weight');
        for (let i = 0; i < wk.length; i++) w[row * classes + i] = weights[k]! * wk[i]!;
        row += dims[k]!;
      });
      lexicon.rows.forEach((u) => {
        u.forEach((v, c) => (w[row * classes + c] = v));
        row += 1;
      });
      store.values.set(spec.name, w);
    } else if (spec.name === 'classifier.bias') {
      const b = new Float32Array(classes);
      members.forEach((m, k) => m.get('classifier.bias').forEach((v, c) => (b[c]! += weights[k]! * v)));
      lexicon.bias.forEach((v, c) => (b[c]! += v));
      store.values.set(spec.name, b);
    } else {
      const match = /^member(\d+)\.(.*)$/.exec(spec.name);
      if (!match) throw new Error(`ensemble parameter '${spec.name}' belongs to no member`);
      store.values.set(spec.name, members[Number(match[1])]!.get(match[2]!));
    }
  }
  return store;
}

/** Writes config.json, the tokenizer files and onnx/model.onnx (the layout transformers.js loads). */
export function exportTeacherFolder(
  out: string,
  cfg: DefaultTeacherConfig,
  tokenizer: TextTokenizer,
  labels: string[],
  onnx: Uint8Array,
  training: Record<string, unknown>,
): void {
  mkdirSync(join(out, 'onnx'), { recursive: true });
  // The BERT fields describe the first encoder member; `kd` describes the whole ensemble.
  const enc = cfg.members.find((m) => m.layers > 0) ?? cfg.members[0]!;
  tokenizer.save(out);
  writeBertConfig(out, {
    vocabSize: cfg.vocabSize,
    hidden: enc.hidden,
    layers: enc.layers,
    heads: enc.heads,
    intermediate: enc.intermediate,
    maxLength: cfg.maxLength,
    labels,
    dropout: enc.dropout,
    problemType: 'single_label_classification',
    kd: {
      producer: 'kd-toolkit',
      architecture:
        'product-of-experts ensemble of BERT-style encoders, word-piece unigram/bigram bags and sentiment lexicons computed from ' +
        'input_ids, one final linear layer',
      members: cfg.members,
      lexicons: cfg.lexicons,
      bigram_buckets: cfg.bigramBuckets,
      bigram_prime: BIGRAM_PRIME,
      training,
    },
  });
  writeFileAtomicSync(join(out, 'onnx', 'model.onnx'), onnx);
}
