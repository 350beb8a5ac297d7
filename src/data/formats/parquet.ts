// Parquet as the Hugging Face datasets ship it, read one row group at a time with
// hyparquet (snappy built in; gzip, zstd and brotli from hyparquet-compressors).
import {
  asyncBufferFromFile,
  parquetMetadataAsync,
  parquetReadObjects,
  parquetSchema,
  type AsyncBuffer,
  type ColumnMetaData,
  type FileMetaData,
  type PageHeader,
} from 'hyparquet';
import { parquetHeader } from 'hyparquet/src/column.js';
import { compressors } from 'hyparquet-compressors';
import { FormatError } from '../errors.js';
import { crc32 } from '../../util/crc32.js';
import { recordToRow, resolveFields } from './records.js';
import type { ParseContext, RowEvent } from './types.js';

/** Yields rows; `line` is the 1-based row number in the file. */
export async function* readParquetRows(ctx: ParseContext, onBytes?: (bytes: number) => void): AsyncGenerator<RowEvent[]> {
  const file = await asyncBufferFromFile(ctx.file);
  // The footer (metadata and schema) is read whole first: damage there is the file's, not ours.
  let metadata: FileMetaData;
  let columns: string[];
  try {
    metadata = await parquetMetadataAsync(file);
    columns = parquetSchema(metadata).children.map((c) => c.element.name);
  } catch (e) {
    throw new FormatError(
      ctx.file,
      `the Parquet footer (its metadata) cannot be read: the file is damaged or cut short (${(e as Error).message}); download ` +
        `or export it again`,
    );
  }
  const fields = resolveFields(columns, ctx.fields, `${ctx.file} (Parquet schema)`);
  const wanted = [...new Set([fields.text, fields.label, fields.title, fields.id].filter((f): f is string => f !== undefined))];
  let rowStart = 0;
  for (const [g, group] of metadata.row_groups.entries()) {
    const rowEnd = rowStart + Number(group.num_rows);
    const read = (columns: string[]) =>
      parquetReadObjects({ file, metadata, columns, rowStart, rowEnd, compressors }) as Promise<Record<string, unknown>[]>;
    const where = (column?: string) =>
      `${column !== undefined ? `column '${column}', ` : ''}row group ${g + 1} of ${metadata.row_groups.length} (rows ` +
      `${rowStart + 1}-${rowEnd})`;
    const damaged = (column: string | undefined, why: string) =>
      new FormatError(ctx.file, `${where(column)}: the file is damaged (${why}); download or export it again`);
    const headerProblem = (
      await Promise.all(metadata.row_groups[g]!.columns.map((c) => pageHeaderProblem(file, c.meta_data, wanted)))
    ).find((p) => p !== null);
    if (headerProblem) throw damaged(headerProblem.column, headerProblem.why);
    let rows: Record<string, unknown>[];
    try {
      rows = await read(wanted);
    } catch (e) {
      // hyparquet throws whatever a damaged page makes its decoders throw (RangeError, thrift
      // errors); read the columns one by one to name the damaged one.
      let column: string | undefined;
      for (const c of wanted) {
        if (
          await read([c]).then(
            () => false,
            () => true,
          )
        ) {
          column = c;
          break;
        }
      }
      throw damaged(column, (e as Error).message);
    }
    const events = rows.map((record, i) =>
      recordToRow(
        record,
        fields,
        ctx,
        rowStart + i + 1,
        JSON.stringify(record, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v)),
      ),
    );
    rowStart = rowEnd;
    onBytes?.(Math.round((file.byteLength * rowStart) / Math.max(1, Number(metadata.num_rows))));
    yield events;
  }
}

const hex = (n: number) => `0x${n.toString(16).padStart(8, '0')}`;

/** Bytes read at a time while walking page headers (a header with large statistics may need more). */
const HEADER_READ = 64 * 1024;

interface PageHeaderProblem {
  column: string;
  why: string;
}

/**
 * Walks the page headers of one column chunk (when its column is one of `columns`) and returns
 * sizes and counts that cannot be right (negative, past the chunk, more values than the chunk
 * holds), or a page whose stored checksum fails. A damaged header can send hyparquet's decoders into loops that never end (a negative
 * level length moves its reader backwards), so it is caught here, before any page is decoded.
 */
