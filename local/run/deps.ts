/**
 * The pipeline's ports bound for a local run: PostgreSQL standing in for Aurora (with the
 * aws_s3 shim), the UNLOAD emulator over a PostgreSQL database standing in for Redshift, a
 * folder standing in for the bucket, the terminal for notifications.
 */
import pg from 'pg';
import { PgSqlClient } from '../../lambdas/adapters/pg-sql-client';
import type { LogFields, PipelineDeps, PipelineSettings } from '../../lambdas/pipeline/deps';
import { installAwsS3Shim } from '../emulators/aws-s3-shim';
import { LocalObjectStore } from '../emulators/local-object-store';
import { LocalWarehouse } from '../emulators/local-warehouse';
import { LocalRunRegistry } from './run-registry';

export interface LocalDepsOptions {
  readonly sourceUrl: string;
  readonly targetUrl: string;
  readonly s3Dir: string;
  readonly environment?: string;
  /** Where log lines go (stderr by default). */
  readonly onLog?: (level: 'info' | 'warn', message: string, fields?: LogFields) => void;
}

export interface LocalDeps extends PipelineDeps {
  readonly runs: LocalRunRegistry;
  /** Every metric recorded, for the summary and the tests. */
  readonly recordedMetrics: { name: string; unit: string; value: number }[];
  close(): Promise<void>;
}

/** The bucket name the local run writes under `s3Dir`. */
export const LOCAL_BUCKET = 'local-run-files';

export const LOCAL_SETTINGS: Omit<PipelineSettings, 'environment'> = {
  bucket: LOCAL_BUCKET,
  unloadRoleArn: 'arn:aws:iam::000000000000:role/local-unload',
  // Any valid region: aws_s3's shim ignores it, UNLOAD's emulator accepts it.
  region: 'us-east-1',
};

export async function localDeps(options: LocalDepsOptions): Promise<LocalDeps> {
  const admin = new pg.Client({ connectionString: options.targetUrl });
  await admin.connect();
  try {
    await installAwsS3Shim(admin, { s3Dir: options.s3Dir });
  } finally {
    await admin.end();
  }
  const pool = new pg.Pool({
    connectionString: options.targetUrl,
    application_name: 'redshift-aurora-sync local',
    max: 8,
  });
  // A session ended from outside (a test killing connections) must not crash the run.
  pool.on('error', () => {});
  const warehouse = new LocalWarehouse({ sourceUrl: options.sourceUrl, s3Dir: options.s3Dir });
  const log =
    options.onLog ??
    ((level: 'info' | 'warn', message: string, fields?: LogFields) =>
      process.stderr.write(`${level}: ${message}${fields ? ` ${JSON.stringify(fields)}` : ''}\n`));
  const recordedMetrics: LocalDeps['recordedMetrics'] = [];
  return {
    aurora: new PgSqlClient(pool),
    warehouse,
    objects: new LocalObjectStore(options.s3Dir),
    runs: new LocalRunRegistry(options.s3Dir),
    notifier: {
      async notify(subject, message) {
        log('warn', subject, { message });
      },
    },
    log: {
      info: (message, fields) => log('info', message, fields),
      warn: (message, fields) => log('warn', message, fields),
    },
    metrics: {
      record: (name, unit, value) => {
        recordedMetrics.push({ name, unit, value });
      },
    },
    recordedMetrics,
    settings: { ...LOCAL_SETTINGS, environment: options.environment ?? 'local' },
    sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
    now: Date.now,
    async close() {
      await Promise.allSettled([warehouse.close(), pool.end()]);
    },
  };
}
