// The shard file: a fixed header, then aligned sections (ids, text hashes, labels, logits,
// embeddings), little-endian, so a reader can map or pread any row without parsing the rest.
//
//   offset 0   magic "KDCACHE1" (8 bytes)
//          8   u32 format version (1)
//         12   u32 rows
//         16   u32 classes
//         20   u32 embedding dim (0 = none)
//         24   u32 embedding dtype (1 = float32, 2 = float16)
//         28   u32 reserved (0)
//         32   u64 × 6 section offsets: idOffsets, idBytes, textHashes, labels, logits, embedding
//         80   u64 × 6 section lengths (bytes)
//        128   sections, each starting at a multiple of 64
// idOffsets: u32 × (rows + 1) into idBytes (UTF-8); textHashes: u64 × rows (the 16 hex digits);
// labels: i32 × rows, the class index, or NO_LABEL (-1) for an unlabelled row (`--format text`,
// `--unlabeled`): version 1 always stored i32 and classes are never negative, so old shards read as
// before and no version bump was needed; logits: f32 × rows × classes; embedding: dtype × rows × dim.
import { UserError } from '../errors.js';

export const MAGIC = 'KDCACHE1';
export const SHARD_VERSION = 1;
export const HEADER_BYTES = 128;
/** The label stored for a row without one (its teacher outputs are cached like any other row's). */
export const NO_LABEL = -1;
const ALIGN = 64;

export type EmbeddingDType = 'float32' | 'float16';
export const DTYPE_CODE: Record<EmbeddingDType, number> = { float32: 1, float16: 2 };

export interface ShardRows {
  ids: string[];
  textHashes: string[];
  labels: Int32Array;
  logits: Float32Array;
  classes: number;
  /** Row-major [rows, dim] in float32 (converted to the shard dtype when written). */
  embedding: Float32Array | null;
  dim: number;
}

export interface ShardLayout {
  rows: number;
  classes: number;
  dim: number;
  dtype: EmbeddingDType;
  offsets: { idOffsets: number; idBytes: number; textHashes: number; labels: number; logits: number; embedding: number };
  lengths: { idOffsets: number; idBytes: number; textHashes: number; labels: number; logits: number; embedding: number };
}

const SECTIONS = ['idOffsets', 'idBytes', 'textHashes', 'labels', 'logits', 'embedding'] as const;

const align = (n: number) => Math.ceil(n / ALIGN) * ALIGN;

// float16 conversion (round to nearest even), for embeddings stored at half size.
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
export function toHalf(value: number): number {
  f32[0] = value;
  const x = u32[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rem > halfway || (rem === halfway && half & 1)) half += 1;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half += 1;
  return sign | half;
}

/** float16 → float32 for every bit pattern: decoding by table lookup is ~10× faster. */
export const HALF_TABLE: Float32Array = (() => {
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) t[h] = fromHalf(h);
  return t;
})();

export function fromHalf(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

/** Converts float32 values to float16 bit patterns in bulk (reads the float bits directly). */
export function floatsToHalves(src: Float32Array, dst: Uint16Array): void {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < bits.length; i++) {
    const x = bits[i]!;
    const sign = (x >>> 16) & 0x8000;
    const exp = (x >>> 23) & 0xff;
    const e = exp - 112; // exp − 127 + 15
    if (e > 0 && e < 0x1f) {
      // The common case: a normal half. Round to nearest even on the 13 dropped bits.
      let half = (e << 10) | ((x >>> 13) & 0x3ff);
      const rem = x & 0x1fff;
      if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half += 1;
      dst[i] = sign | half;
    } else {
      dst[i] = toHalf(src[i]!);
    }
  }
}

/** float16 bit patterns to float32 in bulk, by table. */
export function halvesToFloats(src: Uint16Array, dst: Float32Array): void {
  const table = HALF_TABLE;
  for (let i = 0; i < src.length; i++) dst[i] = table[src[i]!]!;
}

