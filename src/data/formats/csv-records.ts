// Generic CSV with a header row. Records come from the shared CsvRecordSplitter (quoted
// fields may span lines, RFC 4180); a quote left open is reported where it opened.
import { CsvRecordSplitter, MAX_RECORD_LINES, parseCsvRecord, type CsvParse, type CsvSplit, type UnclosedCause } from '../csv.js';
import { FormatError, truncateRaw, type Reject } from '../errors.js';
import { recordToRow, resolveFields, type ResolvedFields } from './records.js';
import type { ParseContext, RowEvent } from './types.js';

const UNCLOSED_WHY: Record<UnclosedCause, string> = {
  end_of_file: 'before the end of the file',
  line_limit: `within ${MAX_RECORD_LINES} lines`,
  invalid_continuation: 'on this line, and the lines after it do not continue it as valid CSV',
};

/**
 * The reject for a quote that never closed, named by the column it opened in (`columns`:
 * the header, or a format's fixed column names; null before a header is read).
 */
export function unclosedQuoteReject(
  file: string,
  split: Extract<CsvSplit, { kind: 'unclosed' }>,
  columns: readonly string[] | null,
): Reject {
  const parsed = parseCsvRecord(split.text);
  const column = parsed.ok ? 1 : parsed.column;
  const name = columns?.[column - 1];
  return {
    file,
    line: split.line,
    reason: 'unclosed_quote',
    field: columns ? `'${name ?? `column ${column}`}' (column ${column})` : `column ${column}`,
    message: `the quoted field opened on this line is not closed ${UNCLOSED_WHY[split.cause]}`,
    raw: truncateRaw(split.text),
  };
}

/** A CSV reader fed physical lines: one {@link CsvRecordSplitter} joins them into records for `handle`. */
export abstract class CsvLineParser {
  private readonly records = new CsvRecordSplitter();

  constructor(protected readonly ctx: ParseContext) {}

  /** Feeds one physical line; returns the rows it completes. */
  push(line: string, lineNo: number): RowEvent[] {
    return this.handle(this.records.push(line, lineNo));
  }

  /** Ends the file: a quote still open is reported where it opened, the lines after it re-read. */
  finish(): RowEvent[] {
    return this.handle(this.records.finish());
  }

  protected abstract handle(splits: CsvSplit[]): RowEvent[];
}

/** CSV with a header row: field names come from the header, records from {@link CsvRecordSplitter}. */
export class CsvRecordParser extends CsvLineParser {
  private header: string[] | null = null;
  private fields: ResolvedFields | null = null;

  protected handle(splits: CsvSplit[]): RowEvent[] {
    const out: RowEvent[] = [];
    for (const split of splits) {
      if (split.kind === 'record') this.complete(split.text, split.line, split.parsed, out);
      else out.push({ kind: 'malformed', reject: unclosedQuoteReject(this.ctx.file, split, this.header) });
    }
    return out;
  }

  private complete(text: string, lineNo: number, parsed: CsvParse, out: RowEvent[]): void {
    if (!this.header) {
      if (!parsed.ok)
        throw new FormatError(
          this.ctx.file,
          `line ${lineNo}: the header row is not valid CSV (${parsed.error.replace('_', ' ')} in column ${parsed.column})`,
        );
      this.header = parsed.fields.map((f) => f.trim());
      this.fields = resolveFields(this.header, this.ctx.fields, `${this.ctx.file}:${lineNo} (header)`);
      return;
    }
    const where = { file: this.ctx.file, line: lineNo, raw: truncateRaw(text) };
    if (!parsed.ok) {
      const name = this.header[parsed.column - 1] ?? `column ${parsed.column}`;
      out.push({
        kind: 'malformed',
        reject: {
          ...where,
          reason: parsed.error,
          field: `'${name}' (column ${parsed.column})`,
          message: 'a quote inside the quoted field is neither doubled nor followed by a comma (RFC 4180 doubles quotes: "")',
        },
      });
      return;
    }
    if (parsed.fields.length !== this.header.length) {
      out.push({
        kind: 'malformed',
        reject: {
          ...where,
          reason: 'wrong_column_count',
          message: `expected ${this.header.length} columns (${this.header.join(',')}), got ${parsed.fields.length}`,
        },
      });
      return;
    }
    const record: Record<string, unknown> = {};
    this.header.forEach((name, i) => (record[name] = parsed.fields[i]));
    out.push(recordToRow(record, this.fields!, this.ctx, lineNo, text));
  }
}
