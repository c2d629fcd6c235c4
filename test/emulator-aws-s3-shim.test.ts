/**
 * The aws_s3 stand-in, run twice: over a bucket folder the PostgreSQL server reads, and over
 * one hidden from it (as from a server in a container or on another host), where the local
 * object store copies each object into the database for the shim. Both must answer alike.
 */
import { rm } from 'node:fs/promises';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PgSqlClient } from '../lambdas/adapters/pg-sql-client';
import { DatabaseError } from '../lambdas/core/errors';
import {
  auroraS3ErrorText,
  DatabaseObjectCopy,
  installAwsS3Shim,
  type ShimObjectSource,
} from '../local/emulators/aws-s3-shim';
import { LocalObjectStore } from '../local/emulators/local-object-store';
import { freshDatabase, type TestDatabase } from './support/db';
import { localBucketFolder, SERVER_IS_ANOTHER_USER } from './support/local-bucket';
import { uniqueRoles } from './support/swap-fixtures';

const BUCKET = 'shim-bucket';
/** What the Aurora importer passes: the UNLOAD contract's text format. */
const COPY_OPTIONS = "(FORMAT text, DELIMITER '|', NULL '\\N', ENCODING 'UTF8')";
const IMPORT_WITH_URI =
  'SELECT aws_s3.table_import_from_s3(:table, :columns, :options, aws_commons.create_s3_uri(:bucket, :key, :region)) AS result';

