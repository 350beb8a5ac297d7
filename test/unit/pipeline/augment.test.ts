// augmentExamples over files: byte-identical output by seed, rows independent of their neighbours,
// ids, source ids, copy indices and text hashes, exact skip counts, embedding-neighbour replacement
// on the shared tiny teacher, the mask token from a tokenizer, and bad input refused before any work.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { augmentExamples, augmentStream } from '../../../src/pipeline/augment.js';
import { EmbeddingNeighbours } from '../../../src/teacher/word-neighbours.js';
import { splitWords } from '../../../src/text/augment.js';
import { OptionError, UserError } from '../../../src/errors.js';
import { sharedPath, tempDir } from '../../helpers.js';

const TEACHER = () => sharedPath('fixtures', 'hf', 'tiny-random-bert');

interface Row {
  id: string;
  textHash: string;
  label: null;
  text: string;
  source_id: string;
  copy: number;
}

const rows = (file: string): Row[] =>
  readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l)
    .map((l) => JSON.parse(l) as Row);

const REVIEWS = [
  'This book is great, I love it. The plot is good and the end was not bad at all.',
  'Terrible movie: the sound is bad, the story is worse, and the price was not fair.',
  'Good cd! It is the best I have heard this year, and the band is great live too.',
  'I hate this book. It was boring from the first page to the last and too long.',
];

function jsonl(dir: string, name: string, records: object[]): string {
  const file = join(dir, name);
  writeFileSync(file, records.map((r) => `${JSON.stringify(r)}\n`).join(''));
  return file;
}

test('same input, options and seed: byte-identical; another seed differs; a row’s copies do not depend on the other rows', async () => {
  const dir = tempDir();
  const all = jsonl(
    dir,
    'all.jsonl',
    REVIEWS.map((text, i) => ({ id: `r${i}`, text, label: i % 2 })),
  );
  const one = jsonl(dir, 'one.jsonl', [{ id: 'r2', text: REVIEWS[2], label: 0 }]);
  const run = (file: string, out: string, seed: number) =>
    augmentExamples([file], { out: join(dir, out), copies: 6, seed, progress: false });
  await run(all, 'a.jsonl', 5);
  await run(all, 'b.jsonl', 5);
  await run(all, 'c.jsonl', 6);
  await run(one, 'one-out.jsonl', 5);
  const bytes = (f: string) => readFileSync(join(dir, f));
  assert.ok(bytes('a.jsonl').equals(bytes('b.jsonl')));
  assert.ok(!bytes('a.jsonl').equals(bytes('c.jsonl')));
  assert.deepEqual(
    rows(join(dir, 'one-out.jsonl')),
    rows(join(dir, 'a.jsonl')).filter((r) => r.source_id === 'r2'),
  );
  // The labels of the input are not copied.
  assert.ok(rows(join(dir, 'a.jsonl')).every((r) => r.label === null));
  // A row's stream is its own: seed, id and copy each change it.
  const first = (seed: number, id: string, copy: number) => augmentStream(seed, id, copy).nextU32();
  assert.equal(first(5, 'r1', 0), first(5, 'r1', 0));
  assert.equal(new Set([first(5, 'r1', 0), first(6, 'r1', 0), first(5, 'r2', 0), first(5, 'r1', 1)]).size, 4);
});

test('every row: id = source id + copy, an input source_id, copy in 0..N-1 once each, textHash = SHA-256 of its text', async () => {
  const dir = tempDir();
  const input = jsonl(
    dir,
    'in.jsonl',
    REVIEWS.map((text) => ({ text })),
  );
  const out = join(dir, 'out.jsonl');
  const summary = await augmentExamples([input], { out, copies: 5, seed: 1, unlabeled: true, progress: false });
  const sourceIds = REVIEWS.map((t) => `h${createHash('sha256').update(t).digest('hex').slice(0, 16)}`);
  const got = rows(out);
  assert.equal(got.length, summary.copiesWritten);
  assert.equal(summary.copiesWritten + summary.skipped.identicalToSource + summary.skipped.repeatedCopy, REVIEWS.length * 5);
  assert.equal(summary.rowsRead, 4);
  for (const r of got) {
    assert.deepEqual(Object.keys(r), ['id', 'textHash', 'label', 'text', 'source_id', 'copy']);
    assert.ok(sourceIds.includes(r.source_id), r.source_id);
    assert.ok(Number.isInteger(r.copy) && r.copy >= 0 && r.copy < 5);
    assert.equal(r.id, `${r.source_id}.aug${r.copy}`);
    assert.equal(r.textHash, createHash('sha256').update(r.text, 'utf8').digest('hex').slice(0, 16));
    assert.notEqual(r.text, REVIEWS[sourceIds.indexOf(r.source_id)]);
  }
  assert.equal(new Set(got.map((r) => r.id)).size, got.length);
  // Rows come in input order, copies in order within a row.
  const order = got.map((r) => sourceIds.indexOf(r.source_id) * 10 + r.copy);
  assert.deepEqual(
    order,
    [...order].sort((a, b) => a - b),
  );
  const sidecar = JSON.parse(readFileSync(`${out}.json`, 'utf8'));
  assert.equal(sidecar.kind, 'kd-augment');
  assert.deepEqual(
    [
      sidecar.config.copies,
      sidecar.config.seed,
      sidecar.config.pMask,
      sidecar.config.pReplace,
      sidecar.config.pNgram,
      sidecar.config.maxNgram,
    ],
    [5, 1, 0.1, 0, 0.25, 5],
  );
  assert.deepEqual(sidecar.config.replacement, { kind: 'off' });
  assert.equal(sidecar.config.maskToken, '[MASK]');
  assert.equal(sidecar.versions.tool, 'kd-toolkit');
  assert.equal(sidecar.copiesWritten, got.length);
});

