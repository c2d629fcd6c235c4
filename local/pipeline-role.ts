/**
 * The pipeline's database role as production has it on Aurora: a login role that is not a
 * superuser, holding exactly what the README's "What the pipeline's database role needs" lists.
 * The local run and the tests create it with a superuser connection (standing in for Aurora's
 * `rds_superuser` master user), then run the pipeline as it.
 *
 * Role memberships that depend on the user's tables (`GRANT <table owner> TO <pipeline role>`)
 * are not made here: they are the user's to give, and the preflight names any that is missing.
 */
import pg from 'pg';

export interface PipelineRoleOptions {
  /** The role's name; created if it does not exist (roles are cluster-wide). */
  readonly role: string;
  readonly password: string;
  /** The database the pipeline installs its schemas into: the role gets CREATE on it. */
  readonly database: string;
  /** Grant pg_signal_backend too, which `onMaxWait: "terminate"` needs. Default true. */
  readonly canTerminate?: boolean;
}

/**
 * The statements, in order; each is idempotent. Names are quoted. Role statements change the
 * whole cluster: run them once per server (concurrent GRANTs of one role may collide), and
 * `databaseGrantStatements` once per database.
 */
export function pipelineRoleStatements(options: PipelineRoleOptions): string[] {
  const role = pg.escapeIdentifier(options.role);
  return [
    // CREATE ROLE has no IF NOT EXISTS; two test files may race to create it.
    `DO $$
BEGIN
  CREATE ROLE ${role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD ${pg.escapeLiteral(options.password)};
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END
$$`,
    `GRANT pg_read_all_stats TO ${role}`,
    ...(options.canTerminate === false ? [] : [`GRANT pg_signal_backend TO ${role}`]),
    ...databaseGrantStatements(options.role, options.database),
  ];
}

/** CREATE on the database the pipeline installs its schemas into (and CONNECT, TEMPORARY). */
export function databaseGrantStatements(role: string, database: string): string[] {
  return [
    `GRANT CREATE, CONNECT, TEMPORARY ON DATABASE ${pg.escapeIdentifier(database)} TO ${pg.escapeIdentifier(role)}`,
  ];
}

/** Creates the role and gives it the pipeline's grants, connected as a superuser. */
export async function provisionPipelineRole(
  adminUrl: string,
  options: PipelineRoleOptions,
): Promise<void> {
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    for (const statement of pipelineRoleStatements(options)) {
      await admin.query(statement);
    }
  } finally {
    await admin.end();
  }
}

/** `url` with its user and password replaced. */
export function urlAs(url: string, login: { readonly user: string; readonly password: string }) {
  const changed = new URL(url);
  changed.username = encodeURIComponent(login.user);
  changed.password = encodeURIComponent(login.password);
  return changed.href;
}