describe.each([
  { source: 'folder' as ShimObjectSource, view: 'visible' as const, runs: true },
  { source: 'database' as ShimObjectSource, view: 'hidden' as const, runs: SERVER_IS_ANOTHER_USER },
])('aws_s3 shim reading from the $source', ({ source, view, runs }) => {
  let s3Dir: string;
  let db: TestDatabase;
  let admin: pg.Client;
  let sql: PgSqlClient;
  let store: LocalObjectStore;

  beforeAll(async () => {
    if (!runs) return;
    s3Dir = await localBucketFolder('emulator-s3', view);
    db = await freshDatabase();
    admin = await db.connect('shim-admin');
    expect(await installAwsS3Shim(admin, { s3Dir })).toBe(source);
    // As the local run writes objects: to the database too when the server cannot read the folder.
    store = new LocalObjectStore(
      s3Dir,
      source === 'database' ? new DatabaseObjectCopy(admin) : undefined,
    );
    sql = new PgSqlClient(admin);
    await admin.query(`CREATE SCHEMA "Imports"`);
    await admin.query(
      `CREATE TABLE "Imports"."Order Items" (id int, note text, amount numeric(10,2))`,
    );
  });

  afterAll(async () => {
    if (s3Dir) await rm(s3Dir, { recursive: true, force: true });
  });

  function importFile(key: string, columns = '"id", "note", "amount"') {
    return sql.query<{ result: string }>(IMPORT_WITH_URI, {
      table: '"Imports"."Order Items"',
      columns,
      options: COPY_OPTIONS,
      bucket: BUCKET,
      key,
      region: 'eu-west-1',
    });
  }

  async function failure(promise: Promise<unknown>): Promise<DatabaseError> {
    const error = await promise.then(
      () => null,
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(DatabaseError);
    return error as DatabaseError;
  }

  // A normal user's tests cannot hide a folder from a server running as themselves.
  describe.runIf(runs)('', () => {
    it("imports a file in the UNLOAD format and answers in Aurora's words", async () => {
      const text = '1|plain|1.50\n2|pipe \\| backslash \\\\ newline \\\nend|\\N\n3|\\\\N|0.00\n';
      await store.putText(BUCKET, 'runs/r1/t/0000_part_00', text);
      const [row] = await importFile('runs/r1/t/0000_part_00');
      expect(row!.result).toBe(
        `3 rows imported into relation ""Imports"."Order Items"" from file runs/r1/t/0000_part_00 of ${Buffer.byteLength(text)} bytes`,
      );
      const rows = await admin.query(
        `SELECT id, note, amount::text FROM "Imports"."Order Items" ORDER BY id`,
      );
      expect(rows.rows).toEqual([
        { id: 1, note: 'plain', amount: '1.50' },
        { id: 2, note: 'pipe | backslash \\ newline \nend', amount: null },
        { id: 3, note: '\\N', amount: '0.00' },
      ]);
    });

    it('offers the overload taking bucket, file path and region, and an empty column list', async () => {
      await admin.query(`TRUNCATE "Imports"."Order Items"`);
      await store.putText(BUCKET, 'runs/r2/t/0001_part_00', '7|seven|7.00\n');
      const [row] = await sql.query<{ result: string }>(
        'SELECT aws_s3.table_import_from_s3(:table, :columns, :options, :bucket, :key, :region) AS result',
        {
          table: '"Imports"."Order Items"',
          columns: '',
          options: COPY_OPTIONS,
          bucket: BUCKET,
          key: 'runs/r2/t/0001_part_00',
          region: 'eu-west-1',
        },
      );
      expect(row!.result).toMatch(/^1 rows imported into relation .* of 13 bytes$/);
      expect((await admin.query(`SELECT note FROM "Imports"."Order Items"`)).rows).toEqual([
        { note: 'seven' },
      ]);
    });

    it("fails on a 0-byte object with Aurora's HTTP 416 error", async () => {
      await store.putText(BUCKET, 'runs/r3/t/0001_part_00', '');
      const error = await failure(importFile('runs/r3/t/0001_part_00'));
      expect(error.message).toBe(auroraS3ErrorText(416));
      expect(error.message).toBe(
        'Unable to validate pre-signed URL. Error: HTTP 416. Check your arguments and try again.',
      );
      expect(error.sqlState).toBe('XX000');
    });

    it('fails on a missing object with the HTTP 404 form of that error', async () => {
      const error = await failure(importFile('runs/r3/t/no_such_part'));
      expect(error.message).toBe(auroraS3ErrorText(404));
      expect(error.detail).toContain('s3://shim-bucket/runs/r3/t/no_such_part');
    });

    it('rolls the whole file back when one line is bad', async () => {
      await admin.query(`TRUNCATE "Imports"."Order Items"`);
      await store.putText(BUCKET, 'runs/r4/t/0000_part_00', '1|ok|1.00\n2|bad|not a number\n');
      const error = await failure(importFile('runs/r4/t/0000_part_00'));
      expect(error.message).toMatch(/invalid input syntax for type numeric/);
      expect(
        (await admin.query(`SELECT count(*)::int AS n FROM "Imports"."Order Items"`)).rows,
      ).toEqual([{ n: 0 }]);
    });

    it('imports as the calling role allows: INSERT granted, or permission denied', async () => {
      const roles = uniqueRoles('loader');
      await admin.query(`CREATE ROLE ${roles.loader} NOLOGIN`);
      await admin.query(`GRANT USAGE ON SCHEMA "Imports" TO ${roles.loader}`);
      await store.putText(BUCKET, 'runs/r5/t/0000_part_00', '5|five|5.00\n');
      const caller = await db.connect('shim-caller');
      const callerSql = new PgSqlClient(caller);
      await caller.query(`SET ROLE ${roles.loader}`);
      const run = () =>
        callerSql.query<{ result: string }>(IMPORT_WITH_URI, {
          table: '"Imports"."Order Items"',
          columns: '',
          options: COPY_OPTIONS,
          bucket: BUCKET,
          key: 'runs/r5/t/0000_part_00',
          region: 'eu-west-1',
        });
      const denied = await failure(run());
      expect(denied.sqlState).toBe('42501');
      expect(denied.message).toContain('permission denied for table');
      await admin.query(`GRANT INSERT ON "Imports"."Order Items" TO ${roles.loader}`);
      const [row] = await run();
      expect(row!.result).toMatch(/^1 rows imported/);
    });

    it('refuses what would reach past a COPY: unknown tables, odd column lists, a second statement', async () => {
      await store.putText(BUCKET, 'runs/r6/t/0000_part_00', '1|x|1.00\n');
      const attempt = (table: string, columns: string, options: string) =>
        failure(
          sql.query(IMPORT_WITH_URI, {
            table,
            columns,
            options,
            bucket: BUCKET,
            key: 'runs/r6/t/0000_part_00',
            region: 'eu-west-1',
          }),
        );
      const unknown = await attempt('"Imports".nope', '', COPY_OPTIONS);
      expect(unknown.sqlState).toBe('42P01');
      const program = await attempt(`"Imports"."Order Items" FROM PROGRAM 'id' --`, '', '');
      expect(program.sqlState).toBe('42P01');
      const columns = await attempt('"Imports"."Order Items"', 'id) FROM PROGRAM $$id$$ --', '');
      expect(columns.message).toContain('is not a list of column names');
      const second = await attempt('"Imports"."Order Items"', '', '(FORMAT text); DROP TABLE x');
      expect(second.message).toContain('";" outside a string');
      const outside = await failure(importFile('../escape/0000_part_00'));
      expect(outside.message).toContain('cannot name an object');
    });

    it('installs again over itself', async () => {
      expect(await installAwsS3Shim(admin, { s3Dir })).toBe(source);
      await store.putText(BUCKET, 'runs/r7/t/0000_part_00', '8|eight|8.00\n');
      const [row] = await importFile('runs/r7/t/0000_part_00');
      expect(row!.result).toMatch(/^1 rows imported/);
    });

    it('refuses to install without a superuser', async () => {
      const roles = uniqueRoles('plain');
      await admin.query(`CREATE ROLE ${roles.plain} LOGIN PASSWORD 'plain'`);
      const plain = await db.connect('shim-plain', { user: roles.plain, password: 'plain' });
      await expect(installAwsS3Shim(plain, { s3Dir })).rejects.toThrow(/needs a superuser/);
    });

    it.runIf(source === 'database')(
      'leaves no object behind: the server file emptied after each import, deleted keys unlinked',
      async () => {
        const objects = () =>
          admin
            .query(`SELECT count(*)::int AS n FROM pg_catalog.pg_largeobject_metadata`)
            .then((result) => result.rows[0].n as number);
        const before = await objects();
        await store.putText(BUCKET, 'runs/r8/t/0000_part_00', '9|nine|9.00\n');
        await store.putText(BUCKET, 'runs/r8/t/0001_part_00', '10|ten|not a number\n');
        expect(await objects()).toBe(before + 2);
        await importFile('runs/r8/t/0000_part_00');
        await failure(importFile('runs/r8/t/0001_part_00'));
        const { rows } = await admin.query(
          `SELECT (pg_stat_file(current_setting('data_directory') || '/aws_s3_local_import.' || pg_backend_pid())).size::int AS bytes`,
        );
        expect(rows).toEqual([{ bytes: 0 }]);
        expect(await store.deletePrefix(BUCKET, 'runs/r8/')).toBe(2);
        expect(await objects()).toBe(before);
      },
    );
  });
});
