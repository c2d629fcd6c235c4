/**
 * Reliability: `npm run sync:local` killed (SIGKILL, no clean-up of any kind) at each stage of
 * a run leaves every live table either old or new, never partial, and the next run succeeds
 * and clears what the killed one left.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { type DatabasesAndBucket, databasesAndBucket } from './support/databases-and-bucket';

const OLD_ROWS = 300;
const NEW_ROWS = 20_000;

let ground: DatabasesAndBucket;
let configPath: string;

beforeAll(async () => {
  ground = await databasesAndBucket('kill-test-bucket');
  await ground.source.query(`
    CREATE SCHEMA sales;
    CREATE TABLE sales.orders (id bigint PRIMARY KEY, amount numeric(12,2), note text);
    INSERT INTO sales.orders SELECT g, g * 1.5, repeat('n', g % 50) FROM generate_series(1, ${NEW_ROWS}) g;
    CREATE TABLE sales.items (id bigint PRIMARY KEY, sku text);
    INSERT INTO sales.items SELECT g, 'sku-' || g FROM generate_series(1, ${NEW_ROWS}) g;`);
  await ground.target.query(`
    CREATE TABLE public.orders (id bigint PRIMARY KEY, amount numeric(12,2), note text);
    INSERT INTO public.orders SELECT g, 0, 'old' FROM generate_series(1, ${OLD_ROWS}) g;
    CREATE VIEW public.order_notes AS SELECT id, note FROM public.orders;
    CREATE TABLE public.items (id bigint PRIMARY KEY, sku text);
    INSERT INTO public.items SELECT g, 'old' FROM generate_series(1, ${OLD_ROWS}) g;`);
  // Users' tables belong to a user role; the pipeline (run as its own role) acts as it.
  await ground.target.query(`
    ALTER TABLE public.orders OWNER TO ${ground.owner};
    ALTER VIEW public.order_notes OWNER TO ${ground.owner};
    ALTER TABLE public.items OWNER TO ${ground.owner};`);
  configPath = join(ground.s3Dir, 'config.json');
  await writeFile(
    configPath,
    JSON.stringify({
      tables: [
        { source: 'sales.orders', target: 'public.orders', strategy: 'rename' },
        { source: 'sales.items', target: 'public.items', strategy: 'truncate' },
      ],
      locks: { lockTimeoutMs: 200, pollIntervalSeconds: 1, maxWaitSeconds: 30, onMaxWait: 'fail' },
    }),
  );
});

function syncLocal(
  extraArgs: string[] = [],
  env: Record<string, string> = { TARGET_ADMIN_URL: ground.targetDb.url },
): {
  child: ChildProcess;
  stderr: () => string;
  exit: Promise<number | null>;
} {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'local/run/sync-local.ts', '--config', configPath, ...extraArgs],
    {
      env: {
        ...process.env,
        SOURCE_DATABASE_URL: ground.sourceDb.url,
        // The pipeline runs as its non-superuser role; the superuser only installs aws_s3's stand-in.
        TARGET_DATABASE_URL: ground.targetDb.pipelineUrl,
        LOCAL_S3_DIR: ground.s3Dir,
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let stderr = '';
  let stdout = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  child.stdout!.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, stderr: () => `${stderr}\n${stdout}`, exit };
}

async function liveState(): Promise<{ orders: number; notes: number; items: number }> {
  const { rows } = await ground.target.query(`SELECT
    (SELECT count(*)::int FROM public.orders) AS orders,
    (SELECT count(*)::int FROM public.order_notes) AS notes,
    (SELECT count(*)::int FROM public.items) AS items`);
  return rows[0];
}

/** Starts a run and kills it with SIGKILL as soon as its progress shows `marker`. */
async function killAt(marker: string): Promise<void> {
  const run = syncLocal();
  const deadline = Date.now() + 60_000;
  while (!run.stderr().includes(marker)) {
    if (run.child.exitCode !== null || Date.now() > deadline) {
      throw new Error(`the run never showed "${marker}":\n${run.stderr()}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  run.child.kill('SIGKILL');
  expect(await run.exit).toBeNull(); // killed, not finished
}

describe('a local run killed at any stage', () => {
  it.each([
    'Prepare the run',
    'Unload the tables from Redshift',
    'Load each table',
    'rows staged, figures match', // one table checked and indexed, the other maybe not yet
    'Swap staging into live',
    'Record the run and clean up',
  ])(
    'when killed at "%s", leaves each live table old or new, and the next run succeeds',
    async (state) => {
      await killAt(state);
      const after = await liveState();
      // old or new, never partial; the view always answers, over whichever version is live
      expect([OLD_ROWS, NEW_ROWS]).toContain(after.orders);
      expect(after.notes).toBe(after.orders);
      expect([OLD_ROWS, NEW_ROWS]).toContain(after.items);

      const next = syncLocal();
      expect(await next.exit, next.stderr()).toBe(0);
      const summary = JSON.parse(next.stderr().trim().split('\n').at(-1)!);
      expect(summary.status).toBe('SUCCEEDED');
      expect(await liveState()).toEqual({ orders: NEW_ROWS, notes: NEW_ROWS, items: NEW_ROWS });
      const { rows } = await ground.target.query(
        `SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = 'redshift_sync_staging'`,
      );
      expect(rows[0].n).toBe(0);
      expect(await readdir(join(ground.s3Dir, '.running'))).toEqual([]);
      // Put the old version back for the next case.
      await ground.target.query(`
      TRUNCATE public.orders; INSERT INTO public.orders SELECT g, 0, 'old' FROM generate_series(1, ${OLD_ROWS}) g;
      TRUNCATE public.items; INSERT INTO public.items SELECT g, 'old' FROM generate_series(1, ${OLD_ROWS}) g;`);
    },
  );
});

describe('sync:local', () => {
  it('refuses a --tables name that is not configured, by name, before anything runs', async () => {
    const run = syncLocal(['--tables', 'public.orders,public."Nope"']);
    expect(await run.exit).toBe(1);
    const lastLine = run.stderr().trim().split('\n').at(-1)!;
    const summary = JSON.parse(lastLine);
    expect(summary.status).toBe('FAILED');
    expect(summary.error.name).toBe('ConfigError');
    expect(summary.error.message).toContain('public."Nope"');
    expect(summary.error.message).toContain('public.orders, public.items');
    // Nothing ran: no run registered, no files written.
    expect(await readdir(join(ground.s3Dir, '.running')).catch(() => [])).toEqual([]);
  });

  it('says in one line to set TARGET_ADMIN_URL when the pipeline role cannot install aws_s3', async () => {
    const run = syncLocal([], {});
    expect(await run.exit).toBe(1);
    const lines = run.stderr().trim().split('\n');
    expect(lines[0]).toBe(
      `ConfigError: TARGET_DATABASE_URL's role ${ground.targetDb.pipelineLogin.user} is not a superuser, so it cannot install the local stand-in for aws_s3; set TARGET_ADMIN_URL to a superuser's connection to the same database (used only for that; the pipeline still runs as ${ground.targetDb.pipelineLogin.user}).`,
    );
    expect(run.stderr()).not.toMatch(/^\s+at /m); // no stack trace
    expect(JSON.parse(lines.at(-1)!)).toMatchObject({ status: 'FAILED' });
  });
});
