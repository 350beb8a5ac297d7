// Format detection from a file's first bytes, and the check that a claimed format fits.
import { OptionError } from '../errors.js';
import { FormatError } from './errors.js';
import { readHead } from './lines.js';
import { looksLikeAmazonCsv, looksLikeAmazonFastText } from './formats/amazon.js';
import { looksLikeSentiment140 } from './formats/sentiment140.js';
import { FORMATS, type Format } from './formats/types.js';

const DESCRIPTIONS: Record<Format, string> = {
  sentiment140: 'Sentiment140 CSV (6 quoted columns polarity,id,date,query,user,text, no header)',
  'amazon-csv': 'Amazon reviews CSV (3 quoted columns "label","title","text", no header)',
  'amazon-fasttext': 'Amazon reviews fastText lines ("__label__<n> <title>: <text>")',
  jsonl: 'JSON Lines (one JSON object per line)',
  csv: 'CSV with a header row',
  parquet: 'Parquet',
};

export function describeFormat(format: Format): string {
  return DESCRIPTIONS[format];
}

/** Why the bytes are not text at all, or null when they look like text. */
function binaryVerdict(head: Buffer): string | null {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'is gzip-compressed: decompress it first (gunzip, or tar -xzf for a .tgz)';
  if (head.length >= 4 && head.readUInt32BE(0) === 0x504b0304) return 'is a zip archive: extract it first (e.g. unzip trainingandtestdata.zip)';
  if (head.length >= 3 && head.toString('latin1', 0, 3) === 'BZh') return 'is bzip2-compressed: decompress it first (bunzip2)';
  if (head.length >= 6 && head.readUInt32BE(0) === 0xfd377a58) return 'is xz-compressed: decompress it first (unxz)';
  const nul = head.indexOf(0);
  if (nul >= 0) return `looks like a binary file (a NUL byte at offset ${nul}), not text`;
  return null;
}

function firstLines(head: Buffer, count: number): string[] {
  let text = head.toString('utf8');
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  const lines = text.split('\n');
  if (head.length === 65536) lines.pop(); // the last one may be cut
  return lines.map((l) => l.replace(/\r$/, '')).filter((l) => l.trim() !== '').slice(0, count);
}

function matches(format: Format, line: string): boolean {
  switch (format) {
    case 'sentiment140':
      return looksLikeSentiment140(line);
    case 'amazon-csv':
      return looksLikeAmazonCsv(line);
    case 'amazon-fasttext':
      return looksLikeAmazonFastText(line);
    case 'jsonl':
      return line.trimStart().startsWith('{');
    case 'csv':
      return line.includes(',') && !line.trimStart().startsWith('{');
    case 'parquet':
      return false;
  }
}

/** Best guess from the first lines, most specific format first; null when none fits. */
function guess(lines: string[]): Format | null {
  for (const format of ['amazon-fasttext', 'sentiment140', 'amazon-csv', 'jsonl', 'csv'] as const) {
    if (lines.length > 0 && matches(format, lines[0]!)) return format;
  }
  return null;
}

/**
 * Detects the format (`claimed` = 'auto') or checks the claimed one. A file that is not
 * the claimed format at all fails at once and says what it looks like.
 */
export async function resolveFormat(file: string, claimed: Format | 'auto'): Promise<Format> {
  if (claimed !== 'auto' && !FORMATS.includes(claimed)) {
    throw new OptionError(`Unknown format '${String(claimed)}'. Known: auto, ${FORMATS.join(', ')}`);
  }
  const head = await readHead(file);
  if (head.length === 0) throw new FormatError(file, 'is empty');
  const isParquet = head.length >= 4 && head.toString('latin1', 0, 4) === 'PAR1';
  if (isParquet) {
    if (claimed === 'auto' || claimed === 'parquet') return 'parquet';
    throw new FormatError(file, `does not look like ${describeFormat(claimed)}: it is a Parquet file. Use --format parquet (or auto)`);
  }
  const binary = binaryVerdict(head);
  if (binary) throw new FormatError(file, binary);
  const lines = firstLines(head, 5);
  const guessed = guess(lines);
  if (claimed === 'auto') {
    if (guessed === null) {
      throw new FormatError(file, `is not a format kd reads. Line 1 is ${JSON.stringify(lines[0]?.slice(0, 80))}. Known: ${FORMATS.map((f) => describeFormat(f)).join('; ')}`);
    }
    return guessed;
  }
  if (claimed === 'parquet') {
    throw new FormatError(file, `does not look like Parquet (no PAR1 magic bytes)${guessed ? `: it looks like ${describeFormat(guessed)}. Use --format ${guessed}` : ''}`);
  }
  if (lines.some((l) => matches(claimed, l))) {
    // A generic CSV claim over a known headerless format is allowed but almost surely wrong.
    if (claimed === 'csv' && guessed !== null && guessed !== 'csv') {
      throw new FormatError(file, `looks like ${describeFormat(guessed)}, not a CSV with a header row. Use --format ${guessed}`);
    }
    return claimed;
  }
  const looks = guessed ? `it looks like ${describeFormat(guessed)}. Use --format ${guessed} (or auto)` : `line 1 is ${JSON.stringify(lines[0]?.slice(0, 80))}`;
  throw new FormatError(file, `does not look like ${describeFormat(claimed)}: none of its first ${lines.length} lines fits; ${looks}`);
}
