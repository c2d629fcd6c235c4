/**
 * The RDS Data API adapter, over a mocked SDK client: what it sends, what it makes of the
 * answers, and how the Data API's errors reach the core (so that the swap's busy detection
 * and the import's timeout message work over it unchanged).
 */
import {
  BadRequestException,
  BeginTransactionCommand,
  CommitTransactionCommand,
  DatabaseErrorException,
  DatabaseResumingException,
  ExecuteStatementCommand,
  RDSDataClient,
  RollbackTransactionCommand,
  StatementTimeoutException,
} from '@aws-sdk/client-rds-data';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  DatabaseResumingError,
  parseDataApiErrorMessage,
  RdsDataSqlClient,
} from '../lambdas/adapters/rds-data-sql-client';
import { DatabaseError } from '../lambdas/core/errors';
import { DataApiTimeoutError } from '../lambdas/core/load/errors';
import { busyReason } from '../lambdas/core/swap/errors';

const target = {
  resourceArn: 'arn:aws:rds:eu-west-1:123456789012:cluster:analytics',
  secretArn: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:pipeline',
  database: 'analytics',
};

const sdk = mockClient(RDSDataClient);
let sleeps: number[];

function newClient(options: ConstructorParameters<typeof RdsDataSqlClient>[2] = {}) {
  return new RdsDataSqlClient(new RDSDataClient({ region: 'eu-west-1' }), target, {
    sleep: async (ms) => {
      sleeps.push(ms);
    },
    ...options,
  });
}

function databaseError(message: string) {
  return new DatabaseErrorException({ message, $metadata: {} });
}

beforeEach(() => {
  sdk.reset();
  sleeps = [];
});

afterEach(() => {
  sdk.reset();
});

describe('query', () => {
  it('sends one statement with typed :name parameters and asks for JSON records', async () => {
    sdk.on(ExecuteStatementCommand).resolves({ formattedRecords: '[{"n":1,"name":"a"}]' });
    const rows = await newClient().query(
      'SELECT :text AS a, :count::int AS b, :ratio AS c, :flag AS d, :missing AS e, :plan::jsonb AS f',
      { text: "o'brien", count: 42, ratio: 0.5, flag: true, missing: null, plan: '{"a":1}' },
    );
    expect(rows).toEqual([{ n: 1, name: 'a' }]);
    const [call] = sdk.commandCalls(ExecuteStatementCommand);
    expect(call!.args[0].input).toEqual({
      ...target,
      sql: 'SELECT :text AS a, :count::int AS b, :ratio AS c, :flag AS d, :missing AS e, :plan::jsonb AS f',
      parameters: [
        { name: 'text', value: { stringValue: "o'brien" } },
        { name: 'count', value: { longValue: 42 } },
        { name: 'ratio', value: { doubleValue: 0.5 } },
        { name: 'flag', value: { booleanValue: true } },
        { name: 'missing', value: { isNull: true } },
        { name: 'plan', value: { stringValue: '{"a":1}' } },
      ],
      formatRecordsAs: 'JSON',
    });
  });

  it('returns no rows for a statement without a result set', async () => {
    sdk.on(ExecuteStatementCommand).resolves({ numberOfRecordsUpdated: 0 });
    expect(await newClient().query('CREATE TABLE t (a int)')).toEqual([]);
  });

  it('refuses what the Data API would refuse, before calling it', async () => {
    const client = newClient();
    await expect(client.query('SELECT 1; SELECT 2')).rejects.toThrow(/more than one statement/);
    await expect(client.query('SELECT :a')).rejects.toThrow(/:a has no value/);
    await expect(client.query('SELECT 1', { a: 1 })).rejects.toThrow(/not used: :a/);
    await expect(client.query('SELECT :a', { a: Number.NaN })).rejects.toThrow(
      /:a is NaN, which the RDS Data API cannot carry/,
    );
    expect(sdk.commandCalls(ExecuteStatementCommand)).toHaveLength(0);
  });
});

