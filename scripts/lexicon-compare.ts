// How close each lexicon member comes to its npm package: accuracy of package, in-graph member
// (ONNX) and TypeScript reference on labelled sentences, and agreement. Usage:
// node dist/scripts/lexicon-compare.js --tokenizer <teacher or tokenizer folder> <file.jsonl>...
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { TextTokenizer } from '../src/text/tokenizer.js';
import { lexiconScore, lexiconScoreGraph, lexiconTables } from '../src/teacher/lexicon.js';
import { LEXICON_NAMES, type LexiconName } from '../src/teacher/lexicon-data.js';
import { exportModel } from '../src/engine/train-graph.js';
import { ParameterStore } from '../src/engine/params.js';
import { ort } from '../src/engine/session.js';
import { accuracyReport } from '../src/eval/metrics.js';

const require = createRequire(import.meta.url);
const Sentiment = require('sentiment') as new () => { analyze(t: string): { score: number } };
const afinn = new Sentiment();
const vader = (require('vader-sentiment') as { SentimentIntensityAnalyzer: { polarity_scores(t: string): { compound: number } } })
  .SentimentIntensityAnalyzer;
const wink = require('wink-sentiment') as (t: string) => { score: number; normalizedScore: number };

/** The npm package's score of a text (positive above 0). */
const NPM: Record<LexiconName, (t: string) => number> = {
  afinn: (t) => afinn.analyze(t).score,
  vader: (t) => vader.polarity_scores(t).compound,
  wink: (t) => wink(t).normalizedScore,
};

const SEQ = { dtype: 'int64' as const, shape: ['batch_size', 'sequence_length'] };
const pct = (x: number) => (100 * x).toFixed(1);

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const at = args.indexOf('--tokenizer');
  if (at < 0 || !args[at + 1]) throw new Error('usage: lexicon-compare --tokenizer <dir> <file.jsonl>...');
  const tokenizer = TextTokenizer.fromFolder(args[at + 1]!, { maxLength: 128 });
  const files = args.filter((_, i) => i !== at && i !== at + 1);
  const out: Record<string, unknown>[] = [];
  console.log('| lexicon | data | npm package | in-graph member | TS reference | member = package | member = reference |');
  console.log('|---|---|---|---|---|---|---|');
  for (const name of LEXICON_NAMES) {
    const t = await lexiconTables(name, tokenizer);
    const session = await ort.InferenceSession.create(
      exportModel(
        {
          inputs: { input_ids: SEQ, attention_mask: SEQ },
          forward: (ctx, i) => ({ score: lexiconScoreGraph(ctx.g, t, i.input_ids!, i.attention_mask!) }),
        },
        new ParameterStore('float32'),
      ),
    );
    for (const file of files) {
      const rows = readFileSync(file, 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l) as { text: string; label: string });
      const gold = rows.map((r) => (r.label === 'positive' ? 1 : 0));
      const enc = await tokenizer.encode(rows.map((r) => r.text));
      const b = tokenizer.pad(enc);
      const dims = [b.size, b.length];
      const graph = (
        await session.run({
          input_ids: new ort.Tensor('int64', b.inputIds, dims),
          attention_mask: new ort.Tensor('int64', b.attentionMask, dims),
        })
      ).score!.data as Float32Array;
      const reference = enc.map((e) => lexiconScore(t, e.ids));
      const npm = rows.map((r) => NPM[name](r.text));
      const label = (s: ArrayLike<number>) => Array.from(s, (v) => (v > 0 ? 1 : 0));
      const [pn, pg, pr] = [label(npm), label(graph), label(reference)];
      const acc = (p: number[]) => accuracyReport(gold, p, 2);
      const agree = (a: number[], c: number[]) => a.reduce((s, v, i) => s + (v === c[i] ? 1 : 0), 0) / a.length;
      const cell = (p: number[]) => {
        const r = acc(p);
        return `${pct(r.accuracy)}% (${pct(r.interval95.low)}–${pct(r.interval95.high)})`;
      };
      console.log(
        `| ${name} | ${basename(file)} | ${cell(pn)} | ${cell(pg)} | ${cell(pr)} | ${pct(agree(pg, pn))}% | ${pct(agree(pg, pr))}% |`,
      );
      out.push({
        lexicon: name,
        data: file,
        n: rows.length,
        npm: acc(pn),
        graph: acc(pg),
        reference: acc(pr),
        agreementWithNpm: agree(pg, pn),
        agreementWithReference: agree(pg, pr),
        maxAbsDifferenceGraphReference: Math.max(...reference.map((r, i) => Math.abs(r - graph[i]!))),
        coverage: t.coverage,
      });
    }
    await session.release();
  }
  console.log(JSON.stringify(out));
}

await main();
