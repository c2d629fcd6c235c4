import { describe, expect, it } from 'vitest';
import {
  bindNamedParameters,
  pointAtShims,
  RedshiftSqlSyntaxError,
  tokenize,
} from '../local/emulators/redshift-sql';
import { formatUnloadLine, type UnloadColumn } from '../local/emulators/unload-format';
import { parseUnload, UnsupportedUnloadOptionError } from '../local/emulators/unload-parse';

const MB = 1024 * 1024;

/** The statement shape the UNLOAD builder produces (lambdas/core/unload/statement.ts). */
const BUILT = [
  `UNLOAD ('SELECT "id" AS "id", "note" AS "note" FROM "sales"."Order Items" WHERE "note" <> ''it''''s'' AND "path" LIKE ''C:\\\\\\\\%''')`,
  `TO 's3://bucket/runs/run-1/order_items__abc/'`,
  `IAM_ROLE 'arn:aws:iam::123456789012:role/unload'`,
  `DELIMITER AS '|' NULL AS '\\\\N' ESCAPE`,
  'MANIFEST VERBOSE PARALLEL ON MAXFILESIZE 100 MB',
  `KMS_KEY_ID 'arn:aws:kms:eu-west-1:123456789012:key/abcd' ENCRYPTED REGION 'eu-west-1'`,
].join('\n');

function syntaxError(sql: string): RedshiftSqlSyntaxError {
  try {
    parseUnload(sql);
  } catch (error) {
    expect(error).toBeInstanceOf(RedshiftSqlSyntaxError);
    return error as RedshiftSqlSyntaxError;
  }
  throw new Error(`parseUnload accepted ${sql}`);
}

describe('Redshift string literals', () => {
  it("read '' as a quote and a backslash as an escape", () => {
    const literal = String.raw`'it''s \'quoted\' a\\b \t tab \N \101'`;
    const [token] = tokenize(literal);
    expect(token).toMatchObject({ kind: 'string', text: literal });
    expect(token!.value).toBe("it's 'quoted' a\\b \t tab N A");
  });

  it('name where an unterminated literal starts', () => {
    expect(() => tokenize("SELECT 'open\nSELECT 2")).toThrowError(
      /unterminated string literal starting at line 1, column 8/,
    );
  });
});

describe('parseUnload', () => {
  it("decodes the builder's statement: query, destination and every option", () => {
    const statement = parseUnload(BUILT);
    expect(statement.query).toBe(
      `SELECT "id" AS "id", "note" AS "note" FROM "sales"."Order Items" WHERE "note" <> 'it''s' AND "path" LIKE 'C:\\\\%'`,
    );
    expect(statement.to).toBe('s3://bucket/runs/run-1/order_items__abc/');
    expect(statement.options).toEqual({
      delimiter: '|',
      nullAs: '\\N',
      escape: true,
      manifest: 'verbose',
      parallel: true,
      maxFileSizeBytes: 100 * MB,
      allowOverwrite: false,
      iamRole: 'arn:aws:iam::123456789012:role/unload',
      kmsKeyId: 'arn:aws:kms:eu-west-1:123456789012:key/abcd',
      encrypted: true,
      region: 'eu-west-1',
    });
  });

  it('takes options in any order and case, and applies the defaults', () => {
    const statement = parseUnload(
      `unload ('select 1') to 's3://b/p_' allowoverwrite Parallel Off maxfilesize as 1.5 gb manifest null 'NULL' iam_role default delimiter '\\t';`,
    );
    expect(statement.options).toMatchObject({
      delimiter: '\t',
      nullAs: 'NULL',
      escape: false,
      manifest: 'plain',
      parallel: false,
      maxFileSizeBytes: 1.5 * 1024 * MB,
      allowOverwrite: true,
      iamRole: 'default',
    });
    const bare = parseUnload(`UNLOAD ('select 1') TO 's3://b/p/' IAM_ROLE 'r'`).options;
    expect(bare).toMatchObject({
      delimiter: '|',
      nullAs: '',
      escape: false,
      manifest: 'none',
      parallel: true,
      maxFileSizeBytes: Math.round(6.2 * 1024 * MB),
    });
  });

  it('refuses the options it does not emulate, by name', () => {
    for (const option of [
      'FORMAT AS CSV',
      'CSV',
      'PARQUET',
      'JSON',
      'HEADER',
      'ADDQUOTES',
      'GZIP',
      'ZSTD',
      'BZIP2',
      'CLEANPATH',
    ]) {
      expect(() =>
        parseUnload(`UNLOAD ('select 1') TO 's3://b/p/' IAM_ROLE 'r' ${option}`),
      ).toThrowError(UnsupportedUnloadOptionError);
    }
    expect(() =>
      parseUnload(`UNLOAD ('select 1') TO 's3://b/p/' IAM_ROLE 'r' FIXEDWIDTH '0:3'`),
    ).toThrowError(/UNLOAD option FIXEDWIDTH is not supported .*fixed-width/);
    expect(() =>
      parseUnload(`UNLOAD ('select 1') TO 's3://b/p/' IAM_ROLE 'r' PARTITION BY (a)`),
    ).toThrowError(/UNLOAD option PARTITION is not supported/);
  });

  it('names the problem and shows where', () => {
    const missingTo = syntaxError(`UNLOAD ('select 1')\nINTO 's3://b/p/' IAM_ROLE 'r'`);
    expect(missingTo.message).toBe(
      `UNLOAD: expected TO 's3://bucket/prefix'; found "INTO", at line 2, column 1:\n  INTO 's3://b/p/' IAM_ROLE 'r'\n  ^`,
    );
    expect(syntaxError(`UNLOAD ('select 1') TO 's3://b/p/' IAM_ROLE 'r' SPEEDY`).message).toMatch(
      /SPEEDY is not an UNLOAD option, at line 1, column 49/,
    );
    expect(syntaxError(`UNLOAD ('select 1') TO 's3://b/p/'`).message).toMatch(
      /needs authorization: add IAM_ROLE/,
    );
    expect(
      syntaxError(`UNLOAD ('select 1') TO 's3://b/p/' IAM_ROLE 'r' ESCAPE ESCAPE`).message,
    ).toMatch(/ESCAPE is given twice/);
    expect(syntaxError(`UNLOAD ('select 1') TO 'bucket/p/' IAM_ROLE 'r'`).message).toMatch(
      /TO must be s3:\/\/bucket\/name-prefix/,
    );
    expect(
      syntaxError(`UNLOAD ('select 1') TO 's3://b/p/' IAM_ROLE 'r' DELIMITER '||'`).message,
    ).toMatch(/DELIMITER must be one ASCII character/);
    expect(
      syntaxError(`UNLOAD ('select 1') TO 's3://b/p/' IAM_ROLE 'r' MAXFILESIZE 4 MB`).message,
    ).toMatch(/MAXFILESIZE must be from 5 MB to 6.2 GB/);
    expect(
      syntaxError(`UNLOAD ('select 1') TO 's3://b/p/' IAM_ROLE 'r' KMS_KEY_ID 'k'`).message,
    ).toMatch(/KMS_KEY_ID needs ENCRYPTED/);
    expect(syntaxError(`UNLOAD (select 1) TO 's3://b/p/' IAM_ROLE 'r'`).message).toMatch(
      /expected the query as a 'quoted' string; found "select"/,
    );
  });

  it("refuses a LIMIT in the query's outer SELECT, as Redshift does, but not in a subquery", () => {
    expect(
      syntaxError(`UNLOAD ('select * from t limit 10') TO 's3://b/p/' IAM_ROLE 'r'`).message,
    ).toMatch(/cannot use LIMIT in its outer SELECT/);
    expect(
      parseUnload(
        `UNLOAD ('select * from t where id in (select id from t order by id limit 10)') TO 's3://b/p/' IAM_ROLE 'r'`,
      ).query,
    ).toContain('limit 10');
  });
});