describe('errors', () => {
  it('turns a database error into DatabaseError with the SQLSTATE from the message', async () => {
    sdk
      .on(ExecuteStatementCommand)
      .rejects(
        databaseError(
          'ERROR: relation "no_such_table" does not exist\n  Position: 15; SQLState: 42P01',
        ),
      );
    const error = await newClient()
      .query('SELECT * FROM no_such_table')
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DatabaseError);
    expect(error).toMatchObject({
      name: 'DatabaseError',
      sqlState: '42P01',
      message: 'relation "no_such_table" does not exist\n  Position: 15',
    });
  });

  it('reports a lock timeout so that the swap sees it as busy, and retries nothing', async () => {
    sdk
      .on(ExecuteStatementCommand)
      .rejects(
        databaseError(
          'ERROR: canceling statement due to lock timeout\n  Where: SQL statement "LOCK TABLE ..."; SQLState: 55P03',
        ),
      );
    const error = await newClient()
      .query('SELECT redshift_sync.swap(:plan::jsonb)', { plan: '{}' })
      .catch((e: unknown) => e);
    expect(busyReason(error)).toBe('lock timeout');
    expect(sdk.commandCalls(ExecuteStatementCommand)).toHaveLength(1);
  });

  it('reads deadlocks and SQL errors of the first Data API too', async () => {
    sdk
      .on(ExecuteStatementCommand)
      .rejectsOnce(databaseError('ERROR: deadlock detected; SQLState: 40P01'))
      .rejectsOnce(
        new BadRequestException({
          message: 'ERROR: permission denied for table clients; SQLState: 42501',
          $metadata: {},
        }),
      )
      .rejectsOnce(new BadRequestException({ message: 'Database name is invalid', $metadata: {} }));
    const client = newClient();
    expect(busyReason(await client.query('SELECT 1').catch((e: unknown) => e))).toBe('deadlock');
    expect(await client.query('SELECT 1').catch((e: unknown) => e)).toMatchObject({
      name: 'DatabaseError',
      sqlState: '42501',
    });
    expect(await client.query('SELECT 1').catch((e: unknown) => e)).toBeInstanceOf(
      BadRequestException,
    );
  });

  it('keeps a database error without a SQLSTATE, so an Aurora Limitless distributed deadlock is busy too', async () => {
    sdk
      .on(ExecuteStatementCommand)
      .rejects(
        databaseError('ERROR: aborting transaction participating in a distributed deadlock'),
      );
    const error = await newClient()
      .query('SELECT 1')
      .catch((e: unknown) => e);
    expect(error).toMatchObject({ name: 'DatabaseError', sqlState: undefined });
    expect(busyReason(error)).toBe('distributed deadlock');
    expect(parseDataApiErrorMessage('ERROR: x; SQLState: 55P03')).toEqual({
      message: 'x',
      sqlState: '55P03',
    });
  });

  it('turns the 45 s cut-off into DataApiTimeoutError', async () => {
    sdk
      .on(ExecuteStatementCommand)
      .rejects(new StatementTimeoutException({ message: 'Request timed out', $metadata: {} }));
    const error = await newClient()
      .query('SELECT pg_sleep(60)')
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DataApiTimeoutError);
    expect((error as Error).message).toMatch(/did not finish within the RDS Data API's 45 s limit/);
  });

  it('asks the Data API to keep a long-running statement going past the cut-off, and still reports the cut-off', async () => {
    sdk
      .on(ExecuteStatementCommand)
      .resolvesOnce({})
      .resolvesOnce({})
      .rejectsOnce(new StatementTimeoutException({ message: 'Request timed out', $metadata: {} }));
    const client = newClient();
    await client.query('CREATE INDEX i ON s.t (a)', {}, { longRunning: true });
    await client.query('SELECT 1');
    const error = await client
      .query('CREATE INDEX j ON s.t (b)', {}, { longRunning: true })
      .catch((e: unknown) => e);
    expect(
      sdk
        .commandCalls(ExecuteStatementCommand)
        .map((call) => [call.args[0].input.sql, call.args[0].input.continueAfterTimeout]),
    ).toEqual([
      ['CREATE INDEX i ON s.t (a)', true],
      ['SELECT 1', undefined],
      ['CREATE INDEX j ON s.t (b)', true],
    ]);
    expect(error).toBeInstanceOf(DataApiTimeoutError);
    expect((error as Error).message).toMatch(
      /did not finish within the RDS Data API's 45 s limit; it keeps running in Aurora/,
    );
  });

  it('waits and retries while Aurora resumes, with growing waits', async () => {
    const resuming = new DatabaseResumingException({
      message:
        'The database is resuming after being auto-paused. Please wait a few seconds and try again.',
      $metadata: {},
    });
    sdk
      .on(ExecuteStatementCommand)
      .rejectsOnce(resuming)
      .rejectsOnce(resuming)
      .rejectsOnce(resuming)
      .resolves({ formattedRecords: '[{"awake":true}]' });
    expect(await newClient().query('SELECT true AS awake')).toEqual([{ awake: true }]);
    expect(sleeps).toEqual([1000, 2000, 4000]);
  });

  it('gives up after the configured attempts with a named error', async () => {
    sdk
      .on(ExecuteStatementCommand)
      .rejects(new DatabaseResumingException({ message: 'resuming', $metadata: {} }));
    const error = await newClient({
      resumeRetry: { attempts: 4, initialDelayMs: 500, maxDelayMs: 1500 },
    })
      .query('SELECT 1')
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DatabaseResumingError);
    expect((error as Error).message).toMatch(/still resuming after 4 attempts/);
    expect(sleeps).toEqual([500, 1000, 1500]);
    expect(sdk.commandCalls(ExecuteStatementCommand)).toHaveLength(4);
  });
});

