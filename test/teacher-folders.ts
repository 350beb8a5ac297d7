// Crafted teacher folders for tests: a writable copy of a shared fixture, its weights moved to
// model.onnx_data as exporters lay them out, or a graph edited to point anywhere.
import { chmodSync, cpSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import onnxProto from 'onnx-proto';
import { sharedPath, tempDir } from './helpers.js';

const { onnx } = onnxProto;
export type ModelProto = InstanceType<typeof onnx.ModelProto>;

/** A valid kd-student.json of a small n-gram student, for tests that damage one field at a time. */
export const NGRAM_CARD = {
  format: 'kd-student',
  version: 1,
  kind: 'ngram',
  labels: ['negative', 'positive'],
  inputs: ['ngram_ids', 'ngram_mask'],
  config: { ngrams: { buckets: 1024, maxN: 2, maxFeatures: 64 }, dim: 8, hidden: 0, dropout: 0 },
  training: {},
};

/** A writable copy of ../shared/fixtures/hf/<name> (the shared files are read-only). */
export function copyFixture(name = 'tiny-random-bert'): string {
  const dir = join(tempDir('kd-teacher-'), name);
  cpSync(sharedPath('fixtures', 'hf', name), dir, { recursive: true });
  const writable = (p: string) => {
    chmodSync(p, statSync(p).isDirectory() ? 0o755 : 0o644);
    if (statSync(p).isDirectory()) for (const e of readdirSync(p)) writable(join(p, e));
  };
  writable(dir);
  return dir;
}

export function readModel(dir: string): ModelProto {
  return onnx.ModelProto.decode(readFileSync(join(dir, 'onnx', 'model.onnx')));
}

export function writeModel(dir: string, model: ModelProto): void {
  writeFileSync(join(dir, 'onnx', 'model.onnx'), onnx.ModelProto.encode(model).finish());
}

/**
 * Moves every initializer of 1 KiB or more into onnx/model.onnx_data, each at a 4 KiB-aligned
 * offset, as `onnx.save(model, save_as_external_data=True, all_tensors_to_one_file=True)` and
 * the PyTorch exporter do for a model over 2 GB. Returns how many tensors moved.
 */
export function moveToExternalData(dir: string, location = 'model.onnx_data'): number {
  const model = readModel(dir);
  const chunks: Buffer[] = [];
  let offset = 0;
  let moved = 0;
  for (const t of model.graph!.initializer ?? []) {
    if (!t.rawData || t.rawData.length < 1024) continue;
    const pad = (4096 - (offset % 4096)) % 4096;
    chunks.push(Buffer.alloc(pad), Buffer.from(t.rawData));
    offset += pad;
    t.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
    t.externalData = [
      { key: 'location', value: location },
      { key: 'offset', value: String(offset) },
      { key: 'length', value: String(t.rawData.length) },
    ];
    offset += t.rawData.length;
    t.rawData = new Uint8Array(0);
    moved++;
  }
  writeFileSync(join(dir, 'onnx', location), Buffer.concat(chunks));
  writeModel(dir, model);
  return moved;
}

/** Points the initializer `name` at external data with these entries (values as written in the file). */
export function pointInitializerAt(dir: string, name: string, entries: Record<string, string>): void {
  const model = readModel(dir);
  const t = (model.graph!.initializer ?? []).find((x) => x.name === name);
  if (!t) throw new Error(`no initializer ${name}`);
  t.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
  t.externalData = Object.entries(entries).map(([key, value]) => ({ key, value }));
  t.rawData = new Uint8Array(0);
  writeModel(dir, model);
}

/** The classifier weight's initializer name in tiny-random-bert (the Gemm producing the logits). */
export function classifierWeightName(model: ModelProto): string {
  const gemm = (model.graph!.node ?? []).find((n) => n.output!.includes('logits'));
  if (!gemm) throw new Error('no node produces logits');
  return gemm.input![1]!;
}
