/**
 * Stand-ins for the cluster-wide views of Aurora PostgreSQL Limitless Database over a plain
 * PostgreSQL, so that tests run the pipeline's Limitless code paths on a real server. Installed
 * by a superuser into one database, in schema `rds_aurora`, with the documented column names
 * (https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/limitless-monitoring-views.html):
 * - `limitless_stat_activity`: `subcluster_id`, `subcluster_type` (router or shard),
 *   `distributed_session_id`, `distributed_session_state` (coordinator, participant, or NULL for
 *   a process that is not part of a distributed session), `distributed_query_id`,
 *   `is_sso_query`, then pg_stat_activity's columns;
 * - `limitless_locks`: `subcluster_id`, `subcluster_type`, `distributed_session_id`, then
 *   pg_locks' columns, with the database and relation by name (`datname`, `relnspname`,
 *   `relname`) as the documented example shows them, since OIDs differ from node to node;
 *   `granted` and `fastpath` as in pg_locks (the documentation's example omits some columns);
 * - `limitless_tables`: `table_gid`, `local_oid`, `schema_name`, `table_name`, `table_status`,
 *   `table_type` (sharded, reference, standard), `distribution_key`
 *   (https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/limitless-creating-config.html).
 * One PostgreSQL server is one node, so where a process runs is what the test says
 * (`placeSession`): by default every process is on subcluster 1, a router, and a client backend
 * coordinates a distributed session of its own. A table is standard unless the test declares it
 * sharded or reference (`declareLimitlessTable`). `failWithDistributedDeadlock` makes the next
 * DDL statements fail with the error Limitless gives the victim of a distributed deadlock.
 * DDL that Limitless does not support is refused, as on a cluster (see LIMITLESS_UNSUPPORTED_DDL
 * and `shim_refuse_unsupported_table_ddl`), by every role: the pipeline's, the tests' superuser's alike.
 */
import type pg from 'pg';
import { type QualifiedName, quoteQualified } from '../../lambdas/core/identifiers';

export const LIMITLESS_SHIM_SCHEMA = 'rds_aurora';

/** What a table of a Limitless database is (rds_aurora.limitless_tables.table_type). */
export type LimitlessTableType = 'sharded' | 'reference' | 'standard';

/**
 * The error a transaction ended by distributed deadlock detection gets
 * (https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/limitless-query.deadlocks.html).
 * Its SQLSTATE is not documented: the stand-in raises it with the default one (P0001), so a
 * test passes only where the message alone is recognized.
 */
export const DISTRIBUTED_DEADLOCK_MESSAGE =
  'aborting transaction participating in a distributed deadlock';

const S = LIMITLESS_SHIM_SCHEMA;

const DDL_SUPPORT =
  'https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/limitless-reference.DDL-support.html';
const DDL_LIMITATIONS =
  'https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/limitless-reference.DDL-limitations.html';

/**
 * Commands the DDL support table marks "No" (checked in its stored copies, English and Chinese,
 * down to CREATE AGGREGATE, where the copies read here end), by PostgreSQL's command tag, less
 * those on shared objects (databases, tablespaces), which fire no event trigger.
 */
export const LIMITLESS_UNSUPPORTED_DDL: readonly string[] = [
  'ALTER AGGREGATE',
  'ALTER DEFAULT PRIVILEGES',
  'ALTER DOMAIN',
  'ALTER FOREIGN DATA WRAPPER',
  'ALTER FOREIGN TABLE',
  'ALTER LANGUAGE',
  'ALTER LARGE OBJECT',
  'ALTER MATERIALIZED VIEW',
  'ALTER POLICY',
  'ALTER PUBLICATION',
  'ALTER ROUTINE',
  'ALTER RULE',
  'ALTER SERVER',
  'ALTER STATISTICS',
  'ALTER SUBSCRIPTION',
  'ALTER TEXT SEARCH CONFIGURATION',
  'ALTER TEXT SEARCH DICTIONARY',
  'ALTER TEXT SEARCH PARSER',
  'ALTER TEXT SEARCH TEMPLATE',
  'ALTER TRIGGER',
  'ALTER USER MAPPING',
  'COMMENT',
  'CREATE ACCESS METHOD',
  'CREATE AGGREGATE',
];

