/**
 * The preflight: before any data moves, what would make a swap fail or lose something users
 * built, named with what to do (a PreflightError listing every problem). The same checks of
 * what rename cannot carry run again inside the swap, under its locks.
 */
import { PreflightError } from '../errors';
import { displayIdentifier, displayQualified } from '../identifiers';
import { ADMIN_SCHEMA, STAGING_SCHEMA } from '../schema/admin';
import type { SqlClient } from '../sql-client';
import { isLimitlessDatabase, limitlessProblems, type PreflightTable } from './limitless-preflight';
import { mayTerminate, type OnMaxWaitSetting } from './policy';
import type { TableSwap } from './types';

/** What the rename strategy cannot carry over, and what to do instead. */
const RENAME_ADVICE: Readonly<Record<string, string>> = {
  'materialized view':
    'use strategy "truncate" or "merge", which keep the table itself (then REFRESH the materialized view), or drop the materialized view',
  'referencing foreign key':
    'use strategy "merge" (rows still referenced must stay in the source), or drop the foreign key',
  'foreign key':
    'use strategy "truncate" or "merge", which keep the constraint, or drop the foreign key',
  rule: 'use strategy "truncate" or "merge", which keep the table the rule is bound to, or drop the rule',
  'policy on another table':
    'use strategy "truncate" or "merge", which keep the table the policy reads; or have the policy read it through a view, which rename re-points',
  trigger: 'use strategy "truncate" or "merge", which keep the trigger, or drop the trigger',
  'function using the row type':
    'use strategy "truncate" or "merge", which keep the table\'s row type',
  'table using the row type':
    'use strategy "truncate" or "merge", which keep the table\'s row type',
  'extended statistics': 'use strategy "truncate" or "merge", or drop the statistics object',
  'unlogged table':
    'use strategy "truncate" or "merge", or make the table logged (ALTER TABLE ... SET LOGGED)',
  tablespace:
    'use strategy "truncate" or "merge", or move the table and its indexes to the database\'s default tablespace (ALTER TABLE ... SET TABLESPACE pg_default)',
  'inheritance parent': 'use strategy "truncate" or "merge"',
  'inheriting table': 'use strategy "truncate" or "merge"',
};

export interface PreflightOptions {
  /** Check the staging tables too (their columns against what depends on live). */
  readonly withStaging?: boolean;
  /** With 'terminate', the pipeline's role must be allowed to end other sessions. */
  readonly onMaxWait?: OnMaxWaitSetting;
}

/**
 * Finds, before any data moves, what would make a swap fail or lose something users built,
 * and throws a PreflightError that names each problem and a strategy that works.
 */
