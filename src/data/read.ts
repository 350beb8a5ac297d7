// Reading datasets: format dispatch, per-file summaries, strict mode and rejects.
import { statSync } from 'node:fs';
import { ConfigError, DataError, type MalformedReason, type Reject } from './errors.js';
import type { Example } from './example.js';
import { resolveFormat } from './detect.js';
import { LABEL_NAMES, type ClassCount } from './labels.js';
import { readLines, type LineReaderStats } from './lines.js';
import { AmazonCsvParser, checkAmazonClasses, parseAmazonFastTextLine } from './formats/amazon.js';
import { CsvRecordParser } from './formats/csv-records.js';
import { readParquetRows } from './formats/parquet.js';
import { JsonlParser } from './formats/records.js';
import { parseSentiment140Line } from './formats/sentiment140.js';
import { parseTextLine } from './formats/text.js';
import type { FieldMapping, Format, ParseContext, RowEvent } from './formats/types.js';
import { Progress } from '../util/progress.js';

export interface ReadOptions extends FieldMapping {
  /** Format of every file, or 'auto' (default) to detect each one. */
  format?: Format | 'auto';
  /** 2 (default), 3 (keep neutral) or 5 (Amazon Full star ratings). */
  classes?: ClassCount;
  /** Throw a DataError at the first malformed row instead of skipping it. */
  strict?: boolean;
  /** Receives every malformed row that is skipped. */
  onReject?: (reject: Reject) => void;
  /** Show a progress line on a TTY (default true). */
  progress?: boolean;
}

export interface FileSummary {
  file: string;
  format: Format;
  bytes: number;
  rows: number;
  /** Rows per class index. */
  labelCounts: number[];
  /** Rows read with a label, and without one (`--format text`, `--unlabeled`). */
  labeled: number;
  unlabeled: number;
  /** Blank lines skipped (`--format text`). */
  blankLines: number;
  neutral: number;
  malformed: Partial<Record<MalformedReason, number>>;
  /** Lines that were not valid UTF-8 and were decoded as Windows-1252. */
  latin1Lines: number;
}

export interface ReadSummary {
  /** The format of all files, or "mixed". */
  format: string;
  classes: ClassCount;
  rows: number;
  labels: Record<string, number>;
  /** Rows read with a label, and without one (`--format text`, `--unlabeled`). */
  labeled: number;
  unlabeled: number;
  /** Blank lines skipped (`--format text`). */
  blankLines: number;
  skipped: { neutral: number; malformed: number };
  malformed: Partial<Record<MalformedReason, number>>;
  latin1Lines: number;
  files: FileSummary[];
}

function checkClasses(file: string, format: Format, classes: ClassCount): void {
  if (format === 'amazon-csv' || format === 'amazon-fasttext') checkAmazonClasses(file, classes);
  if (format === 'sentiment140' && classes === 5) {
    throw new ConfigError(
      `${file}: '--classes 5' does not fit Sentiment140: its polarity is 0, 2 or 4; use 2 (neutral rows skipped) or 3 (neutral kept)`,
    );
  }
}

type LineParser = (line: string, lineNo: number) => RowEvent | RowEvent[] | null;

function lineParser(format: Exclude<Format, 'parquet'>, ctx: ParseContext): { parse: LineParser; finish?: () => RowEvent[] } {
  switch (format) {
    case 'sentiment140':
      return { parse: (l, n) => parseSentiment140Line(l, n, ctx) };
    case 'amazon-csv': {
      const p = new AmazonCsvParser(ctx);
      return { parse: (l, n) => p.push(l, n), finish: () => p.finish() };
    }
    case 'amazon-fasttext':
      return { parse: (l, n) => parseAmazonFastTextLine(l, n, ctx) };
    case 'jsonl': {
      const p = new JsonlParser(ctx);
      return { parse: (l, n) => p.parse(l, n) };
    }
    case 'csv': {
      const p = new CsvRecordParser(ctx);
      return { parse: (l, n) => p.push(l, n), finish: () => p.finish() };
    }
    case 'text':
      return { parse: (l, n) => parseTextLine(l, n, ctx) };
  }
}

/**
 * Streams the examples of one or more files, in file order. Memory stays bounded by
 * one read chunk (1 MiB) plus one Parquet row group, whatever the file size.
 *
 * ```ts
 * const reader = new DatasetReader(['train.csv'], { classes: 2 });
 * for await (const example of reader) console.log(example.id, example.label);
 * reader.summary.rows; // 20000
 * ```
 */
export class DatasetReader implements AsyncIterable<Example> {
  readonly summary: ReadSummary;
  private readonly classes: ClassCount;

