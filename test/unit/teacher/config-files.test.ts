// config.json and kd-student.json are checked field by field: each malformed field is a
// ConfigError naming the file, the field and the fix (the CLI's side is in test/e2e/teacher-files).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readTeacherConfig } from '../../../src/teacher/teacher.js';
import { readStudentCard } from '../../../src/student/runtime.js';
import { ConfigError, FormatError } from '../../../src/data/errors.js';
import { sharedPath, tempDir } from '../../helpers.js';
import { NGRAM_CARD } from '../../teacher-folders.js';

const FIXTURE_CONFIG = JSON.parse(readFileSync(sharedPath('fixtures', 'hf', 'tiny-random-bert', 'config.json'), 'utf8')) as Record<
  string,
  unknown
>;

function configFolder(config: unknown): { dir: string; path: string } {
  const dir = tempDir('kd-config-');
  writeFileSync(join(dir, 'config.json'), typeof config === 'string' ? config : JSON.stringify(config));
  return { dir, path: join(dir, 'config.json') };
}

test('the fixture config reads as before: labels in index order, limits, pad_token_id absent', () => {
  const { dir } = configFolder({ ...FIXTURE_CONFIG, id2label: { 1: 'POSITIVE', 0: 'NEGATIVE' } });
  assert.deepEqual(readTeacherConfig(dir), {
    modelType: 'bert',
    labels: ['NEGATIVE', 'POSITIVE'],
    maxPositions: 128,
    vocabSize: 56,
    padTokenId: null,
  });
});

test('each malformed config.json field is a ConfigError naming the file and the field', () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ id2label: ['NEGATIVE', 'POSITIVE'] }, /field id2label must be an object of class names/],
    [{ id2label: { 0: 'NEGATIVE', 2: 'POSITIVE' } }, /field id2label has no class 1 \(its keys must be 0 … 1\)/],
    [{ id2label: { 0: 'NEGATIVE', one: 'POSITIVE' } }, /field id2label: entry "one": "POSITIVE" is not "<class index>": "<name>"/],
    [{ id2label: { 0: 'NEGATIVE', 1: 1 } }, /field id2label: entry "1": 1 is not/],
    [{ vocab_size: 0 }, /field vocab_size must be an integer ≥ 1, got 0/],
    [{ max_position_embeddings: 12.5 }, /field max_position_embeddings must be an integer ≥ 1, got 12\.5/],
    [{ pad_token_id: -1 }, /field pad_token_id must be an integer ≥ 0, got -1/],
    [{ model_type: 3 }, /field model_type must be a string, got 3/],
  ];
  for (const [edit, message] of cases) {
    const { dir, path } = configFolder({ ...FIXTURE_CONFIG, ...edit });
    assert.throws(
      () => readTeacherConfig(dir),
      (e: Error) =>
        e instanceof ConfigError && e.message.startsWith(`${path}: `) && message.test(e.message) && /fix config\.json/.test(e.message),
      JSON.stringify(edit),
    );
  }
  for (const text of ['{"model_type": "bert",', '"bert"', 'null']) {
    const { dir, path } = configFolder(text);
    assert.throws(
      () => readTeacherConfig(dir),
      (e: Error) => e instanceof FormatError && e.message.startsWith(`${path}: `),
      text,
    );
  }
});

test('each malformed kd-student.json field is a ConfigError naming the file and the field', () => {
  const dir = tempDir('kd-card-');
  mkdirSync(dir, { recursive: true });
  const path = join(dir, 'kd-student.json');
  writeFileSync(path, JSON.stringify(NGRAM_CARD));
  assert.deepEqual(readStudentCard(path), NGRAM_CARD);
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ format: 'kd-cache' }, /field format must be "kd-student", got "kd-cache"/],
    [{ version: 2 }, /field version must be 1 \(the only card version this kd reads\), got 2/],
    [{ kind: 'lstm' }, /field kind must be "ngram" or "transformer", got "lstm"/],
    [{ labels: 'negative,positive' }, /field labels must be a list of at least two class names/],
    [{ labels: ['negative'] }, /field labels must be a list of at least two class names/],
    [{ config: null }, /field config must be an object/],
    [
      { config: { ...NGRAM_CARD.config, ngrams: { buckets: 0, maxN: 2, maxFeatures: 64 } } },
      /field config\.ngrams must be \{ buckets, maxN, maxFeatures \} \(positive integers\)/,
    ],
  ];
  for (const [edit, message] of cases) {
    writeFileSync(path, JSON.stringify({ ...NGRAM_CARD, ...edit }));
    assert.throws(
      () => readStudentCard(path),
      (e: Error) =>
        e instanceof ConfigError &&
        e.message.startsWith(`${path}: `) &&
        message.test(e.message) &&
        /export the student again with kd train/.test(e.message),
      JSON.stringify(edit),
    );
  }
  writeFileSync(path, '{"format": "kd-student"');
  assert.throws(
    () => readStudentCard(path),
    (e: Error) => e instanceof FormatError && e.message.startsWith(`${path}: not valid JSON`),
  );
});
