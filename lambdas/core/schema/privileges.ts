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
 * It runs under the swap's locks, so it reads each table's privileges as few times as it can
 * (p_from's once, kept in v_wanted; p_to's before and after) and keeps what is left to grant
 * in a variable, not a temporary table, whose creation would cost more than all the grants.
 */
const COPY_PRIVILEGES_SQL = `
CREATE OR REPLACE FUNCTION ${ADMIN_SCHEMA}.copy_privileges(p_from regclass, p_to regclass)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
  v_role text := current_setting('role');
  v_owner name := (SELECT r.rolname FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner WHERE c.oid = p_to);
  v_grant record;
  v_wanted jsonb;
  v_pending jsonb;
  v_left jsonb;
  v_missing text;
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

  -- What p_to must end with: p_from's grants on the table and on the columns p_to has too.
  SELECT coalesce(jsonb_agg(to_jsonb(p)), '[]') INTO v_wanted
  FROM ${ADMIN_SCHEMA}.privileges(p_from) p
  WHERE p.column_name IS NULL
     OR EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = p_to AND a.attname = p.column_name
                  AND a.attnum > 0 AND NOT a.attisdropped);

  -- A grant needs its grantor to hold the grant option first: repeat until nothing is left.
  v_pending := v_wanted;
  LOOP
    v_progress := false;
    v_left := '[]';
    FOR v_grant IN
      SELECT g.* FROM jsonb_to_recordset(v_pending)
        AS g(column_name name, grantor name, grantee name, privilege text, grantable boolean)
    LOOP
      IF v_grant.grantor = v_owner
         OR EXISTS (SELECT 1 FROM ${ADMIN_SCHEMA}.privileges(p_to) h
                    WHERE h.grantee = v_grant.grantor AND h.grantable AND h.privilege = v_grant.privilege
                      AND (h.column_name IS NULL OR h.column_name = v_grant.column_name)) THEN
        PERFORM set_config('role', v_grant.grantor, true);
        EXECUTE format('GRANT %s %s ON TABLE %s TO %s %s',
                       v_grant.privilege,
                       CASE WHEN v_grant.column_name IS NOT NULL THEN format('(%I)', v_grant.column_name) END,
                       p_to,
                       CASE WHEN v_grant.grantee = 'PUBLIC' THEN 'PUBLIC' ELSE quote_ident(v_grant.grantee) END,
                       CASE WHEN v_grant.grantable THEN 'WITH GRANT OPTION' END);
        PERFORM set_config('role', v_role, true);
        v_copied := v_copied + 1;
        v_progress := true;
      ELSE
        v_left := v_left || jsonb_build_array(to_jsonb(v_grant));
      END IF;
    END LOOP;
    v_pending := v_left;
    EXIT WHEN jsonb_array_length(v_pending) = 0 OR NOT v_progress;
  END LOOP;

  -- Verified both ways: nothing wanted is missing, and p_to has nothing more.
  WITH wanted AS (
         SELECT * FROM jsonb_to_recordset(v_wanted)
           AS w(column_name name, grantor name, grantee name, privilege text, grantable boolean)),
       has AS (SELECT * FROM ${ADMIN_SCHEMA}.privileges(p_to))
  SELECT string_agg(format('%s%s on %s to %s granted by %s', d.privilege,
                           CASE WHEN d.grantable THEN ' WITH GRANT OPTION' ELSE '' END,
                           coalesce('column ' || quote_ident(d.column_name), 'the table'), d.grantee, d.grantor), '; ')
    INTO v_missing
    FROM ((SELECT * FROM wanted EXCEPT SELECT * FROM has)
          UNION ALL
          (SELECT * FROM has EXCEPT SELECT * FROM wanted)) d;
  IF v_missing IS NOT NULL THEN
    RAISE EXCEPTION 'the privileges of % could not be reproduced exactly on the new version: %', p_from, v_missing
      USING ERRCODE = '${SYNC_SQLSTATE.privilegesNotReproduced}',
            HINT = 'The pipeline role must be able to SET ROLE to every grantor (GRANT <grantor> TO <pipeline role>).';
  END IF;
  RETURN v_copied;
END
$fn$`;

export const PRIVILEGE_FUNCTIONS_SQL: readonly string[] = [PRIVILEGES_SQL, COPY_PRIVILEGES_SQL];
