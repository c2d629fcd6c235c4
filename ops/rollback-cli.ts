/**
 * `npm run rollback -- --table <schema.table> (--env <name> | --target-url <postgres url>)`
 *
 * Swaps the previous version of a table synced with strategy `rename` back into place, with
 * its views, grants and comments; the version it replaces is kept, so a rollback can itself be
 * rolled back. With --env it goes through the RDS Data API to that environment's Aurora
 * (AWS credentials from the usual places); with --target-url, straight to a PostgreSQL database.
 */
import { RDSDataClient } from '@aws-sdk/client-rds-data';
import { connectPostgres } from '../lambdas/adapters/pg-connect';
import { PgSqlClient } from '../lambdas/adapters/pg-sql-client';
import { RdsDataSqlClient } from '../lambdas/adapters/rds-data-sql-client';
import { readFlags } from '../lambdas/core/command-line';
import { CONFIG_DEFAULTS, type LockSettings } from '../lambdas/core/config';
import { ConfigError } from '../lambdas/core/errors';
import { displayQualified, parseQualifiedName } from '../lambdas/core/identifiers';
import type { SqlClient } from '../lambdas/core/sql-client';
import type { SwapProgress } from '../lambdas/core/swap/gate';
import { loadEnvironment } from '../lib/environments';
import { rollbackTable } from './rollback';
import { runCommand } from './run-command';

const USAGE =
  'usage: npm run rollback -- --table <schema.table> (--env <name> | --target-url <postgres url>)';

async function main(): Promise<number> {
  const values = readFlags(
    process.argv.slice(2),
    {
      table: { type: 'string' },
      env: { type: 'string' },
      'target-url': { type: 'string' },
    },
    USAGE,
  );
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (!values.table) throw new ConfigError(`--table is required.\n${USAGE}`);
  if (Boolean(values.env) === Boolean(values['target-url'])) {
    throw new ConfigError(`give either --env or --target-url, not both or neither.\n${USAGE}`);
  }
  const table = parseQualifiedName(values.table, '--table');
  let locks: LockSettings = CONFIG_DEFAULTS.locks;
  let db: SqlClient;
  let close = async () => {};
  if (values.env) {
    const environment = loadEnvironment(values.env, '--env');
    locks = environment.config.locks;
    db = new RdsDataSqlClient(new RDSDataClient({ region: environment.aws.region }), {
      resourceArn: environment.aws.aurora.clusterArn,
      secretArn: environment.aws.aurora.secretArn,
      database: environment.aws.aurora.database,
    });
  } else {
    const client = await connectPostgres(
      {
        connectionString: values['target-url']!,
        application_name: 'redshift-aurora-sync rollback',
      },
      '--target-url',
    );
    db = new PgSqlClient(client);
    close = () => client.end();
  }
  try {
    const result = await rollbackTable(db, table, {
      ...locks,
      onProgress: (progress) => process.stderr.write(`${describeProgress(progress)}\n`),
    });
    process.stdout.write(
      `${displayQualified(table)} is back at its previous version (${result.attempts} attempt(s), exclusive lock held ${Math.round(result.lockHeldMs)} ms).\n`,
    );
  } finally {
    await close();
  }
  return 0;
}

function describeProgress(progress: SwapProgress): string {
  const waited = `${Math.round(progress.waitedSeconds)} s`;
  switch (progress.kind) {
    case 'waiting':
      return `waiting for locks (${waited}); blocked by:\n${(progress.blockers ?? []).map((b) => `  - ${b.reason}`).join('\n')}`;
    case 'busy':
      return `attempt was busy (${progress.message}); nothing changed, trying again`;
    case 'terminated':
      return `ended blocking sessions: ${(progress.terminated ?? []).map((t) => `pid ${t.pid} (${t.blockerClass}) ${t.terminated ? 'ended' : `not ended (${t.reason})`}`).join(', ')}`;
  }
}

runCommand(main);
