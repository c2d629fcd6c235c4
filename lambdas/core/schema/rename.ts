/**
 * The `rename` publish, as PL/pgSQL installed in the target database (its helpers are in
 * dependents.ts, indexes.ts and privileges.ts). Staging is renamed into place in constant time,
 * and everything users built on the live table is carried over to it:
 * owner, table and column privileges (grantors and grant options included, verified exactly),
 * comments, indexes (built on staging beforehand, matched by definition), RLS flags and
 * policies, storage, TOAST and column statistics options, replica identity, the CLUSTER mark,
 * serial and identity sequences, FOR TABLE publications, and dependent views, re-pointed with
 * CREATE OR REPLACE VIEW so that they keep their OIDs, owners, privileges, comments and options.
 *
 * Every function runs with `search_path = pg_catalog, pg_temp`, so captured definitions
 * (pg_get_viewdef, pg_get_expr) come out schema-qualified and nothing resolves through the
 * caller's search_path. Dynamic SQL is built only with format('%I', '%L') from catalog data.
 *
 * Errors raised here carry SQLSTATEs of class RS (see ../swap/errors.ts).
 */
import { ADMIN_SCHEMA, RETIRED_SCHEMA } from './admin';
import { SYNC_SQLSTATE } from './sqlstates';

/**
 * Publishes p_staging as p_live_schema.p_live_name. The caller holds ACCESS EXCLUSIVE on both
 * tables. When a live table exists it is retired into ${RETIRED_SCHEMA} as p_retired_name,
 * with everything users built on it carried over to the new version first.
 *
 * With p_warm_up, it changes nothing, takes no lock of its own and refuses nothing: it makes
 * the reads of the catalog that the publish makes (the checks, then the capture of what is
 * carried over) and returns NULL before the first change. The swap calls it so before it takes
 * its locks: a fresh session's first run of these statements costs about as much again as the
 * statements themselves (the function compiled, the catalog caches filled), and that is then
 * paid before, not while, readers queue behind the swap's locks. Its results are thrown away;
 * the publish reads everything again under the locks.
 */