describe('formatUnloadLine', () => {
  const text: UnloadColumn = { name: 'note', type: 'text', character: true, binary: false };
  const number: UnloadColumn = { name: 'n', type: 'integer', character: false, binary: false };
  const bytes: UnloadColumn = { name: 'b', type: 'bytea', character: false, binary: true };
  const contract = { delimiter: '|', nullAs: '\\N', escape: true };

  it('escapes LF, CR, the delimiter and the backslash in character values only', () => {
    expect(formatUnloadLine(['1', 'a|b\tc\r\nd\\e'], [number, text], contract)).toBe(
      '1|a\\|b\tc\\\r\\\nd\\\\e\n',
    );
    expect(formatUnloadLine(['a|b'], [number], contract)).toBe('a|b\n');
  });

  it('writes NULL as the NULL AS text, unescaped, apart from the string \\N and the empty string', () => {
    expect(formatUnloadLine([null, '\\N', '', 'NULL'], [text, text, text, text], contract)).toBe(
      '\\N|\\\\N||NULL\n',
    );
    expect(formatUnloadLine([null, ''], [text, text], { ...contract, nullAs: '' })).toBe('|\n');
  });

  it('leaves values alone without ESCAPE, and prints bytes as bare hex', () => {
    expect(
      formatUnloadLine(['a|b\\c', '\\x00ff'], [text, bytes], { ...contract, escape: false }),
    ).toBe('a|b\\c|00ff\n');
  });
});

describe('statements for the stand-in', () => {
  it('point JSON_SERIALIZE calls at the shim, in code only', () => {
    expect(
      pointAtShims(
        `SELECT JSON_SERIALIZE ("doc"), 'JSON_SERIALIZE(x)', "json_serialize", x.json_serialize(y) -- JSON_SERIALIZE(z)`,
      ),
    ).toBe(
      `SELECT redshift_shims.json_serialize ("doc"), 'JSON_SERIALIZE(x)', "json_serialize", x.json_serialize(y) -- JSON_SERIALIZE(z)`,
    );
  });

  it('bind :name parameters as text, leaving casts and literals', () => {
    expect(
      bindNamedParameters(`SELECT :schema::text, ':table', :table, :schema`, {
        schema: 'sales',
        table: 'Order Items',
      }),
    ).toEqual({ text: `SELECT $1::text, ':table', $2, $1`, values: ['sales', 'Order Items'] });
    expect(() => bindNamedParameters('SELECT :a', {})).toThrowError(/:a has no value/);
    expect(() => bindNamedParameters('SELECT 1', { a: 'x' })).toThrowError(/not used .*:a/);
  });
});
