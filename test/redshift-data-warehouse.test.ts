import { Readable } from 'node:stream';
import {
  BatchExecuteStatementCommand,
  DescribeStatementCommand,
  ExecuteStatementCommand,
  GetStatementResultCommand,
  RedshiftDataClient,
  ValidationException,
} from '@aws-sdk/client-redshift-data';
import { mockClient } from 'aws-sdk-client-mock';
import { beforeEach, describe, expect, it } from 'vitest';
import {
  createRedshiftDataClient,
  DEFAULT_MAX_ATTEMPTS,
  RedshiftDataWarehouse,
  type RedshiftTarget,
} from '../lambdas/adapters/redshift-data-warehouse';
import { ConfigError } from '../lambdas/core/errors';
import { WarehouseError } from '../lambdas/core/unload/errors';
import { awsClients } from '../lambdas/handlers/lambda';

// Mocked per instance, so the retry tests below can run a real client.
const mockedClient = new RedshiftDataClient({ region: 'eu-west-1' });
const redshift = mockClient(mockedClient);
const SECRET = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:redshift-sync-AbCdEf';
const cluster: RedshiftTarget = {
  clusterIdentifier: 'analytics',
  database: 'dev',
  secretArn: SECRET,
};

function warehouse(target: RedshiftTarget = cluster) {
  return new RedshiftDataWarehouse(mockedClient, target);
}

beforeEach(() => {
  redshift.reset();
});

describe('submitting', () => {
  it('runs a batch in one transaction, without an event, on a cluster with a secret', async () => {
    redshift.on(BatchExecuteStatementCommand).resolves({ Id: 'batch-1' });
    const id = await warehouse().submitBatch(["SET timezone TO 'UTC'", 'SELECT 1'], 'run r-1');
    expect(id).toBe('batch-1');
    expect(redshift.commandCalls(BatchExecuteStatementCommand)[0]!.args[0].input).toEqual({
      ClusterIdentifier: 'analytics',
      Database: 'dev',
      SecretArn: SECRET,
      Sqls: ["SET timezone TO 'UTC'", 'SELECT 1'],
      StatementName: 'run r-1',
      WithEvent: false,
    });
  });

  it('passes :name parameters as text, on a cluster with a database user', async () => {
    redshift.on(ExecuteStatementCommand).resolves({ Id: 'stmt-1' });
    const id = await warehouse({
      clusterIdentifier: 'analytics',
      database: 'dev',
      dbUser: 'sync_reader',
    }).submitStatement(
      'SELECT 1 FROM t WHERE s = :schema AND n = :table',
      { schema: 'sales', table: 'Order Items' },
      'columns',
    );
    expect(id).toBe('stmt-1');
    expect(redshift.commandCalls(ExecuteStatementCommand)[0]!.args[0].input).toEqual({
      ClusterIdentifier: 'analytics',
      Database: 'dev',
      DbUser: 'sync_reader',
      Sql: 'SELECT 1 FROM t WHERE s = :schema AND n = :table',
      StatementName: 'columns',
      WithEvent: false,
      Parameters: [
        { name: 'schema', value: 'sales' },
        { name: 'table', value: 'Order Items' },
      ],
    });
  });

  it('targets a Serverless workgroup, with or without a secret, and sends no empty parameter list', async () => {
    redshift.on(ExecuteStatementCommand).resolves({ Id: 'stmt-2' });
    await warehouse({ workgroupName: 'analytics-wg', database: 'dev' }).submitStatement(
      'SELECT 1',
      {},
      'probe',
    );
    redshift.on(BatchExecuteStatementCommand).resolves({ Id: 'batch-2' });
    await warehouse({
      workgroupName: 'analytics-wg',
      database: 'dev',
      secretArn: SECRET,
    }).submitBatch(['SELECT 1'], 'probe');
    expect(redshift.commandCalls(ExecuteStatementCommand)[0]!.args[0].input).toEqual({
      WorkgroupName: 'analytics-wg',
      Database: 'dev',
      Sql: 'SELECT 1',
      StatementName: 'probe',
      WithEvent: false,
    });
    expect(redshift.commandCalls(BatchExecuteStatementCommand)[0]!.args[0].input).toMatchObject({
      WorkgroupName: 'analytics-wg',
      SecretArn: SECRET,
    });
  });

  it('refuses an empty parameter value, which the Data API would reject', async () => {
    await expect(warehouse().submitStatement('SELECT :v', { v: '' }, 'x')).rejects.toThrowError(
      /SQL parameter :v is empty/,
    );
    expect(redshift.commandCalls(ExecuteStatementCommand)).toHaveLength(0);
  });

  it('wraps a refused call, naming the call, the target and the cause', async () => {
    const refusal = new ValidationException({ message: 'Sqls exceeds 40', $metadata: {} });
    redshift.on(BatchExecuteStatementCommand).rejects(refusal);
    const submit = warehouse().submitBatch(['SELECT 1'], 'run');
    await expect(submit).rejects.toThrowError(WarehouseError);
    await expect(submit).rejects.toThrowError(
      'Redshift Data API BatchExecuteStatement on cluster analytics, database dev failed: ValidationException: Sqls exceeds 40',
    );
    await submit.catch((error: WarehouseError) => expect(error.cause).toBe(refusal));
  });
});

