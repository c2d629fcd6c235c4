/**
 * The preflight names what the pipeline's role lacks on a live table's schema, run as a real
 * non-superuser login role (as on Aurora): USAGE to reach the table, and CREATE where the swap
 * moves a table into the schema (rename, and every first publication). Without these the swap
 * itself would fail with "permission denied for schema" after all the loading was done.
 */
import type pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import type { PgSqlClient } from '../lambdas/adapters/pg-sql-client';
import { PreflightError } from '../lambdas/core/errors';
import type { QualifiedName } from '../lambdas/core/identifiers';
import { STAGING_SCHEMA } from '../lambdas/core/schema/admin';
import { attemptSwap } from '../lambdas/core/swap/engine';
import { buildSwapPlan } from '../lambdas/core/swap/plan';
import { preflight } from '../lambdas/core/swap/preflight';
import type { SwapStrategy } from '../lambdas/core/swap/types';
import { freshDatabase, type TestDatabase } from './support/db';
import { pipelineSession, uniqueRoles } from './support/swap-fixtures';

const roles = uniqueRoles('owner', 'pipeline');
const ORDERS: QualifiedName = { schema: 'Sales Dept', name: 'orders' };
const REGIONS: QualifiedName = { schema: 'Sales Dept', name: 'regions' }; // not there yet

let db: TestDatabase;
let admin: pg.Client;
let pipeline: pg.Client;
let sql: PgSqlClient;

function swap(live: QualifiedName, strategy: SwapStrategy) {
  return { live, staging: { schema: STAGING_SCHEMA, name: `${live.name}_next` }, strategy };
}

async function problems(...tables: ReturnType<typeof swap>[]): Promise<string[]> {
  const error = await preflight(sql, tables).catch((caught: unknown) => caught);
  if (error === undefined) return [];
  if (!(error instanceof PreflightError)) throw error;
  return [...error.problems];
}

beforeAll(async () => {
  db = await freshDatabase();
  admin = await db.connect('test-admin');
  // A schema and table users built, owned by a user role the pipeline is a member of; the
  // schema itself grants nothing to anyone yet.
  await admin.query(`
    CREATE ROLE ${roles.owner};
    CREATE SCHEMA "Sales Dept";
    CREATE TABLE "Sales Dept".orders (id int PRIMARY KEY);
    ALTER TABLE "Sales Dept".orders OWNER TO ${roles.owner};`);
  ({ client: pipeline, sql } = await pipelineSession(db, roles.pipeline, [roles.owner]));
});

