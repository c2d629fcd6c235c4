/**
 * What every AWS contract harness test stands on: a source database (standing in for Redshift),
 * a target database (for Aurora, reached as the pipeline's non-superuser role, with the
 * superuser kept for the aws_s3 stand-in), and a bucket folder the server can read.
 */
import { chmod, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AwsHarnessOptions } from '../aws-contract/harness';
import { freshDatabase, type TestDatabase } from './db';

export interface ContractDatabases {
  readonly sourceDb: TestDatabase;
  readonly targetDb: TestDatabase;
  readonly s3Dir: string;
  /** The harness options that name these databases and this folder. */
  readonly harnessGround: Pick<AwsHarnessOptions, 'sourceUrl' | 'targetUrl' | 'adminUrl' | 's3Dir'>;
}

/** Two fresh databases and a bucket folder named `<folderPrefix>-...` under the temp folder. */
export async function contractDatabases(folderPrefix: string): Promise<ContractDatabases> {
  const sourceDb = await freshDatabase();
  const targetDb = await freshDatabase();
  const s3Dir = await mkdtemp(join(tmpdir(), `${folderPrefix}-`));
  // The embedded server runs as another user; it reads the objects through this folder.
  await chmod(s3Dir, 0o755);
  return {
    sourceDb,
    targetDb,
    s3Dir,
    harnessGround: {
      sourceUrl: sourceDb.url,
      targetUrl: targetDb.pipelineUrl,
      adminUrl: targetDb.url,
      s3Dir,
    },
  };
}