/** Serializes one shard (deterministic bytes for the same rows). */
export function encodeShard(rows: ShardRows, dtype: EmbeddingDType): Uint8Array {
  const n = rows.ids.length;
  const idChunks = rows.ids.map((id) => Buffer.from(id, 'utf8'));
  const idOffsets = new Uint32Array(n + 1);
  idChunks.forEach((c, i) => (idOffsets[i + 1] = idOffsets[i]! + c.length));
  const lengths = {
    idOffsets: (n + 1) * 4,
    idBytes: idOffsets[n]!,
    textHashes: n * 8,
    labels: n * 4,
    logits: n * rows.classes * 4,
    embedding: rows.embedding ? n * rows.dim * (dtype === 'float16' ? 2 : 4) : 0,
  };
  const offsets = {} as ShardLayout['offsets'];
  let at = HEADER_BYTES;
  for (const s of SECTIONS) {
    offsets[s] = at;
    at = align(at + lengths[s]);
  }
  const buf = Buffer.alloc(at);
  buf.write(MAGIC, 0, 'latin1');
  buf.writeUInt32LE(SHARD_VERSION, 8);
  buf.writeUInt32LE(n, 12);
  buf.writeUInt32LE(rows.classes, 16);
  buf.writeUInt32LE(rows.embedding ? rows.dim : 0, 20);
  buf.writeUInt32LE(DTYPE_CODE[dtype], 24);
  SECTIONS.forEach((s, i) => {
    buf.writeBigUInt64LE(BigInt(offsets[s]), 32 + 8 * i);
    buf.writeBigUInt64LE(BigInt(lengths[s]), 80 + 8 * i);
  });
  Buffer.from(idOffsets.buffer).copy(buf, offsets.idOffsets);
  let p = offsets.idBytes;
  for (const c of idChunks) p += c.copy(buf, p);
  rows.textHashes.forEach((h, i) => buf.writeBigUInt64LE(BigInt(`0x${h}`), offsets.textHashes + 8 * i));
  Buffer.from(rows.labels.buffer, rows.labels.byteOffset, rows.labels.byteLength).copy(buf, offsets.labels);
  Buffer.from(rows.logits.buffer, rows.logits.byteOffset, rows.logits.byteLength).copy(buf, offsets.logits);
  if (rows.embedding) {
    if (dtype === 'float32')
      Buffer.from(rows.embedding.buffer, rows.embedding.byteOffset, rows.embedding.byteLength).copy(buf, offsets.embedding);
    else {
      floatsToHalves(rows.embedding, new Uint16Array(buf.buffer, buf.byteOffset + offsets.embedding, rows.embedding.length));
    }
  }
  return buf;
}

export class ShardFormatError extends UserError {
  constructor(message: string) {
    super(message);
    this.name = 'ShardFormatError';
  }
}

/** Parses a shard header; `size` is the file size, checked against the sections. */
export function decodeHeader(head: Uint8Array, size: number, name: string): ShardLayout {
  const b = Buffer.from(head.buffer, head.byteOffset, head.byteLength);
  if (b.length < HEADER_BYTES || b.toString('latin1', 0, 8) !== MAGIC)
    throw new ShardFormatError(`${name}: not a kd cache shard (bad magic at offset 0)`);
  const version = b.readUInt32LE(8);
  if (version !== SHARD_VERSION) throw new ShardFormatError(`${name}: shard format version ${version}, this kd reads ${SHARD_VERSION}`);
  const code = b.readUInt32LE(24);
  const dtype = (Object.entries(DTYPE_CODE).find(([, c]) => c === code)?.[0] ?? null) as EmbeddingDType | null;
  if (!dtype) throw new ShardFormatError(`${name}: unknown embedding dtype code ${code} at offset 24`);
  const offsets = {} as ShardLayout['offsets'];
  const lengths = {} as ShardLayout['lengths'];
  SECTIONS.forEach((s, i) => {
    offsets[s] = Number(b.readBigUInt64LE(32 + 8 * i));
    lengths[s] = Number(b.readBigUInt64LE(80 + 8 * i));
    if (offsets[s] + lengths[s] > size)
      throw new ShardFormatError(
        `${name}: truncated: section ${s} ends at offset ${offsets[s] + lengths[s]} but the file has ${size} bytes`,
      );
  });
  return { rows: b.readUInt32LE(12), classes: b.readUInt32LE(16), dim: b.readUInt32LE(20), dtype, offsets, lengths };
}