/**
 * How the stand-in refuses them. Limitless's own wording is not documented, so this is the
 * stand-in's, with SQLSTATE 0A000 (feature_not_supported); tests match on what it names.
 */
export function unsupportedDdlMessage(what: string): string {
  return `${what} is not supported in Aurora PostgreSQL Limitless Database`;
}

const SQL_TAGS = LIMITLESS_UNSUPPORTED_DDL.map((tag) => `'${tag}'`).join(', ');

/** pg_stat_activity's columns on every major Aurora runs (14 to 17), datname first. */
const ACTIVITY_COLUMNS = [
  'datname',
  'datid',
  'pid',
  'leader_pid',
  'usesysid',
  'usename',
  'application_name',
  'client_addr',
  'client_hostname',
  'client_port',
  'backend_start',
  'xact_start',
  'query_start',
  'state_change',
  'wait_event_type',
  'wait_event',
  'state',
  'backend_xid',
  'backend_xmin',
  'query_id',
  'query',
  'backend_type',
];

export const LIMITLESS_SHIM_STATEMENTS: readonly string[] = [
  `CREATE SCHEMA IF NOT EXISTS ${S}`,
  `GRANT USAGE ON SCHEMA ${S} TO PUBLIC`,
  // Where the test put a process: one row per subcluster it runs on.
  `CREATE TABLE IF NOT EXISTS ${S}.shim_placements (
     pid int NOT NULL,
     subcluster_id text NOT NULL,
     subcluster_type text NOT NULL CHECK (subcluster_type IN ('router', 'shard')),
     distributed_session_state text CHECK (distributed_session_state IN ('coordinator', 'participant')),
     PRIMARY KEY (pid, subcluster_id))`,
  `CREATE TABLE IF NOT EXISTS ${S}.shim_table_types (
     schema_name name NOT NULL,
     table_name name NOT NULL,
     table_type text NOT NULL CHECK (table_type IN ('sharded', 'reference', 'standard')),
     distribution_key text,
     PRIMARY KEY (schema_name, table_name))`,
  `CREATE OR REPLACE VIEW ${S}.shim_processes AS
   SELECT a.pid, coalesce(p.subcluster_id, '1') AS subcluster_id,
          coalesce(p.subcluster_type, 'router') AS subcluster_type,
          CASE WHEN p.pid IS NOT NULL THEN p.distributed_session_state
               WHEN a.backend_type = 'client backend' THEN 'coordinator' END
            AS distributed_session_state
   FROM pg_stat_activity a
   LEFT JOIN ${S}.shim_placements p ON p.pid = a.pid`,
  `CREATE OR REPLACE VIEW ${S}.limitless_stat_activity AS
   SELECT s.subcluster_id, s.subcluster_type,
          CASE WHEN s.distributed_session_state IS NOT NULL
               THEN upper(lpad(to_hex(a.pid), 16, '0')) END AS distributed_session_id,
          s.distributed_session_state, NULL::bigint AS distributed_query_id,
          'f'::text AS is_sso_query,
          ${ACTIVITY_COLUMNS.map((column) => `a.${column}`).join(', ')}
   FROM pg_stat_activity a
   JOIN ${S}.shim_processes s ON s.pid = a.pid`,
  `CREATE OR REPLACE VIEW ${S}.limitless_locks AS
   SELECT coalesce(s.subcluster_id, '1') AS subcluster_id,
          coalesce(s.subcluster_type, 'router') AS subcluster_type,
          CASE WHEN s.distributed_session_state IS NOT NULL
               THEN upper(lpad(to_hex(l.pid), 16, '0')) END AS distributed_session_id,
          l.locktype, d.datname, n.nspname AS relnspname, c.relname,
          l.virtualtransaction, l.pid, l.mode, l.granted, l.fastpath
   FROM pg_locks l
   LEFT JOIN ${S}.shim_processes s ON s.pid = l.pid
   LEFT JOIN pg_database d ON d.oid = l.database
   LEFT JOIN pg_class c ON c.oid = l.relation
   LEFT JOIN pg_namespace n ON n.oid = c.relnamespace`,
  `CREATE OR REPLACE VIEW ${S}.limitless_tables AS
   SELECT c.oid::bigint AS table_gid, c.oid AS local_oid, n.nspname AS schema_name,
          c.relname AS table_name, 'active'::text AS table_status,
          coalesce(t.table_type, 'standard') AS table_type, t.distribution_key
   FROM pg_class c
   JOIN pg_namespace n ON n.oid = c.relnamespace
   LEFT JOIN ${S}.shim_table_types t ON t.schema_name = n.nspname AND t.table_name = c.relname
   WHERE c.relkind IN ('r', 'p')
     AND n.nspname NOT IN ('pg_catalog', 'information_schema', '${S}')
     AND n.nspname NOT LIKE 'pg_toast%'`,
  `GRANT SELECT ON ${S}.limitless_stat_activity, ${S}.limitless_locks, ${S}.limitless_tables TO PUBLIC`,
  // A sequence, not a table: nextval survives the rollback of the transaction it aborts.
  `CREATE SEQUENCE IF NOT EXISTS ${S}.shim_deadlock_victims MINVALUE 0 START 0`,
  `SELECT setval('${S}.shim_deadlock_victims', 0, true)`,
  `CREATE TABLE IF NOT EXISTS ${S}.shim_deadlock_budget (victims bigint NOT NULL)`,
  `CREATE OR REPLACE FUNCTION ${S}.shim_abort_distributed_deadlock() RETURNS event_trigger
   LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
   BEGIN
     IF nextval('${S}.shim_deadlock_victims') <= coalesce((SELECT max(victims) FROM ${S}.shim_deadlock_budget), 0) THEN
       RAISE EXCEPTION '${DISTRIBUTED_DEADLOCK_MESSAGE}';
     END IF;
   END $$`,
  `DROP EVENT TRIGGER IF EXISTS shim_limitless_distributed_deadlock`,
  `CREATE EVENT TRIGGER shim_limitless_distributed_deadlock ON ddl_command_start
   EXECUTE FUNCTION ${S}.shim_abort_distributed_deadlock()`,
  `CREATE OR REPLACE FUNCTION ${S}.shim_refuse_unsupported_ddl() RETURNS event_trigger
   LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
   BEGIN
     RAISE EXCEPTION '% is not supported in Aurora PostgreSQL Limitless Database', tg_tag
       USING ERRCODE = 'feature_not_supported', HINT = 'See ${DDL_SUPPORT}';
   END $$`,
  `DROP EVENT TRIGGER IF EXISTS shim_limitless_unsupported_ddl`,
  `CREATE EVENT TRIGGER shim_limitless_unsupported_ddl ON ddl_command_start
   WHEN TAG IN (${SQL_TAGS})
   EXECUTE FUNCTION ${S}.shim_refuse_unsupported_ddl()`,
  // Identity columns (CREATE TABLE, ALTER TABLE ADD GENERATED or ADD COLUMN ... IDENTITY) and
  // ALTER TABLE ... RENAME CONSTRAINT are forms of commands a tag cannot tell: the command's
  // objects are looked at once it is done, in its transaction, which the exception rolls back.
  // RENAME CONSTRAINT is the one ALTER TABLE whose object is a constraint.
  `CREATE OR REPLACE FUNCTION ${S}.shim_refuse_unsupported_table_ddl() RETURNS event_trigger
   LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
   DECLARE
     v_column text;
   BEGIN
     IF EXISTS (SELECT FROM pg_event_trigger_ddl_commands()
                WHERE command_tag = 'ALTER TABLE' AND object_type = 'table constraint') THEN
       RAISE EXCEPTION 'ALTER TABLE ... RENAME CONSTRAINT is not supported in Aurora PostgreSQL Limitless Database'
         USING ERRCODE = 'feature_not_supported', HINT = 'See ${DDL_LIMITATIONS}';
     END IF;
     SELECT format('%s.%I', c.objid::regclass, a.attname) INTO v_column
     FROM pg_event_trigger_ddl_commands() c
     JOIN pg_attribute a ON a.attrelid = c.objid
     WHERE c.classid = 'pg_class'::regclass AND a.attnum > 0 AND NOT a.attisdropped
       AND a.attidentity <> ''
     LIMIT 1;
     IF v_column IS NOT NULL THEN
       RAISE EXCEPTION 'IDENTITY column % is not supported in Aurora PostgreSQL Limitless Database', v_column
         USING ERRCODE = 'feature_not_supported', HINT = 'See ${DDL_LIMITATIONS}';
     END IF;
   END $$`,
  `DROP EVENT TRIGGER IF EXISTS shim_limitless_table_ddl`,
  `CREATE EVENT TRIGGER shim_limitless_table_ddl ON ddl_command_end
   WHEN TAG IN ('CREATE TABLE', 'ALTER TABLE')
   EXECUTE FUNCTION ${S}.shim_refuse_unsupported_table_ddl()`,
];