describe('sessions', () => {
  it('opens a session on the first call and runs later calls on it, statements committed one by one', async () => {
    redshift
      .on(BatchExecuteStatementCommand)
      .resolvesOnce({ Id: 'call-1', SessionId: 'session-1' })
      .resolvesOnce({ Id: 'call-2', SessionId: 'session-1' });
    expect(
      await warehouse().submitInSession(['BEGIN', 'SELECT 1'], 'unload 1/2', {
        keepAliveSeconds: 600,
      }),
    ).toEqual({ statementId: 'call-1', sessionId: 'session-1' });
    expect(
      await warehouse().submitInSession(['SELECT 2', 'COMMIT'], 'unload 2/2', {
        sessionId: 'session-1',
      }),
    ).toEqual({ statementId: 'call-2', sessionId: 'session-1' });
    const [first, second] = redshift.commandCalls(BatchExecuteStatementCommand);
    expect(first!.args[0].input).toEqual({
      ClusterIdentifier: 'analytics',
      Database: 'dev',
      SecretArn: SECRET,
      SessionKeepAliveSeconds: 600,
      Sqls: ['BEGIN', 'SELECT 1'],
      StatementName: 'unload 1/2',
      WithEvent: false,
      ExecutionMode: 'AUTO_COMMIT',
    });
    expect(second!.args[0].input).toEqual({
      SessionId: 'session-1',
      Sqls: ['SELECT 2', 'COMMIT'],
      StatementName: 'unload 2/2',
      WithEvent: false,
      ExecutionMode: 'AUTO_COMMIT',
    });
  });

  it('refuses a first call that opened no session', async () => {
    redshift.on(BatchExecuteStatementCommand).resolves({ Id: 'call-1' });
    await expect(
      warehouse().submitInSession(['BEGIN'], 'unload', { keepAliveSeconds: 600 }),
    ).rejects.toThrowError(/opened no session/);
  });

  it('reports a call whose statement failed as failed, though the call itself finished', async () => {
    redshift.on(DescribeStatementCommand).resolves({
      Id: 'call-1',
      Status: 'FINISHED',
      SubStatements: [
        { Id: 'call-1:1', Status: 'FINISHED', QueryString: 'BEGIN' },
        { Id: 'call-1:2', Status: 'FAILED', QueryString: 'UNLOAD (...)', Error: 'S3 denied' },
      ],
    });
    expect(await warehouse().describe('call-1')).toEqual({
      state: 'failed',
      status: 'FINISHED',
      error: 'statement 2 of 2 (UNLOAD (...)) failed: S3 denied',
    });
  });
});

describe('target validation', () => {
  it.each<[string, unknown, RegExp]>([
    [
      'both credentials',
      { ...cluster, dbUser: 'u' },
      /exactly one of secretArn .* or dbUser.*both were/,
    ],
    ['no credentials', { clusterIdentifier: 'a', database: 'dev' }, /neither was given/],
    [
      'no cluster nor workgroup',
      { database: 'dev', secretArn: SECRET },
      /neither a clusterIdentifier nor a workgroupName/,
    ],
    [
      'both cluster and workgroup',
      { ...cluster, workgroupName: 'wg' },
      /both a clusterIdentifier and a workgroupName/,
    ],
    [
      'dbUser on Serverless',
      { workgroupName: 'wg', database: 'dev', dbUser: 'u' },
      /dbUser works only with a provisioned cluster/,
    ],
    ['an empty database', { ...cluster, database: '' }, /database must be a non-empty string/],
  ])('refuses %s', (_case, target, message) => {
    expect(() => warehouse(target as RedshiftTarget)).toThrowError(ConfigError);
    expect(() => warehouse(target as RedshiftTarget)).toThrowError(message);
  });
});