export async function preflight(
  db: SqlClient,
  tables: readonly PreflightTable[],
  options: PreflightOptions = {},
): Promise<void> {
  const problems: string[] = [];
  const [role] = await db.query<{
    name: string;
    seesAll: boolean;
    canSignal: boolean;
    serverVersion: number;
  }>(
    `SELECT current_user AS name,
            pg_has_role(current_user, 'pg_read_all_stats', 'USAGE') AS "seesAll",
            pg_has_role(current_user, 'pg_signal_backend', 'USAGE') AS "canSignal",
            current_setting('server_version_num')::int AS "serverVersion"`,
  );
  if (!role!.seesAll) {
    problems.push(
      `the pipeline's database role ${role!.name} cannot see how long other sessions have held their locks, so every reader would look like a long blocker; run GRANT pg_read_all_stats TO ${role!.name}.`,
    );
  }
  if (mayTerminate(options.onMaxWait) && !role!.canSignal) {
    problems.push(
      `onMaxWait says "terminate", but the pipeline's database role ${role!.name} may not end other sessions; run GRANT pg_signal_backend TO ${role!.name}, or set onMaxWait to "fail" (for every class).`,
    );
  }
  // FOR TABLES IN SCHEMA (PostgreSQL 15+, pg_publication_namespace) over the staging schema
  // would publish every load into staging, tables a subscriber does not have.
  if (role!.serverVersion >= 150000) {
    const publications = await db.query<{ publication: string }>(
      `SELECT quote_ident(p.pubname) AS publication
       FROM pg_publication_namespace pn
       JOIN pg_publication p ON p.oid = pn.pnpubid
       JOIN pg_namespace n ON n.oid = pn.pnnspid
       WHERE n.nspname = :schema ORDER BY p.pubname`,
      { schema: STAGING_SCHEMA },
    );
    for (const { publication } of publications) {
      problems.push(
        `publication ${publication} publishes the staging schema ${STAGING_SCHEMA} (FOR TABLES IN SCHEMA), so every load into staging would be replicated; run ALTER PUBLICATION ${publication} DROP TABLES IN SCHEMA ${STAGING_SCHEMA}.`,
      );
    }
  }
  const schemas = await schemaPrivilegeProblems(db, tables, role!.name);
  problems.push(...schemas.problems);
  if (await isLimitlessDatabase(db)) problems.push(...(await limitlessProblems(db, tables)));
  for (const table of tables) {
    // Named above; looking the table up would fail with "permission denied for schema".
    if (schemas.unreachable.has(table.live.schema)) continue;
    const live = displayQualified(table.live);
    const liveParameters = { schema: table.live.schema, name: table.live.name };
    const [exists] = await db.query<{ exists: boolean; partitioned: boolean }>(
      `SELECT c.oid IS NOT NULL AS exists, coalesce(c.relkind = 'p', false) AS partitioned
       FROM (SELECT to_regclass(format('%I.%I', :schema::text, :name::text)) AS oid) r
       LEFT JOIN pg_class c ON c.oid = r.oid`,
      liveParameters,
    );
    if (!exists?.exists) continue; // a first publication: nothing is there to lose
    // Strategy "rename" on a partitioned table replaces its changed partitions one by one
    // (../partitions): each is checked, under the swap's locks, as rename checks a table.
    if (table.strategy === 'rename' && !exists.partitioned) {
      const dependents = await db.query<{ kind: string; object: string }>(
        `SELECT kind, object FROM ${ADMIN_SCHEMA}.dependents(format('%I.%I', :schema::text, :name::text)::regclass)
         WHERE NOT carried`,
        liveParameters,
      );
      for (const dependent of dependents) {
        problems.push(
          `${live}: ${dependent.object} (${dependent.kind}) cannot be carried over by strategy "rename"; ${RENAME_ADVICE[dependent.kind] ?? 'use strategy "truncate" or "merge"'}.`,
        );
      }
      const roles = await db.query<{ role: string; why: string }>(
        `SELECT DISTINCT role, why FROM (
           SELECT pg_get_userbyid(c.relowner) AS role, 'owns the table' AS why
           FROM pg_class c WHERE c.oid = format('%I.%I', :schema::text, :name::text)::regclass
           UNION ALL
           SELECT pg_get_userbyid(v.relowner), 'owns view ' || v.oid::regclass::text
           FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid JOIN pg_class v ON v.oid = r.ev_class
           WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
             AND d.refobjid = format('%I.%I', :schema::text, :name::text)::regclass AND v.relkind = 'v'
           UNION ALL
           SELECT pg_get_userbyid(pub.pubowner), 'owns publication ' || quote_ident(pub.pubname)
           FROM pg_publication_rel pr JOIN pg_publication pub ON pub.oid = pr.prpubid
           WHERE pr.prrelid = format('%I.%I', :schema::text, :name::text)::regclass
           UNION ALL
           SELECT p.grantor, 'granted ' || p.privilege || ' to ' || p.grantee
           FROM ${ADMIN_SCHEMA}.privileges(format('%I.%I', :schema::text, :name::text)::regclass) p
         ) needed
         -- Before PostgreSQL 16 every member may SET ROLE; 16 added the SET option to
         -- memberships (and the 'SET' privilege type, unknown to 14 and 15).
         WHERE NOT pg_has_role(current_user, role, 'USAGE')
            OR (current_setting('server_version_num')::int >= 160000
                AND NOT pg_has_role(current_user, role, 'SET'))`,
        liveParameters,
      );
      for (const role of roles) {
        problems.push(
          `${live}: the pipeline's database role must act as role ${role.role} (which ${role.why}) to carry it over; run GRANT ${role.role} TO <pipeline role>.`,
        );
      }
      // CREATE OR REPLACE VIEW checks CREATE on the view's schema for the role running it, as
      // CREATE VIEW does (DefineView resolves the name with
      // RangeVarGetAndCheckCreationNamespace), even though the view exists and is kept.
      const views = await db.query<{ view: string; owner: string; schema: string }>(
        `SELECT DISTINCT v.oid::regclass::text AS view, quote_ident(pg_get_userbyid(v.relowner)) AS owner,
                quote_ident(n.nspname) AS schema
         FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid JOIN pg_class v ON v.oid = r.ev_class
         JOIN pg_namespace n ON n.oid = v.relnamespace
         WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
           AND d.refobjid = format('%I.%I', :schema::text, :name::text)::regclass
           AND v.relkind = 'v' AND r.rulename = '_RETURN'
           AND NOT has_schema_privilege(current_user, v.relnamespace, 'CREATE')
         ORDER BY 1`,
        liveParameters,
      );
      for (const view of views) {
        problems.push(
          `${live}: view ${view.view} (owner ${view.owner}) cannot be re-pointed to the new version: CREATE OR REPLACE VIEW needs CREATE on schema ${view.schema}, which neither its owner nor the pipeline's role has; run GRANT CREATE ON SCHEMA ${view.schema} TO ${view.owner}.`,
        );
      }
      if (options.withStaging) {
        const mismatches = await db.query<{
          dependent: string;
          column_name: string;
          problem: string;
        }>(
          `SELECT dependent, column_name, problem FROM ${ADMIN_SCHEMA}.staging_mismatches(
             format('%I.%I', :schema::text, :name::text)::regclass,
             format('%I.%I', :stagingSchema::text, :stagingName::text)::regclass)`,
          {
            ...liveParameters,
            stagingSchema: table.staging.schema,
            stagingName: table.staging.name,
          },
        );
        for (const mismatch of mismatches) {
          problems.push(
            `${live}: ${mismatch.dependent} uses column ${mismatch.column_name}, which ${mismatch.problem}; it would no longer compile. Change the view, or keep the column in the source.`,
          );
        }
      }
    }
    if (table.strategy === 'rename' && exists.partitioned) {
      // DETACH and ATTACH PARTITION need the owner of the parent and of each partition; the
      // replacement is handed to the partition's owner, as rename hands a table to its owner.
      const owners = await db.query<{ role: string; of: string }>(
        `SELECT DISTINCT pg_get_userbyid(c.relowner) AS role,
                CASE WHEN c.relkind = 'p' THEN 'the partitioned table'
                     ELSE 'partition ' || format('%I.%I', n.nspname, c.relname) END AS of
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE (c.oid = format('%I.%I', :schema::text, :name::text)::regclass
                OR c.oid IN (SELECT inhrelid FROM pg_inherits
                             WHERE inhparent = format('%I.%I', :schema::text, :name::text)::regclass))
           AND (NOT pg_has_role(current_user, c.relowner, 'USAGE')
                OR (current_setting('server_version_num')::int >= 160000
                    AND NOT pg_has_role(current_user, c.relowner, 'SET')))
         ORDER BY 1, 2`,
        liveParameters,
      );
      for (const owner of owners) {
        problems.push(
          `${live}: the pipeline's database role must act as role ${displayIdentifier(owner.role)} (which owns ${owner.of}) to detach, replace and attach partitions; run GRANT ${displayIdentifier(owner.role)} TO <pipeline role>.`,
        );
      }
    }
    if (table.strategy === 'truncate' && exists.partitioned) {
      problems.push(
        `${live} is a partitioned table, which strategy "truncate" does not publish into (TRUNCATE would empty every partition and lock them all for the whole copy); remove "strategy" (the default, "rename", replaces only the partitions whose rows changed) or use "merge".`,
      );
    }
    if (table.strategy === 'truncate') {
      const references = await db.query<{ constraint: string }>(
        `SELECT format('%s on %s', quote_ident(conname), conrelid::regclass) AS constraint
         FROM pg_constraint
         WHERE contype = 'f' AND confrelid = format('%I.%I', :schema::text, :name::text)::regclass
           AND conrelid <> confrelid`,
        liveParameters,
      );
      for (const reference of references) {
        problems.push(
          `${live}: foreign key ${reference.constraint} references it, so TRUNCATE would fail; use strategy "merge", or drop the foreign key.`,
        );
      }
    }
  }
  if (problems.length > 0) {
    throw new PreflightError(
      `The swap cannot be done safely; nothing was changed:\n- ${problems.join('\n- ')}`,
      problems,
    );
  }
}

