import { describe, expect, it } from 'vitest';
import { ConfigError } from '../lambdas/core/errors';
import type { QualifiedName } from '../lambdas/core/identifiers';
import { runScopedName } from '../lambdas/core/swap/plan';
import type { ColumnTransfer, TableTransfer } from '../lambdas/core/transfer/types';
import {
  buildUnloadSession,
  buildUnloadStatement,
  manifestKey,
  parseS3Prefix,
  redshiftLiteral,
  SESSION_SETTINGS,
  TRANSACTION_START_SQL,
  tableS3Prefix,
  type UnloadOptions,
  validateUnloadOptions,
} from '../lambdas/core/unload/statement';

const ROLE = 'arn:aws:iam::123456789012:role/redshift-unload';
const KEY = 'arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab';
const options: UnloadOptions = { iamRoleArn: ROLE, maxFileSizeMb: 100 };

/** Every character that quoting has to survive: capitals, space, ", ', \. */
const awkward: QualifiedName = { schema: 'Sales Data', name: `Order "Items" it's C:\\tmp` };

function column(
  name: string,
  selectExpression = `"${name.replaceAll('"', '""')}"`,
): ColumnTransfer {
  return { name, selectExpression, targetType: 'text', figures: 'octets' };
}

function transfer(
  source: QualifiedName,
  columns: ColumnTransfer[],
  s3Prefix: string,
): TableTransfer {
  return {
    table: { source, target: source, strategy: 'rename', allowEmpty: false },
    staging: { schema: 'redshift_sync_staging', name: 'x' },
    columns,
    s3Prefix,
  };
}

describe('a delta (an incremental run)', () => {
  const orders: QualifiedName = { schema: 'sales', name: 'orders' };
  const base = transfer(orders, [column('id'), column('Updated At')], 's3://bucket/runs/r/orders/');
  const delta = (operator: '>=' | '>', watermark: string, castType: string): TableTransfer => ({
    ...base,
    delta: { cursor: 'Updated At', operator, watermark, castType },
  });

  it('unloads and counts only the rows past the watermark, whose text is always a quoted literal', () => {
    const session = buildUnloadSession(
      [delta('>=', '2026-01-01 00:00:00.000000+00', 'TIMESTAMPTZ')],
      options,
    );
    const [unload, figures, whole] = session.batches[0]!.slice(-4, -1);
    expect(unload).toContain(
      `UNLOAD ('SELECT "id" AS "id", "Updated At" AS "Updated At" FROM "sales"."orders" WHERE "Updated At" >= CAST(''2026-01-01 00:00:00.000000+00'' AS TIMESTAMPTZ)')`,
    );
    expect(figures).toMatch(
      /FROM "sales"\."orders" WHERE "Updated At" >= CAST\('2026-01-01 00:00:00\.000000\+00' AS TIMESTAMPTZ\)$/,
    );
    // The whole table, in the same transaction: the proof and the next watermark.
    expect(whole).toMatch(/FROM "sales"\."orders"$/);
    expect(session.wholeFigures).toEqual([{ batch: 0, index: session.batches[0]!.length - 2 }]);
    const hostile = buildUnloadStatement(delta('>', "1' OR '1'='1", 'BIGINT'), options);
    expect(hostile).toContain(`> CAST(''1'''' OR ''''1''''=''''1'' AS BIGINT)`);
  });

  it('refuses a cast type or operator it did not build, since they are spliced', () => {
    expect(() =>
      buildUnloadStatement(delta('>', '1', 'BIGINT); DROP TABLE x; --'), options),
    ).toThrow(/is not one cursorCastType builds/);
    expect(() => buildUnloadStatement(delta('<>' as '>', '1', 'BIGINT'), options)).toThrow(
      /is not one cursorCastType builds/,
    );
    expect(buildUnloadSession([base], options).wholeFigures).toEqual([null]);
  });

  it("unloads the whole source table's keys last, into its own folder, for a reconcile", () => {
    const reconciled: TableTransfer = {
      ...delta('>', '7', 'BIGINT'),
      keys: {
        columns: [column('id')],
        table: { schema: 'redshift_sync_staging', name: 'x_keys' },
        s3Prefix: 's3://bucket/runs/r/orders/keys/',
      },
    };
    const session = buildUnloadSession([reconciled], options);
    const statements = session.batches[0]!;
    const keysAt = statements.length - 2;
    expect(session.keyUnloads).toEqual([{ batch: 0, index: keysAt }]);
    expect(session.wholeFigures).toEqual([{ batch: 0, index: keysAt - 1 }]);
    expect(statements[keysAt]!.split('\n').slice(0, 2)).toEqual([
      `UNLOAD ('SELECT "id" AS "id" FROM "sales"."orders"')`,
      `TO 's3://bucket/runs/r/orders/keys/'`,
    ]);
    expect(statements[keysAt]).toContain('MANIFEST VERBOSE PARALLEL ON MAXFILESIZE 100 MB');
    // Only with a delta: a full run replaces every row and needs no key set.
    const { delta: _, ...full } = reconciled;
    expect(buildUnloadSession([full], options).keyUnloads).toEqual([null]);
  });
});