describe('describe', () => {
  it.each([
    ['SUBMITTED', { state: 'running', status: 'SUBMITTED' }],
    ['PICKED', { state: 'running', status: 'PICKED' }],
    ['STARTED', { state: 'running', status: 'STARTED' }],
    ['FINISHED', { state: 'done', status: 'FINISHED' }],
  ] as const)('maps %s', async (status, expected) => {
    redshift.on(DescribeStatementCommand, { Id: 'abc' }).resolves({ Id: 'abc', Status: status });
    expect(await warehouse().describe('abc')).toEqual(expected);
  });

  it("gives a failed statement's error as Redshift wrote it", async () => {
    redshift.on(DescribeStatementCommand).resolves({
      Id: 'abc',
      Status: 'FAILED',
      Error: 'ERROR: relation "sales.orders" does not exist',
    });
    expect(await warehouse().describe('abc')).toEqual({
      state: 'failed',
      status: 'FAILED',
      error: 'ERROR: relation "sales.orders" does not exist',
    });
  });

  it('says an aborted statement was cancelled when Redshift gives no text', async () => {
    redshift.on(DescribeStatementCommand).resolves({ Id: 'abc', Status: 'ABORTED' });
    expect(await warehouse().describe('abc')).toMatchObject({
      state: 'failed',
      status: 'ABORTED',
      error: 'the statement was aborted (cancelled)',
    });
  });

  it('names the failing sub-statement of a batch, with its SQL', async () => {
    const unload = `UNLOAD ('SELECT "id" AS "id" FROM "sales"."orders"')\nTO 's3://b/runs/r/orders__1/'\n${'x'.repeat(300)}`;
    redshift.on(DescribeStatementCommand).resolves({
      Id: 'batch-1',
      Status: 'FAILED',
      Error: 'ERROR: S3ServiceException:Access Denied',
      SubStatements: [
        { Id: 'batch-1:1', Status: 'FINISHED', QueryString: "SET timezone TO 'UTC'" },
        { Id: 'batch-1:2', Status: 'FINISHED', QueryString: 'SET extra_float_digits TO 2' },
        {
          Id: 'batch-1:3',
          Status: 'FAILED',
          QueryString: unload,
          Error: 'ERROR: S3ServiceException:Access Denied,Status 403',
        },
        { Id: 'batch-1:4', Status: 'ABORTED', QueryString: 'SELECT 1' },
      ],
    });
    const state = await warehouse().describe('batch-1');
    expect(state.state).toBe('failed');
    const error = state.state === 'failed' ? state.error : '';
    expect(error).toMatch(
      /^statement 3 of 4 \(UNLOAD \('SELECT "id" AS "id" FROM "sales"\."orders"'\) TO 's3:\/\/b\/runs\/r\/orders__1\/' x+\.\.\.\) failed: ERROR: S3ServiceException:Access Denied,Status 403$/,
    );
    expect(error.length).toBeLessThan(300);
  });

  it('refuses a status it does not know', async () => {
    redshift.on(DescribeStatementCommand).resolves({ Id: 'abc', Status: 'ALL' });
    await expect(warehouse().describe('abc')).rejects.toThrowError(
      /DescribeStatement gave status "ALL" for statement abc on cluster analytics/,
    );
  });
});

