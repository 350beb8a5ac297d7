// `kd cache build | verify | info | merge`: teacher outputs computed once and stored.
import { Command, Option } from 'commander';
import { buildCache, parseShard } from '../cache/build.js';
import { FORMATS, type Format } from '../data/formats/types.js';
import { cacheInfo, mergeCaches, verifyCache } from '../cache/reader.js';
import {
  batchTokensOption,
  dataOptions,
  numberOption,
  printJsonLine,
  sessionOptions,
  toReadOptions,
  usesDevice,
  type DataCliOptions,
} from './common.js';
import { quantizeLoadOptions, quantizeOptions } from './teacher.js';
import type { TeacherQuantize } from '../quantize/teacher.js';

function buildCommand(): Command {
  const cmd = new Command('build')
    .description('run the teacher over the data once and store logits and embeddings (resumable, shardable)')
    .requiredOption('--teacher <dir>', 'teacher folder')
    .requiredOption('--data <file...>', 'data files (duplicate ids removed)')
    .option('--transfer <file...>', 'transfer sets: files read as unlabelled rows (after --data), for kd train --transfer')
    .addOption(
      new Option('--transfer-format <format>', 'format of the --transfer files (default: as --format)').choices([...FORMATS, 'auto']),
    )
    .requiredOption('--out <dir>', 'cache folder')
    .addOption(new Option('--dtype <dtype>', 'embedding storage type').choices(['float16', 'float32']).default('float16'))
    .option('--embedding <mode>', 'full | pca:K | none', 'full')
    .option('--pca-fit <file>', 'fit the PCA on this file (default: the first data file)')
    .option('--shard <k/n>', 'build part k of n (0-based), e.g. from a job array index')
    .option('--shard-rows <n>', 'rows per shard file', '4096')
    .option('--batch-tokens <n>', 'tokens per teacher batch (default 2048 on CPU, 16384 on a GPU)')
    .option('--max-length <n>', 'truncate inputs to this many tokens')
    .option('--json', 'print the manifest summary as the last line of stdout');
  for (const o of dataOptions()) cmd.addOption(o);
  return usesDevice(quantizeOptions(cmd)).action(
    async (
      o: DataCliOptions & {
        teacher: string;
        data: string[];
        transfer?: string[];
        transferFormat?: Format | 'auto';
        out: string;
        dtype: 'float16' | 'float32';
        embedding: string;
        pcaFit?: string;
        shard?: string;
        shardRows: string;
        batchTokens?: string;
        maxLength?: string;
        json?: boolean;
        quantize: TeacherQuantize;
        minAgreement?: string;
        recheckMargin?: string;
      },
    ) => {
      const manifest = await buildCache({
        teacher: o.teacher,
        data: o.data,
        ...(o.transfer ? { transfer: o.transfer } : {}),
        ...(o.transferFormat ? { transferFormat: o.transferFormat } : {}),
        read: toReadOptions(o),
        out: o.out,
        dtype: o.dtype,
        embedding: o.embedding,
        ...(o.pcaFit ? { pcaFit: o.pcaFit } : {}),
        ...(o.shard ? { shard: parseShard(o.shard) } : {}),
        shardRows: numberOption('shard-rows', o.shardRows, { integer: true, min: 1 }),
        ...batchTokensOption(o.batchTokens),
        ...(o.maxLength ? { maxLength: numberOption('max-length', o.maxLength, { integer: true, min: 2 }) } : {}),
        session: sessionOptions(cmd),
        ...quantizeLoadOptions(o),
        ...(process.env.KD_CACHE_STOP_AFTER_SHARDS ? { stopAfterShards: Number(process.env.KD_CACHE_STOP_AFTER_SHARDS) } : {}),
        log: (l) => process.stderr.write(`${l}\n`),
      });
      const rows = manifest.shards.reduce((s, e) => s + e.rows, 0);
      process.stdout.write(
        `cache ${o.out}: ${rows} rows in ${manifest.shards.length} ` +
          `shard(s)${manifest.part ? ` (part ${manifest.part.k}/${manifest.part.n} of ${manifest.shardCount} shards)` : ''}, ` +
          `embedding ${manifest.embedding.mode} ${manifest.embedding.dim} ${manifest.embedding.dtype}` +
          `${manifest.data.unlabeled ? `; data: ${manifest.data.labeled} labelled, ${manifest.data.unlabeled} unlabelled rows` : ''}\n`,
      );
      if (o.json)
        printJsonLine({
          out: o.out,
          rows,
          labeled: manifest.data.labeled,
          unlabeled: manifest.data.unlabeled,
          shards: manifest.shards.length,
          shardCount: manifest.shardCount,
          part: manifest.part,
          embedding: manifest.embedding,
          teacher: manifest.teacher.fingerprint,
          precision: manifest.teacher.precision,
          ...(manifest.teacher.int8Check ? { int8Check: manifest.teacher.int8Check } : {}),
        });
    },
  );
}

function verifyCommand(): Command {
  return new Command('verify')
    .description('check every shard against the manifest (sizes, checksums, headers, counts)')
    .argument('<cache>', 'cache folder')
    .option('--json', 'print the result as the last line of stdout')
    .action((dir: string, o: { json?: boolean }) => {
      const r = verifyCache(dir);
      for (const p of r.problems) process.stdout.write(`${p.shard}: ${p.problem}\n`);
      process.stdout.write(r.ok ? `ok: ${r.shards} shard(s), ${r.rows} rows\n` : `${r.problems.length} problem(s)\n`);
      if (o.json) printJsonLine(r);
      if (!r.ok) process.exitCode = 1;
    });
}

function infoCommand(): Command {
  return new Command('info')
    .description('counts, dims, dtype, size on disk and teacher accuracy on the cached rows')
    .argument('<cache>', 'cache folder')
    .option('--json', 'print the info as the last line of stdout')
    .action((dir: string, o: { json?: boolean }) => {
      const info = cacheInfo(dir);
      process.stdout.write(
        `${info.rows} rows, ${info.shards} shard(s), embedding ${JSON.stringify(info.embedding)}, ` +
          `${((info.sizeOnDiskBytes as number) / 1e6).toFixed(1)} MB, teacher accuracy ` +
          `${info.teacherAccuracy === null ? 'n/a' : `${(100 * (info.teacherAccuracy as number)).toFixed(2)}%`}` +
          `${info.unlabeled ? ` on the labelled rows (${info.unlabeled as number} rows unlabelled)` : ''}\n`,
      );
      if (o.json) printJsonLine(info);
    });
}

function mergeCommand(): Command {
  return new Command('merge')
    .description('join the parts of a sharded build (kd cache build --shard k/n) into one cache, without copying data')
    .requiredOption('--out <dir>', 'merged cache folder (its manifest points at the parts)')
    .argument('<part...>', 'part folders')
    .action((parts: string[], o: { out: string }) => {
      const m = mergeCaches(o.out, parts);
      process.stdout.write(`merged ${parts.length} part(s): ${m.shards.length} shards, ${m.data.rows} rows, in ${o.out}\n`);
    });
}

export function cacheCommand(): Command {
  const cache = new Command('cache').description('build, check and inspect teacher-output caches');
  cache.addCommand(buildCommand());
  cache.addCommand(verifyCommand());
  cache.addCommand(infoCommand());
  cache.addCommand(mergeCommand());
  return cache;
}
