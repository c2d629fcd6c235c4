/**
 * `deletes: "reconcile"` between the steps: the key the source's key set is unloaded by
 * (decided when the unload starts), and the key files collected when it finished. The key
 * table is created with staging (../core/load/key-table.ts), its files imported by the same
 * loop as the data files (./steps/load.ts), and live's rows gone from the source deleted by
 * the swap (../core/schema/reconcile-deletes.ts).
 */
import { ConfigError, InternalError, SyncError } from '../core/errors';
import { displayIdentifier, displayQualified } from '../core/identifiers';
import type { TableIncrement } from '../core/increment/mode';
import { STAGING_SCHEMA } from '../core/schema/admin';
import { runScopedName } from '../core/swap/plan';
import { discoverPrimaryKey } from '../core/swap/primary-key';
import type { DataFile, KeyTransfer, TableTransfer } from '../core/transfer/types';
import { parseManifest } from '../core/unload/manifest';
import { manifestKey, parseS3Prefix } from '../core/unload/statement';
import type { PipelineDeps } from './deps';
import type { DiscoveredTable } from './increments';
import type { RunFiles } from './run-files';

/**
 * The key of a table that reconciles deletes, checked on every run (full ones too, so a
 * missing key is refused before the first increment needs it): `primaryKey`, or else the live
 * table's primary key, each column one the run transfers. Returns the key transfer when this
 * run is a delta (a full run replaces every row and needs no key set), else undefined; null
 * tables do not reconcile.
 */
export async function keyTransfer(
  deps: PipelineDeps,
  runId: string,
  { table, transfer }: DiscoveredTable,
  increment: TableIncrement | null,
): Promise<KeyTransfer | undefined> {
  if (table.incremental?.deletes !== 'reconcile') return undefined;
  const where = displayQualified(table.target);
  const key = table.primaryKey ?? (await discoverPrimaryKey(deps.aurora, table.target));
  if (!key) {
    throw new ConfigError(
      `${where}: incremental deletes "reconcile" needs a key to tell which rows the source deleted, and ${where} has no primary key${table.primaryKey ? '' : ' (or does not exist yet)'}; set "primaryKey" for this table in the config, add a primary key to the live table, or set "deletes": "ignore".`,
    );
  }
  const columns = key.map((name) => {
    const column = transfer.columns.find((candidate) => candidate.name === name);
    if (!column) {
      throw new ConfigError(
        `${where}: key column ${displayIdentifier(name)} of incremental deletes "reconcile" is not a column synced from ${displayQualified(table.source)} (synced: ${transfer.columns.map((candidate) => displayIdentifier(candidate.name)).join(', ')}); set "primaryKey" to columns of both tables.`,
      );
    }
    return column;
  });
  if (increment?.mode !== 'incremental') return undefined;
  return {
    columns,
    table: { schema: STAGING_SCHEMA, name: `${runScopedName(runId, table.target)}_keys` },
    s3Prefix: `${transfer.s3Prefix}keys/`,
  };
}

/**
 * The key files of a finished key UNLOAD to the run's folder, their manifest's record count
 * held to the whole source table's row count of the same snapshot (its whole-table figures,
 * read in the same transaction before the key UNLOAD): a key set that misses a row would
 * delete that row from live.
 */
export async function collectKeys(
  deps: PipelineDeps,
  files: RunFiles,
  transfer: TableTransfer,
): Promise<DataFile[]> {
  const { keys } = transfer;
  if (!keys) {
    throw new InternalError(
      `${displayQualified(transfer.table.target)} has no key unload to collect.`,
    );
  }
  const { bucket, keyPrefix } = parseS3Prefix(keys.s3Prefix);
  const key = manifestKey(keyPrefix);
  const listed = parseManifest(
    await deps.objects.getText(bucket, key),
    `the key manifest of ${displayQualified(transfer.table.source)} (s3://${bucket}/${key})`,
  );
  const keyRows = listed.reduce((sum, file) => sum + file.records, 0);
  const whole = await files.readWholeFigures(transfer.table.target);
  if (keyRows !== whole.rows) {
    throw new KeyCountError(
      `${displayQualified(transfer.table.source)}: the key manifest lists ${keyRows} keys but the same snapshot counted ${whole.rows} rows; the key unload does not match the snapshot, and deleting by it could remove rows the source still has. Run again.`,
    );
  }
  await files.writeKeyFiles(transfer.table.target, listed);
  deps.metrics.record('KeysUnloaded', 'Count', keyRows);
  return listed;
}

/** A key UNLOAD that does not cover every row of the snapshot. */
export class KeyCountError extends SyncError {}
