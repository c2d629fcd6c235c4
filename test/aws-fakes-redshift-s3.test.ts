/** The Redshift Data API and S3 fakes' documented behaviours, over a real PostgreSQL and a folder. */
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ResourceNotFoundException, ValidationException } from '@aws-sdk/client-redshift-data';
import { AccessDenied, NoSuchKey } from '@aws-sdk/client-s3';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  AccessDeniedError,
  ALLOW_ALL,
  type Authorize,
  type AwsPrincipal,
  type AwsRequest,
} from './aws-contract/access';
import { RedshiftDataFake } from './aws-contract/fakes/redshift-data';
import { S3Fake } from './aws-contract/fakes/s3';
import { freshDatabase, type TestDatabase } from './support/db';

const BUCKET = 'test-bucket';
const SUBMITTER = { roleArn: 'arn:aws:iam::000000000000:role/submitter' };
const OTHER = { roleArn: 'arn:aws:iam::000000000000:role/other' };
const UNLOAD_ROLE = 'arn:aws:iam::000000000000:role/unload';
const SECRET = 'arn:aws:secretsmanager:us-east-1:000000000000:secret:redshift';
const TARGET = { ClusterIdentifier: 'analytics', Database: 'dev', SecretArn: SECRET };

let db: TestDatabase;
let s3Dir: string;
const requests: { role: string; request: AwsRequest }[] = [];
const recording: Authorize = (principal, request) => {
  requests.push({ role: principal.roleArn, request });
  ALLOW_ALL(principal, request);
};

beforeAll(async () => {
  db = await freshDatabase();
  s3Dir = await mkdtemp(join(tmpdir(), 'aws-fakes-'));
});

function redshift(s3 = new S3Fake({ s3Dir, buckets: [BUCKET], authorize: recording })) {
  return new RedshiftDataFake({
    sourceUrl: db.url,
    s3,
    authorize: recording,
    region: 'us-east-1',
    account: '000000000000',
    target: { clusterIdentifier: 'analytics', database: 'dev', secretArn: SECRET },
  });
}