describe('fetchRows', () => {
  const columns = [
    { name: 'row_count', label: 'row_count' },
    { name: 'c0_min', label: 'c0_min' },
  ];

  it('reads every page and keys values by column name', async () => {
    redshift
      .on(GetStatementResultCommand, { Id: 'abc' })
      .resolves({
        ColumnMetadata: columns,
        Records: [[{ stringValue: '3' }, { isNull: true }]],
        NextToken: 'page-2',
      })
      .on(GetStatementResultCommand, { Id: 'abc', NextToken: 'page-2' })
      .resolves({
        ColumnMetadata: columns,
        Records: [
          [{ longValue: 42 }, { doubleValue: 1.5 }],
          [{ booleanValue: false }, { blobValue: new Uint8Array([0, 255, 92]) }],
        ],
      });
    expect(await warehouse().fetchRows('abc')).toEqual([
      { row_count: '3', c0_min: null },
      { row_count: 42, c0_min: 1.5 },
      { row_count: false, c0_min: '\\x00ff5c' },
    ]);
    expect(redshift.commandCalls(GetStatementResultCommand)).toHaveLength(2);
  });

  it("reads a batch's statement by its 1-based sub-statement id", async () => {
    redshift.on(GetStatementResultCommand, { Id: 'batch-1:5' }).resolves({
      ColumnMetadata: columns,
      Records: [[{ stringValue: '7' }, { stringValue: '1' }]],
    });
    expect(await warehouse().fetchRows('batch-1', 4)).toEqual([{ row_count: '7', c0_min: '1' }]);
  });

  it('returns no rows for an empty result and wraps a failed call', async () => {
    redshift
      .on(GetStatementResultCommand, { Id: 'empty' })
      .resolves({ ColumnMetadata: columns, Records: [] });
    expect(await warehouse().fetchRows('empty')).toEqual([]);
    redshift
      .on(GetStatementResultCommand, { Id: 'gone' })
      .rejects(
        new Error('Query does not have result. Please check query status with DescribeStatement.'),
      );
    await expect(warehouse().fetchRows('gone')).rejects.toThrowError(
      /GetStatementResult on cluster analytics, database dev failed: Error: Query does not have result/,
    );
  });

  it('refuses a row whose width does not match the column names', async () => {
    redshift.on(GetStatementResultCommand).resolves({
      ColumnMetadata: columns,
      Records: [[{ stringValue: 'only one' }]],
    });
    await expect(warehouse().fetchRows('abc')).rejects.toThrowError(
      /gave a row of 1 values but 2 column names/,
    );
  });
});

describe('createRedshiftDataClient', () => {
  /**
   * A real client (no mock) over an HTTP handler that answers each request in turn, so the
   * SDK's own retry middleware decides what is retried.
   */
  function clientAnswering(answers: { status: number; body: object; type?: string }[]) {
    const requests: string[] = [];
    const client = createRedshiftDataClient({
      region: 'eu-west-1',
      credentials: { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'secret' },
      requestHandler: {
        handle: async (request: { headers: Record<string, string> }) => {
          requests.push(request.headers['x-amz-target'] ?? '');
          const answer = answers[Math.min(requests.length - 1, answers.length - 1)]!;
          return {
            response: {
              statusCode: answer.status,
              headers: {
                'content-type': 'application/x-amz-json-1.1',
                ...(answer.type ? { 'x-amzn-errortype': answer.type } : {}),
              },
              body: Readable.from([Buffer.from(JSON.stringify(answer.body))]),
            },
          };
        },
      },
    });
    return { client, requests };
  }

  it('lets the SDK retry throttling until the call goes through', async () => {
    const throttled = {
      status: 400,
      type: 'ThrottlingException',
      body: { __type: 'ThrottlingException', message: 'Rate exceeded' },
    };
    const { client, requests } = clientAnswering([
      throttled,
      throttled,
      { status: 200, body: { Id: 'abc', Status: 'STARTED' } },
    ]);
    expect(await client.config.maxAttempts()).toBe(DEFAULT_MAX_ATTEMPTS);
    expect(await new RedshiftDataWarehouse(client, cluster).describe('abc')).toEqual({
      state: 'running',
      status: 'STARTED',
    });
    expect(requests).toEqual(Array(3).fill('RedshiftData.DescribeStatement'));
  });

  it('does not retry a refusal, and wraps it once', async () => {
    const { client, requests } = clientAnswering([
      {
        status: 400,
        type: 'ValidationException',
        body: { __type: 'ValidationException', message: 'Id is not valid' },
      },
    ]);
    await expect(new RedshiftDataWarehouse(client, cluster).describe('abc')).rejects.toThrowError(
      'Redshift Data API DescribeStatement on cluster analytics, database dev failed: ValidationException: Id is not valid',
    );
    expect(requests).toHaveLength(1);
  });
});

describe('the Lambdas’ Redshift Data API client', () => {
  it('is built by createRedshiftDataClient, with its attempts against throttling', async () => {
    const { redshiftData } = awsClients();
    expect(await redshiftData.config.maxAttempts()).toBe(DEFAULT_MAX_ATTEMPTS);
  });
});
