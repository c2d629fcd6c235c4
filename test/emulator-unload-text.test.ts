/**
 * The UNLOAD emulator's byte rewriting (unload-text.ts): PostgreSQL's COPY text output, cut
 * into pieces anywhere (inside an escape, inside a multi-byte character), rewritten into the
 * bytes formatUnloadLine writes for the same rows, line ends included.
 */
import type pg from 'pg';
import copyStreams from 'pg-copy-streams';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CopyOut } from '../local/emulators/copy-out';
import {
  copyStatement,
  describeColumns,
  formatUnloadLine,
  type LineFormat,
} from '../local/emulators/unload-format';
import { parseUnload, UnsupportedUnloadOptionError } from '../local/emulators/unload-parse';
import { type UnloadLines, UnloadTextRewriter } from '../local/emulators/unload-text';
import { freshDatabase } from './support/db';

let client: pg.Client;

beforeAll(async () => {
  const db = await freshDatabase();
  client = await db.connect('unload-text');
  await client.query(`SET timezone TO 'UTC'`);
  await client.query(
    `CREATE TABLE awkward (id int, note varchar(200), doc jsonb, tags text[], amount numeric,
       at timestamptz, blob bytea, r real, d double precision, flag boolean)`,
  );
  // Every byte COPY escapes, in character and other values; multi-byte characters of 2, 3
  // and 4 bytes; a literal \N; values that end in a backslash; NULLs in every column.
  await client.query(
    `INSERT INTO awkward VALUES
       (1, E'a|b\\\\c\\nd\\re\\tf\\bg\\fh\\vi\\x01j,k', '{"k": "v\\\\w|x\\ny"}',
        ARRAY[E'p|q', E'back\\\\slash', E'tab\\there'], 1.5, '2024-02-29 12:34:56.5+00',
        '\\x005c7c0a', 0.1, 1e-300, true),
       (2, 'Grüße, 東京, 😀', '[1, "|", "😀"]', '{}', -0.0001, 'infinity', '\\x', '-0', 'NaN', false),
       (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
       (4, E'\\\\N', 'null', ARRAY[NULL, 'x'], 0, '0001-01-01 00:00:00+00 BC', '\\xff', 'Infinity', '-1.7976931348623157e308', NULL),
       (5, E'ends in a backslash \\\\', '"\\\\"', ARRAY[E'\\\\'], 1e20, '1970-01-01', '\\x5c', 3.4028235e38, 5e-324, true),
       (6, '', '{}', '{""}', 1, '2000-01-01', '\\x', 1, 1, false)`,
  );
});

afterAll(async () => {
  await client?.end();
});

/** What COPY prints for `query`, in one buffer, and what formatUnloadLine writes for it. */
async function copyAndExpected(
  query: string,
  format: LineFormat,
): Promise<{ copied: Buffer; expected: string[]; rewriter: () => UnloadTextRewriter }> {
  const described = await client.query({ text: `${query} LIMIT 0`, rowMode: 'array' });
  const digits = await client.query<{ d: string }>(
    `SELECT current_setting('extra_float_digits') AS d`,
  );
  const columns = await describeColumns(client, described.fields, Number(digits.rows[0]!.d));
  const pieces: Buffer[] = [];
  for await (const piece of client.query(copyStreams.to(copyStatement(query, columns, format)))) {
    pieces.push(piece as Buffer);
  }
  // The reference reads floats printed exactly (shortest form), as their bits in hex are.
  await client.query('SET extra_float_digits TO 3');
  const { rows } = await client.query<(string | null)[]>({
    text: query,
    rowMode: 'array',
    types: { getTypeParser: () => (value: string) => value },
  });
  await client.query(`SET extra_float_digits TO ${digits.rows[0]!.d}`);
  return {
    copied: Buffer.concat(pieces),
    expected: rows.map((row) => formatUnloadLine(row, columns, format)),
    rewriter: () => new UnloadTextRewriter(columns, format),
  };
}

/** Feeds `pieces` to a rewriter; returns the bytes and the line lengths it gave back. */
function rewrite(rewriter: UnloadTextRewriter, pieces: readonly Buffer[]) {
  const out: UnloadLines[] = [];
  for (const piece of pieces) out.push(...rewriter.push(piece));
  expect(rewriter.atLineEnd).toBe(true);
  const lengths = out.flatMap(({ ends }) => ends.map((end, index) => end - (ends[index - 1] ?? 0)));
  return { bytes: Buffer.concat(out.map((lines) => lines.bytes)), lengths };
}

const ALL = 'SELECT id, note, doc, tags, amount, at, blob, r, d, flag FROM awkward ORDER BY id';

