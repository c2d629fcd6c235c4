/**
 * What every test of a whole run stands on, local or through the AWS contract harness: a
 * source database (standing in for Redshift), a target database (for Aurora, reached by the
 * run as the pipeline's non-superuser role, with the superuser kept for the aws_s3 stand-in),
 * a user role owning what the test builds there, and a bucket folder.
 */
import type pg from 'pg';
import { freshDatabase, type TestDatabase } from './db';
import { localBucketFolder } from './local-bucket';
import { uniqueRoles } from './swap-fixtures';

/** Where a run points: what localDeps and AwsHarness.start both take. */
export interface RunEndpoints {
  readonly sourceUrl: string;
  /** The target as the pipeline's role. */
  readonly targetUrl: string;
  /** The target as its superuser, for the aws_s3 stand-in only. */
  readonly adminUrl: string;
  readonly s3Dir: string;
}

export interface DatabasesAndBucket {
  readonly sourceDb: TestDatabase;
  readonly targetDb: TestDatabase;
  /** Superuser sessions, for setting up what users have (closed after the file's tests). */
  readonly source: pg.Client;
  readonly target: pg.Client;
  /**
   * A NOLOGIN role that may create in the target's schema public, for the tables the test
   * builds there; the pipeline's role is a member (acts as it), as a user would grant.
   */
  readonly owner: string;
  readonly s3Dir: string;
  readonly runOn: RunEndpoints;
}

/**
 * Two fresh databases and a bucket folder named `<folderPrefix>-...` under the temp folder,
 * `visible` to the PostgreSQL server or `hidden` from it (see localBucketFolder). The
 * pipeline's role and the owner may create in the target's schema public (from PostgreSQL 15
 * no longer granted to everyone), as a user would have granted.
 */
export async function databasesAndBucket(
  folderPrefix: string,
  bucket: 'visible' | 'hidden' = 'visible',
): Promise<DatabasesAndBucket> {
  const sourceDb = await freshDatabase();
  const targetDb = await freshDatabase();
  const source = await sourceDb.connect('test setup');
  const target = await targetDb.connect('test setup');
  const { owner } = uniqueRoles('owner');
  const pipeline = targetDb.pipelineLogin.user;
  await target.query(`
    CREATE ROLE ${owner} NOLOGIN;
    GRANT ${owner} TO ${pipeline};
    GRANT USAGE, CREATE ON SCHEMA public TO ${pipeline}, ${owner};`);
  const s3Dir = await localBucketFolder(folderPrefix, bucket);
  return {
    sourceDb,
    targetDb,
    source,
    target,
    owner,
    s3Dir,
    runOn: {
      sourceUrl: sourceDb.url,
      targetUrl: targetDb.pipelineUrl,
      adminUrl: targetDb.url,
      s3Dir,
    },
  };
}
