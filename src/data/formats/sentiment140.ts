// Sentiment140 (Go, Bhayani & Huang 2009): 6 quoted columns polarity,id,date,query,user,text,
// no header; polarity 0 = negative, 2 = neutral, 4 = positive.
import { parseCsvPrefix, parseCsvRecord } from '../csv.js';
import { truncateRaw } from '../errors.js';
import { resolveLabel } from '../labels.js';
import { shortHash } from '../../util/hash.js';
import type { ParseContext, RowEvent } from './types.js';

const POLARITY = new Map([
  ['0', 'negative'],
  ['2', 'neutral'],
  ['4', 'positive'],
]);
const COLUMNS = 'polarity,id,date,query,user,text';

/**
 * Cheap check used by format detection: a 6-column row whose polarity is 0, 2 or 4 and whose
 * id is a number. `cut`: the line is only the start of a row (cut at the sniffing limit), so
 * it needs polarity and id whole and at most 6 fields.
 */
export function looksLikeSentiment140(line: string, cut = false): boolean {
  const fields = cut ? splitSentiment140Prefix(line) : splitSentiment140(line);
  return fields !== null && POLARITY.has(fields[0]!) && /^\d+$/.test(fields[1]!);
}

function splitSentiment140Prefix(line: string): string[] | null {
  let fields = parseCsvPrefix(line);
  // As in splitSentiment140: raw, undoubled quotes in a tweet.
  if (fields === null && line.startsWith('"')) fields = line.slice(1).split('","');
  return fields !== null && fields.length >= 3 && fields.length <= 6 ? fields : null;
}

/**
 * RFC 4180 first; the official file never doubles quotes inside a tweet, so a row
 * that fails that but is `"…","…",…` with exactly six parts is split on `","`.
 */
function splitSentiment140(line: string): string[] | null {
  const parsed = parseCsvRecord(line);
  if (parsed.ok && parsed.fields.length === 6) return parsed.fields;
  if (line.length >= 2 && line.startsWith('"') && line.endsWith('"')) {
    const parts = line.slice(1, -1).split('","');
    if (parts.length === 6) return parts;
  }
  return null;
}

export function parseSentiment140Line(line: string, lineNo: number, ctx: ParseContext): RowEvent | null {
  if (line.trim() === '') return null;
  const fields = splitSentiment140(line);
  const where = { file: ctx.file, line: lineNo, raw: truncateRaw(line) };
  if (fields === null) {
    const parsed = parseCsvRecord(line);
    if (!parsed.ok) {
      const message =
        parsed.error === 'unclosed_quote'
          ? `the quoted field in column ${parsed.column} is not closed by the end of the line (expected 6 quoted columns ${COLUMNS})`
          : `a quote inside the quoted field in column ${parsed.column} is neither doubled nor followed by a comma (expected 6 ` +
            `quoted columns ${COLUMNS})`;
      return { kind: 'malformed', reject: { ...where, reason: parsed.error, message } };
    }
    return {
      kind: 'malformed',
      reject: { ...where, reason: 'wrong_column_count', message: `expected 6 columns (${COLUMNS}), got ${parsed.fields.length}` },
    };
  }
  const [polarity, id, , , , text] = fields as [string, string, string, string, string, string];
  const name = POLARITY.get(polarity.trim());
  const label = name === undefined ? ({ kind: 'unknown' } as const) : resolveLabel(name, ctx.classes);
  if (label.kind === 'unknown') {
    return {
      kind: 'malformed',
      reject: {
        ...where,
        reason: 'unknown_label',
        field: "'polarity' (column 1)",
        message: `expected 0 (negative), 2 (neutral) or 4 (positive), got ${JSON.stringify(polarity)}`,
      },
    };
  }
  if (label.kind === 'neutral') return { kind: 'neutral', line: lineNo };
  if (!/^\d+$/.test(id)) {
    return {
      kind: 'malformed',
      reject: {
        ...where,
        reason: 'invalid_id',
        field: "'id' (column 2)",
        message: `expected a numeric tweet id, got ${JSON.stringify(id)}`,
      },
    };
  }
  if (text.trim() === '') {
    return {
      kind: 'malformed',
      reject: { ...where, reason: 'empty_text', field: "'text' (column 6)", message: 'expected the tweet text, got an empty field' },
    };
  }
  return { kind: 'example', example: { id, textHash: shortHash(text), label: label.index, text, file: ctx.file, line: lineNo } };
}
