/**
 * The pipeline's ports bound for a local run: PostgreSQL standing in for Aurora (with the
 * aws_s3 shim), the UNLOAD emulator over a PostgreSQL database standing in for Redshift, a
 * folder standing in for the bucket, the terminal for notifications.
 */
import { mkdir } from 'node:fs/promises';
import pg from 'pg';
import { connectPostgres } from '../../lambdas/adapters/pg-connect';
import { PgSqlClient } from '../../lambdas/adapters/pg-sql-client';
import { ConfigError } from '../../lambdas/core/errors';
import type { LogFields, PipelineDeps, PipelineSettings } from '../../lambdas/pipeline/deps';
import {
  DatabaseObjectCopy,
  installAwsS3Shim,
  type ShimObjectSource,
} from '../emulators/aws-s3-shim';
import { LocalObjectStore } from '../emulators/local-object-store';
import { LocalWarehouse } from '../emulators/local-warehouse';
import { LocalRunRegistry } from './run-registry';

export interface LocalDepsOptions {
  readonly sourceUrl: string;
  /** The pipeline's own connection: the role it runs as, as on Aurora (not a superuser). */
  readonly targetUrl: string;
  /**
   * A superuser connection to the same database, used only for the local stand-in for aws_s3:
   * to install it (its import reads server files, which only a superuser may) and, when the
   * server cannot read `s3Dir`, to write the objects' copies it imports instead. Without it,
   * `targetUrl` is used, which then must be a superuser's.
   */
  readonly adminUrl?: string;
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

/**
 * Installs the aws_s3 stand-in through `adminUrl` (or `targetUrl` when not given), then checks
 * that the pipeline's role, connected through `targetUrl`, may call it in the same database.
 * Returns where the stand-in reads objects (see aws-s3-shim.ts).
 */
async function installLocalStandIns(options: LocalDepsOptions): Promise<ShimObjectSource> {
  // Created here so that a path that cannot be a folder (a file, a read-only place) is named as
  // the person set it, not as a bare EEXIST from deep in the stand-in's install.
  await mkdir(options.s3Dir, { recursive: true, mode: 0o755 }).catch((error: Error) => {
    throw new ConfigError(
      `LOCAL_S3_DIR=${options.s3Dir} cannot be the bucket's folder (${error.message}); set it to a folder this user may create or write.`,
      { cause: error },
    );
  });
  // The source is read only once the unload starts; a wrong URL should not wait for that.
  await (
    await connectPostgres({ connectionString: options.sourceUrl }, 'SOURCE_DATABASE_URL')
  ).end();
  const pipeline = await connectPostgres(
    { connectionString: options.targetUrl },
    'TARGET_DATABASE_URL',
  );
  let source: ShimObjectSource;
  try {
    const [me] = (
      await pipeline.query<{ role: string; database: string; superuser: boolean }>(
        `SELECT current_user AS role, current_database() AS database, rolsuper AS superuser
         FROM pg_catalog.pg_roles WHERE rolname = current_user`,
      )
    ).rows;
    if (options.adminUrl === undefined && !me!.superuser) {
      throw new ConfigError(
        `TARGET_DATABASE_URL's role ${me!.role} is not a superuser, so it cannot install the local stand-in for aws_s3; set TARGET_ADMIN_URL to a superuser's connection to the same database (used only for that; the pipeline still runs as ${me!.role}).`,
      );
    }
    const admin = await connectPostgres(
      { connectionString: options.adminUrl ?? options.targetUrl },
      options.adminUrl === undefined ? 'TARGET_DATABASE_URL' : 'TARGET_ADMIN_URL',
    );
    try {
      const [where] = (
        await admin.query<{ database: string }>('SELECT current_database() AS database')
      ).rows;
      if (where!.database !== me!.database) {
        throw new ConfigError(
          `TARGET_ADMIN_URL connects to database ${where!.database}, TARGET_DATABASE_URL to ${me!.database}; point both at the database standing in for Aurora.`,
        );
      }
      source = await installAwsS3Shim(admin, { s3Dir: options.s3Dir });
    } finally {
      await admin.end();
    }
    // EXECUTE is granted to PUBLIC at install; a REVOKE since, or another server with a
    // database of the same name, would otherwise only show at the first import.
    const [usable] = (
      await pipeline.query<{ usable: boolean }>(
        `SELECT coalesce(has_function_privilege(
                   to_regprocedure('aws_s3.table_import_from_s3(text, text, text, text, text, text)'), 'EXECUTE')
                 AND has_function_privilege(
                   to_regprocedure('aws_commons.create_s3_uri(text, text, text)'), 'EXECUTE'), false) AS usable`,
      )
    ).rows;
    if (!usable!.usable) {
      throw new ConfigError(
        `the pipeline's role ${me!.role} cannot call aws_s3.table_import_from_s3 in ${me!.database} after installing it through TARGET_ADMIN_URL; check that both URLs name the same server and database, and GRANT EXECUTE on the aws_s3 functions to ${me!.role}.`,
      );
    }
  } finally {
    await pipeline.end();
  }
  return source;
}

export async function localDeps(options: LocalDepsOptions): Promise<LocalDeps> {
  const source = await installLocalStandIns(options);
  // A server that cannot read the folder reads the objects' copies, written as the superuser
  // that installed the stand-in (S3 is written by Redshift, not by the pipeline's role).
  const copyPool =
    source === 'database'
      ? new pg.Pool({
          connectionString: options.adminUrl ?? options.targetUrl,
          application_name: 'redshift-aurora-sync local bucket',
          max: 4,
        })
      : undefined;
  copyPool?.on('error', () => {});
  const objects = new LocalObjectStore(
    options.s3Dir,
    copyPool ? new DatabaseObjectCopy(copyPool) : undefined,
  );
  const pool = new pg.Pool({
    connectionString: options.targetUrl,
    application_name: 'redshift-aurora-sync local',
    max: 8,
  });
  // A session ended from outside (a test killing connections) must not crash the run.
  pool.on('error', () => {});
  const log =
    options.onLog ??
    ((level: 'info' | 'warn', message: string, fields?: LogFields) =>
      process.stderr.write(`${level}: ${message}${fields ? ` ${JSON.stringify(fields)}` : ''}\n`));
  const warehouse = new LocalWarehouse({
    sourceUrl: options.sourceUrl,
    s3Dir: options.s3Dir,
    bucket: objects,
    // A long UNLOAD says how far it got (rows, MiB, rates), as the log does, on stderr.
    onProgress: (line) => log('info', line.trim()),
  });
  const recordedMetrics: LocalDeps['recordedMetrics'] = [];
  return {
    aurora: new PgSqlClient(pool),
    warehouse,
    objects,
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
      await Promise.allSettled([warehouse.close(), pool.end(), copyPool?.end()]);
    },
  };
}