/** Installs the stand-in views; `client` must be a superuser's session on the database. */
export async function installLimitlessShims(client: pg.Client): Promise<void> {
  for (const statement of LIMITLESS_SHIM_STATEMENTS) await client.query(statement);
}

/** Removes them (the event trigger is database-wide, the rest lives in `rds_aurora`). */
export async function removeLimitlessShims(client: pg.Client): Promise<void> {
  for (const trigger of ['distributed_deadlock', 'unsupported_ddl', 'table_ddl']) {
    await client.query(`DROP EVENT TRIGGER IF EXISTS shim_limitless_${trigger}`);
  }
  await client.query(`DROP SCHEMA IF EXISTS ${S} CASCADE`);
}

/** Says that process `pid` runs on `subclusterId` (and nowhere else unless placed there too). */
export async function placeSession(
  client: pg.Client,
  pid: number,
  placement: {
    readonly subclusterId: string;
    readonly subclusterType: 'router' | 'shard';
    readonly state: 'coordinator' | 'participant' | null;
  },
): Promise<void> {
  await client.query(
    `INSERT INTO ${S}.shim_placements (pid, subcluster_id, subcluster_type, distributed_session_state)
     VALUES ($1, $2, $3, $4)
     ON CONFLICT (pid, subcluster_id) DO UPDATE
       SET subcluster_type = excluded.subcluster_type,
           distributed_session_state = excluded.distributed_session_state`,
    [pid, placement.subclusterId, placement.subclusterType, placement.state],
  );
}