const FORMATS: [string, LineFormat][] = [
  ['the contract: | and \\N with ESCAPE', { delimiter: '|', nullAs: '\\N', escape: true }],
  ['no ESCAPE, NULL as the empty string', { delimiter: '|', nullAs: '', escape: false }],
  ['tab delimiter, NULL AS NULL, ESCAPE', { delimiter: '\t', nullAs: 'NULL', escape: true }],
  ['comma delimiter, a multi-byte NULL AS', { delimiter: ',', nullAs: 'ø∅', escape: true }],
  ['a control character as delimiter', { delimiter: '\x01', nullAs: '\\N', escape: true }],
];

describe('UnloadTextRewriter', () => {
  for (const [name, format] of FORMATS) {
    for (const extraFloatDigits of [0, 2]) {
      it(`writes the bytes formatUnloadLine writes, cut anywhere: ${name}, extra_float_digits ${extraFloatDigits}`, async () => {
        await client.query(`SET extra_float_digits TO ${extraFloatDigits}`);
        const { copied, expected, rewriter } = await copyAndExpected(ALL, format);
        const want = Buffer.from(expected.join(''), 'utf8');
        const lengths = expected.map((line) => Buffer.byteLength(line));
        expect(rewrite(rewriter(), [copied])).toEqual({ bytes: want, lengths });
        // Byte by byte: every escape and every character split.
        const bytes = [...copied].map((byte) => Buffer.from([byte]));
        expect(rewrite(rewriter(), bytes)).toEqual({ bytes: want, lengths });
        for (let cut = 1; cut < copied.length; cut += 1) {
          const split = rewrite(rewriter(), [copied.subarray(0, cut), copied.subarray(cut)]);
          expect(split.bytes.equals(want), `cut at byte ${cut}`).toBe(true);
        }
      });
    }
  }

  it('copies lines without escapes as they are, and rewrites only the escapes that differ, when every field that may hold one is a character value', async () => {
    const format: LineFormat = { delimiter: '|', nullAs: '\\N', escape: true };
    const { copied, expected, rewriter } = await copyAndExpected(
      'SELECT id, note, amount, at FROM awkward ORDER BY id',
      format,
    );
    const out = rewriter().push(copied);
    expect(Buffer.concat(out.map((lines) => lines.bytes)).toString('utf8')).toBe(expected.join(''));
    const plain = await copyAndExpected(
      `SELECT id, note FROM awkward WHERE id IN (2, 6) ORDER BY id`,
      format,
    );
    const [lines] = plain.rewriter().push(plain.copied);
    // Nothing to rewrite: the very bytes COPY sent, not a copy.
    expect(lines!.bytes.buffer).toBe(plain.copied.buffer);
    expect(lines!.bytes.byteOffset).toBe(plain.copied.byteOffset);
    expect(lines!.bytes.toString('utf8')).toBe('2|Grüße, 東京, 😀\n6|\n');
  });

  it('keeps the unfinished line until its end arrives, and says so', () => {
    const rewriter = new UnloadTextRewriter(
      [{ name: 'note', type: 'character varying', character: true, binary: false }],
      { delimiter: '|', nullAs: '\\N', escape: true },
    );
    expect(rewriter.push(Buffer.from('a\\nb'))).toEqual([]);
    expect(rewriter.atLineEnd).toBe(false);
    const [lines] = rewriter.push(Buffer.from('\\\\\nc'));
    expect(lines!.bytes.toString()).toBe('a\\\nb\\\\\n');
    expect(lines!.ends).toEqual([7]);
    expect(rewriter.atLineEnd).toBe(false);
  });

  it("refuses, naming it, exactly the delimiters PostgreSQL's COPY refuses, and no other", async () => {
    for (let code = 1; code < 0x80; code += 1) {
      const delimiter = String.fromCharCode(code);
      if (delimiter === '\n' || delimiter === '\r') continue;
      const format: LineFormat = { delimiter, nullAs: '\\N', escape: true };
      const one = [{ name: 'one', type: 'integer', character: false, binary: false }];
      const copy = client.query(new CopyOut(copyStatement('SELECT 1', one, format)));
      const copyTakesIt = await (async () => {
        for await (const _ of copy);
        return true;
      })().catch(() => false);
      const quoted = delimiter === "'" ? "''" : delimiter === '\\' ? '\\\\' : delimiter;
      const parse = () =>
        parseUnload(`UNLOAD ('select 1') TO 's3://b/p/' IAM_ROLE 'r' DELIMITER '${quoted}'`);
      if (copyTakesIt) expect(parse().options.delimiter, `code ${code}`).toBe(delimiter);
      else {
        expect(parse, `code ${code}`).toThrow(UnsupportedUnloadOptionError);
        expect(parse, `code ${code}`).toThrow(/not supported by the local UNLOAD emulator/);
      }
    }
  });
});
