/**
 * The UNLOAD emulator's slices on a one-table query: each reads its own range of the table's
 * blocks (unload-blocks.ts), so every row is read once; any other query keeps the slices
 * reading every `slices`-th row of its order (emulator-unload-writer.test.ts).
 */
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StatementState } from '../lambdas/core/transfer/ports';
import { LocalWarehouse } from '../local/emulators/local-warehouse';
import { blockSplit } from '../local/emulators/unload-blocks';
import { freshDatabase } from './support/db';

const BUCKET = 'unload-bucket';
const CONTRACT = "DELIMITER AS '|' NULL AS '\\\\N' ESCAPE MANIFEST VERBOSE";

let s3Dir: string;
let source: pg.Client;
let sourceUrl: string;

beforeAll(async () => {
  s3Dir = await mkdtemp(join(tmpdir(), 'emulator-blocks-'));
  await chmod(s3Dir, 0o755);
  const db = await freshDatabase();
  sourceUrl = db.url;
  source = await db.connect('unload-blocks');
  await source.query('CREATE SCHEMA sales');
  // About 40 rows a block: 5,000 rows fill some 125 blocks.
  await source.query(
    `CREATE TABLE sales.orders AS
       SELECT g AS id, repeat('o', 150) || CASE WHEN g % 100 = 0 THEN E'\\n|' ELSE '' END AS note
         FROM generate_series(1, 5000) AS g`,
  );
  await source.query('CREATE VIEW sales.recent AS SELECT * FROM sales.orders WHERE id > 10');
  await source.query('CREATE TABLE sales.parts (id int) PARTITION BY RANGE (id)');
  await source.query(
    'CREATE TABLE sales.parts_1 PARTITION OF sales.parts FOR VALUES FROM (0) TO (100)',
  );
});

afterAll(async () => {
  await source?.end();
  await rm(s3Dir, { recursive: true, force: true });
});

describe('blockSplit', () => {
  it('splits a filtered scan of one table, whatever its select list computes per row', async () => {
    for (const query of [
      'SELECT id, note FROM sales.orders',
      'select id, upper(note) AS "Note" from "sales"."orders"',
      'SELECT id FROM sales.orders WHERE id > 10 -- a comment at the end',
      `SELECT id FROM sales.orders WHERE note <> 'order by' OR id IN (1, 2)`,
    ]) {
      expect(await blockSplit(source, query), query).not.toBeNull();
    }
  });

  it('does not split what is more than a scan of one table with a ctid', async () => {
    for (const query of [
      'SELECT id FROM sales.orders ORDER BY id',
      'SELECT count(*) FROM sales.orders',
      'SELECT DISTINCT note FROM sales.orders',
      'SELECT id, row_number() OVER () FROM sales.orders',
      'SELECT generate_series(1, 2), id FROM sales.orders',
      'SELECT id, (SELECT max(id) FROM sales.orders) FROM sales.orders',
      'SELECT id FROM sales.orders WHERE id = (SELECT min(id) FROM sales.orders)',
      'SELECT id FROM sales.orders LIMIT 10',
      'SELECT id FROM sales.orders o',
      'SELECT o.id FROM sales.orders o, sales.orders p WHERE o.id = p.id',
      'SELECT id FROM sales.recent',
      'SELECT id FROM sales.parts',
      'SELECT id FROM sales.orders UNION ALL SELECT id FROM sales.orders',
      'SELECT 1',
      'SELECT g FROM generate_series(1, 3) AS g',
    ]) {
      expect(await blockSplit(source, query), query).toBeNull();
    }
  });

  it('reads every row once over its ranges, the condition kept even after a line comment', async () => {
    const split = await blockSplit(source, 'SELECT id FROM sales.orders WHERE id % 3 = 0 -- note');
    expect(split!.blocks).toBeGreaterThan(100);
    const cuts = [0, 1, 50, split!.blocks];
    const ids: number[] = [];
    for (let range = 0; range < cuts.length; range += 1) {
      const to = range + 1 < cuts.length ? cuts[range + 1]! : null;
      const { rows } = await source.query<{ id: number }>(split!.rangeQuery(cuts[range]!, to));
      ids.push(...rows.map((row) => row.id));
    }
    expect(ids.sort((a, b) => a - b)).toEqual(
      Array.from({ length: 1666 }, (_, index) => 3 * (index + 1)),
    );
  });
});

describe('UNLOAD of one table on block ranges', () => {
  async function unload(slices: number, prefix: string): Promise<void> {
    const warehouse = new LocalWarehouse({ sourceUrl, s3Dir, slices });
    try {
      const statement = `UNLOAD ('SELECT id, note FROM sales.orders') TO 's3://${BUCKET}/${prefix}' IAM_ROLE 'r' ${CONTRACT}`;
      const id = await warehouse.submitBatch(['BEGIN', statement, 'COMMIT'], 'blocks');
      let state: StatementState = await warehouse.describe(id);
      while (state.state === 'running') {
        await new Promise((resolve) => setTimeout(resolve, 20));
        state = await warehouse.describe(id);
      }
      expect(state).toEqual({ state: 'done', status: 'FINISHED' });
    } finally {
      await warehouse.close();
    }
  }

  it("gives each slice the rows of its blocks, in the table's order, each row once; a value's LF is no record of its own", async () => {
    // Six slices on at most four sessions: two sessions read two slices each.
    await unload(6, 'blocks/six/');
    const manifest = JSON.parse(await readFile(join(s3Dir, BUCKET, 'blocks/six/manifest'), 'utf8'));
    const perSlice: number[][] = [];
    for (const entry of manifest.entries) {
      const key = entry.url.slice(`s3://${BUCKET}/`.length);
      const text = await readFile(join(s3Dir, BUCKET, key), 'utf8');
      // A record ends at an LF without ESCAPE's backslash before it.
      const records = text.split(/(?<!\\)\n/).filter(Boolean);
      expect(entry.meta.record_count).toBe(records.length);
      expect(entry.meta.content_length).toBe(Buffer.byteLength(text));
      perSlice.push(records.map((record) => Number(record.split('|')[0])));
    }
    expect(manifest.meta.record_count).toBe(5000);
    expect(perSlice).toHaveLength(6);
    // Ranges of about equal blocks; the last block is part full.
    for (const ids of perSlice) expect(ids.length).toBeGreaterThan(300);
    // The table was written in id order, so its blocks hold consecutive ids.
    expect(perSlice.flat()).toEqual(Array.from({ length: 5000 }, (_, index) => index + 1));
  });
});
