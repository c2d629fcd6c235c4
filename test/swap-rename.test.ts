/**
 * The rename strategy on real PostgreSQL: staging becomes live and everything users built on
 * the live table survives, checked the way those users would notice (querying as them).
 */
import type pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import type { PgSqlClient } from '../lambdas/adapters/pg-sql-client';
import { PreflightError } from '../lambdas/core/errors';
import type { QualifiedName } from '../lambdas/core/identifiers';
import { RETIRED_SCHEMA } from '../lambdas/core/schema/admin';
import {
  attemptSwap,
  dropExpiredVersions,
  prepareStaging,
  retiredVersions,
  rollback,
} from '../lambdas/core/swap/engine';
import { buildSwapPlan } from '../lambdas/core/swap/plan';
import { preflight } from '../lambdas/core/swap/preflight';
import type { TableSwap } from '../lambdas/core/swap/types';
import { freshDatabase, type TestDatabase } from './support/db';
import { asRole, createStaging, pipelineSession, uniqueRoles } from './support/swap-fixtures';

const roles = uniqueRoles('owner', 'analyst', 'viewer', 'auditor', 'pipeline');
const orders: QualifiedName = { schema: 'public', name: 'orders' };

let db: TestDatabase;
let admin: pg.Client;
let sql: PgSqlClient;
let pipeline: pg.Client;

async function swapTables(tables: TableSwap[], runId: string) {
  for (const table of tables) {
    await preflight(sql, [table], { withStaging: true });
    await prepareStaging(sql, table);
  }
  return attemptSwap(sql, buildSwapPlan(tables, { runId }));
}

async function oid(relation: string): Promise<number> {
  const { rows } = await admin.query<{ oid: number }>('SELECT $1::regclass::oid::int AS oid', [
    relation,
  ]);
  return rows[0]!.oid;
}

beforeAll(async () => {
  db = await freshDatabase();
  admin = await db.connect('test-admin');
  const { owner, analyst, viewer, auditor } = roles;
  await admin.query(`
    CREATE ROLE ${owner}; CREATE ROLE ${analyst}; CREATE ROLE ${viewer}; CREATE ROLE ${auditor};
    GRANT CREATE, USAGE ON SCHEMA public TO ${owner}, ${analyst};
    SET ROLE ${owner};
    CREATE TABLE public.orders (
      id integer PRIMARY KEY,
      region text NOT NULL,
      amount numeric(12,2) CHECK (amount >= 0),
      note text
    ) WITH (fillfactor = 90, autovacuum_vacuum_scale_factor = 0.05);
    CREATE INDEX orders_region_idx ON public.orders (region) WHERE amount > 0;
    COMMENT ON TABLE public.orders IS 'Orders, synced daily';
    COMMENT ON COLUMN public.orders.amount IS 'In euros';
    COMMENT ON INDEX public.orders_region_idx IS 'For the regional report';
    COMMENT ON CONSTRAINT orders_amount_check ON public.orders IS 'No refunds here';
    GRANT SELECT ON public.orders TO ${analyst} WITH GRANT OPTION;
    GRANT SELECT (id, region) ON public.orders TO ${auditor};
    ALTER TABLE public.orders ENABLE ROW LEVEL SECURITY;
    CREATE POLICY only_emea ON public.orders FOR SELECT TO ${analyst} USING (region = 'emea');
    CREATE POLICY auditors_all ON public.orders FOR SELECT TO ${auditor} USING (true);
    COMMENT ON POLICY only_emea ON public.orders IS 'Analysts see EMEA';
    INSERT INTO public.orders VALUES (1, 'emea', 10, 'old'), (2, 'apac', 20, 'old');
    RESET ROLE;
    SET ROLE ${analyst};
    CREATE VIEW public.big_orders WITH (security_barrier = true) AS
      SELECT id, region, amount FROM public.orders WHERE amount > 5 WITH LOCAL CHECK OPTION;
    COMMENT ON VIEW public.big_orders IS 'Orders over 5';
    GRANT SELECT ON public.big_orders TO ${viewer};
    CREATE VIEW public.big_order_count AS SELECT count(*) AS n FROM public.big_orders;
    GRANT SELECT ON public.big_order_count TO ${viewer};
    RESET ROLE;
    GRANT SELECT ON public.orders TO ${viewer};
    SET ROLE ${analyst};
    GRANT SELECT ON public.orders TO ${viewer};
    RESET ROLE;
  `);
  ({ sql, client: pipeline } = await pipelineSession(db, roles.pipeline, [owner, analyst]));
});

