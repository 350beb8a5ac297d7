// Plain text (`--format text`): one UTF-8 text per line, every row unlabelled. Blank lines are
// skipped and counted; the id is the content hash, as for the other readers without an id field.
import { contentId } from '../example.js';
import { shortHash } from '../../util/hash.js';
import type { ParseContext, RowEvent } from './types.js';

export function parseTextLine(line: string, lineNo: number, ctx: ParseContext): RowEvent {
  const text = line.trim();
  if (text === '') return { kind: 'blank', line: lineNo };
  const textHash = shortHash(text);
  return { kind: 'example', example: { id: contentId(textHash), textHash, label: null, text, file: ctx.file, line: lineNo } };
}