/**
 * What the pipeline's role needs on each live table's schema: USAGE to reach the table at all
 * ("Access to objects in a schema requires USAGE privilege on the schema", PostgreSQL docs,
 * ddl-schemas.html#DDL-SCHEMAS-PRIV), and CREATE where the swap moves a table into it: strategy
 * "rename" and every first publication end with ALTER TABLE ... SET SCHEMA <live schema>, and
 * "To change the schema of a table, you must also have CREATE privilege on the new schema"
 * (sql-altertable.html). PostgreSQL 15 stopped granting it on schema public to everyone ("Remove
 * PUBLIC creation permission on the public schema", release-15.html, Migration to Version 15),
 * so from 15 on public needs a grant too; checking the privilege itself holds on every major.
 * Rename also hands the new version to the live table's owner, and "to alter the owner ... that
 * role must have CREATE privilege on the table's schema" (sql-altertable.html); and it re-points
 * views with CREATE OR REPLACE VIEW, which checks CREATE on the view's schema even when
 * replacing. Read from the catalogs, which need no privilege on the schema.
 */
async function schemaPrivilegeProblems(
  db: SqlClient,
  tables: readonly TableSwap[],
  roleName: string,
): Promise<{ problems: string[]; unreachable: Set<string> }> {
  const role = displayIdentifier(roleName);
  const problems: string[] = [];
  const bySchema = new Map<
    string,
    { exists: boolean; usage: boolean; create: boolean; needCreate: string[] }
  >();
  for (const table of tables) {
    const [facts] = await db.query<{
      schemaExists: boolean;
      usage: boolean;
      create: boolean;
      liveExists: boolean;
      ownerWithoutCreate: string | null;
    }>(
      `SELECT n.oid IS NOT NULL AS "schemaExists",
              coalesce(has_schema_privilege(n.oid, 'USAGE'), false) AS usage,
              coalesce(has_schema_privilege(n.oid, 'CREATE'), false) AS "create",
              l.oid IS NOT NULL AS "liveExists",
              CASE WHEN NOT has_schema_privilege(l.relowner, n.oid, 'CREATE')
                   THEN pg_get_userbyid(l.relowner)::text END AS "ownerWithoutCreate"
       FROM (SELECT :schema::text AS wanted) w
       LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = w.wanted
       LEFT JOIN pg_catalog.pg_class l ON l.relnamespace = n.oid AND l.relname = :name::text`,
      { schema: table.live.schema, name: table.live.name },
    );
    const schema = bySchema.get(table.live.schema) ?? {
      exists: facts!.schemaExists,
      usage: facts!.usage,
      create: facts!.create,
      needCreate: [],
    };
    if (table.strategy === 'rename' || !facts!.liveExists) {
      schema.needCreate.push(displayQualified(table.live));
    }
    const live = displayQualified(table.live);
    if (table.strategy === 'rename' && facts!.ownerWithoutCreate !== null) {
      const owner = displayIdentifier(facts!.ownerWithoutCreate);
      problems.push(
        `${live}: its owner ${owner} has no CREATE on schema ${displayIdentifier(table.live.schema)}, which handing the new version to it (ALTER TABLE ... OWNER TO) needs; run GRANT CREATE ON SCHEMA ${displayIdentifier(table.live.schema)} TO ${owner}.`,
      );
    }
    bySchema.set(table.live.schema, schema);
  }
  const unreachable = new Set<string>();
  for (const [name, schema] of bySchema) {
    const shown = displayIdentifier(name);
    if (!schema.exists) {
      problems.push(
        `schema ${shown} does not exist, so ${schema.needCreate.join(', ')} cannot be published there; create it (CREATE SCHEMA ${shown}, then GRANT USAGE, CREATE ON SCHEMA ${shown} TO ${role}) or correct the target's name.`,
      );
      continue;
    }
    if (!schema.usage) {
      unreachable.add(name);
      problems.push(
        `the pipeline's database role ${role} has no USAGE on schema ${shown}, so it cannot reach the live tables there; run GRANT USAGE ON SCHEMA ${shown} TO ${role}.`,
      );
    }
    if (!schema.create && schema.needCreate.length > 0) {
      problems.push(
        `the pipeline's database role ${role} has no CREATE on schema ${shown}, which publishing ${schema.needCreate.join(', ')} needs (strategy "rename", and a first run of any strategy, move the new table into the schema); run GRANT CREATE ON SCHEMA ${shown} TO ${role}.`,
      );
    }
  }
  return { problems, unreachable };
}