async function finished(fake: RedshiftDataFake, id: string) {
  for (;;) {
    const described = await fake.describeStatement(SUBMITTER, { Id: id });
    if (!['SUBMITTED', 'PICKED', 'STARTED'].includes(described.Status!)) return described;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('the Redshift Data API fake', () => {
  it('refuses a batch of 41 statements', async () => {
    const sqls = Array.from({ length: 41 }, () => 'SELECT 1');
    await expect(
      redshift().batchExecuteStatement(SUBMITTER, { ...TARGET, Sqls: sqls }),
    ).rejects.toBeInstanceOf(ValidationException);
  });

  it('pages a result with NextToken and numbers a batch`s statements <id>:n', async () => {
    const fake = redshift();
    const { Id } = await fake.batchExecuteStatement(SUBMITTER, {
      ...TARGET,
      Sqls: ['SELECT 1 AS one', 'SELECT g AS n FROM generate_series(1, 2500) g'],
    });
    const described = await finished(fake, Id!);
    expect(described.Status).toBe('FINISHED');
    expect(described.SubStatements!.map((sub) => sub.Id)).toEqual([`${Id}:1`, `${Id}:2`]);
    const pages: number[] = [];
    let token: string | undefined;
    do {
      const page = await fake.getStatementResult(SUBMITTER, { Id: `${Id}:2`, NextToken: token });
      pages.push(page.Records!.length);
      token = page.NextToken;
    } while (token);
    expect(pages).toEqual([1000, 1000, 500]);
  });

  it('keeps a session: an explicit BEGIN in AUTO_COMMIT mode spans calls, for its owner only', async () => {
    const fake = redshift();
    const admin = await db.connect('session-test');
    await admin.query('CREATE TABLE session_seen (n int); INSERT INTO session_seen VALUES (1)');
    const opened = await fake.batchExecuteStatement(SUBMITTER, {
      ...TARGET,
      SessionKeepAliveSeconds: 60,
      ExecutionMode: 'AUTO_COMMIT',
      Sqls: ['BEGIN', 'SELECT count(*) AS n FROM session_seen'],
    });
    expect(opened.SessionId).toMatch(/^[0-9a-f-]{36}$/);
    expect((await finished(fake, opened.Id!)).Status).toBe('FINISHED');
    // Committed by someone else between the calls: the open transaction's snapshot predates it.
    await admin.query('INSERT INTO session_seen VALUES (2)');
    const later = await fake.batchExecuteStatement(SUBMITTER, {
      SessionId: opened.SessionId,
      ExecutionMode: 'AUTO_COMMIT',
      Sqls: ['SELECT count(*) AS n FROM session_seen', 'COMMIT'],
    });
    expect((await finished(fake, later.Id!)).Status).toBe('FINISHED');
    const seen = await fake.getStatementResult(SUBMITTER, { Id: `${later.Id}:1` });
    expect(seen.Records).toEqual([[{ longValue: 1 }]]);
    // Another role cannot use the session; a keep-alive past 24 h is refused.
    await expect(
      fake.batchExecuteStatement(OTHER, { SessionId: opened.SessionId, Sqls: ['SELECT 1'] }),
    ).rejects.toBeInstanceOf(ValidationException);
    await expect(
      fake.executeStatement(SUBMITTER, {
        ...TARGET,
        Sql: 'SELECT 1',
        SessionKeepAliveSeconds: 86_401,
      }),
    ).rejects.toBeInstanceOf(ValidationException);
    await fake.close();
  });

  it('hides a statement from a role other than the one that submitted it', async () => {
    const fake = redshift();
    const { Id } = await fake.executeStatement(SUBMITTER, { ...TARGET, Sql: 'SELECT 1' });
    await finished(fake, Id!);
    for (const call of [
      () => fake.describeStatement(OTHER, { Id }),
      () => fake.getStatementResult(OTHER, { Id }),
      () => fake.cancelStatement(OTHER, { Id }),
    ]) {
      await expect(call()).rejects.toBeInstanceOf(ResourceNotFoundException);
    }
    expect((await fake.getStatementResult(SUBMITTER, { Id })).Records).toEqual([
      [{ longValue: 1 }],
    ]);
  });

  it('lists statements by case-sensitive name prefix and status, the caller`s role only, 100 a page', async () => {
    const fake = redshift();
    const named = async (principal: AwsPrincipal, name: string, sql = 'SELECT 1') =>
      (await fake.executeStatement(principal, { ...TARGET, Sql: sql, StatementName: name })).Id!;
    const ids: string[] = [];
    for (let i = 0; i < 105; i += 1) ids.push(await named(SUBMITTER, `run r-1 columns ${i}`));
    // Another session of the same role: RoleLevel (default true) lists it, false does not.
    const sameRole = await named({ ...SUBMITTER, sessionName: 'other-function' }, 'run r-1 x');
    await named(SUBMITTER, 'Run r-1 upper case');
    await named(SUBMITTER, 'run r-10 longer id');
    await named(OTHER, 'run r-1 of another role');
    const running = await named(SUBMITTER, 'run r-1 sleeps', 'SELECT pg_sleep(5)');
    for (const id of [...ids, sameRole]) await finished(fake, id);
    await fake.cancelStatement(SUBMITTER, { Id: running });
    await finished(fake, running);
    const list = async (input: Parameters<RedshiftDataFake['listStatements']>[1]) => {
      const seen: string[] = [];
      const pages: number[] = [];
      let token: string | undefined;
      do {
        const page = await fake.listStatements(SUBMITTER, { ...input, NextToken: token });
        seen.push(...page.Statements!.map((statement) => statement.Id!));
        pages.push(page.Statements!.length);
        token = page.NextToken;
      } while (token);
      return { seen, pages };
    };
    // By default only FINISHED ones; the prefix `run r-1 ` leaves out `run r-10`, `Run r-1`.
    const byDefault = await list({ StatementName: 'run r-1 ' });
    expect(byDefault.pages).toEqual([100, 6]);
    expect(new Set(byDefault.seen)).toEqual(new Set([...ids, sameRole]));
    expect((await list({ StatementName: 'run r-1 ', Status: 'ABORTED' })).seen).toEqual([running]);
    expect((await list({ StatementName: 'run r-1 ', Status: 'ALL' })).seen).toHaveLength(107);
    expect(
      (await list({ StatementName: 'run r-1 ', RoleLevel: false, MaxResults: 50 })).pages,
    ).toEqual([50, 50, 5]);
    const page = await fake.listStatements(SUBMITTER, {
      StatementName: 'run r-1 sleeps',
      Status: 'ALL',
    });
    expect(page.Statements).toEqual([
      expect.objectContaining({
        Id: running,
        StatementName: 'run r-1 sleeps',
        IsBatchStatement: false,
      }),
    ]);
    await expect(fake.listStatements(SUBMITTER, { MaxResults: 101 })).rejects.toBeInstanceOf(
      ValidationException,
    );
    expect(requests.at(-1)).toMatchObject({
      request: { action: 'redshift-data:ListStatements', resource: '*' },
    });
  });

  it('writes UNLOAD files through S3 as the statement`s IAM_ROLE, not as the caller', async () => {
    const fake = redshift();
    const { Id } = await fake.executeStatement(SUBMITTER, {
      ...TARGET,
      Sql: `UNLOAD ('SELECT 1 AS one') TO 's3://${BUCKET}/unload/one_' IAM_ROLE '${UNLOAD_ROLE}'`,
    });
    expect((await finished(fake, Id!)).Status).toBe('FINISHED');
    const puts = requests.filter((entry) => entry.request.action === 's3:PutObject');
    expect(puts.length).toBeGreaterThan(0);
    expect(new Set(puts.map((entry) => entry.role))).toEqual(new Set([UNLOAD_ROLE]));
  });
});

describe('the S3 fake', () => {
  it('lists 1,000 keys a page with a continuation token, authorizing s3:ListBucket with s3:prefix', async () => {
    const dir = join(s3Dir, BUCKET, 'many');
    await mkdir(dir, { recursive: true });
    await Promise.all(
      Array.from({ length: 2500 }, (_, i) =>
        writeFile(join(dir, `k${String(i).padStart(4, '0')}`), 'x'),
      ),
    );
    const s3 = new S3Fake({ s3Dir, buckets: [BUCKET], authorize: recording });
    const pages: number[] = [];
    let token: string | undefined;
    do {
      const page = await s3.listObjectsV2(SUBMITTER, {
        Bucket: BUCKET,
        Prefix: 'many/',
        ContinuationToken: token,
      });
      pages.push(page.KeyCount!);
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    expect(pages).toEqual([1000, 1000, 500]);
    expect(requests.at(-1)!.request).toEqual({
      action: 's3:ListBucket',
      resource: `arn:aws:s3:::${BUCKET}`,
      context: { 's3:prefix': 'many/' },
    });
  });

  it('refuses DeleteObjects of more than 1,000 keys, and answers a missing key with NoSuchKey', async () => {
    const s3 = new S3Fake({ s3Dir, buckets: [BUCKET], authorize: ALLOW_ALL });
    const objects = Array.from({ length: 1001 }, (_, i) => ({ Key: `many/k${i}` }));
    await expect(
      s3.deleteObjects(SUBMITTER, { Bucket: BUCKET, Delete: { Objects: objects } }),
    ).rejects.toMatchObject({ name: 'MalformedXML' });
    await expect(s3.getObject(SUBMITTER, { Bucket: BUCKET, Key: 'nope' })).rejects.toBeInstanceOf(
      NoSuchKey,
    );
  });

  it('answers AccessDenied when the principal may not read the object', async () => {
    const s3 = new S3Fake({
      s3Dir,
      buckets: [BUCKET],
      authorize: (principal, request) => {
        throw new AccessDeniedError(principal, request, 'implicit deny');
      },
    });
    await expect(s3.getObject(OTHER, { Bucket: BUCKET, Key: 'many/k0001' })).rejects.toBeInstanceOf(
      AccessDenied,
    );
  });
});
