// Parquet as the Hugging Face datasets ship it, read one row group at a time with
// hyparquet (snappy built in; gzip, zstd and brotli from hyparquet-compressors).
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects, parquetSchema } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import { FormatError } from '../errors.js';
import { recordToRow, resolveFields } from './records.js';
import type { ParseContext, RowEvent } from './types.js';

/** Yields rows; `line` is the 1-based row number in the file. */
export async function* readParquetRows(ctx: ParseContext, onBytes?: (bytes: number) => void): AsyncGenerator<RowEvent[]> {
  const file = await asyncBufferFromFile(ctx.file);
  let metadata;
  try {
    metadata = await parquetMetadataAsync(file);
  } catch (e) {
    throw new FormatError(ctx.file, `the Parquet footer (its metadata) cannot be read: the file is damaged or cut short (${(e as Error).message}); download or export it again`);
  }
  const columns = parquetSchema(metadata).children.map((c) => c.element.name);
  const fields = resolveFields(columns, ctx.fields, `${ctx.file} (Parquet schema)`);
  const wanted = [...new Set([fields.text, fields.label, fields.title, fields.id].filter((f): f is string => f !== undefined))];
  let rowStart = 0;
  for (const [g, group] of metadata.row_groups.entries()) {
    const rowEnd = rowStart + Number(group.num_rows);
    const read = (columns: string[]) => parquetReadObjects({ file, metadata, columns, rowStart, rowEnd, compressors }) as Promise<Record<string, unknown>[]>;
    let rows: Record<string, unknown>[];
    try {
      rows = await read(wanted);
    } catch (e) {
      // hyparquet throws whatever a damaged page makes its decoders throw (RangeError, thrift
      // errors); read the columns one by one to name the damaged one.
      let column: string | undefined;
      for (const c of wanted) {
        if (await read([c]).then(() => false, () => true)) {
          column = c;
          break;
        }
      }
      const where = `${column !== undefined ? `column '${column}', ` : ''}row group ${g + 1} of ${metadata.row_groups.length} (rows ${rowStart + 1}-${rowEnd})`;
      throw new FormatError(ctx.file, `${where}: the file is damaged (${(e as Error).message}); download or export it again`);
    }
    const events = rows.map((record, i) => recordToRow(record, fields, ctx, rowStart + i + 1, JSON.stringify(record, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))));
    rowStart = rowEnd;
    onBytes?.(Math.round((file.byteLength * rowStart) / Math.max(1, Number(metadata.num_rows))));
    yield events;
  }
}
