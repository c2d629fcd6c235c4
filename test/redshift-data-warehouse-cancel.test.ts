/**
 * The Redshift Data API adapter's cancel: CancelStatement, and what a refused cancel means,
 * read from DescribeStatement (API_CancelStatement.html documents the errors, not which one a
 * statement that already ended gives).
 */
import {
  CancelStatementCommand,
  DescribeStatementCommand,
  RedshiftDataClient,
  ResourceNotFoundException,
  ValidationException,
} from '@aws-sdk/client-redshift-data';
import { mockClient } from 'aws-sdk-client-mock';
import { beforeEach, describe, expect, it } from 'vitest';
import { RedshiftDataWarehouse } from '../lambdas/adapters/redshift-data-warehouse';
import { WarehouseError } from '../lambdas/core/unload/errors';

const client = new RedshiftDataClient({ region: 'eu-west-1' });
const redshift = mockClient(client);
const warehouse = new RedshiftDataWarehouse(client, {
  clusterIdentifier: 'analytics',
  database: 'dev',
  dbUser: 'sync_reader',
});

beforeEach(() => {
  redshift.reset();
});

describe('cancel', () => {
  it('cancels a running statement by its id', async () => {
    redshift.on(CancelStatementCommand).resolves({ Status: true });
    await expect(warehouse.cancel('stmt-1')).resolves.toBe(true);
    expect(redshift.commandCalls(CancelStatementCommand)[0]!.args[0].input).toEqual({
      Id: 'stmt-1',
    });
    expect(redshift.commandCalls(DescribeStatementCommand)).toHaveLength(0);
  });

  it('is no error when the statement had already ended: nothing was left to stop', async () => {
    redshift.on(CancelStatementCommand).rejects(
      new ValidationException({
        message: 'Could not cancel a query that is already in FINISHED state.',
        $metadata: {},
      }),
    );
    redshift.on(DescribeStatementCommand).resolves({ Status: 'FINISHED' });
    await expect(warehouse.cancel('stmt-1')).resolves.toBe(false);
    redshift.on(CancelStatementCommand).resolves({ Status: false });
    redshift.on(DescribeStatementCommand).resolves({ Status: 'ABORTED' });
    await expect(warehouse.cancel('stmt-1')).resolves.toBe(false);
  });

  it('fails, with the cancel`s answer, when the statement is still running', async () => {
    redshift
      .on(CancelStatementCommand)
      .rejects(new ValidationException({ message: 'Cancel not possible now.', $metadata: {} }));
    redshift.on(DescribeStatementCommand).resolves({ Status: 'STARTED' });
    const refused = warehouse.cancel('stmt-1');
    await expect(refused).rejects.toBeInstanceOf(WarehouseError);
    await expect(refused).rejects.toThrow(
      'CancelStatement on cluster analytics, database dev did not stop statement stmt-1, still STARTED: ValidationException: Cancel not possible now.',
    );
    redshift.on(CancelStatementCommand).resolves({ Status: false });
    await expect(warehouse.cancel('stmt-1')).rejects.toThrow(
      'still STARTED: it answered Status false',
    );
  });

  it("fails for another role's statement, which the Data API does not show it", async () => {
    const notFound = new ResourceNotFoundException({
      message: 'Query does not exist.',
      Message: 'Query does not exist.',
      ResourceId: 'stmt-1',
      $metadata: {},
    });
    redshift.on(CancelStatementCommand).rejects(notFound);
    redshift.on(DescribeStatementCommand).rejects(notFound);
    await expect(warehouse.cancel('stmt-1')).rejects.toThrow(
      'DescribeStatement on cluster analytics, database dev failed: ResourceNotFoundException: Query does not exist.',
    );
  });
});
