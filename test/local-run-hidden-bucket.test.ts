/**
 * The local run against a target PostgreSQL that cannot read the local bucket folder, as one
 * in a container or on another host: the folder is hidden from the server's OS user, so the
 * aws_s3 stand-in must import the objects' copies the run writes into the target database.
 * Run as the pipeline's non-superuser role, value for value, through UNLOAD files large enough
 * to be written in several pieces.
 */
import { rm } from 'node:fs/promises';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LOCAL_BUCKET } from '../local/run/deps';
import { type DatabasesAndBucket, databasesAndBucket } from './support/databases-and-bucket';
import { SERVER_IS_ANOTHER_USER } from './support/local-bucket';
import { runLocally } from './support/local-pipeline';

/** Enough rows for files of more than one 256 KiB write each (UNLOAD's emulator flushes so). */
const ROWS = 30_000;
const TABLE = `(id bigint PRIMARY KEY, note text, amount numeric(38,10), placed timestamptz,
                flag boolean, ratio double precision)`;

let ground: DatabasesAndBucket;

// Only where the tests run as root does the server run as another OS user, who can be kept out.
describe.runIf(SERVER_IS_ANOTHER_USER)(
  'a local run whose target server cannot read the bucket folder',
  () => {
    beforeAll(async () => {
      ground = await databasesAndBucket('hidden-bucket', 'hidden');
      await ground.source.query(`
      CREATE SCHEMA sales;
      CREATE TABLE sales.orders ${TABLE};
      INSERT INTO sales.orders
      SELECT g, CASE g % 6 WHEN 0 THEN NULL WHEN 1 THEN '' WHEN 2 THEN E'pipe | back\\\\slash \\\\N'
                           WHEN 3 THEN E'tab\\there\\r\\nnew line' WHEN 4 THEN 'Grüße 🎉 ''q'' "d"'
                           ELSE repeat('x', g % 300) END,
             g * 1.0000000001, timestamptz '2026-01-01 00:00:00+00' + g * interval '1 minute',
             g % 2 = 0, g / 7.0
      FROM generate_series(1, ${ROWS}) g;`);
      await ground.target.query(`
      CREATE TABLE public.orders ${TABLE};
      INSERT INTO public.orders (id, note) VALUES (1, 'old');
      ALTER TABLE public.orders OWNER TO ${ground.owner};`);
    });

    afterAll(async () => {
      if (ground.s3Dir) await rm(ground.s3Dir, { recursive: true, force: true });
    });

    it('syncs through the copies in the target database, byte for byte, and leaves none behind', async () => {
      // The server really is kept out: it cannot even list the folder.
      await expect(ground.target.query('SELECT pg_ls_dir($1)', [ground.s3Dir])).rejects.toThrow(
        /permission denied/i,
      );
      const summary = await runLocally({
        ...ground.runOn,
        config: {
          tables: [{ source: 'sales.orders', target: 'public.orders', strategy: 'rename' }],
          locks: { lockTimeoutMs: 200, pollIntervalSeconds: 1, maxWaitSeconds: 30 },
        },
      });
      expect(summary.error).toBeNull();
      expect(summary.status).toBe('SUCCEEDED');
      expect(summary.tables.map((table) => [table.status, table.rows])).toEqual([
        ['swapped', ROWS],
      ]);
      // Every value, as PostgreSQL prints it, on both sides.
      const digest = (client: pg.Client, table: string) =>
        client
          .query(`SELECT md5(string_agg(t::text, E'\\n' ORDER BY id)) AS digest FROM ${table} t`)
          .then((result) => result.rows[0].digest as string);
      expect(await digest(ground.target, 'public.orders')).toBe(
        await digest(ground.source, 'sales.orders'),
      );
      // The run's clean-up deleted its files, and with them their copies in the database.
      const { rows } = await ground.target.query(
        'SELECT count(*)::int AS n FROM aws_s3_local.objects WHERE bucket = $1',
        [LOCAL_BUCKET],
      );
      expect(rows).toEqual([{ n: 0 }]);
    }, 120_000);
  },
);
