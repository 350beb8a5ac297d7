// Generic CSV with a header row. Quoted fields may span lines (RFC 4180); a quote left
// open for too long is reported at the line it opened on and reading resumes after it.
import { endsInsideQuotes, parseCsvRecord } from '../csv.js';
import { FormatError, truncateRaw } from '../errors.js';
import { recordToRow, resolveFields, type ResolvedFields } from './records.js';
import type { ParseContext, RowEvent } from './types.js';

/** A record may span at most this many physical lines before its open quote is an error. */
const MAX_RECORD_LINES = 200;

export class CsvRecordParser {
  private header: string[] | null = null;
  private fields: ResolvedFields | null = null;
  private pending: string[] = [];
  private pendingStart = 0;

  constructor(private readonly ctx: ParseContext) {}

  /** Feeds one physical line; returns the rows it completes. */
  push(line: string, lineNo: number): RowEvent[] {
    const out: RowEvent[] = [];
    if (this.pending.length === 0) {
      if (line.trim() === '') return out;
      this.pendingStart = lineNo;
    }
    this.pending.push(line);
    const joined = this.pending.join('\n');
    if (endsInsideQuotes(joined) && this.pending.length < MAX_RECORD_LINES) return out;
    if (endsInsideQuotes(joined)) this.giveUp(out);
    else this.complete(joined, out);
    return out;
  }

  /** Ends the file: a record still open is reported, and the lines after its start re-read. */
  finish(): RowEvent[] {
    const out: RowEvent[] = [];
    while (this.pending.length > 0) this.giveUp(out);
    return out;
  }

  private giveUp(out: RowEvent[]): void {
    const [first, ...rest] = this.pending;
    const start = this.pendingStart;
    this.pending = [];
    const parsed = parseCsvRecord(first!);
    const column = parsed.ok ? 1 : parsed.column;
    out.push({
      kind: 'malformed',
      reject: {
        file: this.ctx.file,
        line: start,
        reason: 'unclosed_quote',
        field: this.header ? `'${this.header[column - 1] ?? `column ${column}`}' (column ${column})` : `column ${column}`,
        message: `the quoted field opened on this line is not closed ${rest.length + 1 >= MAX_RECORD_LINES ? `within ${MAX_RECORD_LINES} lines` : 'before the end of the file'}`,
        raw: truncateRaw(first!),
      },
    });
    rest.forEach((l, i) => out.push(...this.push(l, start + 1 + i)));
  }

  private complete(text: string, out: RowEvent[]): void {
    const lineNo = this.pendingStart;
    this.pending = [];
    const parsed = parseCsvRecord(text);
    if (!this.header) {
      if (!parsed.ok) throw new FormatError(this.ctx.file, `line ${lineNo}: the header row is not valid CSV (${parsed.error.replace('_', ' ')} in column ${parsed.column})`);
      this.header = parsed.fields.map((f) => f.trim());
      this.fields = resolveFields(this.header, this.ctx.fields, this.ctx.file);
      return;
    }
    const where = { file: this.ctx.file, line: lineNo, raw: truncateRaw(text) };
    if (!parsed.ok) {
      const name = this.header[parsed.column - 1] ?? `column ${parsed.column}`;
      out.push({
        kind: 'malformed',
        reject: { ...where, reason: parsed.error, field: `'${name}' (column ${parsed.column})`, message: 'a quote inside the quoted field is neither doubled nor followed by a comma (RFC 4180 doubles quotes: "")' },
      });
      return;
    }
    if (parsed.fields.length !== this.header.length) {
      out.push({
        kind: 'malformed',
        reject: { ...where, reason: 'wrong_column_count', message: `expected ${this.header.length} columns (${this.header.join(',')}), got ${parsed.fields.length}` },
      });
      return;
    }
    const record: Record<string, unknown> = {};
    this.header.forEach((name, i) => (record[name] = parsed.fields[i]));
    out.push(recordToRow(record, this.fields!, this.ctx, lineNo, text));
  }
}
