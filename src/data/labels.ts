// Class sets and label vocabularies: every reader maps its raw labels onto one of these.
import { OptionError } from '../errors.js';

export type ClassCount = 2 | 3 | 5;

/** Class names by number of classes, in class-index order. */
export const LABEL_NAMES: Readonly<Record<ClassCount, readonly string[]>> = {
  2: ['negative', 'positive'],
  3: ['negative', 'neutral', 'positive'],
  5: ['very negative', 'negative', 'neutral', 'positive', 'very positive'],
};

export function isClassCount(n: number): n is ClassCount {
  return n === 2 || n === 3 || n === 5;
}

export function parseClassCount(value: string | number): ClassCount {
  const n = typeof value === 'number' ? value : Number(value);
  if (!isClassCount(n)) {
    throw new OptionError(`'--classes' must be 2, 3 or 5, got ${JSON.stringify(value)}`);
  }
  return n;
}

/** Index of a class name (case-insensitive), or -1. */
export function classIndex(classes: ClassCount, name: string): number {
  return LABEL_NAMES[classes].indexOf(name.trim().toLowerCase());
}

/** The outcome of mapping one raw label: a class, a documented skip (neutral), or unknown. */
export type LabelResolution = { kind: 'class'; index: number } | { kind: 'neutral' } | { kind: 'unknown' };

/**
 * Maps a raw label onto `classes`. Order: an explicit map (raw value → class name or
 * index), then a class name, then an integer class index. A name that exists only in
 * a larger class set ("neutral" when binary) is a neutral skip, not an error.
 */
export function resolveLabel(raw: unknown, classes: ClassCount, labelMap?: ReadonlyMap<string, string>): LabelResolution {
  if (raw === null || raw === undefined) return { kind: 'unknown' };
  let key =
    typeof raw === 'string'
      ? raw.trim()
      : typeof raw === 'number' || typeof raw === 'bigint' || typeof raw === 'boolean'
        ? String(raw)
        : '';
  if (key === '') return { kind: 'unknown' };
  if (labelMap) {
    const mapped = labelMap.get(key);
    if (mapped === undefined) return { kind: 'unknown' };
    key = mapped;
  }
  const byName = classIndex(classes, key);
  if (byName >= 0) return { kind: 'class', index: byName };
  if (key.toLowerCase() === 'neutral' && classes === 2) return { kind: 'neutral' };
  if (/^\d+$/.test(key)) {
    const index = Number(key);
    if (index < classes) return { kind: 'class', index };
  }
  return { kind: 'unknown' };
}

/** Parses `--label-map "0=negative,2=neutral,4=positive"`. */
export function parseLabelMap(spec: string): Map<string, string> {
  const map = new Map<string, string>();
  for (const part of spec.split(',')) {
    const eq = part.indexOf('=');
    if (eq <= 0 || eq === part.length - 1) {
      throw new OptionError(`'--label-map' entries must look like RAW=CLASS (e.g. "0=negative,4=positive"), got ${JSON.stringify(part)}`);
    }
    map.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
  }
  return map;
}