describe('redshiftLiteral', () => {
  it('doubles single quotes and backslashes, as Redshift reads both as escapes', () => {
    expect(redshiftLiteral(`it's`)).toBe(`'it''s'`);
    expect(redshiftLiteral('C:\\tmp')).toBe(`'C:\\\\tmp'`);
    expect(redshiftLiteral(`\\'`)).toBe(`'\\\\'''`);
    expect(redshiftLiteral('')).toBe(`''`);
  });
});

describe('buildUnloadStatement', () => {
  const awkwardTransfer = transfer(
    awkward,
    [column('id'), column('Note "quoted"'), column(`it's`), column('back\\slash')],
    's3://sync-bucket/runs/run-1/order_items__abc/',
  );

  it('writes the contract shape, every name quoted and the query a Redshift literal', () => {
    expect(buildUnloadStatement(awkwardTransfer, options)).toBe(
      [
        `UNLOAD ('SELECT "id" AS "id", "Note ""quoted""" AS "Note ""quoted""", "it''s" AS "it''s", "back\\\\slash" AS "back\\\\slash" FROM "Sales Data"."Order ""Items"" it''s C:\\\\tmp"')`,
        `TO 's3://sync-bucket/runs/run-1/order_items__abc/'`,
        `IAM_ROLE 'arn:aws:iam::123456789012:role/redshift-unload'`,
        `DELIMITER AS '|' NULL AS '\\\\N' ESCAPE`,
        'MANIFEST VERBOSE PARALLEL ON MAXFILESIZE 100 MB',
      ].join('\n'),
    );
  });

  it('adds the KMS key and the region on a last line when given', () => {
    const statement = buildUnloadStatement(awkwardTransfer, {
      ...options,
      kmsKeyArn: KEY,
      region: 'eu-west-1',
      maxFileSizeMb: 250,
    });
    const lines = statement.split('\n');
    expect(lines).toHaveLength(6);
    expect(lines[4]).toBe('MANIFEST VERBOSE PARALLEL ON MAXFILESIZE 250 MB');
    expect(lines[5]).toBe(`KMS_KEY_ID '${KEY}' ENCRYPTED REGION 'eu-west-1'`);
    expect(
      buildUnloadStatement(awkwardTransfer, { ...options, region: 'us-gov-west-1' }).split('\n')[5],
    ).toBe(`REGION 'us-gov-west-1'`);
  });

  it('selects in the order the columns are given, with their expressions, never *', () => {
    const statement = buildUnloadStatement(
      transfer(
        { schema: 'public', name: 't' },
        [column('b'), column('a', `CHR(92) || 'x' || FROM_VARBYTE("a", 'hex')`)],
        's3://b-1/runs/r/t__1/',
      ),
      options,
    );
    expect(statement.split('\n')[0]).toBe(
      `UNLOAD ('SELECT "b" AS "b", CHR(92) || ''x'' || FROM_VARBYTE("a", ''hex'') AS "a" FROM "public"."t"')`,
    );
    expect(statement).not.toContain('*');
  });

  it('refuses a transfer without columns or with a malformed folder', () => {
    expect(() =>
      buildUnloadStatement(transfer(awkward, [], 's3://b-1/runs/r/t/'), options),
    ).toThrowError(/no columns to unload/);
    expect(() =>
      buildUnloadStatement(transfer(awkward, [column('a')], 's3://b-1/runs/r/t'), options),
    ).toThrowError(/must look like s3:\/\/bucket\/folder\/ \(ending with \/\)/);
  });

  it('refuses a statement longer than the Data API takes', () => {
    const wide = Array.from({ length: 2000 }, (_, index) =>
      column(`a_rather_long_column_${index}`),
    );
    expect(() =>
      buildUnloadStatement(transfer(awkward, wide, 's3://b-1/runs/r/t/'), options),
    ).toThrowError(/bytes long; the Redshift Data API takes at most 100000 bytes/);
  });
});