async function pageHeaderProblem(
  file: AsyncBuffer,
  meta: ColumnMetaData | undefined,
  columns: readonly string[],
): Promise<PageHeaderProblem | null> {
  if (!meta || !columns.includes(meta.path_in_schema[0]!)) return null;
  const column = meta.path_in_schema[0]!;
  const bad = (why: string): PageHeaderProblem => ({ column, why });
  const start = Number(meta.dictionary_page_offset ?? meta.data_page_offset);
  const end = start + Number(meta.total_compressed_size);
  if (!(start >= 0 && end <= file.byteLength && end > start))
    return bad(`its chunk (bytes ${start}-${end}) lies outside the file (${file.byteLength} bytes)`);
  const chunkValues = Number(meta.num_values);
  let values = 0;
  let offset = start;
  while (offset < end && values < chunkValues) {
    let header: PageHeader | undefined;
    let headerBytes = 0;
    for (let span = Math.min(HEADER_READ, end - offset); header === undefined; span = Math.min(span * 4, end - offset)) {
      const reader = { view: new DataView(await file.slice(offset, offset + span)), offset: 0 };
      try {
        header = parquetHeader(reader);
        headerBytes = reader.offset;
      } catch (e) {
        if (span >= end - offset) return bad(`the page header at byte ${offset} cannot be read (${(e as Error).message})`);
      }
    }
    const compressed = header.compressed_page_size;
    const uncompressed = header.uncompressed_page_size;
    if (!(Number.isInteger(compressed) && compressed >= 0 && offset + headerBytes + compressed <= end))
      return bad(
        compressed === undefined
          ? `the page at byte ${offset} has no compressed size`
          : `the page at byte ${offset} claims ${compressed} bytes, past the end of its chunk (byte ${end})`,
      );
    if (!(Number.isInteger(uncompressed) && uncompressed >= 0))
      return bad(`the page at byte ${offset} claims an uncompressed size of ${uncompressed ?? 'nothing'}`);
    const missing = missingHeaderFields(header);
    if (missing) return bad(`the page at byte ${offset} lacks its ${missing} (the Parquet format requires it)`);
    // The optional page checksum: a CRC-32 of the page's bytes as stored (after its header). It is
    // checked when the writer stored one (pyarrow's write_page_checksum, parquet-mr's
    // page.write-checksum.enabled); hyparquet itself ignores it.
    if (header.crc !== undefined) {
      const page = new Uint8Array(await file.slice(offset + headerBytes, offset + headerBytes + compressed));
      const actual = crc32(page);
      if (actual !== header.crc >>> 0)
        return bad(
          `the page at byte ${offset} fails its checksum (CRC-32 ${hex(actual)}, its header says ${hex(header.crc >>> 0)}): its bytes ` +
            'were changed after writing',
        );
    }
    const v2 = header.data_page_header_v2;
    const pageValues = header.data_page_header?.num_values ?? v2?.num_values ?? header.dictionary_page_header?.num_values;
    if (!(Number.isInteger(pageValues) && pageValues! >= 0)) return bad(`the page at byte ${offset} claims ${pageValues} values`);
    if (header.type !== 'DICTIONARY_PAGE') {
      if (values + pageValues! > chunkValues)
        return bad(`the page at byte ${offset} claims ${pageValues} values, more than the ${chunkValues} its chunk holds`);
      values += pageValues!;
    }
    if (v2) {
      const { definition_levels_byte_length: def, repetition_levels_byte_length: rep, num_nulls: nulls, num_rows: rows } = v2;
      const counts = [def, rep, nulls, rows];
      if (
        !counts.every((n) => Number.isInteger(n) && n! >= 0) ||
        def! + rep! > Math.min(compressed, uncompressed) ||
        nulls! > pageValues! ||
        rows! > pageValues!
      ) {
        return bad(
          `the page at byte ${offset} has impossible counts (definition levels ${def} bytes, repetition levels ${rep} bytes, ` +
            `${nulls} nulls, ${rows} rows)`,
        );
      }
    }
    offset += headerBytes + compressed;
  }
  return null;
}

/**
 * The first field the Parquet format requires of a page header that this one lacks: a header cut
 * short by damage parses as a valid but incomplete struct, and hyparquet decodes on regardless.
 */
function missingHeaderFields(header: PageHeader): string | null {
  const required: [string, unknown][] = [['page type', header.type]];
  if (header.type === 'DATA_PAGE') {
    const h = header.data_page_header;
    required.push(['data page header', h], ['value count', h?.num_values], ['encoding', h?.encoding]);
    required.push(['definition level encoding', h?.definition_level_encoding], ['repetition level encoding', h?.repetition_level_encoding]);
  } else if (header.type === 'DATA_PAGE_V2') {
    const h = header.data_page_header_v2;
    required.push(['v2 data page header', h], ['value count', h?.num_values], ['null count', h?.num_nulls], ['row count', h?.num_rows]);
    required.push(['encoding', h?.encoding], ['definition level length', h?.definition_levels_byte_length]);
    required.push(['repetition level length', h?.repetition_levels_byte_length]);
  } else if (header.type === 'DICTIONARY_PAGE') {
    const h = header.dictionary_page_header;
    required.push(['dictionary page header', h], ['value count', h?.num_values], ['encoding', h?.encoding]);
  }
  return required.find(([, v]) => v === undefined)?.[0] ?? null;
}
