import { chmod, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Whether the embedded PostgreSQL runs as another OS user than the tests: it does when they
 * run as root (PostgreSQL refuses root; local/postgres.ts starts it as user postgres). Only
 * then can a test hide a folder from the server, as a server in a container or on another
 * host never sees the local bucket folder.
 */
export const SERVER_IS_ANOTHER_USER = process.getuid?.() === 0;

/**
 * A new local bucket folder: `visible` to the PostgreSQL server (mode 755, as a server on
 * this machine reads it) or `hidden` from it (mode 700: the server, as another OS user, cannot
 * enter it; only meaningful where SERVER_IS_ANOTHER_USER).
 */
export async function localBucketFolder(
  prefix: string,
  view: 'visible' | 'hidden',
): Promise<string> {
  const folder = await mkdtemp(join(tmpdir(), `${prefix}-`));
  await chmod(folder, view === 'visible' ? 0o755 : 0o700);
  return folder;
}
