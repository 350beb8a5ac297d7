// What a format parser yields per row, and the context it reads with.
import type { Example } from '../example.js';
import type { Reject } from '../errors.js';
import type { ClassCount } from '../labels.js';

export const FORMATS = ['sentiment140', 'amazon-csv', 'amazon-fasttext', 'jsonl', 'csv', 'parquet', 'text'] as const;
export type Format = (typeof FORMATS)[number];

export type RowEvent =
  | { kind: 'example'; example: Example }
  | { kind: 'neutral'; line: number }
  | { kind: 'blank'; line: number }
  | { kind: 'malformed'; reject: Reject };

/** Which record fields hold what, for JSONL, generic CSV and Parquet. */
export interface FieldMapping {
  textField?: string;
  labelField?: string;
  titleField?: string;
  idField?: string;
  labelMap?: ReadonlyMap<string, string>;
  /**
   * Accept rows without a label (`--unlabeled`): no label field, or a row whose label is missing,
   * null or empty, gives `label: null`. Labels that are present are still read (and checked).
   */
  unlabeled?: boolean;
}

export interface ParseContext {
  file: string;
  classes: ClassCount;
  fields: FieldMapping;
}
