// The safetensors format (8-byte little-endian header length, JSON header, raw data), the
// ecosystem's tensor file. No maintained JS writer exists, and the format is small.
import { openSync, readSync, closeSync, fstatSync } from 'node:fs';
import { writeFileAtomicSync } from '../util/fs.js';
import { allocate, BYTES_PER_ELEMENT, bytesOf, type DType, type TypedArray } from './dtype.js';

const CODES: Record<DType, string> = { float32: 'F32', float64: 'F64', float16: 'F16', int64: 'I64', int32: 'I32', uint64: 'U64', uint8: 'U8', bool: 'BOOL' };
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

/** Serializes tensors (sorted by name) and string metadata. */
export function encodeSafetensors(tensors: ReadonlyMap<string, NamedTensor>, metadata: Record<string, string> = {}): Uint8Array[] {
  const names = [...tensors.keys()].sort();
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  let offset = 0;
  for (const name of names) {
    const t = tensors.get(name)!;
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (n !== t.data.length) throw new RangeError(`safetensors: '${name}' has ${t.data.length} values for shape [${t.shape.join(', ')}]`);
    const bytes = n * BYTES_PER_ELEMENT[t.dtype];
    header[name] = { dtype: CODES[t.dtype], shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const head = Buffer.alloc(8 + Buffer.byteLength(json));
  head.writeBigUInt64LE(BigInt(Buffer.byteLength(json)), 0);
  head.write(json, 8, 'utf8');
  return [head, ...names.map((name) => bytesOf(tensors.get(name)!.data))];
}

/** Writes a safetensors file atomically (temp file, fsync, rename). */
export function saveSafetensors(path: string, tensors: ReadonlyMap<string, NamedTensor>, metadata: Record<string, string> = {}): void {
  writeFileAtomicSync(path, Buffer.concat(encodeSafetensors(tensors, metadata)));
}

/** Reads a safetensors file; every tensor is copied into its own aligned array. */
export function loadSafetensors(path: string): SafetensorsFile {
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    const lenBuf = Buffer.alloc(8);
    if (size < 8 || readSync(fd, lenBuf, 0, 8, 0) !== 8) throw new Error(`${path}: not a safetensors file (shorter than 8 bytes)`);
    const headerLen = Number(lenBuf.readBigUInt64LE(0));
    if (headerLen <= 0 || 8 + headerLen > size) throw new Error(`${path}: not a safetensors file or truncated (header length ${headerLen}, file ${size} bytes)`);
    const headerBuf = Buffer.alloc(headerLen);
    readSync(fd, headerBuf, 0, headerLen, 8);
    let header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] } | Record<string, string>>;
    try {
      header = JSON.parse(headerBuf.toString('utf8'));
    } catch (e) {
      throw new Error(`${path}: safetensors header is not valid JSON: ${(e as Error).message}`);
    }
    const base = 8 + headerLen;
    const tensors = new Map<string, NamedTensor>();
    let metadata: Record<string, string> = {};
    for (const [name, entry] of Object.entries(header)) {
      if (name === '__metadata__') {
        metadata = entry as Record<string, string>;
        continue;
      }
      const e = entry as { dtype: string; shape: number[]; data_offsets: [number, number] };
      const dtype = FROM_CODE.get(e.dtype);
      if (!dtype) throw new Error(`${path}: tensor '${name}' has unsupported dtype ${e.dtype}`);
      const [start, end] = e.data_offsets;
      const n = e.shape.reduce((a, b) => a * b, 1);
      if (end - start !== n * BYTES_PER_ELEMENT[dtype] || base + end > size) {
        throw new Error(`${path}: tensor '${name}' is truncated or inconsistent (offsets ${start}-${end}, file ${size} bytes)`);
      }
      const data = allocate(dtype, n);
      readSync(fd, bytesOf(data), 0, end - start, base + start);
      tensors.set(name, { dtype, shape: e.shape, data });
    }
    return { tensors, metadata };
  } finally {
    closeSync(fd);
  }
}
