// Streaming line reader over bytes: bounded memory, any line ending, robust decoding.
import { createReadStream } from 'node:fs';
import { isUtf8 } from 'node:buffer';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { FormatError } from './errors.js';

/** A run of consecutive lines; `firstLine` is the 1-based number of `lines[0]`. */
export interface LineBatch {
  lines: string[];
  firstLine: number;
}

export interface LineReaderStats {
  /** Lines that were not valid UTF-8 and were decoded as Windows-1252 (Latin-1) instead. */
  latin1Lines: number;
  bytesRead: number;
}

// Windows-1252 differs from Latin-1 in 0x80-0x9F (curly quotes, dashes, €). Node's
// TextDecoder('windows-1252') decodes that range as Latin-1 control codes, so map it here.
const CP1252_HIGH = [
  0x20ac, 0x81, 0x201a, 0x192, 0x201e, 0x2026, 0x2020, 0x2021, 0x2c6, 0x2030, 0x160, 0x2039, 0x152, 0x8d, 0x17d, 0x8f, 0x90, 0x2018, 0x2019,
  0x201c, 0x201d, 0x2022, 0x2013, 0x2014, 0x2dc, 0x2122, 0x161, 0x203a, 0x153, 0x9d, 0x17e, 0x178,
];

export function decodeCp1252(bytes: Uint8Array): string {
  let out = '';
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!;
    out += String.fromCharCode(b >= 0x80 && b < 0xa0 ? CP1252_HIGH[b - 0x80]! : b);
  }
  return out;
}

/**
 * Reads `file` as lines without holding it in memory. A line that is valid UTF-8 is
 * decoded as such; one that is not (the Sentiment140 training file is Latin-1 in
 * places) is decoded as Windows-1252 and counted, so no byte ever crashes a run.
 * A final line without a newline is still a line; `\r\n` endings and a UTF-8 BOM are
 * removed.
 */
export async function* readLines(file: string, stats: LineReaderStats, onBytes?: (bytesRead: number) => void): AsyncGenerator<LineBatch> {
  // The unfinished line so far, as the chunks it spans: joined once, when its newline comes,
  // so a line of any length costs one copy (not one per chunk).
  let carry: Buffer[] = [];
  let lineNo = 1;
  let first = true;
  const stream = createReadStream(file, { highWaterMark: 1 << 20 });
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    stats.bytesRead += chunk.length;
    onBytes?.(stats.bytesRead);
    let start = 0;
    if (first) {
      first = false;
      if (chunk.length >= 3 && chunk[0] === 0xef && chunk[1] === 0xbb && chunk[2] === 0xbf) start = 3;
    }
    const lines: string[] = [];
    const firstLine = lineNo;
    let nl = chunk.indexOf(10, start);
    if (nl >= 0 && carry.length > 0) {
      const joined = Buffer.concat([...carry, chunk.subarray(start, nl)]);
      carry = [];
      lines.push(decodeLine(joined, 0, joined.length, stats));
      start = nl + 1;
      nl = chunk.indexOf(10, start);
    }
    while (nl >= 0) {
      lines.push(decodeLine(chunk, start, nl, stats));
      start = nl + 1;
      nl = chunk.indexOf(10, start);
    }
    lineNo += lines.length;
    if (start < chunk.length) {
      const rest = chunk.subarray(start);
      // Copy a small remainder so the 1 MiB chunk it points into can be freed.
      carry.push(rest.length < chunk.length / 4 ? Buffer.from(rest) : rest);
    }
    if (lines.length > 0) yield { lines, firstLine };
  }
  if (carry.length > 0) {
    const last = Buffer.concat(carry);
    if (last.length > 0) yield { lines: [decodeLine(last, 0, last.length, stats)], firstLine: lineNo };
  }
}

function decodeLine(buf: Buffer, start: number, end: number, stats: LineReaderStats): string {
  if (end > start && buf[end - 1] === 13) end -= 1;
  const text = buf.toString('utf8', start, end);
  if (!text.includes('\uFFFD')) return text;
  // U+FFFD may be a real, validly encoded character; only invalid UTF-8 falls back.
  const bytes = buf.subarray(start, end);
  if (isUtf8(bytes)) return text;
  stats.latin1Lines += 1;
  return decodeCp1252(bytes);
}

/** The start of a file, for format sniffing; `complete` when it is the whole file. */
export interface FileHead {
  bytes: Buffer;
  complete: boolean;
}

/** The first `maxBytes` of a file, for format sniffing. A folder is refused by name. */
export async function readHead(file: string, maxBytes = 65536): Promise<FileHead> {
  const handle = await open(file, 'r');
  try {
    // open() succeeds on a folder; the read would fail with an EISDIR that names no path.
    if ((await handle.stat()).isDirectory())
      throw new FormatError(file, `is a directory, expected a data file: name the files inside it (e.g. ${join(file, '*')})`);
    const buf = Buffer.alloc(maxBytes);
    const { bytesRead } = await handle.read(buf, 0, maxBytes, 0);
    const size = (await handle.stat()).size;
    return { bytes: buf.subarray(0, bytesRead), complete: bytesRead >= size };
  } finally {
    await handle.close();
  }
}
