/**
 * What depends on a table, as PL/pgSQL installed in the target database: every dependent
 * classified by whether a rename swap carries it over (the preflight refuses the rest, by
 * name), and the columns a dependent uses that staging lacks or types differently.
 *
 * Every function runs with `search_path = pg_catalog, pg_temp`; names reach dynamic SQL only
 * through format('%I').
 */
import { ADMIN_SCHEMA } from './admin';

/**
 * What depends on a table, classified by whether a rename swap carries it over. Kinds that
 * are not carried make the preflight refuse the rename strategy.
 */
const DEPENDENTS_SQL = `
CREATE OR REPLACE FUNCTION ${ADMIN_SCHEMA}.dependents(p_table regclass)
RETURNS TABLE (kind text, object text, carried boolean)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
  WITH target AS (
    SELECT c.oid, c.reltype, c.relkind, c.relispartition, c.relpersistence FROM pg_class c WHERE c.oid = p_table
  ), direct AS (
    SELECT DISTINCT d.classid, d.objid, d.deptype
    FROM pg_depend d, target t
    WHERE ((d.refclassid = 'pg_class'::regclass AND d.refobjid = t.oid)
        OR (d.refclassid = 'pg_type'::regclass AND d.refobjid = t.reltype))
      AND d.deptype IN ('n', 'a', 'i')
  ), classified AS (
    SELECT
      CASE
        WHEN d.classid = 'pg_rewrite'::regclass THEN (
          -- A view's own _RETURN rule is the view (carried by CREATE OR REPLACE VIEW); any
          -- other rule that reads or writes the table, on whatever relation, is a rule.
          SELECT CASE
                   WHEN r.ev_class = p_table OR r.rulename <> '_RETURN' THEN 'rule'
                   WHEN c.relkind = 'v' THEN 'view'
                   WHEN c.relkind = 'm' THEN 'materialized view'
                   ELSE 'rule'
                 END
          FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class WHERE r.oid = d.objid)
        WHEN d.classid = 'pg_constraint'::regclass THEN (
          SELECT CASE
                   WHEN con.conrelid = p_table AND con.contype = 'f' THEN 'foreign key'
                   WHEN con.conrelid = p_table THEN 'own'
                   WHEN con.confrelid = p_table THEN 'referencing foreign key'
                   ELSE 'other'
                 END
          FROM pg_constraint con WHERE con.oid = d.objid)
        WHEN d.classid = 'pg_trigger'::regclass THEN (
          SELECT CASE WHEN tg.tgisinternal THEN 'own' ELSE 'trigger' END
          FROM pg_trigger tg WHERE tg.oid = d.objid)
        -- The table's own policies are recreated on the new version; a policy on another
        -- table whose expression reads this one would stay bound to the retired version.
        WHEN d.classid = 'pg_policy'::regclass THEN (
          SELECT CASE WHEN p.polrelid = p_table THEN 'policy' ELSE 'policy on another table' END
          FROM pg_policy p WHERE p.oid = d.objid)
        WHEN d.classid = 'pg_attrdef'::regclass THEN 'own'
        WHEN d.classid = 'pg_type'::regclass AND d.deptype = 'i' THEN 'own'
        WHEN d.classid = 'pg_class'::regclass THEN (
          SELECT CASE
                   WHEN c.relkind IN ('i', 'I', 't') THEN 'own'
                   WHEN c.relkind = 'S' AND d.deptype = 'i' THEN 'identity column'
                   WHEN c.relkind = 'S' THEN 'owned sequence'
                   WHEN EXISTS (SELECT 1 FROM pg_inherits inh
                                WHERE inh.inhrelid = c.oid AND inh.inhparent = p_table) THEN 'inheriting table'
                   ELSE 'table using the row type'
                 END
          FROM pg_class c WHERE c.oid = d.objid)
        WHEN d.classid = 'pg_proc'::regclass THEN 'function using the row type'
        WHEN d.classid = 'pg_statistic_ext'::regclass THEN 'extended statistics'
        WHEN d.classid = 'pg_publication_rel'::regclass THEN 'publication'
        ELSE 'other'
      END AS kind,
      CASE WHEN d.classid = 'pg_rewrite'::regclass
           -- a view is its relation to a person, not its _RETURN rule
           THEN (SELECT CASE WHEN r.ev_class = p_table OR r.rulename <> '_RETURN'
                             THEN pg_describe_object(d.classid, d.objid, 0)
                             ELSE pg_describe_object('pg_class'::regclass, r.ev_class, 0) END
                 FROM pg_rewrite r WHERE r.oid = d.objid)
           ELSE pg_describe_object(d.classid, d.objid, 0) END AS object
    FROM direct d
    UNION ALL
    SELECT 'partitioned table', pg_describe_object('pg_class'::regclass, t.oid, 0)
    FROM target t WHERE t.relkind = 'p'
    UNION ALL
    SELECT 'inheritance parent', pg_describe_object('pg_class'::regclass, inh.inhparent, 0)
    FROM pg_inherits inh WHERE inh.inhrelid = p_table
    -- Staging is a logged table in the default tablespace: making the new version unlogged or
    -- moving it (or its indexes) would rewrite it under the ACCESS EXCLUSIVE lock.
    UNION ALL
    SELECT 'unlogged table', pg_describe_object('pg_class'::regclass, t.oid, 0)
    FROM target t WHERE t.relpersistence = 'u'
    UNION ALL
    SELECT 'tablespace', format('%s in tablespace %I', pg_describe_object('pg_class'::regclass, c.oid, 0), ts.spcname)
    FROM pg_class c JOIN pg_tablespace ts ON ts.oid = c.reltablespace
    WHERE c.oid = p_table OR c.oid IN (SELECT i.indexrelid FROM pg_index i WHERE i.indrelid = p_table)
  )
  SELECT DISTINCT kind, object,
         kind IN ('view', 'policy', 'owned sequence', 'identity column', 'publication') AS carried
  FROM classified
  WHERE kind <> 'own'
  ORDER BY kind, object
$fn$`;

