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

/** Parameters of the exported ensemble: members under `member<k>.`, classifiers scaled and stacked. */
export function ensembleStore(cfg: DefaultTeacherConfig, classes: number, members: ParameterStore[], weights: number[]): ParameterStore {
  const store = new ParameterStore('float32');
  const specs = modelParamSpecs(ensembleModel(cfg, classes));
  const dims = members.map((m) => m.spec('classifier.weight').shape[0]!);
  const total = dims.reduce((a, b) => a + b, 0);
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
      store.values.set(spec.name, w);
    } else if (spec.name === 'classifier.bias') {
      const b = new Float32Array(classes);
      members.forEach((m, k) => m.get('classifier.bias').forEach((v, c) => (b[c]! += weights[k]! * v)));
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
      architecture: 'product-of-experts ensemble of BERT-style encoders and word-piece unigram/bigram bags, one final linear layer',
      members: cfg.members,
      bigram_buckets: cfg.bigramBuckets,
      bigram_prime: BIGRAM_PRIME,
      training,
    },
  });
  writeFileAtomicSync(join(out, 'onnx', 'model.onnx'), onnx);
}
