// Content hashes used as stable example ids, cache keys and split assignment.
import { createHash } from 'node:crypto';

/** First 16 hex digits (64 bits) of SHA-256 of a UTF-8 string. */
export function shortHash(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex').slice(0, 16);
}

/** Full SHA-256 hex digest of bytes or a string. */
export function sha256Hex(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * A uniform number in [0, 1) that depends only on `seed` and `key`: the basis of
 * reproducible splits and shuffles (53 bits from SHA-256).
 */
export function unitHash(seed: number, key: string): number {
  const digest = createHash('sha256').update(`${seed}\u0000${key}`, 'utf8').digest();
  const hi = digest.readUInt32BE(0) >>> 5; // 27 bits
  const lo = digest.readUInt32BE(4) >>> 6; // 26 bits
  return (hi * 67108864 + lo) / 9007199254740992;
}
