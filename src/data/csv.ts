// RFC 4180 field parsing, one record at a time, reporting errors instead of throwing so a
// bad row can be skipped and the rest of the file still read. (csv-parse stops the stream
// at an unclosed quote and loses every row after it; these files need row-level recovery.)

export type CsvParse = { ok: true; fields: string[] } | { ok: false; error: 'unclosed_quote' | 'stray_quote'; column: number };

/**
 * Parses one record. Quoted fields may contain commas, doubled quotes and (when the
 * caller joined physical lines) newlines. A quote inside a quoted field that is not
 * doubled and not followed by the delimiter is a `stray_quote`; a quoted field still
 * open at the end is an `unclosed_quote`. `column` is 1-based. Quotes inside an
 * unquoted field are kept literally.
 */
export function parseCsvRecord(text: string, delimiter = ','): CsvParse {
  const fields: string[] = [];
  const n = text.length;
  const delim = delimiter.charCodeAt(0);
  let i = 0;
  for (;;) {
    const column = fields.length + 1;
    if (i < n && text.charCodeAt(i) === 34) {
      // Quoted field.
      let value = '';
      let segStart = i + 1;
      let j = i + 1;
      for (;;) {
        const q = text.indexOf('"', j);
        if (q < 0) return { ok: false, error: 'unclosed_quote', column };
        if (q + 1 < n && text.charCodeAt(q + 1) === 34) {
          value += text.slice(segStart, q + 1);
          j = q + 2;
          segStart = j;
          continue;
        }
        value += text.slice(segStart, q);
        i = q + 1;
        break;
      }
      fields.push(value);
      if (i === n) return { ok: true, fields };
      if (text.charCodeAt(i) !== delim) return { ok: false, error: 'stray_quote', column };
      i += 1;
    } else {
      const d = text.indexOf(delimiter, i);
      const end = d < 0 ? n : d;
      // A quote inside an unquoted field (5" screen) is kept as a character, as most writers expect.
      fields.push(text.slice(i, end));
      if (d < 0) return { ok: true, fields };
      i = d + 1;
    }
  }
}

/** A record may span at most this many physical lines before its open quote is an error. */
export const MAX_RECORD_LINES = 200;

/**
 * What the record splitter hands on: a whole record (its text, the line it starts on, and its
 * parse: fields, or a stray quote), or a quote opened on `line` and never closed (`cause` says
 * why it was given up on), with that line's text.
 */
export type CsvSplit =
  { kind: 'record'; text: string; line: number; parsed: CsvParse } | { kind: 'unclosed'; text: string; line: number; cause: UnclosedCause };

/** Why an open quote was given up on: the file ended, the line limit was hit, or the lines after it made no valid record. */
export type UnclosedCause = 'end_of_file' | 'line_limit' | 'invalid_continuation';

/**
 * Joins physical lines into RFC 4180 records: a quoted field may hold newlines. Blank lines
 * between records are not records. A quote left open for {@link MAX_RECORD_LINES} lines (or
 * to the end of the file) is reported at the line it opened on, and the lines after it are
 * read again as records, so one stray quote costs one row, not the rest of the file.
 * Every CSV reader (generic with header, Amazon) splits records here.
 */
export class CsvRecordSplitter {
  private pending: string[] = [];
  private pendingStart = 0;

  constructor(
    private readonly maxLines = MAX_RECORD_LINES,
    private readonly delimiter = ',',
  ) {}

  /** Feeds one physical line; returns what it completes. */
  push(line: string, lineNo: number): CsvSplit[] {
    const out: CsvSplit[] = [];
    this.feed(line, lineNo, out);
    return out;
  }

  /** Ends the file: a record still open is reported, and the lines after its start re-read. */
  finish(): CsvSplit[] {
    const out: CsvSplit[] = [];
    while (this.pending.length > 0) this.giveUp('end_of_file', out);
    return out;
  }

  private feed(line: string, lineNo: number, out: CsvSplit[]): void {
    if (this.pending.length === 0) {
      if (line.trim() === '') return;
      this.pendingStart = lineNo;
    }
    this.pending.push(line);
    const text = this.pending.length === 1 ? line : this.pending.join('\n');
    // A record goes on only while a validly opened quoted field is still open: a stray quote
    // ends it (as a malformed row), and a quote inside an unquoted field (5" screen) is text.
    const parsed = parseCsvRecord(text, this.delimiter);
    if (parsed.ok || (parsed.error === 'stray_quote' && this.pending.length === 1)) {
      this.pending = [];
      out.push({ kind: 'record', text, line: this.pendingStart, parsed });
    } else if (parsed.error === 'stray_quote') {
      // The next lines do not continue the open field as CSV: the quote was never meant to
      // span lines, so only its own line is lost.
      this.giveUp('invalid_continuation', out);
    } else if (this.pending.length >= this.maxLines) {
      this.giveUp('line_limit', out);
    }
  }

  private giveUp(cause: UnclosedCause, out: CsvSplit[]): void {
    const [first, ...rest] = this.pending;
    const start = this.pendingStart;
    this.pending = [];
    out.push({ kind: 'unclosed', text: first!, line: start, cause });
    rest.forEach((l, i) => this.feed(l, start + 1 + i, out));
  }
}

/**
 * Parses the start of a record that may be cut (a bounded prefix for format sniffing, or a
 * first line whose quoted field goes on past a newline): the field left open is closed where
 * the text ends. Null when even the prefix is not valid CSV.
 */
export function parseCsvPrefix(text: string, delimiter = ','): string[] | null {
  const parsed = parseCsvRecord(text, delimiter);
  if (parsed.ok) return parsed.fields;
  if (parsed.error !== 'unclosed_quote') return null;
  const closed = parseCsvRecord(`${text}"`, delimiter);
  return closed.ok ? closed.fields : null;
}
