/** The RDS Data API fake's documented behaviours, over a real PostgreSQL. */
import {
  BadRequestException,
  DatabaseErrorException,
  StatementTimeoutException,
} from '@aws-sdk/client-rds-data';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseDataApiErrorMessage } from '../lambdas/adapters/rds-data-sql-client';
import { ALLOW_ALL, type AwsRequest } from './aws-contract/access';
import { RdsDataFake } from './aws-contract/fakes/rds-data';
import { freshDatabase, type TestDatabase } from './support/db';

const CLUSTER = 'arn:aws:rds:us-east-1:000000000000:cluster:test';
const SECRET = 'arn:aws:secretsmanager:us-east-1:000000000000:secret:test';
const CALLER = { roleArn: 'arn:aws:iam::000000000000:role/caller' };
const TARGET = { resourceArn: CLUSTER, secretArn: SECRET, database: 'test' };

let db: TestDatabase;
let admin: pg.Client;
let fake: RdsDataFake;
const requests: AwsRequest[] = [];

beforeAll(async () => {
  db = await freshDatabase();
  admin = await db.connect();
  await admin.query(`CREATE TABLE public.t (id int, note text);
    GRANT ALL ON public.t TO ${db.pipelineLogin.user}`);
  fake = new RdsDataFake({
    clusterArn: CLUSTER,
    secretArn: SECRET,
    database: 'test',
    connectionUrl: db.pipelineUrl,
    authorize: (principal, request) => {
      requests.push(request);
      ALLOW_ALL(principal, request);
    },
    callTimeoutMs: 300,
  });
});

afterAll(async () => {
  await fake.close();
});

const count = async () =>
  (await admin.query<{ n: number }>('SELECT count(*)::int AS n FROM public.t')).rows[0]!.n;

describe('the RDS Data API fake', () => {
  it('formats records as JSON for a SELECT only, and gives a DELETE ... RETURNING plain records', async () => {
    await admin.query(`INSERT INTO public.t VALUES (1, 'a'), (2, NULL)`);
    const selected = await fake.executeStatement(CALLER, {
      ...TARGET,
      sql: 'SELECT id, note FROM public.t WHERE id >= :min ORDER BY id',
      parameters: [{ name: 'min', value: { longValue: 1 } }],
      formatRecordsAs: 'JSON',
    });
    expect(JSON.parse(selected.formattedRecords!)).toEqual([
      { id: 1, note: 'a' },
      { id: 2, note: null },
    ]);
    const deleted = await fake.executeStatement(CALLER, {
      ...TARGET,
      sql: 'DELETE FROM public.t RETURNING id',
      formatRecordsAs: 'JSON',
    });
    expect(deleted.formattedRecords).toBeUndefined();
    expect(deleted.records).toEqual([[{ longValue: 1 }], [{ longValue: 2 }]]);
    expect(deleted.numberOfRecordsUpdated).toBe(2);
    // Authorized as the Data API is: the action on the cluster, the secret read as the caller.
    expect(requests.slice(-2)).toEqual([
      { action: 'rds-data:ExecuteStatement', resource: CLUSTER },
      { action: 'secretsmanager:GetSecretValue', resource: SECRET },
    ]);
  });

  it('cuts a call off at its time limit and cancels the statement, unless continueAfterTimeout keeps it running', async () => {
    const slow = "INSERT INTO public.t SELECT 7, 'slow' FROM pg_sleep(1.5)";
    await expect(fake.executeStatement(CALLER, { ...TARGET, sql: slow })).rejects.toBeInstanceOf(
      StatementTimeoutException,
    );
    await new Promise((resolve) => setTimeout(resolve, 2000));
    expect(await count()).toBe(0);
    await expect(
      fake.executeStatement(CALLER, { ...TARGET, sql: slow, continueAfterTimeout: true }),
    ).rejects.toBeInstanceOf(StatementTimeoutException);
    await new Promise((resolve) => setTimeout(resolve, 2000));
    expect(await count()).toBe(1);
    await admin.query('DELETE FROM public.t');
  });

  it('refuses two statements in one call, and reports database errors with their SQLSTATE at the end', async () => {
    await expect(
      fake.executeStatement(CALLER, { ...TARGET, sql: 'SELECT 1; SELECT 2' }),
    ).rejects.toBeInstanceOf(BadRequestException);
    const failed = await fake
      .executeStatement(CALLER, { ...TARGET, sql: 'SELECT * FROM public.missing' })
      .catch((error: unknown) => error);
    expect(failed).toBeInstanceOf(DatabaseErrorException);
    expect(parseDataApiErrorMessage((failed as Error).message)).toEqual({
      message: 'relation "public.missing" does not exist',
      sqlState: '42P01',
    });
  });

  it('keeps a transaction across calls only through its transactionId', async () => {
    const { transactionId } = await fake.beginTransaction(CALLER, TARGET);
    await fake.executeStatement(CALLER, {
      ...TARGET,
      transactionId,
      sql: "INSERT INTO public.t VALUES (3, 'in transaction')",
    });
    expect(await count()).toBe(0);
    const rolledBack = await fake.rollbackTransaction(CALLER, { ...TARGET, transactionId });
    expect(rolledBack.transactionStatus).toBe('Rollback Complete');
    expect(await count()).toBe(0);
  });
});
