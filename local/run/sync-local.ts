/**
 * `npm run sync:local -- --config <file> [--tables <t1,t2>] [--dry-run] [--full-refresh] [--max-wait-seconds N]`
 *
 * Runs the pipeline's state machine locally between two PostgreSQL databases:
 * SOURCE_DATABASE_URL stands in for Redshift, TARGET_DATABASE_URL for Aurora (the pipeline runs
 * as its role, which need not be a superuser), LOCAL_S3_DIR for the bucket (the target server need not
 * read it); TARGET_ADMIN_URL, a superuser's connection to the target database, is used only
 * for the aws_s3 stand-in. Progress goes to stderr; the last line of stdout is the run summary
 * as one JSON object. Exit code 0 only when every table was swapped (or a dry run succeeded).
 */
import { maxWaitSecondsFlag, readFlags } from '../../lambdas/core/command-line';
import { selectTables } from '../../lambdas/core/config';
import { ConfigError, SyncError } from '../../lambdas/core/errors';
import { splitTableList } from '../../lambdas/core/identifiers';
import { readConfigFile } from './cli-input';
import { localDeps } from './deps';
import { runLocalPipeline } from './pipeline';

const USAGE =
  'usage: npm run sync:local -- --config <file> [--tables <schema.table,...>] [--dry-run] [--full-refresh] [--max-wait-seconds <n>]\n' +
  'environment: SOURCE_DATABASE_URL (stands in for Redshift), TARGET_DATABASE_URL (for Aurora; the pipeline runs as its role), LOCAL_S3_DIR (for the bucket),\n' +
  '  TARGET_ADMIN_URL (optional: a superuser connection to the target database, used only for the aws_s3 stand-in; needed when TARGET_DATABASE_URL is not a superuser)';

function requiredEnv(name: string): string {
  const value = process.env[name];
  if (!value) throw new ConfigError(`${name} is not set.\n${USAGE}`);
  return value;
}

async function main(): Promise<number> {
  const values = readFlags(
    process.argv.slice(2),
    {
      config: { type: 'string' },
      tables: { type: 'string' },
      'dry-run': { type: 'boolean', default: false },
      'full-refresh': { type: 'boolean', default: false },
      'max-wait-seconds': { type: 'string' },
    },
    USAGE,
  );
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (!values.config) throw new ConfigError(`--config is required.\n${USAGE}`);
  const config = await readConfigFile(values.config);
  const tables = values.tables === undefined ? undefined : splitTableList(values.tables);
  // Refused by name before anything runs (the state machine's first step checks again).
  selectTables(config, tables, '--tables');
  const maxWait = values['max-wait-seconds'];
  const request = {
    ...(tables ? { tables } : {}),
    ...(values['dry-run'] ? { dryRun: true } : {}),
    ...(values['full-refresh'] ? { fullRefresh: true } : {}),
    ...(maxWait !== undefined
      ? { maxWaitSeconds: maxWaitSecondsFlag('--max-wait-seconds', maxWait) }
      : {}),
  };
  const deps = await localDeps({
    sourceUrl: requiredEnv('SOURCE_DATABASE_URL'),
    targetUrl: requiredEnv('TARGET_DATABASE_URL'),
    ...(process.env.TARGET_ADMIN_URL ? { adminUrl: process.env.TARGET_ADMIN_URL } : {}),
    s3Dir: requiredEnv('LOCAL_S3_DIR'),
  });
  try {
    const summary = await runLocalPipeline({
      config,
      request,
      deps,
      onProgress: (line) => process.stderr.write(`${line}\n`),
    });
    process.stdout.write(`${JSON.stringify(summary)}\n`);
    return summary.status === 'SUCCEEDED' || summary.status === 'DRY_RUN' ? 0 : 1;
  } finally {
    await deps.close();
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    const name = error instanceof SyncError ? error.name : 'Error';
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`${name}: ${message}\n`);
    process.stdout.write(
      `${JSON.stringify({ status: 'FAILED', tables: [], error: { name, message } })}\n`,
    );
    process.exit(1);
  },
);