describe('withTransaction', () => {
  beforeEach(() => {
    sdk.on(BeginTransactionCommand).resolves({ transactionId: 'tx-1' });
    sdk.on(CommitTransactionCommand).resolves({ transactionStatus: 'Transaction Committed' });
    sdk.on(RollbackTransactionCommand).resolves({ transactionStatus: 'Rollback Complete' });
  });

  it('runs every call in the transaction and commits', async () => {
    sdk.on(ExecuteStatementCommand).resolves({ formattedRecords: '[{"n":1}]' });
    const result = await newClient().withTransaction(async (tx) => {
      await tx.query('SET LOCAL lock_timeout = 200');
      return tx.query('SELECT 1 AS n');
    });
    expect(result).toEqual([{ n: 1 }]);
    expect(sdk.commandCalls(BeginTransactionCommand)[0]!.args[0].input).toEqual(target);
    expect(
      sdk.commandCalls(ExecuteStatementCommand).map((call) => call.args[0].input.transactionId),
    ).toEqual(['tx-1', 'tx-1']);
    expect(sdk.commandCalls(CommitTransactionCommand)[0]!.args[0].input).toEqual({
      resourceArn: target.resourceArn,
      secretArn: target.secretArn,
      transactionId: 'tx-1',
    });
    expect(sdk.commandCalls(RollbackTransactionCommand)).toHaveLength(0);
  });

  it('rolls back and rethrows when a statement fails, and commits nothing', async () => {
    sdk
      .on(ExecuteStatementCommand)
      .resolvesOnce({})
      .rejectsOnce(
        databaseError(
          'ERROR: duplicate key value violates unique constraint "t_pkey"; SQLState: 23505',
        ),
      );
    const error = await newClient()
      .withTransaction(async (tx) => {
        await tx.query('INSERT INTO t VALUES (1)');
        await tx.query('INSERT INTO t VALUES (1)');
      })
      .catch((e: unknown) => e);
    expect(error).toMatchObject({ name: 'DatabaseError', sqlState: '23505' });
    expect(sdk.commandCalls(RollbackTransactionCommand)[0]!.args[0].input).toMatchObject({
      transactionId: 'tx-1',
    });
    expect(sdk.commandCalls(CommitTransactionCommand)).toHaveLength(0);
  });

  it('leaves statements outside the transaction without its id, and refuses nesting', async () => {
    sdk.on(ExecuteStatementCommand).resolves({});
    const client = newClient();
    await client.query('SELECT 1');
    expect(
      sdk.commandCalls(ExecuteStatementCommand)[0]!.args[0].input.transactionId,
    ).toBeUndefined();
    await expect(
      client.withTransaction((tx) => (tx as RdsDataSqlClient).withTransaction(async () => 1)),
    ).rejects.toThrow(/no nested transactions/);
    expect(sdk.commandCalls(RollbackTransactionCommand)).toHaveLength(1);
  });
});