test('skips: copies identical to the source or to an earlier copy are counted exactly; repeated source ids are left out', async () => {
  const dir = tempDir();
  // One word: no mask, a 1-word span = the text itself. Two words, 1-grams only: "good" or "movie".
  const input = jsonl(dir, 'in.jsonl', [
    { id: 'a', text: 'Great' },
    { id: 'b', text: 'good movie' },
    { id: 'b', text: 'good movie' },
  ]);
  const out = join(dir, 'out.jsonl');
  const s = await augmentExamples([input], {
    out,
    copies: 10,
    seed: 3,
    pMask: 0,
    pNgram: 1,
    maxNgram: 1,
    unlabeled: true,
    progress: false,
  });
  const got = rows(out);
  assert.deepEqual(got.map((r) => r.text).sort(), ['good', 'movie']);
  assert.deepEqual([s.rowsRead, s.duplicateSourceIds, s.copiesWritten], [3, 1, 2]);
  assert.deepEqual(s.skipped, { identicalToSource: 10, repeatedCopy: 8 });
  assert.equal(s.ngramCopies, 2);
  // The copy index is the draw's, so ids stay stable when earlier copies are skipped.
  assert.ok(got.every((r) => r.id === `b.aug${r.copy}`));
});

test('embedding-neighbour replacement on tiny-random-bert: every replaced word is one of its k nearest vocabulary words', async () => {
  const dir = tempDir();
  const words = ['the', 'and', 'not', 'good', 'bad', 'great', 'terrible', 'love', 'hate', 'movie', 'book', 'cd', 'it', 'is', 'was', 'this'];
  const texts = Array.from({ length: 40 }, (_, i) => `${words.map((_, j) => words[(i * 7 + j * 3) % words.length]).join(' ')} zebra!`);
  const input = join(dir, 'in.txt');
  writeFileSync(input, `${texts.join('\n')}\n`);
  const out = join(dir, 'out.jsonl');
  const s = await augmentExamples([input], {
    out,
    format: 'text',
    copies: 2,
    seed: 9,
    pMask: 0,
    pReplace: 1,
    pNgram: 0,
    teacher: TEACHER(),
    neighbours: 3,
    progress: false,
  });
  // Neighbour sets from the class (its ranking is checked against float64 cosines in test/unit/teacher).
  const near = await EmbeddingNeighbours.fromTeacher(TEACHER(), { k: 3 });
  let replaced = 0;
  for (const r of rows(out)) {
    const src = splitWords(texts.find((t) => `h${createHash('sha256').update(t).digest('hex').slice(0, 16)}` === r.source_id)!).words;
    const got = splitWords(r.text).words;
    assert.equal(got.length, src.length);
    got.forEach((w, i) => {
      if (src[i] === 'zebra') return assert.equal(w, 'zebra'); // not in the vocabulary: stays
      assert.ok(near.replacements(src[i]!).includes(w), `${src[i]} → ${w}`);
      assert.ok(words.includes(w));
      replaced += 1;
    });
  }
  assert.equal(s.replaced, replaced);
  // i·7 mod 16 gives 16 distinct texts: the 24 repeats share a content id and are left out.
  assert.deepEqual([s.rowsRead, s.duplicateSourceIds, s.copiesWritten, s.replaceMissed], [40, 24, 32, 32]);
  assert.equal(replaced, 32 * 16);
  assert.equal(s.config.replacement.kind, 'embedding-neighbours');
  assert.equal(s.config.maskToken, '[MASK]');
  assert.match(s.config.maskTokenFrom, /tiny-random-bert\/tokenizer\.json \(mask token\)/);
});

