// Damaged teacher and student folders through the real `kd`: each is one line naming the file
// and what to do (exit 2), never a stack trace.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import onnxProto from 'onnx-proto';
import { runKd, sharedPath, tempDir } from '../helpers.js';
import { copyFixture, NGRAM_CARD } from '../teacher-folders.js';

const { onnx } = onnxProto;

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Asserts `kd args` failed as a user's error: exit 2, one line, naming `file`, matching `message`. */
function assertUserError(args: string[], file: string, message: RegExp): void {
  const r = runKd(args);
  assert.equal(r.status, 2, `${args.join(' ')}\n${r.stderr}`);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0]!, new RegExp(`^kd: error: ${escape(file)}: `));
  assert.match(lines[0]!, message);
}

test('kd teacher predict on a config.json that is not JSON, or whose fields are malformed, names the file and field', () => {
  const dir = copyFixture();
  const config = join(dir, 'config.json');
  const good = readFileSync(config, 'utf8');
  const predict = ['teacher', 'predict', '--model', dir, '--text', 'hi'];
  writeFileSync(config, good.slice(0, 100));
  assertUserError(predict, config, /not valid JSON \(.*\); it should be the model’s config\.json/);
  writeFileSync(config, '[1, 2]');
  assertUserError(predict, config, /holds an array, not a JSON object/);
  const c = JSON.parse(good) as Record<string, unknown>;
  writeFileSync(config, JSON.stringify({ ...c, vocab_size: '56' }));
  assertUserError(predict, config, /field vocab_size must be an integer ≥ 1, got "56"; fix config\.json/);
  // The other field checks are in test/unit/teacher/config-files.test.ts (no process per case).
});

test('kd teacher predict on an empty, random or truncated onnx/model.onnx says so and to re-export it', () => {
  const dir = copyFixture();
  const model = join(dir, 'onnx', 'model.onnx');
  const bytes = readFileSync(model);
  const predict = ['teacher', 'predict', '--model', dir, '--text', 'hi'];
  writeFileSync(model, new Uint8Array(0));
  assertUserError(predict, model, /the file is empty; re-export the model/);
  writeFileSync(model, bytes.subarray(0, 200_000));
  assertUserError(
    predict,
    model,
    /not a valid ONNX model \(index out of range: .*; the file is truncated or not ONNX\); re-export the model/,
  );
  // Random bytes (seeded: the same every run) are rejected by protobuf.
  let x = 12345;
  writeFileSync(
    model,
    Uint8Array.from({ length: 4096 }, () => (x = (x * 1103515245 + 12345) >>> 0) >>> 24),
  );
  assertUserError(predict, model, /not a valid ONNX model \(invalid wire type .*\); re-export the model/);
  // Bytes that decode as a protobuf but hold no graph (a model saved without one).
  writeFileSync(model, onnx.ModelProto.encode(onnx.ModelProto.create({ irVersion: 8, producerName: 'x' })).finish());
  assertUserError(predict, model, /not an ONNX model \(no graph with nodes and outputs\); re-export the model/);
});

/** A student folder as kd train writes it, with this card and model file. */
function studentFolder(card: string, model: Uint8Array): string {
  const dir = join(tempDir('kd-student-'), 'model');
  mkdirSync(join(dir, 'onnx'), { recursive: true });
  writeFileSync(join(dir, 'kd-student.json'), card);
  writeFileSync(join(dir, 'onnx', 'model.onnx'), model);
  return dir;
}

test('kd predict on a damaged kd-student.json or student model names the file', () => {
  const teacherModel = readFileSync(sharedPath('fixtures', 'hf', 'tiny-random-bert', 'onnx', 'model.onnx'));
  const cases: [string, RegExp][] = [
    ['{"format": "kd-student", ', /not valid JSON \(.*\); it should be the card kd train writes/],
    [
      JSON.stringify({ ...NGRAM_CARD, kind: 'lstm' }),
      /field kind must be "ngram" or "transformer", got "lstm"; export the student again with kd train/,
    ],
  ];
  for (const [card, message] of cases) {
    const dir = studentFolder(card, teacherModel);
    assertUserError(['predict', '--model', dir, '--text', 'hi'], join(dir, 'kd-student.json'), message);
  }
  const dir = studentFolder(JSON.stringify(NGRAM_CARD), teacherModel.subarray(0, 200_000));
  assertUserError(
    ['predict', '--model', dir, '--text', 'hi'],
    join(dir, 'onnx', 'model.onnx'),
    /ONNX Runtime could not load the student \(.*\); the file is damaged: export the student again with kd train/,
  );
});

test('kd teacher predict on a damaged tokenizer.json or tokenizer_config.json names the file', () => {
  const dir = copyFixture();
  const predict = ['teacher', 'predict', '--model', dir, '--text', 'hi'];
  const tokenizer = join(dir, 'tokenizer.json');
  const good = readFileSync(tokenizer, 'utf8');
  writeFileSync(tokenizer, good.slice(0, 300));
  assertUserError(predict, tokenizer, /not a tokenizer the tokenizers library can read \(.*\); export the tokenizer again/);
  writeFileSync(tokenizer, good);
  const config = join(dir, 'tokenizer_config.json');
  writeFileSync(config, '{"pad_token": ');
  assertUserError(predict, config, /not valid JSON \(.*\); fix or re-export it/);
  writeFileSync(config, 'null');
  assertUserError(predict, config, /must hold a JSON object; fix or re-export it/);
});
