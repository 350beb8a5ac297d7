// Format detection from a file's first bytes, and the check that a claimed format fits.
import { join, parse } from 'node:path';
import { OptionError } from '../errors.js';
import { FormatError } from './errors.js';
import { parseCsvRecord } from './csv.js';
import { readHead, type FileHead } from './lines.js';
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
  text: 'plain text (one unlabelled text per line; only with --format text, never auto-detected)',
};

export function describeFormat(format: Format): string {
  return DESCRIPTIONS[format];
}

/** UTF-16 text, by its byte-order mark or by the NUL byte beside each ASCII character. */
function utf16Verdict(file: string, head: Buffer): string | null {
  const { dir, name, ext } = parse(file);
  const convert = `kd reads UTF-8: convert it first, e.g. iconv -f UTF-16 -t UTF-8 ${file} > ${join(dir, `${name}.utf8${ext}`)}`;
  if (head.length >= 2 && head[0] === 0xff && head[1] === 0xfe)
    return `is UTF-16 (little-endian, with a byte-order mark) text, not UTF-8; ${convert}`;
  if (head.length >= 2 && head[0] === 0xfe && head[1] === 0xff)
    return `is UTF-16 (big-endian, with a byte-order mark) text, not UTF-8; ${convert}`;
  const pairs = Math.floor(Math.min(head.length, 4096) / 2);
  if (pairs < 2) return null;
  let evenNul = 0;
  let oddNul = 0;
  for (let i = 0; i < pairs; i++) {
    if (head[2 * i] === 0) evenNul += 1;
    if (head[2 * i + 1] === 0) oddNul += 1;
  }
  // ASCII in UTF-16 puts a NUL in every other byte; binary data has no such rhythm.
  if (oddNul >= 0.9 * pairs && evenNul <= 0.1 * pairs)
    return `looks like UTF-16 (little-endian) text, not UTF-8: every other byte is NUL; ${convert}`;
  if (evenNul >= 0.9 * pairs && oddNul <= 0.1 * pairs)
    return `looks like UTF-16 (big-endian) text, not UTF-8: every other byte is NUL; ${convert}`;
  return null;
}

/** Why the bytes are not text at all, or null when they look like text. */
function binaryVerdict(file: string, head: Buffer): string | null {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b)
    return 'is gzip-compressed: decompress it first (gunzip, or tar -xzf for a .tgz)';
  if (head.length >= 4 && head.readUInt32BE(0) === 0x504b0304)
    return 'is a zip archive: extract it first (e.g. unzip trainingandtestdata.zip)';
  if (head.length >= 3 && head.toString('latin1', 0, 3) === 'BZh') return 'is bzip2-compressed: decompress it first (bunzip2)';
  if (head.length >= 6 && head.readUInt32BE(0) === 0xfd377a58) return 'is xz-compressed: decompress it first (unxz)';
  const utf16 = utf16Verdict(file, head);
  if (utf16) return utf16;
  const nul = head.indexOf(0);
  if (nul >= 0) return `looks like a binary file (a NUL byte at offset ${nul}), not text`;
  return null;
}

/**
 * A line seen by the sniffer. `cut`: only the start of a record, because the sniffing limit
 * ended inside it or a quoted field in it goes on past the newline.
 */
interface SniffedLine {
  text: string;
  cut: boolean;
}

/** A quoted field opened validly and still open at the line's end: the record goes on. */
function opensQuotedField(line: string): boolean {
  const parsed = parseCsvRecord(line);
  return !parsed.ok && parsed.error === 'unclosed_quote';
}

function firstLines(head: FileHead, count: number): SniffedLine[] {
  let text = head.bytes.toString('utf8');
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  const lines = text.split('\n');
  // Without a newline after it, the last piece is cut unless the file ends there.
  const lastCut = !head.complete;
  return lines
    .map((l, i) => {
      const t = l.replace(/\r$/, '');
      return { text: t, cut: (i === lines.length - 1 && lastCut) || opensQuotedField(t) };
    })
    .filter((l) => l.text.trim() !== '')
    .slice(0, count);
}

function matches(format: Format, line: SniffedLine): boolean {
  switch (format) {
    case 'sentiment140':
      return looksLikeSentiment140(line.text, line.cut);
    case 'amazon-csv':
      return looksLikeAmazonCsv(line.text, line.cut);
    case 'amazon-fasttext':
      return looksLikeAmazonFastText(line.text);
    case 'jsonl':
      return line.text.trimStart().startsWith('{');
    case 'csv':
      return line.text.includes(',') && !line.text.trimStart().startsWith('{');
    case 'parquet':
      return false;
    case 'text':
      return true;
  }
}

/** Best guess from the first lines, most specific format first; null when none fits. */
function guess(lines: SniffedLine[]): Format | null {
  for (const format of ['amazon-fasttext', 'sentiment140', 'amazon-csv', 'jsonl', 'csv'] as const) {
    if (lines.length > 0 && matches(format, lines[0]!)) return format;
  }
  return null;
}

/** How the first non-blank line reads, for an error message (a cut one only "starts"). */
function showLine1(first: SniffedLine): string {
  return `line 1 ${first.cut ? 'starts' : 'is'} ${JSON.stringify(first.text.slice(0, 80))}${first.text.length > 80 ? '…' : ''}`;
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
  const bytes = head.bytes;
  if (bytes.length === 0) throw new FormatError(file, 'is empty');
  const isParquet = bytes.length >= 4 && bytes.toString('latin1', 0, 4) === 'PAR1';
  if (isParquet) {
    if (claimed === 'auto' || claimed === 'parquet') return 'parquet';
    throw new FormatError(file, `does not look like ${describeFormat(claimed)}: it is a Parquet file. Use --format parquet (or auto)`);
  }
  const binary = binaryVerdict(file, bytes);
  if (binary) throw new FormatError(file, binary);
  const lines = firstLines(head, 5);
  if (lines.length === 0) throw new FormatError(file, `holds only blank lines${head.complete ? '' : ' in its first 64 KiB'}`);
  const guessed = guess(lines);
  if (claimed === 'auto') {
    if (guessed === null) {
      throw new FormatError(
        file,
        `is not a format kd reads: ${showLine1(lines[0]!)}. Known: ${FORMATS.map((f) => describeFormat(f)).join('; ')}`,
      );
    }
    return guessed;
  }
  if (claimed === 'parquet') {
    throw new FormatError(
      file,
      `does not look like Parquet (no PAR1 magic ` +
        `bytes)${guessed ? `: it looks like ${describeFormat(guessed)}. Use --format ${guessed}` : ''}`,
    );
  }
  if (lines.some((l) => matches(claimed, l))) {
    // A generic CSV claim over a known headerless format is allowed but almost surely wrong.
    if (claimed === 'csv' && guessed !== null && guessed !== 'csv') {
      throw new FormatError(file, `looks like ${describeFormat(guessed)}, not a CSV with a header row. Use --format ${guessed}`);
    }
    return claimed;
  }
  const looks = guessed ? `it looks like ${describeFormat(guessed)}. Use --format ${guessed} (or auto)` : showLine1(lines[0]!);
  throw new FormatError(file, `does not look like ${describeFormat(claimed)}: none of its first ${lines.length} lines fits; ${looks}`);
}
