/**
 * A table's privileges, as PL/pgSQL installed in the target database: listed by role name, and
 * copied to another table exactly (each grant made by its original grantor, grant options
 * included), then verified.
 */
import { ADMIN_SCHEMA } from './admin';
import { SYNC_SQLSTATE } from './sqlstates';

/** Every privilege on a table and its columns, by role name, for copying and verifying. */
const PRIVILEGES_SQL = `
CREATE OR REPLACE FUNCTION ${ADMIN_SCHEMA}.privileges(p_table regclass)
RETURNS TABLE (column_name name, grantor name, grantee name, privilege text, grantable boolean)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
  SELECT NULL::name, gr.rolname, coalesce(ge.rolname, 'PUBLIC'), a.privilege_type, a.is_grantable
  FROM pg_class c,
       aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
       JOIN pg_roles gr ON gr.oid = a.grantor
       LEFT JOIN pg_roles ge ON ge.oid = a.grantee
  WHERE c.oid = p_table
  UNION ALL
  SELECT att.attname, gr.rolname, coalesce(ge.rolname, 'PUBLIC'), a.privilege_type, a.is_grantable
  FROM pg_attribute att,
       aclexplode(att.attacl) a
       JOIN pg_roles gr ON gr.oid = a.grantor
       LEFT JOIN pg_roles ge ON ge.oid = a.grantee
  WHERE att.attrelid = p_table AND att.attnum > 0 AND NOT att.attisdropped AND att.attacl IS NOT NULL
$fn$`;

/**
 * Makes p_to's privileges exactly p_from's (for columns both have), each grant made by its
 * original grantor, then verifies. p_to must already be owned by p_from's owner.
 */
const COPY_PRIVILEGES_SQL = `
CREATE OR REPLACE FUNCTION ${ADMIN_SCHEMA}.copy_privileges(p_from regclass, p_to regclass)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
  v_role text := current_setting('role');
  v_grant record;
  v_missing text;
  v_pending integer;
  v_progress boolean;
  v_copied integer := 0;
BEGIN
  -- Start from nothing: the owner, then everyone else, loses what p_to had.
  FOR v_grant IN SELECT DISTINCT p.column_name, p.grantee FROM ${ADMIN_SCHEMA}.privileges(p_to) p LOOP
    EXECUTE format('REVOKE ALL %s ON TABLE %s FROM %s CASCADE',
                   CASE WHEN v_grant.column_name IS NOT NULL THEN format('(%I)', v_grant.column_name) END,
                   p_to,
                   CASE WHEN v_grant.grantee = 'PUBLIC' THEN 'PUBLIC' ELSE quote_ident(v_grant.grantee) END);
  END LOOP;

  -- A grant needs its grantor to hold the grant option first: repeat until nothing is left.
  CREATE TEMP TABLE IF NOT EXISTS redshift_sync_pending_grants (
    column_name name, grantor name, grantee name, privilege text, grantable boolean
  ) ON COMMIT DROP;
  TRUNCATE redshift_sync_pending_grants;
  INSERT INTO redshift_sync_pending_grants
  SELECT p.* FROM ${ADMIN_SCHEMA}.privileges(p_from) p
  WHERE p.column_name IS NULL
     OR EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = p_to AND a.attname = p.column_name
                  AND a.attnum > 0 AND NOT a.attisdropped);
  LOOP
    v_progress := false;
    FOR v_grant IN
      SELECT g.* FROM redshift_sync_pending_grants g
      WHERE g.grantor = (SELECT r.rolname FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner WHERE c.oid = p_to)
         OR EXISTS (SELECT 1 FROM ${ADMIN_SCHEMA}.privileges(p_to) h
                    WHERE h.grantee = g.grantor AND h.grantable AND h.privilege = g.privilege
                      AND (h.column_name IS NULL OR h.column_name = g.column_name))
    LOOP
      PERFORM set_config('role', v_grant.grantor, true);
      EXECUTE format('GRANT %s %s ON TABLE %s TO %s %s',
                     v_grant.privilege,
                     CASE WHEN v_grant.column_name IS NOT NULL THEN format('(%I)', v_grant.column_name) END,
                     p_to,
                     CASE WHEN v_grant.grantee = 'PUBLIC' THEN 'PUBLIC' ELSE quote_ident(v_grant.grantee) END,
                     CASE WHEN v_grant.grantable THEN 'WITH GRANT OPTION' END);
      PERFORM set_config('role', v_role, true);
      DELETE FROM redshift_sync_pending_grants g
      WHERE g.column_name IS NOT DISTINCT FROM v_grant.column_name AND g.grantor = v_grant.grantor
        AND g.grantee = v_grant.grantee AND g.privilege = v_grant.privilege;
      v_copied := v_copied + 1;
      v_progress := true;
    END LOOP;
    SELECT count(*) INTO v_pending FROM redshift_sync_pending_grants;
    EXIT WHEN v_pending = 0 OR NOT v_progress;
  END LOOP;

  SELECT string_agg(format('%s%s on %s to %s granted by %s', d.privilege,
                           CASE WHEN d.grantable THEN ' WITH GRANT OPTION' ELSE '' END,
                           coalesce('column ' || quote_ident(d.column_name), 'the table'), d.grantee, d.grantor), '; ')
    INTO v_missing
    FROM ((SELECT * FROM ${ADMIN_SCHEMA}.privileges(p_from) f
           WHERE f.column_name IS NULL
              OR EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = p_to AND a.attname = f.column_name
                           AND a.attnum > 0 AND NOT a.attisdropped)
           EXCEPT SELECT * FROM ${ADMIN_SCHEMA}.privileges(p_to))
          UNION ALL
          (SELECT * FROM ${ADMIN_SCHEMA}.privileges(p_to) EXCEPT SELECT * FROM ${ADMIN_SCHEMA}.privileges(p_from))) d;
  IF v_missing IS NOT NULL THEN
    RAISE EXCEPTION 'the privileges of % could not be reproduced exactly on the new version: %', p_from, v_missing
      USING ERRCODE = '${SYNC_SQLSTATE.privilegesNotReproduced}',
            HINT = 'The pipeline role must be able to SET ROLE to every grantor (GRANT <grantor> TO <pipeline role>).';
  END IF;
  RETURN v_copied;
END
$fn$`;

export const PRIVILEGE_FUNCTIONS_SQL: readonly string[] = [PRIVILEGES_SQL, COPY_PRIVILEGES_SQL];