describe('validateUnloadOptions', () => {
  it('accepts role chains, partition ARNs and sizes at both limits', () => {
    const chained = `${ROLE},arn:aws:iam::210987654321:role/path/to/writer`;
    expect(validateUnloadOptions({ iamRoleArn: chained, maxFileSizeMb: 5 }).iamRoleArn).toBe(
      chained,
    );
    expect(() =>
      validateUnloadOptions({
        iamRoleArn: 'arn:aws-cn:iam::123456789012:role/x',
        kmsKeyArn: 'arn:aws-cn:kms:cn-north-1:123456789012:key/abcd',
        region: 'cn-north-1',
        maxFileSizeMb: 6000,
      }),
    ).not.toThrow();
  });

  it.each([
    [{ iamRoleArn: 'redshift-unload' }, /iamRoleArn "redshift-unload" is not an IAM role ARN/],
    [{ iamRoleArn: `${ROLE}, ${ROLE}` }, /is not an IAM role ARN.*no spaces/],
    [{ iamRoleArn: "arn:aws:iam::123456789012:role/x'y" }, /is not an IAM role ARN/],
    [{ kmsKeyArn: 'alias/sync' }, /kmsKeyArn "alias\/sync" is not a KMS key ARN/],
    [{ region: 'EU-WEST-1' }, /region "EU-WEST-1" is not an AWS region name/],
    [{ region: "eu-west-1' x" }, /is not an AWS region name/],
    [{ maxFileSizeMb: 4 }, /maxFileSizeMb is 4; give a whole number of MB from 5 to 6000/],
    [{ maxFileSizeMb: 6001 }, /maxFileSizeMb is 6001/],
    [{ maxFileSizeMb: 10.5 }, /maxFileSizeMb is 10.5/],
  ])('refuses %j', (override, message) => {
    const bad = { ...options, ...override };
    expect(() => validateUnloadOptions(bad)).toThrowError(ConfigError);
    expect(() => validateUnloadOptions(bad)).toThrowError(message);
  });
});

