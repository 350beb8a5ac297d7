// External data of teacher models: read from the model's folder only (never the current
// directory), and a location that leaves the folder, or a length past the file, is refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Teacher } from '../../../src/teacher/teacher.js';
import onnxProto from 'onnx-proto';
import { decodeModel, GraphIndex } from '../../../src/teacher/onnx-model.js';
import { FormatError } from '../../../src/data/errors.js';
import { runKd, sharedPath, tempDir } from '../../helpers.js';
import { classifierWeightName, copyFixture, moveToExternalData, pointInitializerAt, readModel, writeModel } from '../../teacher-folders.js';

const { onnx } = onnxProto;

const TEXTS = ['what a great day', 'worst service ever', 'meh'];
const quiet = { warn: () => undefined };

function predictJson(model: string, cwd: string, extra: string[] = []): { logits: number[][]; status: number; stderr: string } {
  const r = runKd(['teacher', 'predict', '--model', model, ...TEXTS.flatMap((t) => ['--text', t]), '--json', ...extra], { cwd });
  return { status: r.status, stderr: r.stderr, logits: r.status === 0 ? r.json().logits : [] };
}

/**
 * A new folder holding a decoy of `dir`'s onnx/model.onnx_data: same size, other values. ONNX Runtime resolving external
 * data against the cwd would use it silently.
 */
function cwdWithDecoy(dir: string): string {
  const cwd = tempDir('kd-cwd-');
  const data = readFileSync(join(dir, 'onnx', 'model.onnx_data'));
  writeFileSync(
    join(cwd, 'model.onnx_data'),
    data.map((b, i) => (i % 4 === 3 ? b ^ 0x40 : b)),
  );
  return cwd;
}

test(
  'a model.onnx_data export loads from another folder with the inline model’s logits, and a decoy model.onnx_data in the cwd ' +
    'is not read',
  () => {
    const dir = copyFixture();
    assert.ok(moveToExternalData(dir) >= 10);
    assert.ok(readFileSync(join(dir, 'onnx', 'model.onnx')).length < 40_000, 'the weights left model.onnx');
    const cwd = cwdWithDecoy(dir);
    const inline = predictJson(sharedPath('fixtures', 'hf', 'tiny-random-bert'), tempDir('kd-cwd-'));
    assert.equal(inline.status, 0, inline.stderr);
    for (const extra of [[], ['--no-graph-optimization']]) {
      const external = predictJson(dir, cwd, extra);
      assert.equal(external.status, 0, external.stderr);
      inline.logits
        .flat()
        .forEach((v, k) =>
          assert.ok(
            Math.abs(v - external.logits.flat()[k]!) < 1e-5,
            `${extra.join(' ')} logit ${k}: ${external.logits.flat()[k]} vs inline ${v}`,
          ),
        );
    }
    // And from a folder without any model.onnx_data (the load used to fail there).
    const bare = predictJson(dir, tempDir('kd-cwd-'));
    assert.equal(bare.status, 0, bare.stderr);
    assert.deepEqual(bare.logits, predictJson(dir, cwd).logits);
  },
);

test('an int8 teacher with its fp32 recheck reads model.onnx_data from the model folder in both sessions', () => {
  // Both sessions take the spin setting and the external-data folder as session config entries: one must not drop the other.
  const dir = copyFixture();
  moveToExternalData(dir);
  const cwd = cwdWithDecoy(dir);
  const int8 = ['--quantize', 'int8', '--min-agreement', '0', '--recheck-margin', '1000'];
  const inline = predictJson(sharedPath('fixtures', 'hf', 'tiny-random-bert'), tempDir('kd-cwd-'), int8);
  assert.equal(inline.status, 0, inline.stderr);
  const external = predictJson(dir, cwd, int8);
  assert.equal(external.status, 0, external.stderr);
  // Every text is a near tie under a margin of 1000, so these are the fp32 session's logits.
  assert.deepEqual(external.logits, inline.logits);
  const fp32 = predictJson(sharedPath('fixtures', 'hf', 'tiny-random-bert'), tempDir('kd-cwd-'));
  inline.logits.flat().forEach((v, k) => assert.ok(Math.abs(v - fp32.logits.flat()[k]!) < 1e-5, `logit ${k}: ${v} vs fp32`));
});

test('the model fingerprint covers model.onnx_data: new weights there change it', async () => {
  const dir = copyFixture();
  moveToExternalData(dir);
  const before = await Teacher.load(dir, { ...quiet, optimize: false });
  const print = before.fingerprint();
  await before.dispose();
  const dataFile = join(dir, 'onnx', 'model.onnx_data');
  const data = readFileSync(dataFile);
  data[data.length - 1] ^= 1;
  writeFileSync(dataFile, data);
  const after = await Teacher.load(dir, { ...quiet, optimize: false });
  assert.notEqual(after.fingerprint().model, print.model);
  assert.equal(after.fingerprint().config, print.config);
  await after.dispose();
  // A model without external data keeps the fingerprint it always had: SHA-256 of model.onnx.
  const inline = await Teacher.load(sharedPath('fixtures', 'hf', 'tiny-random-bert'), { ...quiet, optimize: false });
  const { createHash } = await import('node:crypto');
  assert.equal(inline.fingerprint().model, createHash('sha256').update(readFileSync(inline.modelFile)).digest('hex'));
  await inline.dispose();
});

