// The safetensors format (8-byte little-endian header length, JSON header, raw data), the
// ecosystem's tensor file. No maintained JS writer exists, and the format is small. Files we
// resume from carry a sha256 of themselves in their metadata, so damage is found, not trained on.
import { createHash } from 'node:crypto';
import { openSync, readSync, closeSync, fstatSync } from 'node:fs';
import { UserError } from '../errors.js';
import { writeFileAtomicSync } from '../util/fs.js';
import { allocate, BYTES_PER_ELEMENT, bytesOf, type DType, type TypedArray } from './dtype.js';

const CODES: Record<DType, string> = {
  float32: 'F32',
  float64: 'F64',
  float16: 'F16',
  int64: 'I64',
  int32: 'I32',
  uint64: 'U64',
  uint8: 'U8',
  bool: 'BOOL',
};
const FROM_CODE = new Map(Object.entries(CODES).map(([k, v]) => [v, k as DType]));

export interface NamedTensor {
  dtype: DType;
  shape: readonly number[];
  data: TypedArray;
}

export interface SafetensorsFile {
  tensors: Map<string, NamedTensor>;
  metadata: Record<string, string>;
}

/**
 * Metadata key of a file's own checksum: the hex sha256 of its JSON header (written without this
 * key) followed by its tensor bytes in file order. Inside the file, so one atomic rename writes
 * both: a checksum in a second file could not be replaced in the same instant.
 */
export const CHECKSUM_KEY = 'sha256';

/** A safetensors file that is truncated, malformed or fails its checksum; the message says what to do. */
export class DamagedFileError extends UserError {
  constructor(
    readonly path: string,
    problem: string,
    remedy: string,
  ) {
    super(`${path}: ${problem}. ${remedy}`);
    this.name = 'DamagedFileError';
  }
}

export interface SafetensorsWriteOptions {
  /** Store a sha256 of the file in its metadata (see CHECKSUM_KEY). */
  checksum?: boolean;
}

export interface SafetensorsReadOptions {
  /** Refuse a file without a checksum (a file kd resumes from). A checksum present is always checked. */
  requireChecksum?: boolean;
  /** What the user should do about a damaged file (default: rewrite it with the command that made it). */
  remedy?: string;
}

/** Serializes tensors (sorted by name) and string metadata. */
export function encodeSafetensors(
  tensors: ReadonlyMap<string, NamedTensor>,
  metadata: Record<string, string> = {},
  opts: SafetensorsWriteOptions = {},
): Uint8Array[] {
  const names = [...tensors.keys()].sort();
  const header: Record<string, unknown> = {};
  if (opts.checksum && CHECKSUM_KEY in metadata)
    throw new RangeError(`safetensors: metadata key '${CHECKSUM_KEY}' is reserved for the checksum`);
  if (Object.keys(metadata).length || opts.checksum) header.__metadata__ = { ...metadata };
  let offset = 0;
  for (const name of names) {
    const t = tensors.get(name)!;
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (n !== t.data.length) throw new RangeError(`safetensors: '${name}' has ${t.data.length} values for shape [${t.shape.join(', ')}]`);
    const bytes = n * BYTES_PER_ELEMENT[t.dtype];
    header[name] = { dtype: CODES[t.dtype], shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  const data = names.map((name) => bytesOf(tensors.get(name)!.data));
  if (opts.checksum) (header.__metadata__ as Record<string, string>)[CHECKSUM_KEY] = checksumOf(JSON.stringify(header), data);
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const head = Buffer.alloc(8 + Buffer.byteLength(json));
  head.writeBigUInt64LE(BigInt(Buffer.byteLength(json)), 0);
  head.write(json, 8, 'utf8');
  return [head, ...data];
}

function checksumOf(headerJson: string, data: readonly Uint8Array[]): string {
  const hash = createHash('sha256').update(headerJson, 'utf8');
  for (const d of data) hash.update(d);
  return hash.digest('hex');
}

/** Writes a safetensors file atomically (temp file, fsync, rename). */
export function saveSafetensors(
  path: string,
  tensors: ReadonlyMap<string, NamedTensor>,
  metadata: Record<string, string> = {},
  opts: SafetensorsWriteOptions = {},
): void {
  writeFileAtomicSync(path, Buffer.concat(encodeSafetensors(tensors, metadata, opts)));
}

/** Reads a safetensors file; every tensor is copied into its own aligned array. */
export function loadSafetensors(path: string, opts: SafetensorsReadOptions = {}): SafetensorsFile {
  const damaged = (problem: string) => new DamagedFileError(path, problem, opts.remedy ?? 'Rewrite it with the command that made it');
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    const lenBuf = Buffer.alloc(8);
    if (size < 8 || readSync(fd, lenBuf, 0, 8, 0) !== 8) throw damaged('not a safetensors file (shorter than 8 bytes)');
    const headerLen = Number(lenBuf.readBigUInt64LE(0));
    if (headerLen <= 0 || 8 + headerLen > size)
      throw damaged(`not a safetensors file or truncated (header length ${headerLen}, file ${size} bytes)`);
    const headerBuf = Buffer.alloc(headerLen);
    readSync(fd, headerBuf, 0, headerLen, 8);
    let header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] } | Record<string, string>>;
    try {
      header = JSON.parse(headerBuf.toString('utf8'));
    } catch (e) {
      throw damaged(`safetensors header is not valid JSON: ${(e as Error).message}`);
    }
    const base = 8 + headerLen;
    const tensors = new Map<string, NamedTensor>();
    const inFileOrder: { start: number; data: Uint8Array }[] = [];
    let metadata: Record<string, string> = {};
    for (const [name, entry] of Object.entries(header)) {
      if (name === '__metadata__') {
        metadata = entry as Record<string, string>;
        continue;
      }
      const e = entry as { dtype: string; shape: number[]; data_offsets: [number, number] };
      const dtype = FROM_CODE.get(e.dtype);
      if (!dtype) throw damaged(`tensor '${name}' has unsupported dtype ${e.dtype}`);
      const [start, end] = e.data_offsets;
      const n = e.shape.reduce((a, b) => a * b, 1);
      if (end - start !== n * BYTES_PER_ELEMENT[dtype] || base + end > size) {
        throw damaged(`tensor '${name}' is truncated or inconsistent (offsets ${start}-${end}, file ${size} bytes)`);
      }
      const data = allocate(dtype, n);
      readSync(fd, bytesOf(data), 0, end - start, base + start);
      tensors.set(name, { dtype, shape: e.shape, data });
      inFileOrder.push({ start, data: bytesOf(data) });
    }
    const stored = metadata[CHECKSUM_KEY];
    if (stored === undefined) {
      if (opts.requireChecksum) throw damaged(`has no '${CHECKSUM_KEY}' checksum in its metadata (not written by this version of kd)`);
    } else {
      const { [CHECKSUM_KEY]: _, ...rest } = metadata;
      header.__metadata__ = rest;
      inFileOrder.sort((a, b) => a.start - b.start);
      const actual = checksumOf(
        JSON.stringify(header),
        inFileOrder.map((t) => t.data),
      );
      if (actual !== stored)
        throw damaged(
          `damaged: its contents do not match the sha256 kd stored in it (stored ${stored.slice(0, 12)}…, computed ` +
            `${actual.slice(0, 12)}…), so the file changed after it was written`,
        );
      metadata = rest;
    }
    return { tensors, metadata };
  } finally {
    closeSync(fd);
  }
}
