// RFC 4180 field parsing, one record at a time, reporting errors instead of throwing so a
// bad row can be skipped and the rest of the file still read. (csv-parse stops the stream
// at an unclosed quote and loses every row after it; these files need row-level recovery.)

export type CsvParse =
  | { ok: true; fields: string[] }
  | { ok: false; error: 'unclosed_quote' | 'stray_quote'; column: number };

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

/** True when `text` ends inside an open quoted field (so the record continues on the next line). */
export function endsInsideQuotes(text: string): boolean {
  let inside = false;
  let i = text.indexOf('"');
  while (i >= 0) {
    inside = !inside;
    i = text.indexOf('"', i + 1);
  }
  return inside;
}