describe('preflight of the pipeline role', () => {
  it('asks for pg_read_all_stats, and pg_signal_backend when it may terminate', async () => {
    const bare = uniqueRoles('bare').bare;
    // The pipeline logs in as itself; to act as a role with no grants it must be a member.
    await admin.query(`CREATE ROLE ${bare}; GRANT ${bare} TO ${roles.pipeline}`);
    await pipeline.query(`SET ROLE ${bare}`);
    try {
      const error = await preflight(sql, [], { onMaxWait: 'terminate' }).catch((e: unknown) => e);
      expect((error as PreflightError).problems).toEqual([
        expect.stringContaining(`run GRANT pg_read_all_stats TO ${bare}`),
        expect.stringContaining(
          `run GRANT pg_signal_backend TO ${bare}, or set onMaxWait to "fail"`,
        ),
      ]);
    } finally {
      await pipeline.query(`SET ROLE ${roles.pipeline}`);
    }
    await expect(preflight(sql, [], { onMaxWait: 'terminate' })).resolves.toBeUndefined();
  });
});

describe('rename swap', () => {
  it('publishes staging and carries over every dependent, exactly', async () => {
    const before = {
      view: await oid('public.big_orders'),
      viewOnView: await oid('public.big_order_count'),
      privileges: (
        await admin.query(
          `SELECT * FROM redshift_sync.privileges('public.orders') ORDER BY 1, 2, 3, 4`,
        )
      ).rows,
      live: await oid('public.orders'),
    };
    const staging = await createStaging(
      pipeline,
      orders,
      'orders_run1',
      `VALUES (1, 'emea', 11, 'new'), (3, 'emea', 30, 'new'), (4, 'apac', 1, 'new')`,
    );

    const attempt = await swapTables([{ live: orders, staging, strategy: 'rename' }], 'run-1');

    expect(attempt).toMatchObject({ status: 'swapped' });
    if (attempt.status !== 'swapped') return;
    expect(attempt.result.tables[0]!.result).toMatchObject({
      created: false,
      viewsRepointed: 1,
      indexesCarried: 2,
    });

    // New data is live, under the old name, in a new table.
    expect(await oid('public.orders')).not.toBe(before.live);
    const { rows: live } = await admin.query('SELECT id, note FROM public.orders ORDER BY id');
    expect(live).toEqual([
      { id: 1, note: 'new' },
      { id: 3, note: 'new' },
      { id: 4, note: 'new' },
    ]);

    // Views: same OIDs, now reading the new version; options, owner, comments, grants kept.
    expect(await oid('public.big_orders')).toBe(before.view);
    expect(await oid('public.big_order_count')).toBe(before.viewOnView);
    expect(await asRole(admin, roles.viewer, 'SELECT n FROM public.big_order_count')).toEqual([
      { n: '2' },
    ]);
    const { rows: view } = await admin.query(
      `SELECT c.reloptions, pg_get_userbyid(c.relowner) AS owner, obj_description(c.oid, 'pg_class') AS comment
       FROM pg_class c WHERE c.oid = 'public.big_orders'::regclass`,
    );
    expect(view[0]).toEqual({
      reloptions: ['security_barrier=true', 'check_option=local'],
      owner: roles.analyst,
      comment: 'Orders over 5',
    });

    // Privileges: identical, grantors and grant options included; and they work.
    const { rows: after } = await admin.query(
      `SELECT * FROM redshift_sync.privileges('public.orders') ORDER BY 1, 2, 3, 4`,
    );
    expect(after).toEqual(before.privileges);
    expect(after).toContainEqual({
      column_name: null,
      grantor: roles.analyst,
      grantee: roles.viewer,
      privilege: 'SELECT',
      grantable: false,
    });
    expect(
      await asRole(admin, roles.auditor, 'SELECT id, region FROM public.orders ORDER BY id'),
    ).toHaveLength(3);
    expect(await asRole(admin, roles.auditor, 'SELECT amount FROM public.orders')).toMatchObject({
      code: '42501',
    });

    // Row-level security and its policies.
    expect(await asRole(admin, roles.analyst, 'SELECT id FROM public.orders ORDER BY id')).toEqual([
      { id: 1 },
      { id: 3 },
    ]);

    // Owner, comments, storage options, indexes and constraints under their names.
    const { rows: table } = await admin.query(`
      SELECT pg_get_userbyid(c.relowner) AS owner, c.reloptions,
             obj_description(c.oid, 'pg_class') AS comment,
             col_description(c.oid, 3) AS amount_comment,
             obj_description('public.orders_region_idx'::regclass, 'pg_class') AS index_comment,
             pg_get_indexdef('public.orders_region_idx'::regclass) AS index_definition,
             (SELECT array_agg(conname::text ORDER BY conname) FROM pg_constraint WHERE conrelid = c.oid) AS constraints,
             (SELECT obj_description(oid, 'pg_constraint') FROM pg_constraint
              WHERE conrelid = c.oid AND conname = 'orders_amount_check') AS constraint_comment,
             (SELECT obj_description(oid, 'pg_policy') FROM pg_policy
              WHERE polrelid = c.oid AND polname = 'only_emea') AS policy_comment
      FROM pg_class c WHERE c.oid = 'public.orders'::regclass`);
    expect(table[0]).toEqual({
      owner: roles.owner,
      reloptions: ['fillfactor=90', 'autovacuum_vacuum_scale_factor=0.05'],
      comment: 'Orders, synced daily',
      amount_comment: 'In euros',
      index_comment: 'For the regional report',
      index_definition:
        'CREATE INDEX orders_region_idx ON public.orders USING btree (region) WHERE (amount > (0)::numeric)',
      constraints: ['orders_amount_check', 'orders_pkey'],
      constraint_comment: 'No refunds here',
      policy_comment: 'Analysts see EMEA',
    });

    // The old version is retired, whole, for rollback.
    const versions = await retiredVersions(sql, orders);
    expect(versions).toHaveLength(1);
    const { rows: retired } = await admin.query(
      `SELECT count(*)::int AS n FROM ${RETIRED_SCHEMA}.${versions[0]!.retiredTable}`,
    );
    expect(retired[0]!.n).toBe(2);
  });

  it('refuses, before anything moves, a materialized view or an incoming foreign key', async () => {
    await admin.query(`
      CREATE TABLE public.regions (code text PRIMARY KEY, name text);
      INSERT INTO public.regions VALUES ('emea', 'Europe');
      CREATE TABLE public.offices (id int, region text REFERENCES public.regions (code));
      CREATE MATERIALIZED VIEW public.region_names AS SELECT name FROM public.regions;
      ALTER TABLE public.regions OWNER TO ${roles.owner};
      ALTER MATERIALIZED VIEW public.region_names OWNER TO ${roles.owner};`);
    const regions = { schema: 'public', name: 'regions' };
    const error = await preflight(sql, [
      { live: regions, staging: regions, strategy: 'rename' },
    ]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PreflightError);
    expect((error as PreflightError).problems).toEqual([
      expect.stringMatching(
        /^public\.regions: materialized view public\.region_names .* use strategy "truncate" or "merge"/,
      ),
      expect.stringMatching(
        /^public\.regions: constraint offices_region_fkey on table public\.offices \(referencing foreign key\) .* use strategy "merge"/,
      ),
    ]);
  });

  it('names a view that would no longer compile against the new columns', async () => {
    const staging = await createStaging(
      pipeline,
      orders,
      'orders_retyped',
      'SELECT * FROM public.orders',
    );
    await pipeline.query(
      `ALTER TABLE redshift_sync_staging.orders_retyped ALTER COLUMN amount TYPE float8`,
    );
    const error = await preflight(sql, [{ live: orders, staging, strategy: 'rename' }], {
      withStaging: true,
    }).catch((e: unknown) => e);
    expect((error as PreflightError).problems).toEqual([
      'public.orders: view public.big_orders uses column amount, which is numeric(12,2) in the live table but double precision in staging; it would no longer compile. Change the view, or keep the column in the source.',
    ]);
    await pipeline.query('DROP TABLE redshift_sync_staging.orders_retyped');
  });

  it('rolls back to the previous version with its dependents, and keeps the last N versions', async () => {
    const staging = await createStaging(
      pipeline,
      orders,
      'orders_run2',
      `VALUES (9, 'emea', 99, 'run2')`,
    );
    expect(
      await swapTables([{ live: orders, staging, strategy: 'rename' }], 'run-2'),
    ).toMatchObject({
      status: 'swapped',
    });
    expect(await asRole(admin, roles.viewer, 'SELECT id FROM public.big_orders')).toEqual([
      { id: 9 },
    ]);

    const restored = await rollback(sql, orders, { runId: 'rollback-1' });

    expect(restored).toMatchObject({ status: 'swapped' });
    expect(
      await asRole(admin, roles.viewer, 'SELECT id FROM public.big_orders ORDER BY id'),
    ).toEqual([{ id: 1 }, { id: 3 }]);
    expect(
      await asRole(admin, roles.analyst, 'SELECT note FROM public.orders ORDER BY id'),
    ).toEqual([{ note: 'new' }, { note: 'new' }]);
    // run-2's version was retired by the rollback; run-1's version left retirement.
    expect((await retiredVersions(sql, orders)).map((v) => v.runId)).toEqual([
      'rollback-1',
      'run-1',
    ]);

    expect(await dropExpiredVersions(sql, orders, { keep: 1 })).toEqual({
      dropped: [expect.any(String)],
      leftForLater: [],
      blockedByDependents: [],
    });
    expect((await retiredVersions(sql, orders)).map((v) => v.runId)).toEqual(['rollback-1']);
  });
});
