// Amazon Reviews polarity / full (Zhang, Zhao & LeCun 2015): the official CSV
// "label","title","text" and the fastText form `__label__2 Title: text`.
// Labels: 1 = negative, 2 = positive (polarity); 1..5 stars (full, --classes 5).
import { parseCsvPrefix, parseCsvRecord, type CsvParse, type CsvSplit } from '../csv.js';
import { CsvLineParser, unclosedQuoteReject } from './csv-records.js';
import { ConfigError, truncateRaw } from '../errors.js';
import { contentId, joinTitleAndBody } from '../example.js';
import type { ClassCount } from '../labels.js';
import { shortHash } from '../../util/hash.js';
import type { ParseContext, RowEvent } from './types.js';

export function checkAmazonClasses(file: string, classes: ClassCount): void {
  if (classes === 3) {
    throw new ConfigError(
      `${file}: '--classes 3' does not fit Amazon reviews: use 2 (polarity, labels 1-2) or 5 (Amazon Full, labels 1-5)`,
    );
  }
}

function labelIndex(raw: string, classes: ClassCount): number {
  if (!/^[1-5]$/.test(raw)) return -1;
  const k = Number(raw);
  return k <= classes ? k - 1 : -1;
}

function labelMessage(raw: string, classes: ClassCount): string {
  if (classes === 2) {
    const hint = /^[3-5]$/.test(raw) ? '; labels 3-5 are Amazon Full star ratings: use --classes 5' : '';
    return `expected 1 (negative) or 2 (positive), got ${JSON.stringify(raw)}${hint}`;
  }
  return `expected a star rating 1-5, got ${JSON.stringify(raw)}`;
}

function amazonExample(title: string, body: string, label: number, file: string, line: number): RowEvent {
  const text = joinTitleAndBody(title, body);
  const textHash = shortHash(text);
  return { kind: 'example', example: { id: contentId(textHash), textHash, label, text, title, body, file, line } };
}

const FASTTEXT_RE = /^__label__(\S*)\s(.*)$/s;

export function looksLikeAmazonFastText(line: string): boolean {
  return /^__label__[1-5]\s/.test(line);
}

/**
 * Format sniffing. `cut`: the line is only the start of a record (cut at the sniffing limit,
 * or a quoted field going on past a newline), so the fields seen may be fewer than 3.
 */
export function looksLikeAmazonCsv(line: string, cut = false): boolean {
  if (!line.startsWith('"')) return false;
  if (cut) {
    const fields = parseCsvPrefix(line);
    return fields !== null && fields.length >= 2 && fields.length <= 3 && /^[1-5]$/.test(fields[0]!);
  }
  const parsed = parseCsvRecord(line);
  return parsed.ok && parsed.fields.length === 3 && /^[1-5]$/.test(parsed.fields[0]!);
}

/**
 * fastText form. The title ends at the first ": " (the release wrote `title + ": " + text`);
 * a title that itself contains ": " cannot be told apart, which changes only how title and
 * body are stored, not the joined model text, its id or its hash.
 */
export function parseAmazonFastTextLine(line: string, lineNo: number, ctx: ParseContext): RowEvent | null {
  if (line.trim() === '') return null;
  const where = { file: ctx.file, line: lineNo, raw: truncateRaw(line) };
  const m = FASTTEXT_RE.exec(line);
  if (!m) {
    return { kind: 'malformed', reject: { ...where, reason: 'wrong_column_count', message: 'expected "__label__<1|2> <title>: <text>"' } };
  }
  const raw = m[1]!;
  const label = labelIndex(raw, ctx.classes);
  if (label < 0)
    return {
      kind: 'malformed',
      reject: { ...where, reason: 'unknown_label', field: "'__label__'", message: labelMessage(raw, ctx.classes) },
    };
  const rest = m[2]!;
  const sep = rest.indexOf(': ');
  let title = sep >= 0 ? rest.slice(0, sep) : '';
  let body = sep >= 0 ? rest.slice(sep + 2) : rest;
  if (sep < 0 && rest.endsWith(':')) {
    title = rest.slice(0, -1);
    body = '';
  }
  title = title.trim();
  body = body.trim();
  if (title === '' && body === '') {
    return {
      kind: 'malformed',
      reject: { ...where, reason: 'empty_text', field: "'text'", message: 'expected a title or review text after the label, got nothing' },
    };
  }
  return amazonExample(title, body, label, ctx.file, lineNo);
}

const CSV_COLUMNS = ['label', 'title', 'text'] as const;

/**
 * The official CSV, one record at a time from the shared {@link CsvRecordSplitter}: a quoted
 * title or text may hold a line break (RFC 4180), and a row's `line` is the line it starts on.
 */
export class AmazonCsvParser extends CsvLineParser {
  protected handle(splits: CsvSplit[]): RowEvent[] {
    return splits.map((split): RowEvent => {
      if (split.kind === 'record') return parseAmazonCsvRecord(split.text, split.line, this.ctx, split.parsed);
      const reject = unclosedQuoteReject(this.ctx.file, split, CSV_COLUMNS);
      return { kind: 'malformed', reject: { ...reject, message: `${reject.message} (expected 3 quoted columns "label","title","text")` } };
    });
  }
}

/** One whole record (its physical lines joined with '\n'), starting on line `lineNo`. */
export function parseAmazonCsvRecord(
  record: string,
  lineNo: number,
  ctx: ParseContext,
  parsed: CsvParse = parseCsvRecord(record),
): RowEvent {
  const where = { file: ctx.file, line: lineNo, raw: truncateRaw(record) };
  if (!parsed.ok) {
    const message =
      parsed.error === 'unclosed_quote'
        ? `the quoted field in column ${parsed.column} is not closed by the end of the record (expected 3 quoted columns ` +
          `"label","title","text")`
        : `a quote inside the quoted field in column ${parsed.column} is neither doubled nor followed by a comma (RFC 4180 ` +
          `doubles quotes: "")`;
    return {
      kind: 'malformed',
      reject: {
        ...where,
        reason: parsed.error,
        field: `'${CSV_COLUMNS[parsed.column - 1] ?? `column ${parsed.column}`}' (column ${parsed.column})`,
        message,
      },
    };
  }
  if (parsed.fields.length !== 3) {
    return {
      kind: 'malformed',
      reject: {
        ...where,
        reason: 'wrong_column_count',
        message: `expected 3 columns ("label","title","text"), got ${parsed.fields.length}`,
      },
    };
  }
  const [raw, title, body] = parsed.fields as [string, string, string];
  const label = labelIndex(raw.trim(), ctx.classes);
  if (label < 0) {
    return {
      kind: 'malformed',
      reject: { ...where, reason: 'unknown_label', field: "'label' (column 1)", message: labelMessage(raw, ctx.classes) },
    };
  }
  if (title.trim() === '' && body.trim() === '') {
    return {
      kind: 'malformed',
      reject: {
        ...where,
        reason: 'empty_text',
        field: "'title' and 'text' (columns 2-3)",
        message: 'expected a title or review text, got two empty fields',
      },
    };
  }
  return amazonExample(title.trim(), body.trim(), label, ctx.file, lineNo);
}