/** A folder whose classifier weight is external data with these entries. */
function craftedClassifier(entries: Record<string, string>): { dir: string; weight: string } {
  const dir = copyFixture();
  const weight = classifierWeightName(readModel(dir));
  pointInitializerAt(dir, weight, entries);
  return { dir, weight };
}

test(
  'an external-data location that leaves the model folder, is absolute or is not a regular file is refused before ' + 'anything is read',
  async () => {
    const escape = craftedClassifier({ location: '../../../../../../../../etc/passwd', offset: '0', length: '512' });
    const absolute = craftedClassifier({ location: '/dev/zero', offset: '0', length: '600000000' });
    const linked = craftedClassifier({ location: 'weights.bin', offset: '0', length: '512' });
    symlinkSync('/etc/passwd', join(linked.dir, 'onnx', 'weights.bin'));
    const folder = craftedClassifier({ location: 'weights', offset: '0', length: '512' });
    mkdirSync(join(folder.dir, 'onnx', 'weights'));
    const cases: [string, RegExp][] = [
      [escape.dir, /tensor '.*': external data location '\.\.\/\.\.\/.*etc\/passwd' leaves the model's folder .*re-export the model/],
      [absolute.dir, /external data location '\/dev\/zero' is an absolute path/],
      [linked.dir, /external data location 'weights\.bin' is a link to \/etc\/passwd, outside the model's folder/],
      [folder.dir, /external data location 'weights' is not a regular file/],
    ];
    for (const [dir, message] of cases) {
      const modelFile = join(dir, 'onnx', 'model.onnx');
      await assert.rejects(
        Teacher.load(dir, quiet),
        (e: Error) => e instanceof FormatError && e.message.startsWith(`${modelFile}: `) && message.test(e.message),
        dir,
      );
      // The CLI: one line naming the model file, exit 2; run from / as the report's reproduction did.
      const r = runKd(['teacher', 'predict', '--model', dir, '--text', 'hi'], { cwd: '/' });
      assert.equal(r.status, 2, r.stderr);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.match(r.stderr, new RegExp(`^kd: error: ${modelFile.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: tensor`));
    }
    // Every stored tensor is checked, not only initializers: here an unused Constant node's value.
    const constant = copyFixture();
    const model = readModel(constant);
    model.graph!.node!.push(
      onnx.NodeProto.create({
        opType: 'Constant',
        output: ['unused'],
        attribute: [
          {
            name: 'value',
            type: onnx.AttributeProto.AttributeType.TENSOR,
            t: {
              name: 'unused',
              dataType: 1,
              dims: [4],
              dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
              externalData: [{ key: 'location', value: '../../../../../../../../etc/hostname' }],
            },
          },
        ],
      }),
    );
    writeModel(constant, model);
    assert.throws(
      () => decodeModel(join(constant, 'onnx', 'model.onnx')),
      /tensor 'unused': external data location '.*etc\/hostname' leaves the model's folder/,
    );
    // The shared reader refuses too, whoever decoded the graph (the head search reads the weight through it).
    const index = new GraphIndex(readModel(escape.dir), join(escape.dir, 'onnx', 'model.onnx'));
    assert.throws(() => index.constantFloats(escape.weight), /leaves the model's folder/);
  },
);

test('an offset or length past the end of the data file is refused, not read short or allocated', async () => {
  const dir = copyFixture();
  moveToExternalData(dir);
  const size = readFileSync(join(dir, 'onnx', 'model.onnx_data')).length;
  const weight = classifierWeightName(readModel(dir));
  for (const [entries, message] of [
    [
      { location: 'model.onnx_data', offset: String(size - 100), length: '512' },
      new RegExp(`offset ${size - 100} \\+ length 512 is past the end of 'model.onnx_data' \\(${size} bytes`),
    ],
    [{ location: 'model.onnx_data', offset: '0', length: '600000000' }, /length 600000000 is past the end/],
    [{ location: 'model.onnx_data', offset: '-4', length: '512' }, /offset '-4' is not an offset into 'model.onnx_data'/],
    [{ location: 'missing.bin', offset: '0', length: '512' }, /file 'missing.bin' does not exist beside/],
  ] as const) {
    pointInitializerAt(dir, weight, entries);
    await assert.rejects(
      Teacher.load(dir, quiet),
      (e: Error) => e instanceof FormatError && message.test(e.message),
      JSON.stringify(entries),
    );
  }
  // A length within the file but short of the tensor's shape is a damaged model, not a RangeError.
  pointInitializerAt(dir, weight, { location: 'model.onnx_data', offset: '0', length: '16' });
  const index = new GraphIndex(readModel(dir), join(dir, 'onnx', 'model.onnx'));
  assert.throws(
    () => index.constantFloats(weight),
    (e: Error) => e instanceof FormatError && /holds 16 bytes but its shape \[2, 64\] needs 512/.test(e.message),
  );
});