  constructor(
    readonly files: readonly string[],
    readonly options: ReadOptions = {},
  ) {
    if (files.length === 0) throw new TypeError("'files' must name at least one file");
    this.classes = options.classes ?? 2;
    this.summary = {
      format: '',
      classes: this.classes,
      rows: 0,
      labels: Object.fromEntries(LABEL_NAMES[this.classes].map((n) => [n, 0])),
      labeled: 0,
      unlabeled: 0,
      blankLines: 0,
      skipped: { neutral: 0, malformed: 0 },
      malformed: {},
      latin1Lines: 0,
      files: [],
    };
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Example> {
    const formats: Format[] = [];
    for (const file of this.files) {
      formats.push(await resolveFormat(file, this.options.format ?? 'auto'));
      checkClasses(file, formats.at(-1)!, this.classes);
    }
    this.summary.format = new Set(formats).size === 1 ? formats[0]! : 'mixed';
    const totalBytes = this.files.reduce((sum, f) => sum + statSync(f).size, 0);
    const progress = new Progress('reading', {
      unit: 'MB',
      total: totalBytes / 1e6,
      ...(this.options.progress === false ? { enabled: false } : {}),
    });
    let bytesBefore = 0;
    for (const [i, file] of this.files.entries()) {
      const format = formats[i]!;
      const fileSummary: FileSummary = {
        file,
        format,
        bytes: statSync(file).size,
        rows: 0,
        labelCounts: new Array<number>(this.classes).fill(0),
        labeled: 0,
        unlabeled: 0,
        blankLines: 0,
        neutral: 0,
        malformed: {},
        latin1Lines: 0,
      };
      this.summary.files.push(fileSummary);
      const ctx: ParseContext = { file, classes: this.classes, fields: this.options };
      const onBytes = (b: number) => progress.update((bytesBefore + b) / 1e6, `${this.summary.rows} rows`);
      const handle = (event: RowEvent): Example | null => this.account(event, fileSummary);
      if (format === 'parquet') {
        for await (const events of readParquetRows(ctx, onBytes)) {
          for (const event of events) {
            const ex = handle(event);
            if (ex) yield ex;
          }
        }
      } else {
        const stats: LineReaderStats = { latin1Lines: 0, bytesRead: 0 };
        const parser = lineParser(format, ctx);
        for await (const batch of readLines(file, stats, onBytes)) {
          for (let k = 0; k < batch.lines.length; k++) {
            const result = parser.parse(batch.lines[k]!, batch.firstLine + k);
            if (result === null) continue;
            for (const event of Array.isArray(result) ? result : [result]) {
              const ex = handle(event);
              if (ex) yield ex;
            }
          }
        }
        for (const event of parser.finish?.() ?? []) {
          const ex = handle(event);
          if (ex) yield ex;
        }
        fileSummary.latin1Lines = stats.latin1Lines;
        this.summary.latin1Lines += stats.latin1Lines;
      }
      bytesBefore += fileSummary.bytes;
    }
    progress.finish(`${this.summary.rows} rows`);
  }

  private account(event: RowEvent, file: FileSummary): Example | null {
    switch (event.kind) {
      case 'example': {
        const { label } = event.example;
        file.rows += 1;
        this.summary.rows += 1;
        if (label === null) {
          file.unlabeled += 1;
          this.summary.unlabeled += 1;
        } else {
          file.labeled += 1;
          this.summary.labeled += 1;
          file.labelCounts[label]! += 1;
          this.summary.labels[LABEL_NAMES[this.classes][label]!]! += 1;
        }
        return event.example;
      }
      case 'blank':
        file.blankLines += 1;
        this.summary.blankLines += 1;
        return null;
      case 'neutral':
        file.neutral += 1;
        this.summary.skipped.neutral += 1;
        return null;
      case 'malformed': {
        const { reject } = event;
        if (this.options.strict) throw new DataError(reject);
        file.malformed[reject.reason] = (file.malformed[reject.reason] ?? 0) + 1;
        this.summary.malformed[reject.reason] = (this.summary.malformed[reject.reason] ?? 0) + 1;
        this.summary.skipped.malformed += 1;
        this.options.onReject?.(reject);
        return null;
      }
    }
  }
}

/** Reads everything into memory (small files, tests). */
export async function readAllExamples(
  files: readonly string[],
  options: ReadOptions = {},
): Promise<{ examples: Example[]; summary: ReadSummary }> {
  const reader = new DatasetReader(files, options);
  const examples: Example[] = [];
  for await (const ex of reader) examples.push(ex);
  return { examples, summary: reader.summary };
}
