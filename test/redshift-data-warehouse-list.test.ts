/**
 * The Redshift Data API adapter's listStatements: ListStatements by name prefix with
 * `Status: ALL`, followed page by page through NextToken, keeping every statement of that
 * prefix, running or ended, and no other (API_ListStatements.html).
 */
import {
  ListStatementsCommand,
  RedshiftDataClient,
  ValidationException,
} from '@aws-sdk/client-redshift-data';
import { mockClient } from 'aws-sdk-client-mock';
import { beforeEach, describe, expect, it } from 'vitest';
import { RedshiftDataWarehouse } from '../lambdas/adapters/redshift-data-warehouse';
import { WarehouseError } from '../lambdas/core/unload/errors';

const client = new RedshiftDataClient({ region: 'eu-west-1' });
const redshift = mockClient(client);
const warehouse = new RedshiftDataWarehouse(client, {
  workgroupName: 'wg',
  database: 'dev',
});
const PREFIX = 'redshift-aurora-sync r-1 ';

beforeEach(() => {
  redshift.reset();
});

describe('listStatements', () => {
  it('follows every page and keeps the statements of the prefix, running or ended, with their sessions', async () => {
    redshift
      .on(ListStatementsCommand, { NextToken: undefined })
      .resolves({
        Statements: [
          { Id: 'a', StatementName: `${PREFIX}unload 2/2`, Status: 'STARTED', SessionId: 's-1' },
          { Id: 'b', StatementName: `${PREFIX}unload 1/2`, Status: 'FINISHED', SessionId: 's-1' },
        ],
        NextToken: 'page-2',
      })
      .on(ListStatementsCommand, { NextToken: 'page-2' })
      .resolves({
        Statements: [
          { Id: 'c', StatementName: `${PREFIX}columns of sales.orders`, Status: 'SUBMITTED' },
          { Id: 'd', StatementName: `${PREFIX}rollback`, Status: 'ABORTED', SessionId: 's-0' },
        ],
        NextToken: 'page-3',
      })
      .on(ListStatementsCommand, { NextToken: 'page-3' })
      .resolves({
        Statements: [
          { Id: 'e', StatementName: `${PREFIX}unload 1/1`, Status: 'PICKED', SessionId: 's-2' },
          // Never one of another run, whatever the service matched.
          { Id: 'f', StatementName: 'redshift-aurora-sync r-10 unload 1/1', Status: 'STARTED' },
        ],
        NextToken: '',
      });
    await expect(warehouse.listStatements(PREFIX)).resolves.toEqual([
      {
        statementId: 'a',
        name: `${PREFIX}unload 2/2`,
        state: 'running',
        status: 'STARTED',
        sessionId: 's-1',
      },
      {
        statementId: 'b',
        name: `${PREFIX}unload 1/2`,
        state: 'done',
        status: 'FINISHED',
        sessionId: 's-1',
      },
      {
        statementId: 'c',
        name: `${PREFIX}columns of sales.orders`,
        state: 'running',
        status: 'SUBMITTED',
        sessionId: null,
      },
      {
        statementId: 'd',
        name: `${PREFIX}rollback`,
        state: 'failed',
        status: 'ABORTED',
        sessionId: 's-0',
      },
      {
        statementId: 'e',
        name: `${PREFIX}unload 1/1`,
        state: 'running',
        status: 'PICKED',
        sessionId: 's-2',
      },
    ]);
    const inputs = redshift.commandCalls(ListStatementsCommand).map((call) => call.args[0].input);
    expect(inputs).toEqual([
      { StatementName: PREFIX, Status: 'ALL', RoleLevel: true, MaxResults: 100 },
      {
        StatementName: PREFIX,
        Status: 'ALL',
        RoleLevel: true,
        MaxResults: 100,
        NextToken: 'page-2',
      },
      {
        StatementName: PREFIX,
        Status: 'ALL',
        RoleLevel: true,
        MaxResults: 100,
        NextToken: 'page-3',
      },
    ]);
  });

  it('names the call and the target when the listing is refused', async () => {
    redshift
      .on(ListStatementsCommand)
      .rejects(new ValidationException({ message: 'bad request', $metadata: {} }));
    const listing = warehouse.listStatements(PREFIX);
    await expect(listing).rejects.toBeInstanceOf(WarehouseError);
    await expect(listing).rejects.toThrow(
      'Redshift Data API ListStatements on workgroup wg, database dev failed: ValidationException: bad request',
    );
  });
});