const PUBLISH_BY_RENAME_SQL = `
CREATE OR REPLACE FUNCTION ${ADMIN_SCHEMA}.publish_by_rename(
  p_live_schema name, p_live_name name, p_staging regclass, p_retired_name name, p_run_id text,
  p_warm_up boolean DEFAULT false)
RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
  v_live regclass := to_regclass(format('%I.%I', p_live_schema, p_live_name));
  v_live_qualified text := format('%I.%I', p_live_schema, p_live_name);
  v_staging_schema name;
  v_staging_name name;
  v_problems text;
  v_owner name;
  v_statements text[] := '{}';
  v_views text[] := '{}';
  v_statement text;
  v_live_indexes name[];
  v_staging_indexes name[];
  v_index integer;
  v_privileges integer;
  v_sequence record;
  v_sequences integer := 0;
  v_last_value bigint;
  v_is_called boolean;
  v_publications text[];
BEGIN
  SELECT n.nspname, c.relname INTO v_staging_schema, v_staging_name
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = p_staging;

  IF v_live IS NULL AND p_warm_up THEN
    RETURN NULL;
  END IF;
  IF v_live IS NOT NULL THEN
    -- Checked again here, under the locks: a dependent created since the preflight counts.
    SELECT string_agg(format('%s %s', d.kind, d.object), '; ') INTO v_problems
    FROM ${ADMIN_SCHEMA}.dependents(v_live) d WHERE NOT d.carried;
    IF v_problems IS NOT NULL AND NOT p_warm_up THEN
      RAISE EXCEPTION 'rename cannot carry these dependents of %: %', v_live_qualified, v_problems
        USING ERRCODE = '${SYNC_SQLSTATE.uncarriedDependents}';
    END IF;
    SELECT string_agg(format('%s uses column %I, which is %s', m.dependent, m.column_name, m.problem), '; ')
      INTO v_problems FROM ${ADMIN_SCHEMA}.staging_mismatches(v_live, p_staging) m;
    IF v_problems IS NOT NULL AND NOT p_warm_up THEN
      RAISE EXCEPTION 'publishing % would break its dependents: %', v_live_qualified, v_problems
        USING ERRCODE = '${SYNC_SQLSTATE.dependentsWouldBreak}';
    END IF;
    -- Which staging index becomes which live index, paired by definition (read once: nothing
    -- below changes an index's definition): every one must have its pair.
    SELECT coalesce(array_agg(p.live_index ORDER BY p.live_index), '{}'),
           coalesce(array_agg(p.staging_index ORDER BY p.live_index), '{}'),
           string_agg(coalesce('live index ' || quote_ident(p.live_index) || ' has no copy on staging',
                               'staging index ' || quote_ident(p.staging_index) || ' matches no live index'), '; ')
             FILTER (WHERE p.live_index IS NULL OR p.staging_index IS NULL)
      INTO v_live_indexes, v_staging_indexes, v_problems
      FROM ${ADMIN_SCHEMA}.index_pairs(v_live, p_staging) p;
    IF v_problems IS NOT NULL AND NOT p_warm_up THEN
      RAISE EXCEPTION 'the indexes of staging table % do not match those of %: %', p_staging, v_live_qualified, v_problems
        USING ERRCODE = '${SYNC_SQLSTATE.indexesDoNotMatch}', HINT = 'Prepare the staging table (build the live table''s indexes on it) before the swap.';
    END IF;

    -- Capture, while every name still means what it meant: definitions come out qualified
    -- with the live table's name, which is the new version's name once the renames are done.
    SELECT r.rolname INTO v_owner FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner WHERE c.oid = v_live;

    SELECT coalesce(array_agg(format('CREATE OR REPLACE VIEW %I.%I%s AS %s', vn.nspname, v.relname,
                                     CASE WHEN v.reloptions IS NOT NULL THEN
                                       (SELECT format(' WITH (%s)', string_agg(format('%s=%L', split_part(o, '=', 1),
                                                                   substr(o, position('=' IN o) + 1)), ', '))
                                        FROM unnest(v.reloptions) o) ELSE '' END,
                                     rtrim(pg_get_viewdef(v.oid), ';'))
                              ORDER BY v.oid), '{}')
      INTO v_views
      FROM pg_class v JOIN pg_namespace vn ON vn.oid = v.relnamespace
     WHERE v.relkind = 'v' AND v.oid IN (
       SELECT r.ev_class FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
       WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
         AND d.refobjid = v_live AND r.ev_class <> v_live AND r.rulename = '_RETURN');

    -- The new version starts blank: a staging table has nothing of this, but a retired
    -- version coming back in a rollback has its own policies, options and comments.
    FOR v_statement IN
      SELECT format('DROP POLICY %I ON %s', p.polname, p_staging) FROM pg_policy p WHERE p.polrelid = p_staging
      UNION ALL
      SELECT format('ALTER TABLE %s RESET (%s)', p_staging, string_agg(quote_ident(split_part(o, '=', 1)), ', '))
      FROM pg_class c, unnest(c.reloptions) o WHERE c.oid = p_staging HAVING count(*) > 0
      UNION ALL
      -- toast.* options are stored on the TOAST table's reloptions, set through its table.
      SELECT format('ALTER TABLE %s RESET (%s)', p_staging,
                    string_agg('toast.' || quote_ident(split_part(o, '=', 1)), ', '))
      FROM pg_class c JOIN pg_class t ON t.oid = c.reltoastrelid, unnest(t.reloptions) o
      WHERE c.oid = p_staging HAVING count(*) > 0
      UNION ALL
      SELECT format('ALTER TABLE %s SET WITHOUT CLUSTER', p_staging)
      WHERE EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = p_staging AND i.indisclustered)
      UNION ALL
      SELECT format('ALTER TABLE %s REPLICA IDENTITY DEFAULT', p_staging)
      FROM pg_class c WHERE c.oid = p_staging AND c.relreplident <> 'd'
      UNION ALL
      SELECT format('ALTER TABLE %s ALTER COLUMN %I RESET (%s)', p_staging, a.attname,
                    (SELECT string_agg(quote_ident(split_part(o, '=', 1)), ', ') FROM unnest(a.attoptions) o))
      FROM pg_attribute a
      WHERE a.attrelid = p_staging AND a.attnum > 0 AND NOT a.attisdropped AND a.attoptions IS NOT NULL
      UNION ALL
      -- A retired version's identity sequence goes with its identity; the live one's is recreated below.
      SELECT format('ALTER TABLE %s ALTER COLUMN %I DROP IDENTITY', p_staging, a.attname)
      FROM pg_attribute a
      WHERE a.attrelid = p_staging AND a.attnum > 0 AND NOT a.attisdropped AND a.attidentity <> ''
      UNION ALL
      SELECT CASE
               WHEN d.classoid = 'pg_class'::regclass AND d.objoid = p_staging AND d.objsubid = 0
                 THEN format('COMMENT ON TABLE %s IS NULL', p_staging)
               WHEN d.classoid = 'pg_class'::regclass AND d.objoid = p_staging
                 THEN (SELECT format('COMMENT ON COLUMN %s.%I IS NULL', p_staging, a.attname)
                       FROM pg_attribute a WHERE a.attrelid = p_staging AND a.attnum = d.objsubid)
               WHEN d.classoid = 'pg_class'::regclass
                 THEN format('COMMENT ON INDEX %s IS NULL', d.objoid::regclass)
               ELSE (SELECT format('COMMENT ON CONSTRAINT %I ON %s IS NULL', con.conname, p_staging)
                     FROM pg_constraint con WHERE con.oid = d.objoid)
             END
      FROM pg_description d
      WHERE (d.classoid = 'pg_class'::regclass AND d.objoid = p_staging)
         OR (d.classoid = 'pg_class'::regclass AND d.objoid IN (SELECT indexrelid FROM pg_index WHERE indrelid = p_staging))
         OR (d.classoid = 'pg_constraint'::regclass AND d.objoid IN (SELECT oid FROM pg_constraint WHERE conrelid = p_staging))
    LOOP
      CONTINUE WHEN p_warm_up;
      EXECUTE v_statement;
    END LOOP;

    -- Storage options and row-level security, as on the live table.
    SELECT v_statements
           || CASE WHEN c.reloptions IS NOT NULL THEN ARRAY[format('ALTER TABLE %s SET (%s)', v_live_qualified,
                (SELECT string_agg(format('%s=%L', split_part(o, '=', 1), substr(o, position('=' IN o) + 1)), ', ')
                 FROM unnest(c.reloptions) o))] ELSE '{}' END
           || format('ALTER TABLE %s %s ROW LEVEL SECURITY', v_live_qualified,
                     CASE WHEN c.relrowsecurity THEN 'ENABLE' ELSE 'DISABLE' END)
           || format('ALTER TABLE %s %s ROW LEVEL SECURITY', v_live_qualified,
                     CASE WHEN c.relforcerowsecurity THEN 'FORCE' ELSE 'NO FORCE' END)
      INTO v_statements FROM pg_class c WHERE c.oid = v_live;

    -- TOAST options, replica identity and the CLUSTER mark. Indexes are named by their live
    -- names, which the paired staging indexes carry by the time these run.
    SELECT v_statements
           || coalesce((SELECT ARRAY[format('ALTER TABLE %s SET (%s)', v_live_qualified,
                          string_agg(format('toast.%s=%L', split_part(o, '=', 1), substr(o, position('=' IN o) + 1)), ', '))]
                        FROM pg_class t, unnest(t.reloptions) o WHERE t.oid = c.reltoastrelid HAVING count(*) > 0), '{}')
           || CASE c.relreplident
                WHEN 'n' THEN ARRAY[format('ALTER TABLE %s REPLICA IDENTITY NOTHING', v_live_qualified)]
                WHEN 'f' THEN ARRAY[format('ALTER TABLE %s REPLICA IDENTITY FULL', v_live_qualified)]
                WHEN 'i' THEN ARRAY(SELECT format('ALTER TABLE %s REPLICA IDENTITY USING INDEX %I', v_live_qualified, ic.relname)
                                    FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
                                    WHERE i.indrelid = v_live AND i.indisreplident)
                ELSE '{}' END
           || ARRAY(SELECT format('ALTER TABLE %s CLUSTER ON %I', v_live_qualified, ic.relname)
                    FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
                    WHERE i.indrelid = v_live AND i.indisclustered)
      INTO v_statements FROM pg_class c WHERE c.oid = v_live;

    -- Per-column statistics targets and attribute options (n_distinct, n_distinct_inherited),
    -- by column name. attstattarget is -1 for "the default" before PostgreSQL 17 and NULL from
    -- 17 on (https://www.postgresql.org/docs/17/catalog-pg-attribute.html); SET STATISTICS -1
    -- means the default on both.
    SELECT v_statements
           || coalesce(array_agg(format('ALTER TABLE %s ALTER COLUMN %I SET STATISTICS %s', v_live_qualified,
                                        la.attname, coalesce(la.attstattarget, -1)) ORDER BY la.attnum)
                       FILTER (WHERE coalesce(la.attstattarget, -1) <> coalesce(sa.attstattarget, -1)), '{}')
           || coalesce(array_agg(format('ALTER TABLE %s ALTER COLUMN %I SET (%s)', v_live_qualified, la.attname,
                                        (SELECT string_agg(format('%s=%L', split_part(o, '=', 1), substr(o, position('=' IN o) + 1)), ', ')
                                         FROM unnest(la.attoptions) o)) ORDER BY la.attnum)
                       FILTER (WHERE la.attoptions IS NOT NULL), '{}')
      INTO v_statements
      FROM pg_attribute la
      JOIN pg_attribute sa ON sa.attrelid = p_staging AND sa.attname = la.attname AND sa.attnum > 0 AND NOT sa.attisdropped
     WHERE la.attrelid = v_live AND la.attnum > 0 AND NOT la.attisdropped;

    SELECT v_statements || coalesce(array_agg(format('CREATE POLICY %I ON %s AS %s FOR %s TO %s%s%s',
             p.polname, v_live_qualified,
             CASE WHEN p.polpermissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END,
             CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE'
                           WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
             (SELECT string_agg(CASE WHEN r = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(r)) END, ', ')
              FROM unnest(p.polroles) r),
             ' USING (' || pg_get_expr(p.polqual, p.polrelid) || ')',
             ' WITH CHECK (' || pg_get_expr(p.polwithcheck, p.polrelid) || ')') ORDER BY p.polname), '{}')
      INTO v_statements FROM pg_policy p WHERE p.polrelid = v_live;

    -- Comments: on the table, its columns (by name), indexes, constraints and policies.
    SELECT v_statements || coalesce(array_agg(stmt ORDER BY stmt), '{}') INTO v_statements FROM (
      SELECT CASE
               WHEN d.classoid = 'pg_class'::regclass AND d.objoid = v_live AND d.objsubid = 0
                 THEN format('COMMENT ON TABLE %s IS %L', v_live_qualified, d.description)
               WHEN d.classoid = 'pg_class'::regclass AND d.objoid = v_live
                 THEN (SELECT format('COMMENT ON COLUMN %s.%I IS %L', v_live_qualified, a.attname, d.description)
                       FROM pg_attribute a JOIN pg_attribute s ON s.attrelid = p_staging AND s.attname = a.attname
                                                              AND NOT s.attisdropped
                       WHERE a.attrelid = v_live AND a.attnum = d.objsubid)
               WHEN d.classoid = 'pg_class'::regclass
                 THEN (SELECT format('COMMENT ON INDEX %I.%I IS %L', p_live_schema, c.relname, d.description)
                       FROM pg_class c WHERE c.oid = d.objoid)
               WHEN d.classoid = 'pg_constraint'::regclass
                 THEN (SELECT format('COMMENT ON CONSTRAINT %I ON %s IS %L', con.conname, v_live_qualified, d.description)
                       FROM pg_constraint con WHERE con.oid = d.objoid)
               WHEN d.classoid = 'pg_policy'::regclass
                 THEN (SELECT format('COMMENT ON POLICY %I ON %s IS %L', p.polname, v_live_qualified, d.description)
                       FROM pg_policy p WHERE p.oid = d.objoid)
             END AS stmt
      FROM pg_description d
      WHERE (d.classoid = 'pg_class'::regclass AND d.objoid = v_live)
         OR (d.classoid = 'pg_class'::regclass AND d.objoid IN (SELECT indexrelid FROM pg_index WHERE indrelid = v_live))
         OR (d.classoid = 'pg_constraint'::regclass AND d.objoid IN (SELECT oid FROM pg_constraint WHERE conrelid = v_live))
         OR (d.classoid = 'pg_policy'::regclass AND d.objoid IN (SELECT oid FROM pg_policy WHERE polrelid = v_live))
    ) comments WHERE stmt IS NOT NULL;

    -- Sequences owned by the live table's columns (serial) stay where they are and keep
    -- counting. They are detached now, or SET SCHEMA would move them along with the retired
    -- version (and dropping it would drop them), and attached to the new version's columns
    -- once it is in the live schema, as OWNED BY needs the table in the sequence's schema and
    -- with its owner. The retired version's defaults still call them until retention drops it.
    -- (https://www.postgresql.org/docs/current/sql-altertable.html, SET SCHEMA: "sequences
    -- owned by table columns are moved as well"; .../sql-altersequence.html, OWNED BY.)
    FOR v_sequence IN
      SELECT d.objid::regclass AS sequence, a.attname, sa.attname IS NOT NULL AS in_staging
      FROM pg_depend d
      JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
      JOIN pg_attribute a ON a.attrelid = v_live AND a.attnum = d.refobjsubid
      LEFT JOIN pg_attribute sa ON sa.attrelid = p_staging AND sa.attname = a.attname AND NOT sa.attisdropped
      WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
        AND d.refobjid = v_live AND d.deptype = 'a'
    LOOP
      CONTINUE WHEN p_warm_up;
      EXECUTE format('ALTER SEQUENCE %s OWNED BY NONE', v_sequence.sequence);
      IF v_sequence.in_staging THEN
        v_statements := v_statements || format('ALTER SEQUENCE %s OWNED BY %s.%I',
                                               v_sequence.sequence, v_live_qualified, v_sequence.attname);
      END IF;
    END LOOP;

    -- Identity columns: an identity sequence belongs to its column and cannot be moved, so it
    -- retires with the old version, renamed out of the way (it keeps serving the retired
    -- copy). The new version's column gets an identity of the same kind and options under the
    -- old sequence's name, set to the old sequence's exact state, so its next value is the one
    -- the old table would have given. ADD GENERATED takes no AS type: the sequence gets the
    -- column's (https://www.postgresql.org/docs/current/sql-altertable.html).
    FOR v_sequence IN
      SELECT a.attname, a.attidentity, seq.oid::regclass AS sequence, seq.relname, sn.nspname,
             s.seqstart, s.seqincrement, s.seqmin, s.seqmax,
             s.seqcache, s.seqcycle, sa.attname IS NOT NULL AS in_staging
      FROM pg_attribute a
      JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
                      AND d.refobjid = v_live AND d.refobjsubid = a.attnum AND d.deptype = 'i'
      JOIN pg_class seq ON seq.oid = d.objid AND seq.relkind = 'S'
      JOIN pg_namespace sn ON sn.oid = seq.relnamespace
      JOIN pg_sequence s ON s.seqrelid = seq.oid
      LEFT JOIN pg_attribute sa ON sa.attrelid = p_staging AND sa.attname = a.attname AND NOT sa.attisdropped
      WHERE a.attrelid = v_live AND a.attidentity <> ''
      ORDER BY a.attnum
    LOOP
      CONTINUE WHEN p_warm_up;
      EXECUTE format('SELECT last_value, is_called FROM %s', v_sequence.sequence) INTO v_last_value, v_is_called;
      v_sequences := v_sequences + 1;
      EXECUTE format('ALTER SEQUENCE %s RENAME TO %I', v_sequence.sequence,
                     left(p_retired_name, 50) || '_s' || v_sequences);
      IF v_sequence.in_staging THEN
        v_statements := v_statements
          || format('ALTER TABLE %s ALTER COLUMN %I ADD GENERATED %s AS IDENTITY (SEQUENCE NAME %I.%I START WITH %s INCREMENT BY %s MINVALUE %s MAXVALUE %s CACHE %s %s)',
                    v_live_qualified, v_sequence.attname,
                    CASE v_sequence.attidentity WHEN 'a' THEN 'ALWAYS' ELSE 'BY DEFAULT' END,
                    v_sequence.nspname, v_sequence.relname, v_sequence.seqstart,
                    v_sequence.seqincrement, v_sequence.seqmin, v_sequence.seqmax, v_sequence.seqcache,
                    CASE WHEN v_sequence.seqcycle THEN 'CYCLE' ELSE 'NO CYCLE' END)
          || format('SELECT setval(%L::regclass, %s, %s)', format('%I.%I', v_sequence.nspname, v_sequence.relname),
                    v_last_value, CASE WHEN v_is_called THEN 'true' ELSE 'false' END);
      END IF;
    END LOOP;

    -- Publications that list the table (FOR TABLE) list the new version instead, with the
    -- same column list and row filter, and no longer the retired one. Column lists and row
    -- filters exist from PostgreSQL 15 (pg_publication_rel.prattrs, prqual): read through
    -- EXECUTE so that 14 never plans a query naming them. FOR ALL TABLES and FOR TABLES IN
    -- SCHEMA publications take in the new version by themselves. ALTER PUBLICATION needs the
    -- publication's owner, and ADD TABLE the table's too
    -- (https://www.postgresql.org/docs/current/sql-alterpublication.html): the preflight asks.
    IF current_setting('server_version_num')::int >= 150000 THEN
      EXECUTE $q$
        SELECT coalesce(array_agg(format('ALTER PUBLICATION %I ADD TABLE %s%s%s', p.pubname, $2,
                 (SELECT ' (' || string_agg(quote_ident(a.attname), ', ' ORDER BY k.n) || ')'
                  FROM unnest(pr.prattrs::int2[]) WITH ORDINALITY k(attnum, n)
                  JOIN pg_attribute a ON a.attrelid = pr.prrelid AND a.attnum = k.attnum),
                 ' WHERE (' || pg_get_expr(pr.prqual, pr.prrelid) || ')') ORDER BY p.pubname), '{}')
        FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid
        WHERE pr.prrelid = $1$q$
        INTO v_publications USING v_live, v_live_qualified;
    ELSE
      SELECT coalesce(array_agg(format('ALTER PUBLICATION %I ADD TABLE %s', p.pubname, v_live_qualified)
                                ORDER BY p.pubname), '{}')
        INTO v_publications
        FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid
       WHERE pr.prrelid = v_live;
    END IF;
    FOR v_statement IN
      SELECT format('ALTER PUBLICATION %I DROP TABLE %s', p.pubname, v_live_qualified)
      FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid
      WHERE pr.prrelid = v_live
    LOOP
      CONTINUE WHEN p_warm_up;
      EXECUTE v_statement;
    END LOOP;
    v_statements := v_statements || v_publications;
    IF p_warm_up THEN
      -- What copy_privileges reads first, below.
      PERFORM count(*) FROM ${ADMIN_SCHEMA}.privileges(v_live);
      RETURN NULL;
    END IF;

    -- Retire the live table: its indexes and itself get names of their own, then it moves out.
    FOR v_index IN 1 .. coalesce(array_length(v_live_indexes, 1), 0) LOOP
      EXECUTE format('ALTER INDEX %I.%I RENAME TO %I', p_live_schema, v_live_indexes[v_index],
                     left(p_retired_name, 50) || '_i' || v_index);
    END LOOP;
    EXECUTE format('ALTER TABLE %s RENAME TO %I', v_live_qualified, p_retired_name);
    EXECUTE format('ALTER TABLE %I.%I SET SCHEMA ${RETIRED_SCHEMA}', p_live_schema, p_retired_name);
    INSERT INTO ${ADMIN_SCHEMA}.retired_versions (live_schema, live_table, retired_table, run_id)
    VALUES (p_live_schema, p_live_name, p_retired_name, p_run_id);
  END IF;

  -- The new version takes the live name (a version coming back from retirement is no longer retired).
  DELETE FROM ${ADMIN_SCHEMA}.retired_versions
   WHERE v_staging_schema = '${RETIRED_SCHEMA}' AND retired_table = v_staging_name;
  EXECUTE format('ALTER TABLE %s RENAME TO %I', p_staging, p_live_name);
  EXECUTE format('ALTER TABLE %I.%I SET SCHEMA %I', v_staging_schema, p_live_name, p_live_schema);

  IF v_live IS NULL THEN
    RETURN jsonb_build_object('created', true);
  END IF;

  -- ALTER INDEX renames the constraint an index backs (primary key, unique, exclusion) with it
  -- (https://www.postgresql.org/docs/current/sql-alterindex.html, RENAME), so no ALTER TABLE
  -- ... RENAME CONSTRAINT, which Aurora Limitless does not support
  -- (https://docs.aws.amazon.com/AmazonRDS/latest/AuroraUserGuide/limitless-reference.DDL-limitations.html).
  FOR v_index IN 1 .. coalesce(array_length(v_live_indexes, 1), 0) LOOP
    EXECUTE format('ALTER INDEX %I.%I RENAME TO %I', p_live_schema,
                   v_staging_indexes[v_index], v_live_indexes[v_index]);
  END LOOP;

  IF v_owner <> (SELECT r.rolname FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner WHERE c.oid = p_staging) THEN
    EXECUTE format('ALTER TABLE %s OWNER TO %I', v_live_qualified, v_owner);
  END IF;
  v_privileges := ${ADMIN_SCHEMA}.copy_privileges(v_live, p_staging);
  FOREACH v_statement IN ARRAY v_statements LOOP
    EXECUTE v_statement;
  END LOOP;
  FOREACH v_statement IN ARRAY v_views LOOP
    EXECUTE v_statement;
  END LOOP;

  RETURN jsonb_build_object(
    'created', false,
    'retiredAs', p_retired_name,
    'viewsRepointed', coalesce(array_length(v_views, 1), 0),
    'privilegesCopied', v_privileges,
    'indexesCarried', coalesce(array_length(v_live_indexes, 1), 0));
END
$fn$`;

export const RENAME_SQL: readonly string[] = [PUBLISH_BY_RENAME_SQL];
