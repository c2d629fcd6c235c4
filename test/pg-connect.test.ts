/**
 * A PostgreSQL URL a person gave that cannot be used is refused naming where it came from and
 * where it points (without its password), with the server's reason and what to check: for
 * `rollback --target-url` and for the local run's SOURCE_/TARGET_DATABASE_URL, before any run
 * starts.
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { connectPostgres } from '../lambdas/adapters/pg-connect';
import { ConfigError } from '../lambdas/core/errors';
import { localDeps } from '../local/run/deps';
import { freshDatabase, type TestDatabase } from './support/db';

let db: TestDatabase;

beforeAll(async () => {
  db = await freshDatabase();
});

function withPassword(url: string, password: string): string {
  const changed = new URL(url);
  changed.password = password;
  return changed.href;
}

function withoutPassword(url: string): string {
  return withPassword(url, '');
}

/** Port 1 (tcpmux): reserved, no PostgreSQL listens there, so the connection is refused. */
function refusedUrl(): string {
  const changed = new URL(db.pipelineUrl);
  changed.port = '1';
  return changed.href;
}

describe('connectPostgres', () => {
  it('connects with a good URL', async () => {
    const client = await connectPostgres({ connectionString: db.pipelineUrl }, '--target-url');
    try {
      const { rows } = await client.query('SELECT current_user AS role');
      expect(rows[0].role).toBe(db.pipelineLogin.user);
    } finally {
      await client.end();
    }
  });

  it('names the origin, the URL without its password and the server reason for a wrong password', async () => {
    const wrong = withPassword(db.pipelineUrl, 'not-the-password');
    const refused = connectPostgres({ connectionString: wrong }, '--target-url');
    await expect(refused).rejects.toThrow(ConfigError);
    await expect(refused).rejects.toThrow(
      `--target-url: cannot connect to ${withoutPassword(db.pipelineUrl)} (password authentication failed for user "${db.pipelineLogin.user}"); check its user, password, host, port and database, and that the server is running.`,
    );
    await expect(refused).rejects.not.toThrow('not-the-password');
  });

  it('names the address when nothing listens there', async () => {
    await expect(
      connectPostgres({ connectionString: refusedUrl() }, 'TARGET_DATABASE_URL'),
    ).rejects.toThrow(
      /^TARGET_DATABASE_URL: cannot connect to postgres:\/\/[^:]+@127\.0\.0\.1:1\/.* \(connect ECONNREFUSED 127\.0\.0\.1:1\)/,
    );
  });

  it('refuses what is not a PostgreSQL URL, with an example', async () => {
    for (const text of ['localhost/app', 'mysql://u@h/db', '']) {
      await expect(connectPostgres({ connectionString: text }, '--target-url')).rejects.toThrow(
        '--target-url is not a PostgreSQL URL; give one such as postgres://user:password@host:5432/database.',
      );
    }
  });
});

describe('the URLs a person gives', () => {
  it('rollback --target-url: one line naming the flag, no stack trace', () => {
    const result = spawnSync(
      process.execPath,
      [
        '--import',
        'tsx',
        'ops/rollback-cli.ts',
        '--table',
        'public.orders',
        '--target-url',
        refusedUrl(),
      ],
      { encoding: 'utf8' },
    );
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/^ConfigError: --target-url: cannot connect to /);
    expect(result.stderr).not.toMatch(/^\s+at /m);
  });

  it('the local run refuses a SOURCE_DATABASE_URL it cannot reach before the run starts', async () => {
    const s3Dir = await mkdtemp(join(tmpdir(), 'pg-connect-bucket-'));
    await expect(
      localDeps({ sourceUrl: refusedUrl(), targetUrl: db.url, s3Dir, onLog: () => {} }),
    ).rejects.toThrow(/^SOURCE_DATABASE_URL: cannot connect to .*ECONNREFUSED/);
    await expect(
      localDeps({
        sourceUrl: db.url,
        targetUrl: withPassword(db.pipelineUrl, 'wrong'),
        adminUrl: db.url,
        s3Dir,
        onLog: () => {},
      }),
    ).rejects.toThrow(/^TARGET_DATABASE_URL: cannot connect to .*password authentication failed/);
  });
});