/**
 * Columns that a dependent of the live table (a view or a policy) uses and that staging lacks
 * or has with another type: publishing would break that dependent.
 */
const STAGING_MISMATCHES_SQL = `
CREATE OR REPLACE FUNCTION ${ADMIN_SCHEMA}.staging_mismatches(p_live regclass, p_staging regclass)
RETURNS TABLE (dependent text, column_name name, problem text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
  SELECT DISTINCT
    CASE WHEN d.classid = 'pg_rewrite'::regclass
         THEN pg_describe_object('pg_class'::regclass, r.ev_class, 0)
         ELSE pg_describe_object(d.classid, d.objid, 0) END,
    la.attname,
    CASE WHEN sa.attname IS NULL THEN 'is missing from staging'
         ELSE format('is %s in the live table but %s in staging',
                     format_type(la.atttypid, la.atttypmod), format_type(sa.atttypid, sa.atttypmod)) END
  FROM pg_depend d
  JOIN pg_attribute la ON la.attrelid = p_live AND la.attnum = d.refobjsubid
  LEFT JOIN pg_rewrite r ON d.classid = 'pg_rewrite'::regclass AND r.oid = d.objid
  LEFT JOIN pg_attribute sa ON sa.attrelid = p_staging AND sa.attname = la.attname
                           AND sa.attnum > 0 AND NOT sa.attisdropped
  WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = p_live AND d.refobjsubid > 0
    AND d.classid IN ('pg_rewrite'::regclass, 'pg_policy'::regclass)
    AND (r.oid IS NULL OR r.ev_class <> p_live)
    AND (sa.attname IS NULL OR sa.atttypid <> la.atttypid OR sa.atttypmod <> la.atttypmod
         OR sa.attcollation <> la.attcollation)
  ORDER BY 1, 2
$fn$`;

export const DEPENDENTS_FUNCTIONS_SQL: readonly string[] = [DEPENDENTS_SQL, STAGING_MISMATCHES_SQL];