test('the mask token comes from --tokenizer: its mask token, else its unknown token', async () => {
  const dir = tempDir();
  const tok = join(dir, 'tok');
  mkdirSync(tok);
  copyFileSync(join(TEACHER(), 'tokenizer.json'), join(tok, 'tokenizer.json'));
  const config = JSON.parse(readFileSync(join(TEACHER(), 'tokenizer_config.json'), 'utf8'));
  writeFileSync(join(tok, 'tokenizer_config.json'), JSON.stringify({ ...config, mask_token: '<mask>' }));
  const input = jsonl(dir, 'in.jsonl', [{ text: REVIEWS[0] }]);
  const s = await augmentExamples([input], {
    out: join(dir, 'o.jsonl'),
    pMask: 1,
    pNgram: 0,
    tokenizer: tok,
    unlabeled: true,
    progress: false,
  });
  assert.equal(s.config.maskToken, '[UNK]');
  assert.ok(rows(join(dir, 'o.jsonl')).every((r) => splitWords(r.text).words.every((w) => w === 'UNK')));
});

test('bad input is refused before any work, naming the file or option; nothing is written', async () => {
  const dir = tempDir();
  const good = jsonl(dir, 'in.jsonl', [{ text: REVIEWS[0] }]);
  const empty = join(dir, 'empty.jsonl');
  writeFileSync(empty, '');
  const out = join(dir, 'out.jsonl');
  const cases: [object, RegExp, (new (...a: never[]) => Error)?][] = [
    [{ files: [empty] }, /'--data' .*empty\.jsonl: the file is empty/],
    [{ files: [join(dir, 'missing.jsonl')] }, /'--data' .*missing\.jsonl: no such file/],
    [{ files: [dir] }, /is a folder, not a data file/],
    [{ copies: 0 }, /'--copies' must be an integer ≥ 1, got 0/, OptionError],
    [{ copies: 1.5 }, /'--copies' must be an integer ≥ 1, got 1\.5/, OptionError],
    [{ pMask: 1.5 }, /'--p-mask' must be a probability in \[0, 1\], got 1\.5/, OptionError],
    [{ pNgram: -0.1 }, /'--p-ngram' must be a probability in \[0, 1\], got -0\.1/, OptionError],
    [{ pReplace: 0.2 }, /'--p-replace' 0\.2 needs words to replace with: give --teacher DIR/, OptionError],
    [{ pReplace: 0.5, pMask: 0.6, wordList: good }, /'--p-mask' \+ '--p-replace' must be at most 1/, OptionError],
    [{ teacher: TEACHER(), wordList: good }, /give one/, OptionError],
    [{ maxNgram: 0 }, /'--max-ngram' must be an integer ≥ 1/, OptionError],
    // Options are checked before the (bad) teacher folder is loaded.
    [{ copies: -1, teacher: join(dir, 'no-teacher') }, /'--copies'/, OptionError],
    [{ teacher: join(dir, 'no-teacher') }, /'--teacher' .*no-teacher: no .*tokenizer\.json/],
    // A file that is not text fails on its format before the teacher is loaded.
    [{ files: [join(TEACHER(), 'onnx', 'model.onnx')], teacher: join(dir, 'no-teacher') }, /model\.onnx: looks like a binary file/],
    [{ out: dir }, /'--out' .* is a folder/, OptionError],
    [{ out: good }, /'--out' .*in\.jsonl is one of the input files/, OptionError],
  ];
  for (const [o, message, kind] of cases) {
    const { files, ...rest } = o as { files?: string[] };
    await assert.rejects(
      augmentExamples(files ?? [good], { out, unlabeled: true, progress: false, ...rest }),
      (e: Error) => e instanceof (kind ?? UserError) && message.test(e.message),
      `${JSON.stringify(o)} → ${message}`,
    );
    assert.ok(!existsSync(out) && !existsSync(`${out}.json`));
  }
  // Files with no readable row: nothing written.
  const blank = join(dir, 'blank.txt');
  writeFileSync(blank, '\n  \n');
  await assert.rejects(augmentExamples([blank], { out, format: 'text', progress: false }), /blank\.txt: holds only blank lines/);
  const malformed = jsonl(dir, 'malformed.jsonl', [{ text: '' }, { text: '  ' }]);
  await assert.rejects(
    augmentExamples([malformed], { out, unlabeled: true, progress: false }),
    /malformed\.jsonl: no rows to augment \(2 malformed, 0 neutral, 0 blank lines skipped\); nothing was written/,
  );
  assert.ok(!existsSync(out) && !existsSync(`${out}.json`));
});
