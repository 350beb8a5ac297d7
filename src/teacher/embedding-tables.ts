// The limits a teacher graph itself sets on its inputs: rows of the word embedding table (token
// ids must stay below them) and of the position table (sequence length), read from the graph.
import { GraphIndex, type ModelProto, type NodeProto } from './onnx-model.js';

export interface EmbeddingTables {
  /** Rows of the (smallest) table that `input_ids` index, or null when no such table was found. */
  wordRows: number | null;
  /** Longest sequence the (smallest) position table covers, or null when no such table was found. */
  maxPositions: number | null;
  /** The tables' initializer names (for messages). */
  wordTable: string | null;
  positionTable: string | null;
}

/** Ops that pass index values through unchanged (a cast, a reshape). */
const PASS_THROUGH = new Set(['Cast', 'Identity', 'Reshape', 'Unsqueeze', 'Squeeze', 'Flatten', 'Expand']);

/** Producers visited when looking for where position indices come from (embeddings are near the inputs). */
const SEARCH_LIMIT = 64;

/**
 * Finds the embedding tables: a Gather whose data is a 2-D initializer and whose indices are
 * `input_ids` (through casts and reshapes) is the word table. The position table's indices are
 * `position_ids`, or are computed from a Range, from a constant 0, 1, 2, … (the `position_ids`
 * buffer Hugging Face exports slice), or from a CumSum over the padding mask (RoBERTa and its
 * descendants, whose positions start at pad_token_id + 1, so that many rows are never a position).
 */
export function findEmbeddingTables(model: ModelProto, modelPath: string, padTokenId: number | null): EmbeddingTables {
  const index = new GraphIndex(model, modelPath);
  const inputs = new Set((model.graph!.input ?? []).map((i) => i.name!));
  const source = (name: string): string => {
    let x = name;
    for (let p = index.producer.get(x); p && PASS_THROUGH.has(p.opType!); p = index.producer.get(x)) x = p.input![0]!;
    return x;
  };
  const result: EmbeddingTables = { wordRows: null, maxPositions: null, wordTable: null, positionTable: null };
  const widths = new Set<number>();
  const positionTables: { name: string; positions: number; width: number }[] = [];
  for (const n of model.graph!.node ?? []) {
    if (n.opType !== 'Gather' || (n.attribute ?? []).some((a) => a.name === 'axis' && Number(a.i) !== 0)) continue;
    const table = index.constants.get(n.input![0]!);
    if (!table || (table.dims ?? []).length !== 2 || n.input![0] === n.input![1]) continue;
    const [rows, width] = table.dims!.map(Number) as [number, number];
    const from = source(n.input![1]!);
    if (from === 'input_ids') {
      // Several tables may read the ids (an ensemble's members): the smallest bounds them all.
      if (result.wordRows === null || rows < result.wordRows) [result.wordRows, result.wordTable] = [rows, n.input![0]!];
      widths.add(width);
      continue;
    }
    if (inputs.has(from) && from !== 'position_ids') continue;
    const how = from === 'position_ids' ? 'position_ids' : positionOrigin(index, from);
    if (how === null) continue;
    positionTables.push({ name: n.input![0]!, positions: rows - (how === 'CumSum' ? (padTokenId ?? 1) + 1 : 0), width });
  }
  // A position table is added to the word embeddings, so it is as wide as one; a relative-position
  // bias indexed by a Range (T5's [buckets, heads]) is not, and does not bound the length.
  for (const t of positionTables) {
    if (widths.size > 0 && !widths.has(t.width)) continue;
    if (result.maxPositions === null || t.positions < result.maxPositions)
      [result.maxPositions, result.positionTable] = [t.positions, t.name];
  }
  return result;
}

/** 'Range', 'CumSum' or 'arange' when `name` is computed from such a source (and not from token types), else null. */
function positionOrigin(index: GraphIndex, name: string): 'Range' | 'CumSum' | 'arange' | null {
  const seen = new Set<string>();
  const queue = [name];
  let found: 'Range' | 'CumSum' | 'arange' | null = null;
  while (queue.length && seen.size < SEARCH_LIMIT) {
    const x = queue.shift()!;
    if (seen.has(x)) continue;
    seen.add(x);
    if (x === 'token_type_ids') return null;
    const p: NodeProto | undefined = index.producer.get(x);
    if (p?.opType === 'Range' || p?.opType === 'CumSum') found ??= p.opType;
    else if (index.constants.has(x) && isArange(index.constantInts(x))) found ??= 'arange';
    if (p) queue.push(...(p.input ?? []).filter(Boolean));
  }
  return found;
}

/** A position_ids buffer: 0, 1, 2, … and long (short ones such as axes [0, 1] are not positions). */
function isArange(values: number[] | null): boolean {
  return values !== null && values.length >= 16 && values.every((v, i) => v === i);
}
