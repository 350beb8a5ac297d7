// Generic records (JSONL, CSV with a header, Parquet): fields named by --text-field,
// --label-field, --title-field and --id-field, with defaults that read the Hugging Face
// `amazon_polarity` (label,title,content) and `sentiment140` (text,date,user,sentiment,query)
// schemas and this toolkit's own split files as they are.
import { ConfigError, truncateRaw } from '../errors.js';
import { contentId, joinTitleAndBody } from '../example.js';
import { resolveLabel, type LabelResolution } from '../labels.js';
import { shortHash } from '../../util/hash.js';
import type { FieldMapping, ParseContext, RowEvent } from './types.js';

const TEXT_CANDIDATES = ['text', 'content', 'sentence', 'review', 'body'];
const LABEL_CANDIDATES = ['label', 'sentiment', 'polarity', 'labels'];
const SENTIMENT140_FIELDS = ['text', 'date', 'user', 'query'];
const SENTIMENT140_POLARITY = new Map([
  ['0', 'negative'],
  ['2', 'neutral'],
  ['4', 'positive'],
]);

/** Field names resolved for one file. */
export interface ResolvedFields {
  text: string;
  /** Absent only with `--unlabeled` when the file has no label field. */
  label?: string;
  title?: string;
  id?: string;
  labelMap?: ReadonlyMap<string, string>;
}

/**
 * Resolves field names against the names a file has. Explicit options win and must
 * exist; otherwise the first common name present is used. `where` names the file and the
 * line the names came from (`train.csv:1` for a header, the first object's line for JSONL).
 */
export function resolveFields(available: readonly string[], mapping: FieldMapping, where: string): ResolvedFields {
  const has = new Set(available);
  const list = available.join(', ');
  const pick = (explicit: string | undefined, candidates: string[], option: string, what: string, hint = ''): string => {
    if (explicit !== undefined) {
      if (!has.has(explicit)) throw new ConfigError(`${where}: ${option} ${explicit}: no such field (fields present: ${list})`);
      return explicit;
    }
    const found = candidates.find((c) => has.has(c));
    if (found === undefined) {
      throw new ConfigError(
        `${where}: cannot tell which field holds the ${what} (looked for ${candidates.join(', ')}; fields present: ${list}). ` +
          `Name it with ${option}${hint}`,
      );
    }
    return found;
  };
  const text = pick(mapping.textField, TEXT_CANDIDATES, '--text-field', 'text');
  const unlabeledHint = ', or pass --unlabeled to read rows without labels';
  const label =
    mapping.unlabeled && mapping.labelField === undefined && !LABEL_CANDIDATES.some((c) => has.has(c))
      ? undefined
      : pick(mapping.labelField, LABEL_CANDIDATES, '--label-field', 'label', mapping.unlabeled ? '' : unlabeledHint);
  let title: string | undefined;
  if (mapping.titleField !== undefined) title = pick(mapping.titleField, [], '--title-field', 'title');
  // HF amazon_polarity keeps the body in `content` beside `title`; elsewhere `text` is
  // already the whole text (this toolkit's split files also carry title/body apart).
  else if (has.has('title') && text === 'content') title = 'title';
  let id: string | undefined;
  if (mapping.idField !== undefined) id = pick(mapping.idField, [], '--id-field', 'id');
  else if (has.has('id')) id = 'id';
  let labelMap = mapping.labelMap;
  // Sentiment140 in any container (HF Parquet, or a CSV with its column names) keeps 0/2/4.
  if (
    labelMap === undefined &&
    label !== undefined &&
    (label === 'sentiment' || label === 'polarity') &&
    SENTIMENT140_FIELDS.every((f) => has.has(f))
  ) {
    labelMap = SENTIMENT140_POLARITY;
  }
  return {
    text,
    ...(label !== undefined ? { label } : {}),
    ...(title !== undefined ? { title } : {}),
    ...(id !== undefined ? { id } : {}),
    ...(labelMap ? { labelMap } : {}),
  };
}

function fieldText(value: unknown): string | undefined {
  if (value === null || value === undefined) return undefined;
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') return String(value);
  return undefined;
}

