/**
 * The incremental side of a run, between the steps: which tables go as a delta and from which
 * watermark (decided when the unload starts), what the swap writes and proves for them, and
 * what the summary says about them.
 */
import { ConfigError } from '../core/errors';
import { displayQualified } from '../core/identifiers';
import {
  checkCursor,
  decideIncrement,
  incrementMode,
  nullCursorReason,
  readWatermarks,
  type TableIncrement,
  watermarkAfter,
} from '../core/increment/mode';
import type { PlannedIncrement, PlannedWatermark } from '../core/swap/plan';
import { figuresRow } from '../core/transfer/figures';
import type { SourceColumn, SyncTable, TableTransfer } from '../core/transfer/types';
import type { PipelineDeps } from './deps';
import type { RunFiles } from './run-files';

export interface DiscoveredTable {
  readonly table: SyncTable;
  readonly source: readonly SourceColumn[];
  readonly transfer: TableTransfer;
  readonly liveExists: boolean;
}

/**
 * Per table, full or incremental (null for a table without `incremental`). Every cursor is
 * checked first, so a bad one is refused, by name, before anything is unloaded.
 */
export async function decideIncrements(
  deps: PipelineDeps,
  tables: readonly DiscoveredTable[],
  fullRefresh: boolean,
): Promise<(TableIncrement | null)[]> {
  const cursors = tables.map(({ table, source, transfer }) =>
    table.incremental
      ? checkCursor(table, table.incremental.cursor, source, transfer.columns)
      : null,
  );
  for (const { table, liveExists } of tables) {
    if (table.incremental && !liveExists) checkFirstRunKey(table);
  }
  const incremental = tables.filter(({ table }) => table.incremental);
  if (incremental.length === 0) return tables.map(() => null);
  const stored = await readWatermarks(
    deps.aurora,
    incremental.map(({ table }) => table.target),
  );
  return tables.map(({ table, liveExists }, index) => {
    const cursor = cursors[index];
    if (!cursor) return null;
    const target = displayQualified(table.target);
    const increment = decideIncrement(table, cursor, stored.get(target) ?? null, {
      fullRefresh,
      liveExists,
    });
    if (increment.mode === 'full') {
      deps.log.info('an incremental table is taken whole this run', {
        table: target,
        reason: increment.fullReason,
      });
    } else {
      deps.log.info('an incremental table sends only its rows past the watermark', {
        table: target,
        cursor: increment.cursor,
        watermark: increment.watermarkBefore,
      });
    }
    return increment;
  });
}

/**
 * An increment that matches rows by key (mode "merge", deletes "reconcile") takes it from
 * `primaryKey` or the live table's primary key. The first run creates the live table with no
 * primary key, so without `primaryKey` every increment after it would be refused: say so now,
 * before anything is unloaded or created.
 */
function checkFirstRunKey(table: SyncTable): void {
  const { mode, deletes } = table.incremental!;
  if (table.primaryKey || (mode !== 'merge' && deletes !== 'reconcile')) return;
  const what = mode === 'merge' ? 'incremental mode "merge"' : 'incremental deletes "reconcile"';
  throw new ConfigError(
    `${displayQualified(table.target)}: ${what} needs a key, and the live table does not exist yet: this run would create it without a primary key, and every increment after it would be refused. Set "primaryKey" for this table in the config, or create the live table with a primary key before the first run.`,
  );
}

/** The mode a dry run says an incremental table would run in, and why full. */
export interface DryRunIncrement {
  readonly mode: 'full' | 'incremental';
  readonly fullReason: string | null;
  /** The watermark an incremental run would start from. */
  readonly watermark: string | null;
}

/**
 * decideIncrements as far as Aurora can tell, for a dry run, which asks nothing of Redshift:
 * the cursor's type in the source is not looked at (the run checks it before it unloads).
 * Null for a table without `incremental`.
 */
export async function dryRunIncrements(
  deps: PipelineDeps,
  tables: readonly { readonly table: SyncTable; readonly liveExists: boolean }[],
  fullRefresh: boolean,
): Promise<(DryRunIncrement | null)[]> {
  const incremental = tables.filter(({ table }) => table.incremental);
  if (incremental.length === 0) return tables.map(() => null);
  const stored = await readWatermarks(
    deps.aurora,
    incremental.map(({ table }) => table.target),
  );
  return tables.map(({ table, liveExists }) => {
    if (!table.incremental) return null;
    const watermark = stored.get(displayQualified(table.target)) ?? null;
    return {
      ...incrementMode(table, watermark, { fullRefresh, liveExists, cursorKind: null }),
      watermark: watermark?.watermark ?? null,
    };
  });
}

/** What the swap does for an incremental table beyond its strategy. */
export async function plannedIncrement(
  files: RunFiles,
  transfer: TableTransfer,
  increment: TableIncrement,
): Promise<{ increment?: PlannedIncrement; watermark: PlannedWatermark }> {
  const whole = transfer.delta
    ? await files.readWholeFigures(transfer.table.target)
    : await files.readFigures(transfer.table.target);
  const watermark: PlannedWatermark = {
    source: transfer.table.source,
    cursor: increment.cursor,
    cursorKind: increment.cursorKind,
    value: watermarkAfter(increment, whole),
    fullRefreshReason: nullCursorReason(increment, whole, transfer.table.source),
  };
  if (!transfer.delta) return { watermark };
  return {
    watermark,
    increment: {
      mode: increment.apply,
      proof: {
        cursor: increment.cursor,
        columns: transfer.columns.map(({ name, figures }) => ({ name, figures })),
        figures: figuresRow(whole),
      },
      ...(transfer.keys ? { keys: transfer.keys.table } : {}),
    },
  };
}
