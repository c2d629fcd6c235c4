/**
 * What the preflight refuses on an Aurora PostgreSQL Limitless Database cluster, per table type
 * (rds_aurora.limitless_tables.table_type). Limitless has three
 * (https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/limitless-creating.html):
 * standard (the default, stored whole on one shard), sharded (split over the shards by a shard
 * key) and reference (copied to every shard). Per AWS's documentation:
 * - a table is created standard unless the session sets rds_aurora.limitless_create_table_mode
 *   (limitless-creating-config.html). The staging table is created that way, so strategy
 *   "rename" would put a standard table in the place of a sharded or reference one: the data
 *   would end up on one shard, and making it sharded again
 *   (rds_aurora.limitless_alter_table_type_sharded) moves every row;
 * - DELETE, UPDATE and INSERT ... SELECT are supported (limitless-reference.DML-support.html),
 *   except updating a shard key column: "Updating the shard key isn't supported", an UPDATE
 *   that SETs one fails with "Shard key column update is not supported"
 *   (limitless-reference.DML-limitations.html, UPDATE). Strategy "merge" and an increment in
 *   mode "merge" update every column outside their key (merge_rows, ../schema/publish-merge.ts),
 *   and every primary or unique key of a sharded table contains the shard key
 *   (limitless-reference.DDL-limitations.html, Constraints), so merging by the primary key never
 *   updates the shard key; a configured "primaryKey" must contain it too, or the swap would fail
 *   under its locks after the whole transfer. An increment in mode "append" only inserts (and
 *   with deletes "reconcile", deletes by key), which sets no column of a row already there;
 * - the DDL and DML limitations pages say nothing of TRUNCATE on sharded or reference tables,
 *   strategy "truncate" runs TRUNCATE ONLY, and the ONLY flag is documented as unsupported for
 *   ALTER TABLE (limitless-reference.DDL-limitations.html): "truncate" is refused there until
 *   AWS documents it;
 * - standard tables run DDL and DML as Aurora PostgreSQL does (limitless-creating.html), so all
 *   three strategies are left to the checks every table gets, but for one statement "rename"
 *   would make: ALTER PUBLICATION ... ADD TABLE, to keep the new version in a FOR TABLE
 *   publication of the old, is not supported (limitless-reference.DDL-support.html), so such a
 *   table is refused before any data moves rather than failing the swap under its locks.
 *   The other statements the DDL support table and limitations refuse and "rename" carries
 *   with (COMMENT; ADD GENERATED for an identity column; ALTER COLUMN SET STATISTICS and SET
 *   (n_distinct)) carry what no table there can have, since the same statements are the only
 *   way to give it; "truncate" and "merge" issue none of them (TRUNCATE and DML only).
 */
import { displayIdentifier, displayQualified } from '../identifiers';
import type { SqlClient } from '../sql-client';
import type { IncrementMode } from '../transfer/types';
import type { SwapStrategy, TableSwap } from './types';

/**
 * A table as the preflight checks it. An increment takes merge's row-level locks and issues no
 * DDL, so it is checked as strategy "merge", with its `incremental.mode`: mode "merge" updates
 * rows by `primaryKey` as strategy "merge" does, mode "append" updates none.
 */
export interface PreflightTable extends TableSwap {
  readonly increment?: IncrementMode;
}

const DOCS = 'https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide';

/** Why a strategy cannot publish into a sharded or reference table. */
const REFUSED: Readonly<Partial<Record<SwapStrategy, string>>> = {
  rename: `the staging table is created as a standard table (rds_aurora.limitless_create_table_mode is "standard" by default, ${DOCS}/limitless-creating-config.html), so renaming it into place would replace the table by a standard one stored on a single shard`,
  truncate: `it empties the table with TRUNCATE ONLY, which the Limitless reference's DDL and DML limitations do not document for these tables, while they document the ONLY flag as unsupported for ALTER TABLE (${DOCS}/limitless-reference.DDL-limitations.html)`,
};

const MERGE_WORKS = `Use strategy "merge", whose DELETE, UPDATE and INSERT ... SELECT Limitless supports (${DOCS}/limitless-reference.DML-support.html) and which never updates its key columns`;

interface LimitlessTableRow {
  [column: string]: unknown;
  schema_name: string;
  table_name: string;
  table_type: string;
  distribution_key: string | null;
}

/** Whether the database is an Aurora Limitless one: rds_aurora.limitless_tables exists only there. */
export async function isLimitlessDatabase(db: SqlClient): Promise<boolean> {
  const [row] = await db.query<{ limitless: boolean }>(
    `SELECT to_regclass('rds_aurora.limitless_tables') IS NOT NULL AS limitless`,
  );
  return row?.limitless ?? false;
}

/**
 * The problems of `tables` on a Limitless database, one sentence each naming the table, its
 * type, what is refused and the strategy to use. Tables not yet in limitless_tables (a first
 * publication) are created standard, which every strategy handles.
 */