/** Turns one record into a row event. `raw` is what the rejects file shows. */
export function recordToRow(
  record: Record<string, unknown>,
  fields: ResolvedFields,
  ctx: ParseContext,
  lineNo: number,
  raw: string,
): RowEvent {
  const where = { file: ctx.file, line: lineNo, raw: truncateRaw(raw) };
  const unlabeled = ctx.fields.unlabeled === true;
  const required = unlabeled || fields.label === undefined ? [fields.text] : [fields.text, fields.label];
  const missing = required.find((f) => !(f in record));
  if (missing !== undefined) {
    const flag = missing === fields.text ? '--text-field' : '--label-field';
    const hint = missing === fields.text ? '' : ', or pass --unlabeled to read rows without labels';
    return {
      kind: 'malformed',
      reject: {
        ...where,
        reason: 'missing_field',
        field: `'${missing}'`,
        message: `the field is missing (fields present: ${Object.keys(record).join(', ')}); name the right one with ${flag}${hint}`,
      },
    };
  }
  const rawLabel = fields.label === undefined ? undefined : record[fields.label];
  const noLabel = rawLabel === undefined || rawLabel === null || (typeof rawLabel === 'string' && rawLabel.trim() === '');
  const label: LabelResolution = unlabeled && noLabel ? { kind: 'class', index: -1 } : resolveLabel(rawLabel, ctx.classes, fields.labelMap);
  if (label.kind === 'unknown') {
    const known = fields.labelMap ? [...fields.labelMap.keys()].join(', ') : `a class name or index 0-${ctx.classes - 1}`;
    return {
      kind: 'malformed',
      reject: {
        ...where,
        reason: 'unknown_label',
        field: `'${fields.label}'`,
        message:
          `expected ${known} (for ${ctx.classes} classes), got ${JSON.stringify(fieldText(rawLabel) ?? rawLabel)}; map ` +
          `other values with --label-map${noLabel ? ', or pass --unlabeled to read rows without labels' : ''}`,
      },
    };
  }
  if (label.kind === 'neutral') return { kind: 'neutral', line: lineNo };
  const body = (fieldText(record[fields.text]) ?? '').trim();
  const title = fields.title !== undefined ? (fieldText(record[fields.title]) ?? '').trim() : undefined;
  const text = title !== undefined ? joinTitleAndBody(title, body) : body;
  if (text === '') {
    return {
      kind: 'malformed',
      reject: { ...where, reason: 'empty_text', field: `'${fields.text}'`, message: 'expected text, got an empty or missing value' },
    };
  }
  const textHash = shortHash(text);
  let id: string;
  if (fields.id !== undefined) {
    const value = fieldText(record[fields.id]);
    if (value === undefined || value.trim() === '') {
      return { kind: 'malformed', reject: { ...where, reason: 'invalid_id', field: `'${fields.id}'`, message: 'expected a non-empty id' } };
    }
    id = value.trim();
  } else {
    id = contentId(textHash);
  }
  const example = { id, textHash, label: label.index < 0 ? null : label.index, text, file: ctx.file, line: lineNo };
  return { kind: 'example', example: title !== undefined ? { ...example, title, body } : example };
}

/** What a parsed JSON value is, for "expected an object, got …": null, an array, a number 42, … */
function describeJsonValue(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return `an array of ${value.length} item${value.length === 1 ? '' : 's'}`;
  const shown = JSON.stringify(value);
  const short = shown.length > 40 ? `${shown.slice(0, 40)}…` : shown;
  if (typeof value === 'string') return `a string ${short}`;
  if (typeof value === 'number') return `a number ${short}`;
  return `a ${typeof value} ${short}`;
}

/** Parses a JSONL line; resolves field names from the first object seen. */
export class JsonlParser {
  private fields: ResolvedFields | null = null;
  constructor(private readonly ctx: ParseContext) {}

  private invalidJson(line: string, lineNo: number, message: string): RowEvent {
    return { kind: 'malformed', reject: { file: this.ctx.file, line: lineNo, reason: 'invalid_json', message, raw: truncateRaw(line) } };
  }

  parse(line: string, lineNo: number): RowEvent | null {
    if (line.trim() === '') return null;
    let record: unknown;
    try {
      record = JSON.parse(line);
    } catch (e) {
      return this.invalidJson(line, lineNo, `expected one JSON object per line: ${(e as Error).message}`);
    }
    if (record === null || typeof record !== 'object' || Array.isArray(record)) {
      return this.invalidJson(line, lineNo, `expected a JSON object ({"text": ..., "label": ...}), got ${describeJsonValue(record)}`);
    }
    const obj = record as Record<string, unknown>;
    this.fields ??= resolveFields(Object.keys(obj), this.ctx.fields, `${this.ctx.file}:${lineNo}`);
    return recordToRow(obj, this.fields, this.ctx, lineNo, line);
  }
}