describe('tableS3Prefix and manifestKey', () => {
  const target: QualifiedName = { schema: 'public', name: 'Order Items' };

  it('gives each run and table its own folder, named like its staging table', () => {
    const prefix = tableS3Prefix('sync-bucket', 'run-2024-01-01', target);
    expect(prefix).toBe(
      `s3://sync-bucket/runs/run-2024-01-01/${runScopedName('run-2024-01-01', target)}/`,
    );
    expect(prefix).toMatch(
      /^s3:\/\/sync-bucket\/runs\/run-2024-01-01\/order_items__[0-9a-f]{12}\/$/,
    );
    expect(tableS3Prefix('sync-bucket', 'run-2', target)).not.toBe(prefix);
    const { bucket, keyPrefix } = parseS3Prefix(prefix);
    expect(bucket).toBe('sync-bucket');
    expect(manifestKey(keyPrefix)).toBe(`${keyPrefix}manifest`);
  });

  it('refuses bad buckets, run ids and prefixes', () => {
    expect(() => tableS3Prefix('s3://sync-bucket', 'r', target)).toThrowError(
      /bucket "s3:\/\/sync-bucket" is not an S3 bucket name/,
    );
    expect(() => tableS3Prefix('Sync_Bucket', 'r', target)).toThrowError(/not an S3 bucket name/);
    expect(() => tableS3Prefix('sync-bucket', 'run/1', target)).toThrowError(/run id "run\/1"/);
    expect(() => manifestKey('s3://sync-bucket/runs/r/t/')).toThrowError(/key prefix/);
    expect(() => manifestKey('runs/r/t')).toThrowError(/ending with \//);
  });
});

describe('buildUnloadSession', () => {
  const many = (count: number) =>
    Array.from({ length: count }, (_, n) =>
      transfer({ schema: 'public', name: `t${n}` }, [column('a')], `s3://b-1/runs/r/t${n}/`),
    );

  it('opens a transaction, sets the session, and commits at the end, in one call for a few tables', () => {
    const plan = buildUnloadSession(many(2), options);
    expect(plan.batches).toHaveLength(1);
    const [only] = plan.batches;
    expect(only!.slice(0, 5)).toEqual(['BEGIN', ...SESSION_SETTINGS, TRANSACTION_START_SQL]);
    expect(only![5]).toMatch(/^UNLOAD \('SELECT "a" AS "a" FROM "public"\."t0"'\)/);
    expect(only!.at(-1)).toBe('COMMIT');
    expect(plan.transactionStartIndex).toEqual([4]);
    expect(plan.figures).toEqual([
      { batch: 0, index: 6 },
      { batch: 0, index: 8 },
    ]);
  });

  it('refuses no tables, two tables unloading into one folder, and bad options', () => {
    const [first, second] = many(2);
    expect(() => buildUnloadSession([], options)).toThrowError(/no tables/);
    expect(() =>
      buildUnloadSession([first!, { ...second!, s3Prefix: first!.s3Prefix }], options),
    ).toThrowError(/would unload into the same folder s3:\/\/b-1\/runs\/r\/t0\//);
    expect(() => buildUnloadSession([first!], { ...options, maxFileSizeMb: 0 })).toThrowError(
      /maxFileSizeMb is 0/,
    );
  });

  it('spreads 100 tables over calls of at most 40 statements, each reading the transaction start', () => {
    const transfers = many(100);
    const plan = buildUnloadSession(transfers, options);
    for (const batch of plan.batches) expect(batch.length).toBeLessThanOrEqual(40);
    expect(plan.batches.flat().filter((sql) => sql.startsWith('UNLOAD'))).toHaveLength(100);
    expect(plan.batches.flat().filter((sql) => sql === 'BEGIN')).toHaveLength(1);
    expect(plan.batches.at(-1)!.at(-1)).toBe('COMMIT');
    plan.batches.forEach((batch, index) => {
      expect(batch[plan.transactionStartIndex[index]!]).toBe(TRANSACTION_START_SQL);
    });
    // Each table's figures query is where the plan says, right after its own UNLOAD.
    plan.figures.forEach((at, n) => {
      const batch = plan.batches[at.batch]!;
      expect(batch[at.index]).toMatch(new RegExp(`FROM "public"\\."t${n}"$`));
    });
    expect(() => buildUnloadSession([], options)).toThrowError(/no tables/);
    expect(plan.oversize.every((at) => at === null)).toBe(true);
  });

  it('counts values too long for their text form in calls of their own, before the first UNLOAD', () => {
    const plain = many(1);
    const doc: ColumnTransfer = {
      ...column('doc'),
      convertedBytes: 'JSON_SIZE("doc")',
      figures: 'nulls',
    };
    const blob: ColumnTransfer = {
      ...column('blob'),
      convertedBytes: '2 + 2 * OCTET_LENGTH("blob")',
      figures: 'nulls',
    };
    const guarded = Array.from({ length: 40 }, (_, n) =>
      transfer(
        { schema: 'public', name: `g${n}` },
        [column('id'), doc, blob],
        `s3://b-1/runs/r/g${n}/`,
      ),
    );
    const plan = buildUnloadSession([...plain, ...guarded], options);
    expect(plan.oversize[0]).toBeNull();
    const counted = plan.oversize.slice(1).map((at) => plan.batches[at!.batch]![at!.index]);
    expect(counted[0]).toBe(
      'SELECT CAST(COUNT(CASE WHEN JSON_SIZE("doc") > 65535 THEN 1 END) AS VARCHAR(100)) AS c1_oversized, ' +
        'CAST(COUNT(CASE WHEN 2 + 2 * OCTET_LENGTH("blob") > 65535 THEN 1 END) AS VARCHAR(100)) AS c2_oversized FROM "public"."g0"',
    );
    // 40 counts take two calls (35 fit after BEGIN, the settings and the transaction start);
    // the UNLOADs start in the third, so the counts are read before any of them runs.
    const lastCount = Math.max(...plan.oversize.map((at) => at?.batch ?? 0));
    expect(lastCount).toBe(1);
    const firstUnload = plan.batches.findIndex((batch) =>
      batch.some((sql) => sql.startsWith('UNLOAD')),
    );
    expect(firstUnload).toBe(2);
    expect(plan.batches[2]![0]).toBe(TRANSACTION_START_SQL);
    expect(plan.batches.flat().filter((sql) => sql.startsWith('UNLOAD'))).toHaveLength(41);
  });
});
