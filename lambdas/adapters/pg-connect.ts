/**
 * Opening a node-postgres connection from a URL a person gave (a flag, an environment
 * variable): when it cannot be opened, the error names where that URL came from and where it
 * points (password left out), with the server's or the network's reason, and says what to
 * check, instead of node-postgres' bare "ECONNREFUSED 127.0.0.1:5432" or "password
 * authentication failed" and their stack.
 */
import pg from 'pg';
import { ConfigError } from '../core/errors';

const EXAMPLE = 'postgres://user:password@host:5432/database';

/** `url` as a message may show it: without its password, or undefined when it is no URL. */
export function describePostgresUrl(url: string): string | undefined {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return undefined;
  }
  if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:') return undefined;
  parsed.password = '';
  return parsed.href;
}

/**
 * A connected client for `config.connectionString`; `origin` is where the URL came from
 * (`--target-url`, `TARGET_DATABASE_URL`), which the error names.
 */
export async function connectPostgres(
  config: pg.ClientConfig & { readonly connectionString: string },
  origin: string,
): Promise<pg.Client> {
  const shown = describePostgresUrl(config.connectionString);
  if (shown === undefined) {
    // pg would read "localhost/app" as a relative URL and try a host named "base".
    throw new ConfigError(`${origin} is not a PostgreSQL URL; give one such as ${EXAMPLE}.`);
  }
  const client = new pg.Client(config);
  try {
    await client.connect();
  } catch (error) {
    await client.end().catch(() => {});
    const reason = error instanceof Error ? error.message : String(error);
    throw new ConfigError(
      `${origin}: cannot connect to ${shown} (${reason}); check its user, password, host, port and database, and that the server is running.`,
      { cause: error },
    );
  }
  return client;
}
