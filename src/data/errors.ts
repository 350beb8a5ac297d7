// Errors for bad input: each says what is wrong, where (file, line, field) and how to fix it.
import { UserError } from '../errors.js';

/** Why a row was not read. `neutral` is a documented skip; the rest are malformed rows. */
export type SkipReason = 'neutral' | MalformedReason;
export type MalformedReason =
  | 'wrong_column_count'
  | 'unclosed_quote'
  | 'stray_quote'
  | 'unknown_label'
  | 'empty_text'
  | 'invalid_id'
  | 'invalid_json'
  | 'missing_field';

/** A malformed row, as written to the rejects file. */
export interface Reject {
  file: string;
  line: number;
  reason: MalformedReason;
  /** Field name (and column, for CSV) the problem is in, when it is in one. */
  field?: string;
  /** What was expected and what was found. */
  message: string;
  /** The raw row, truncated to 2,000 characters. */
  raw: string;
}

const STRICT_FIX = 'Fix the row, or run without --strict to skip malformed rows (they are counted and written to the rejects file).';

/** A malformed row under `--strict`: names file, line, field and what was expected. */
export class DataError extends UserError {
  readonly reject: Reject;
  constructor(reject: Reject) {
    super(`${formatWhere(reject)}: ${reject.message}. ${STRICT_FIX}`);
    this.name = 'DataError';
    this.reject = reject;
  }
}

export function formatWhere(r: Pick<Reject, 'file' | 'line' | 'field'>): string {
  return `${r.file}:${r.line}${r.field ? `: field ${r.field}` : ''}`;
}

/** A file that is not the claimed format at all (binary, compressed, or another format). */
export class FormatError extends UserError {
  readonly file: string;
  constructor(file: string, message: string) {
    super(`${file}: ${message}`);
    this.name = 'FormatError';
    this.file = file;
  }
}

/** An option that cannot work with the data or with another option. */
export class ConfigError extends UserError {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

export function truncateRaw(raw: string): string {
  return raw.length > 2000 ? `${raw.slice(0, 2000)}…` : raw;
}

/** Why a stage needs labels, and where unlabelled rows go instead: the parts of an {@link UnlabelledDataError}. */
export interface LabelNeed {
  /** The stage, as the user typed it: "kd eval", "kd train --train". */
  needs: string;
  /** Why it needs labels. */
  why: string;
  /** What to do instead, a sentence. */
  instead: string;
}

/** An unlabelled row (`--format text`, or `--unlabeled` and no label) where a stage needs labels. */
export class UnlabelledDataError extends UserError {
  readonly file: string;
  constructor(where: { file: string; line: number; id: string }, need: LabelNeed) {
    super(
      `${where.file}:${where.line}: row ${where.id} has no label, but ${need.needs} needs labelled data (${need.why}). ` +
        `Give a labelled file; ${need.instead}`,
    );
    this.name = 'UnlabelledDataError';
    this.file = where.file;
  }
}

/** Returns `ex` if it is labelled; throws {@link UnlabelledDataError} otherwise. */
export function requireLabel<T extends { file: string; line: number; id: string; label: number | null }>(
  ex: T,
  need: LabelNeed,
): T & { label: number } {
  if (ex.label === null) throw new UnlabelledDataError(ex, need);
  return ex as T & { label: number };
}
