// Parquet page checksums: a page whose header stores a CRC-32 is checked against its bytes, so a
// damaged value that still decodes (a changed letter in a review) is refused naming the file,
// column and row group instead of being read as data. hyparquet-writer stores no checksum, so the
// test rewrites its file with one in every page header, as pyarrow's write_page_checksum does.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { crc32 as zlibCrc32 } from 'node:zlib';
import { join } from 'node:path';
import { parquetMetadata, type FileMetaData, type PageHeader } from 'hyparquet';
import { parquetHeader } from 'hyparquet/src/column.js';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { ByteWriter } from 'hyparquet-writer/src/bytewriter.js';
import { writePageHeader } from 'hyparquet-writer/src/datapage.js';
import { writeMetadata } from 'hyparquet-writer/src/metadata.js';
import { readAllExamples } from '../../../src/data/read.js';
import { FormatError } from '../../../src/data/errors.js';
import { crc32 } from '../../../src/util/crc32.js';
import { tempDir } from '../../helpers.js';

const TEXTS = ['great product', 'broke quickly', 'works well', 'returned it'];

function reviewsParquet(): Uint8Array {
  return new Uint8Array(
    parquetWriteBuffer({
      columnData: [
        { name: 'label', data: [1n, 0n, 1n, 0n], type: 'INT64' },
        { name: 'text', data: TEXTS, type: 'STRING' },
      ],
      rowGroupSize: 2,
    }),
  );
}

/** `bytes` rewritten with a CRC-32 in every page header (the chunks' offsets and sizes moved to match). */
function withPageChecksums(bytes: Uint8Array): Uint8Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const metadata: FileMetaData = parquetMetadata(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer);
  const out = new ByteWriter();
  out.appendUint32(0x31524150); // PAR1
  for (const group of metadata.row_groups) {
    let groupSize = 0;
    for (const column of group.columns) {
      const meta = column.meta_data!;
      const start = Number(meta.dictionary_page_offset ?? meta.data_page_offset);
      const end = start + Number(meta.total_compressed_size);
      const newStart = out.offset;
      let offset = start;
      while (offset < end) {
        const reader = { view, offset };
        const header: PageHeader = parquetHeader(reader);
        const page = bytes.subarray(reader.offset, reader.offset + header.compressed_page_size);
        if (header.type === 'DICTIONARY_PAGE') meta.dictionary_page_offset = BigInt(out.offset);
        else if (offset === Number(meta.data_page_offset)) meta.data_page_offset = BigInt(out.offset);
        // (hyparquet-writer types its own copy of hyparquet; the objects are the same.)
        writePageHeader(out, { ...header, crc: crc32(page) | 0 } as Parameters<typeof writePageHeader>[1]);
        out.appendBytes(page);
        offset = reader.offset + header.compressed_page_size;
      }
      const grown = out.offset - newStart - (end - start);
      meta.total_compressed_size += BigInt(grown);
      meta.total_uncompressed_size += BigInt(grown);
      delete meta.statistics;
      column.file_offset = BigInt(newStart);
      for (const k of ['offset_index_offset', 'offset_index_length', 'column_index_offset', 'column_index_length'] as const)
        delete column[k];
      groupSize += out.offset - newStart;
    }
    group.file_offset = group.columns[0]!.file_offset;
    group.total_compressed_size = BigInt(groupSize);
  }
  writeMetadata(out, metadata as Parameters<typeof writeMetadata>[1]);
  out.appendUint32(0x31524150);
  return new Uint8Array(out.getBuffer());
}

/** The offset of the first byte of `needle` in `bytes`. */
function indexOf(bytes: Uint8Array, needle: string): number {
  const at = Buffer.from(bytes).indexOf(needle);
  assert.ok(at >= 0, `${needle} is in the file`);
  return at;
}

test('crc32 is zlib’s CRC-32', () => {
  for (const s of ['', 'a', '123456789', 'x'.repeat(70_000)]) {
    const b = Buffer.from(s);
    if (typeof zlibCrc32 === 'function') assert.equal(crc32(b), zlibCrc32(b));
  }
  assert.equal(crc32(Buffer.from('123456789')), 0xcbf43926);
});

test('a Parquet page that fails its stored CRC-32 is refused naming the file, column and row group; intact pages read', async () => {
  const dir = tempDir();
  const file = join(dir, 'reviews.parquet');
  const intact = withPageChecksums(reviewsParquet());
  writeFileSync(file, intact);
  const { examples } = await readAllExamples([file], { progress: false });
  assert.deepEqual(
    examples.map((e) => e.text),
    TEXTS,
    'the rewritten file with checksums reads as the original',
  );

  // A changed letter still decodes ("works wall"): only the checksum can tell.
  const damaged = Buffer.from(intact);
  damaged[indexOf(intact, 'works well') + 7] = 'a'.charCodeAt(0);
  writeFileSync(file, damaged);
  await assert.rejects(readAllExamples([file], { progress: false }), (e: unknown) => {
    assert.ok(e instanceof FormatError, String(e));
    assert.match(
      e.message,
      new RegExp(
        `^${file}: column 'text', row group 2 of 2 \\(rows 3-4\\): the file is damaged \\(the page at byte \\d+ fails its ` +
          'checksum \\(CRC-32 0x[0-9a-f]{8}, its header says 0x[0-9a-f]{8}\\): its bytes were changed after writing\\); download ' +
          'or export it again$',
      ),
    );
    return true;
  });
});
