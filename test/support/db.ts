import pg from 'pg';
import { afterAll, inject } from 'vitest';
import { databaseGrantStatements, urlAs } from '../../local/pipeline-role';

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
  const pipelineLogin = inject('pipelineLogin');
  for (const statement of databaseGrantStatements(pipelineLogin.user, name)) {
    await admin.query(statement);
  }
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
    major: inject('postgresMajor'),
    pipelineLogin,
    pipelineUrl: urlAs(url.href, pipelineLogin),
    async connect(applicationName = 'test', login?: { user: string; password: string }) {
      const sessionUrl = new URL(url.href);
      if (login) {
        sessionUrl.username = encodeURIComponent(login.user);
        sessionUrl.password = encodeURIComponent(login.password);
      }
      const client = new pg.Client({
        connectionString: sessionUrl.href,
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
  /** As the superuser: for setting up what users have, never for the pipeline itself. */
  readonly url: string;
  readonly name: string;
  /** The server's PostgreSQL major (PG_MAJOR). */
  readonly major: number;
  /**
   * The pipeline's role as on Aurora: not a superuser, holding exactly the README's grants
   * (pg_read_all_stats, pg_signal_backend, CREATE on this database). Memberships in the
   * owners of the tables a test swaps are the test's to grant, as they are the user's.
   */
  readonly pipelineLogin: { readonly user: string; readonly password: string };
  readonly pipelineUrl: string;
  /** A new session, as the superuser unless `login` names another role. */
  connect(applicationName?: string, login?: { user: string; password: string }): Promise<pg.Client>;
}