describe('the preflight, run as the pipeline role, on the live tables schemas', () => {
  it('runs as a login role that is not a superuser, not as a superuser that SET ROLE', async () => {
    const { rows } = await pipeline.query(
      `SELECT session_user::text AS session, current_user::text AS current,
              (SELECT rolsuper FROM pg_roles WHERE rolname = session_user) AS superuser`,
    );
    expect(rows[0]).toEqual({ session: roles.pipeline, current: roles.pipeline, superuser: false });
  });

  it('names missing USAGE and CREATE, instead of failing on "permission denied for schema"', async () => {
    expect(await problems(swap(ORDERS, 'rename'))).toEqual([
      expect.stringContaining(`its owner ${roles.owner} has no CREATE on schema "Sales Dept"`),
      `the pipeline's database role ${roles.pipeline} has no USAGE on schema "Sales Dept", so it cannot reach the live tables there; run GRANT USAGE ON SCHEMA "Sales Dept" TO ${roles.pipeline}.`,
      `the pipeline's database role ${roles.pipeline} has no CREATE on schema "Sales Dept", which publishing "Sales Dept".orders needs (strategy "rename", and a first run of any strategy, move the new table into the schema); run GRANT CREATE ON SCHEMA "Sales Dept" TO ${roles.pipeline}.`,
    ]);
  });

  it('asks for CREATE only where a table moves into the schema: rename, or a first run', async () => {
    await admin.query(`GRANT USAGE ON SCHEMA "Sales Dept" TO ${roles.pipeline}`);
    expect(await problems(swap(ORDERS, 'truncate'))).toEqual([]);
    expect(await problems(swap(ORDERS, 'merge'))).toEqual([]);
    expect(await problems(swap(ORDERS, 'rename'), swap(REGIONS, 'truncate'))).toEqual([
      // Rename hands the new version to the owner, which ALTER TABLE ... OWNER TO allows only
      // when the owner may create in the schema.
      `"Sales Dept".orders: its owner ${roles.owner} has no CREATE on schema "Sales Dept", which handing the new version to it (ALTER TABLE ... OWNER TO) needs; run GRANT CREATE ON SCHEMA "Sales Dept" TO ${roles.owner}.`,
      expect.stringContaining(
        'has no CREATE on schema "Sales Dept", which publishing "Sales Dept".orders, "Sales Dept".regions needs',
      ),
    ]);
  });

  it('is right: without CREATE the swap fails on the schema, with it the first run publishes', async () => {
    await pipeline.query(`CREATE TABLE ${STAGING_SCHEMA}.regions_next (id int)`);
    const plan = buildSwapPlan([swap(REGIONS, 'rename')], { runId: 'run-1' });
    const refused = await attemptSwap(sql, plan).catch((error: unknown) => error);
    expect(String(refused)).toMatch(/permission denied for schema "?Sales Dept"?/);

    // Through membership, as a user might grant it: the owner role gets CREATE.
    await admin.query(`GRANT CREATE ON SCHEMA "Sales Dept" TO ${roles.owner}`);
    expect(await problems(swap(ORDERS, 'rename'), swap(REGIONS, 'rename'))).toEqual([]);
    expect(await attemptSwap(sql, plan)).toMatchObject({ status: 'swapped' });
    const { rows } = await admin.query(
      `SELECT to_regclass('"Sales Dept".regions') IS NOT NULL AS live`,
    );
    expect(rows[0].live).toBe(true);
  });

  it('asks for CREATE on the schemas of views on the table, which rename re-creates', async () => {
    await admin.query(`
      CREATE SCHEMA "Reports";
      GRANT USAGE ON SCHEMA "Reports" TO ${roles.owner};
      CREATE VIEW "Reports".order_ids AS SELECT id FROM "Sales Dept".orders;
      ALTER VIEW "Reports".order_ids OWNER TO ${roles.owner};`);
    expect(await problems(swap(ORDERS, 'rename'))).toEqual([
      `"Sales Dept".orders: view "Reports".order_ids (owner ${roles.owner}) cannot be re-pointed to the new version: CREATE OR REPLACE VIEW needs CREATE on schema "Reports", which neither its owner nor the pipeline's role has; run GRANT CREATE ON SCHEMA "Reports" TO ${roles.owner}.`,
    ]);
    expect(await problems(swap(ORDERS, 'merge'))).toEqual([]); // merge leaves views alone
    // What the swap would meet: replacing a view one owns still needs CREATE on its schema.
    const replace =
      'CREATE OR REPLACE VIEW "Reports".order_ids AS SELECT id FROM "Sales Dept".orders';
    await expect(pipeline.query(replace)).rejects.toThrow(/permission denied for schema Reports/);
    await admin.query(`GRANT CREATE ON SCHEMA "Reports" TO ${roles.pipeline}`);
    expect(await problems(swap(ORDERS, 'rename'))).toEqual([]);
    await pipeline.query(replace);
  });

  it('names a schema that does not exist', async () => {
    expect(await problems(swap({ schema: 'Nowhere', name: 't' }, 'merge'))).toEqual([
      `schema "Nowhere" does not exist, so "Nowhere".t cannot be published there; create it (CREATE SCHEMA "Nowhere", then GRANT USAGE, CREATE ON SCHEMA "Nowhere" TO ${roles.pipeline}) or correct the target's name.`,
    ]);
  });

  it('on schema public, follows the server: PostgreSQL 15 stopped granting CREATE to everyone', async () => {
    const first = swap({ schema: 'public', name: 'first_table' }, 'truncate');
    const found = await problems(first);
    if (db.major >= 15) {
      expect(found).toEqual([
        expect.stringContaining(`run GRANT CREATE ON SCHEMA public TO ${roles.pipeline}.`),
      ]);
    } else {
      expect(found).toEqual([]); // PUBLIC still has CREATE on public before 15
    }
    // The grant a user gives on 15 and later, or the revoke a careful 14 has: same answer.
    await admin.query('REVOKE CREATE ON SCHEMA public FROM PUBLIC');
    expect(await problems(first)).toHaveLength(1);
    await admin.query(`GRANT CREATE ON SCHEMA public TO ${roles.pipeline}`);
    expect(await problems(first)).toEqual([]);
  });
});