export async function limitlessProblems(
  db: SqlClient,
  tables: readonly PreflightTable[],
): Promise<string[]> {
  if (tables.length === 0) return [];
  const rows = await db.query<LimitlessTableRow>(
    `SELECT t.schema_name::text AS schema_name, t.table_name::text AS table_name,
            t.table_type::text AS table_type, t.distribution_key::text AS distribution_key
     FROM rds_aurora.limitless_tables t
     JOIN jsonb_to_recordset(:tables::jsonb) AS w(schema text, name text)
       ON w.schema = t.schema_name AND w.name = t.table_name`,
    {
      tables: JSON.stringify(tables.map(({ live }) => ({ schema: live.schema, name: live.name }))),
    },
  );
  const problems: string[] = await publicationProblems(db, tables);
  for (const table of tables) {
    const row = rows.find(
      (candidate) =>
        candidate.schema_name === table.live.schema && candidate.table_name === table.live.name,
    );
    if (!row || row.table_type === 'standard') continue;
    const live = displayQualified(table.live);
    if (row.table_type !== 'sharded' && row.table_type !== 'reference') {
      problems.push(
        `${live} is a ${JSON.stringify(row.table_type)} table of an Aurora Limitless database (rds_aurora.limitless_tables.table_type), a type the pipeline does not know how to publish into; make it a standard, sharded or reference table (${DOCS}/limitless-creating.html).`,
      );
      continue;
    }
    const refusal = REFUSED[table.strategy];
    if (refusal) {
      problems.push(
        `${live} is a ${row.table_type} table of an Aurora Limitless database; strategy "${table.strategy}" is refused there: ${refusal}. ${MERGE_WORKS}.`,
      );
      continue;
    }
    const missing = shardKeyOutsideMergeKey(row, table);
    if (missing.length > 0) {
      const merging = table.increment ? 'incremental mode "merge"' : 'strategy "merge"';
      const key = table.primaryKey!.map(displayIdentifier).join(', ');
      problems.push(
        `${live} is a sharded table of an Aurora Limitless database whose shard key ${row.distribution_key} has ${missing.join(', ')} outside the "primaryKey" (${key}) that ${merging} updates rows by, so its UPDATE would set shard key columns, which Limitless does not support (${DOCS}/limitless-reference.DML-limitations.html); add ${missing.join(', ')} to "primaryKey", or leave it unset to use the table's primary key, which Limitless makes contain the shard key.`,
      );
    }
  }
  return problems;
}

/** Tables published FOR TABLE that strategy "rename" would have to re-add to their publications. */
async function publicationProblems(db: SqlClient, tables: readonly TableSwap[]): Promise<string[]> {
  const renamed = tables.filter((table) => table.strategy === 'rename');
  if (renamed.length === 0) return [];
  const rows = await db.query<{ schema: string; name: string; publications: string }>(
    `SELECT w.schema, w.name, string_agg(quote_ident(p.pubname), ', ' ORDER BY p.pubname) AS publications
     FROM jsonb_to_recordset(:tables::jsonb) AS w(schema text, name text)
     JOIN pg_namespace n ON n.nspname = w.schema
     JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = w.name
     JOIN pg_publication_rel pr ON pr.prrelid = c.oid
     JOIN pg_publication p ON p.oid = pr.prpubid
     GROUP BY w.schema, w.name`,
    {
      tables: JSON.stringify(renamed.map(({ live }) => ({ schema: live.schema, name: live.name }))),
    },
  );
  return rows.map(
    (row) =>
      `${displayQualified({ schema: row.schema, name: row.name })} is in publication ${row.publications} (FOR TABLE) on an Aurora Limitless database; strategy "rename" would keep the new version there with ALTER PUBLICATION ... ADD TABLE, which Limitless does not support (${DOCS}/limitless-reference.DDL-support.html). Use strategy "merge" or "truncate", which keep the table itself in its publications.`,
  );
}

/**
 * The shard key columns a configured merge key lacks, where the publish updates rows by it.
 * limitless_tables shows the key as e.g. `HASH (order_id)` or `HASH (item_id, item_cat)`; a key
 * it cannot read is left to the server.
 */
function shardKeyOutsideMergeKey(row: LimitlessTableRow, table: PreflightTable): string[] {
  if (row.table_type !== 'sharded' || !table.primaryKey || !row.distribution_key) return [];
  if (table.increment === 'append') return [];
  const columns = /^\s*\w+\s*\((.*)\)\s*$/.exec(row.distribution_key)?.[1];
  if (columns === undefined) return [];
  return columns
    .split(',')
    .map((column) => column.trim().replace(/^"(.*)"$/, '$1'))
    .filter((column) => column !== '' && !table.primaryKey!.includes(column));
}