/** Makes `table` a sharded or reference table in rds_aurora.limitless_tables. */
export async function declareLimitlessTable(
  client: pg.Client,
  table: QualifiedName,
  tableType: LimitlessTableType,
  distributionKey: string | null = null,
): Promise<void> {
  await client.query(
    `INSERT INTO ${S}.shim_table_types (schema_name, table_name, table_type, distribution_key)
     VALUES ($1, $2, $3, $4)
     ON CONFLICT (schema_name, table_name) DO UPDATE
       SET table_type = excluded.table_type, distribution_key = excluded.distribution_key`,
    [table.schema, table.name, tableType, distributionKey],
  );
  // Checked here so that a typo fails the test that made it, not a later assertion.
  await client.query('SELECT $1::regclass', [quoteQualified(table)]);
}

/**
 * The next `victims` DDL statements in the database (any session's) fail with the error
 * Limitless gives a transaction it ended to resolve a distributed deadlock.
 */
export async function failWithDistributedDeadlock(
  client: pg.Client,
  victims: number,
): Promise<void> {
  await client.query(`SELECT setval('${S}.shim_deadlock_victims', 0, true)`);
  await client.query(`DELETE FROM ${S}.shim_deadlock_budget`);
  await client.query(`INSERT INTO ${S}.shim_deadlock_budget (victims) VALUES ($1)`, [victims]);
}
