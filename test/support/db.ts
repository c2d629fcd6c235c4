import pg from 'pg';
import { afterAll, inject } from 'vitest';

/**
 * A database of its own for the calling test file, on the run's one server. Every client
 * opened through `connect` is closed after the file's tests.
 */
export async function freshDatabase(): Promise<TestDatabase> {
  const serverUrl = new URL(inject('postgresUrl'));
  const name = `t_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
  const admin = new pg.Client({ connectionString: serverUrl.href });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`);
  await admin.end();
  const url = new URL(serverUrl.href);
  url.pathname = `/${name}`;
  const clients: pg.Client[] = [];
  afterAll(async () => {
    await Promise.allSettled(clients.map((client) => client.end()));
  });
  return {
    url: url.href,
    name,
    async connect(applicationName = 'test') {
      const client = new pg.Client({
        connectionString: url.href,
        application_name: applicationName,
      });
      // A session ended on purpose (pg_terminate_backend) must not crash the test run.
      client.on('error', () => {});
      await client.connect();
      clients.push(client);
      return client;
    },
  };
}

export interface TestDatabase {
  readonly url: string;
  readonly name: string;
  connect(applicationName?: string): Promise<pg.Client>;
}
