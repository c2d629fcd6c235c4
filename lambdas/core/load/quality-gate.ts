/**
 * The quality gate: staging is published only if it holds what Redshift unloaded. The same
 * figures query ran on the source inside the unload transaction; here it runs on staging,
 * and a pure function compares the two, figure by figure.
 */
import { randomUUID } from 'node:crypto';
import { displayQualified, type QualifiedName, quoteQualified } from '../identifiers';
import type { LockRetrySettings } from '../partitions/lock-retry';
import { ADMIN_SCHEMA } from '../schema/admin';
import type { SqlClient } from '../sql-client';
import { prepareStaging } from '../swap/engine';
import {
  CUT_OFF,
  DEFAULT_MAX_WAIT_MS,
  type LongStatementOptions,
  LongStatementStoppedError,
  MARKED_RUNNING_SQL,
  sendLongRunning,
  startWaitBudget,
  waitWhileRunning,
} from '../swap/long-statements';
import { buildFiguresQuery, parseFigures } from '../transfer/figures';
import type {
  ColumnFigures,
  FigureKind,
  SyncTable,
  TableFigures,
  TableTransfer,
} from '../transfer/types';
import { QualityGateError } from './errors';
import { liveRowCount } from './target';

/** The figures statement over staging stopped (failed or was cancelled) after its call was cut off. */
export class FiguresQueryStoppedError extends LongStatementStoppedError {}

/**
 * The comment that opens the figures statement, so that pg_stat_activity shows which backend
 * still runs it after a cut-off. The nonce makes it this attempt's; the staging name is there
 * for a person reading pg_stat_activity, reduced to characters that cannot end the comment.
 */
export function figuresMarker(staging: QualifiedName, nonce: string): string {
  const readable = `${staging.schema}.${staging.name}`.replace(/[^A-Za-z0-9_$.]/g, '_');
  return `redshift-aurora-sync figures ${readable} ${nonce.replace(/[^A-Za-z0-9-]/g, '_')}`;
}

/**
 * One statement that computes staging's figures and stores them, as one JSON object, in the
 * control table, keyed by staging table and marked with `marker`: the result outlives a call
 * that the transport cut off. The marker comment comes first, so that pg_stat_activity's
 * truncated text (track_activity_query_size) still holds it. Parameters: stagingSchema,
 * stagingTable, marker.
 */
export function buildStoreFiguresStatement(
  transfer: Pick<TableTransfer, 'staging' | 'columns'>,
  marker: string,
): string {
  const figuresQuery = buildFiguresQuery(quoteQualified(transfer.staging), transfer.columns);
  return `/* ${marker} */ INSERT INTO ${ADMIN_SCHEMA}.staging_figures AS stored
    (staging_schema, staging_table, statement_marker, figures)
  SELECT :stagingSchema::text::name, :stagingTable::text::name, :marker::text, to_jsonb(f)
  FROM (${figuresQuery}) f
  ON CONFLICT (staging_schema, staging_table) DO UPDATE
  SET statement_marker = EXCLUDED.statement_marker, figures = EXCLUDED.figures,
      computed_at = clock_timestamp()`;
}

/**
 * This attempt's stored figures are read with a SELECT and then removed with a DELETE: over
 * the RDS Data API, formatRecordsAs (how rows come back) "only applies to SELECT statements
 * and is ignored for other types of statements", so a `DELETE ... RETURNING` may return no
 * rows at all (https://docs.aws.amazon.com/rdsdataservice/latest/APIReference/API_ExecuteStatement.html).
 * The marker is this attempt's own, so nothing else writes or deletes the row in between.
 */
const FIGURES_ROW_WHERE = `WHERE staging_schema = :stagingSchema::text::name
    AND staging_table = :stagingTable::text::name AND statement_marker = :marker::text`;
const READ_FIGURES_SQL = `SELECT figures::text AS figures FROM ${ADMIN_SCHEMA}.staging_figures
  ${FIGURES_ROW_WHERE}`;
const DELETE_FIGURES_SQL = `DELETE FROM ${ADMIN_SCHEMA}.staging_figures
  ${FIGURES_ROW_WHERE}`;

/**
 * Runs the figures query over the transfer's staging table. On a large table it can outlast
 * the transport's per-call limit (45 s over the RDS Data API), so it is sent as long-running
 * and stores its one row in the control table staging_figures; after a cut-off the statement
 * is followed in the database (pg_stat_activity, by the marker comment it opens with) until it
 * ends, within the budget, and its row is read back. Throws FiguresQueryStoppedError when it
 * ended without storing figures, LongStatementStillRunningError when the budget ran out first.
 */
export async function stagingFigures(
  db: SqlClient,
  transfer: TableTransfer,
  options: LongStatementOptions = {},
): Promise<TableFigures> {
  const budget = startWaitBudget(options);
  const marker = figuresMarker(transfer.staging, randomUUID());
  const statement = buildStoreFiguresStatement(transfer, marker);
  const stored = {
    stagingSchema: transfer.staging.schema,
    stagingTable: transfer.staging.name,
    marker,
  };
  if (await sendLongRunning(db, statement, stored)) {
    await waitWhileRunning(
      db,
      {
        staging: transfer.staging,
        statement,
        what: 'the figures query',
        waiter: "the staging check's",
        progressHint: 'pg_stat_activity shows it',
        runningSql: MARKED_RUNNING_SQL,
        runningParameters: { marker },
      },
      budget,
    );
  }
  const [row] = await db.query<{ figures: string }>(READ_FIGURES_SQL, stored);
  await db.query(DELETE_FIGURES_SQL, stored);
  if (!row) {
    throw new FiguresQueryStoppedError(
      `${displayQualified(transfer.staging)}: the figures query stopped before it finished. ${CUT_OFF}, where it has since ended without storing the figures: it failed or was cancelled, and the database log says why. Nothing was published; restart the run.`,
      transfer.staging,
      statement,
    );
  }
  return parseFigures(JSON.parse(row.figures) as Record<string, unknown>, transfer.columns);
}

export interface QualityGateInput {
  readonly table: SyncTable;
  /** Redshift's figures, taken in the unload snapshot. */
  readonly source: TableFigures;
  readonly staging: TableFigures;
  /**
   * The live table's row count, needed only when the source is empty; null when there is no
   * live table (or it was not counted).
   */
  readonly liveRows: number | null;
}

export type QualityVerdict =
  | { readonly passed: true; readonly rows: number }
  | {
      readonly passed: false;
      readonly problems: readonly string[];
      /** The failing figures side by side: figure | Redshift | staging. */
      readonly report: string;
    };

/**
 * Redshift prints real and double precision rounded to 6 and 15 significant digits;
 * PostgreSQL prints the shortest text that reads back exactly (up to 9 and 17). Rounded to
 * Redshift's digits, the same value reads the same from both.
 */
const FLOAT_DIGITS: Partial<Record<FigureKind, number>> = { float4: 6, float8: 15 };

function floatText(text: string, digits: number): string {
  const trimmed = text.trim();
  if (/^[+-]?inf(inity)?$/i.test(trimmed))
    return trimmed.startsWith('-') ? '-Infinity' : 'Infinity';
  if (/^nan$/i.test(trimmed)) return 'NaN';
  const value = Number(trimmed);
  return Number.isNaN(value) ? trimmed : value.toPrecision(digits);
}

function sameFigure(kind: FigureKind, source: string | null, staging: string | null): boolean {
  if (source === null || staging === null) return source === staging;
  const digits = FLOAT_DIGITS[kind];
  if (digits) return floatText(source, digits) === floatText(staging, digits);
  return source === staging;
}

interface FigureLine {
  readonly figure: string;
  readonly source: string;
  readonly staging: string;
}

function show(value: string | number | null | undefined): string {
  return value === null || value === undefined ? 'NULL' : String(value);
}

/** Aligned columns, so the numbers read side by side in a log line or a notification. */
export function formatReport(lines: readonly FigureLine[]): string {
  const rows = [{ figure: 'figure', source: 'Redshift', staging: 'staging' }, ...lines];
  const width = (key: keyof FigureLine) => Math.max(...rows.map((row) => row[key].length));
  const figureWidth = width('figure');
  const sourceWidth = width('source');
  return rows
    .map((row) =>
      `${row.figure.padEnd(figureWidth)} | ${row.source.padEnd(sourceWidth)} | ${row.staging}`.trimEnd(),
    )
    .join('\n');
}

const COLUMN_FIGURES: readonly {
  readonly key: 'min' | 'max' | 'octets' | 'trues';
  readonly label: string;
}[] = [
  { key: 'min', label: 'min' },
  { key: 'max', label: 'max' },
  { key: 'octets', label: 'total bytes' },
  { key: 'trues', label: 'true count' },
];

function compareColumn(source: ColumnFigures, staging: ColumnFigures): FigureLine[] {
  const failing: FigureLine[] = [];
  if (source.nulls !== staging.nulls) {
    failing.push({
      figure: `${source.column}: NULL count`,
      source: show(source.nulls),
      staging: show(staging.nulls),
    });
  }
  for (const { key, label } of COLUMN_FIGURES) {
    const sourceValue = source[key];
    const stagingValue = staging[key];
    if (sourceValue === undefined && stagingValue === undefined) continue;
    const sourceText = sourceValue == null ? null : String(sourceValue);
    const stagingText = stagingValue == null ? null : String(stagingValue);
    if (!sameFigure(source.kind, sourceText, stagingText)) {
      failing.push({
        figure: `${source.column}: ${label}`,
        source: show(sourceText),
        staging: show(stagingText),
      });
    }
  }
  return failing;
}

/** Compares staging with the source, figure by figure. Pure. */
export function qualityGate(input: QualityGateInput): QualityVerdict {
  const { table, source, staging, liveRows } = input;
  const problems: string[] = [];
  const failing: FigureLine[] = [];
  if (source.rows === 0 && (liveRows ?? 0) > 0 && !table.allowEmpty) {
    problems.push(
      `the source ${displayQualified(table.source)} has no rows, but the live table ${displayQualified(table.target)} has ${liveRows}; publishing would empty it. Set allowEmpty: true in the table's config if an empty table is expected.`,
    );
    failing.push({
      figure: `rows (live table: ${liveRows})`,
      source: show(source.rows),
      staging: show(staging.rows),
    });
  }
  if (source.rows !== staging.rows) {
    problems.push(
      `row count: Redshift unloaded ${source.rows} rows, staging holds ${staging.rows} (a file was lost, imported twice or changed).`,
    );
    failing.push({ figure: 'rows', source: show(source.rows), staging: show(staging.rows) });
  }
  const sourceNames = source.columns.map((column) => column.column);
  const stagingNames = staging.columns.map((column) => column.column);
  if (sourceNames.join('\0') !== stagingNames.join('\0')) {
    problems.push(
      `the figures describe different columns: Redshift [${sourceNames.join(', ')}], staging [${stagingNames.join(', ')}]; the figures were taken for another column plan, so unload again.`,
    );
  } else {
    source.columns.forEach((sourceColumn, index) => {
      const lines = compareColumn(sourceColumn, staging.columns[index]!);
      for (const line of lines) {
        problems.push(`${line.figure}: ${line.source} in Redshift, ${line.staging} in staging.`);
      }
      failing.push(...lines);
    });
  }
  if (problems.length === 0) return { passed: true, rows: staging.rows };
  return { passed: false, problems, report: formatReport(failing) };
}

export interface CheckedStaging {
  readonly rows: number;
  /** The live table's indexes, built on staging (empty on a first run). */
  readonly indexStatements: readonly string[];
  readonly figures: TableFigures;
}

/**
 * Holds staging to the source's figures and, when it passes, gives it the live table's
 * indexes and fresh statistics (the swap engine's prepareStaging). Throws QualityGateError,
 * with the numbers side by side, when it does not.
 */
export async function checkAndPrepareStaging(
  db: SqlClient,
  transfer: TableTransfer,
  sourceFigures: TableFigures,
  options: Pick<LongStatementOptions, 'now' | 'sleep' | 'pollIntervalMs'> & {
    /**
     * How long the whole check may take, counted from its start. It bounds the waits for the
     * statements that outlast a transport's per-call limit: first the figures query, then, with
     * what is left, index builds and ANALYZE. Default: DEFAULT_MAX_WAIT_MS (14 minutes).
     */
    readonly budgetMs?: number;
    /** The run's `locks` settings, for the DDL done on a partitioned live table (prepareStaging). */
    readonly locks?: LockRetrySettings;
  } = {},
): Promise<CheckedStaging> {
  const now = options.now ?? Date.now;
  const started = now();
  const budgetMs = options.budgetMs ?? DEFAULT_MAX_WAIT_MS;
  const waits = {
    now,
    ...(options.sleep ? { sleep: options.sleep } : {}),
    ...(options.pollIntervalMs !== undefined ? { pollIntervalMs: options.pollIntervalMs } : {}),
  };
  const figures = await stagingFigures(db, transfer, { ...waits, maxWaitMs: budgetMs });
  // Only the empty guard needs the live count; counting a large live table for nothing could
  // outlast the Data API's 45 s. An empty delta is no empty source: nothing changed. (An
  // emptied source fails the increment's whole-table proof, and the full run after it meets
  // this guard.)
  const liveRows =
    sourceFigures.rows === 0 && !transfer.delta
      ? await liveRowCount(db, transfer.table.target)
      : null;
  const verdict = qualityGate({
    table: transfer.table,
    source: sourceFigures,
    staging: figures,
    liveRows,
  });
  if (!verdict.passed) {
    throw new QualityGateError(
      `${displayQualified(transfer.table.target)}: staging ${displayQualified(transfer.staging)} does not match what Redshift unloaded, so nothing was published:\n- ${verdict.problems.join('\n- ')}\n\n${verdict.report}`,
      verdict.problems,
      verdict.report,
    );
  }
  const { statements } = await prepareStaging(
    db,
    {
      live: transfer.table.target,
      staging: transfer.staging,
      strategy: transfer.delta ? 'increment' : transfer.table.strategy,
    },
    {
      ...waits,
      maxWaitMs: Math.max(0, budgetMs - (now() - started)),
      ...(options.locks ? { locks: options.locks } : {}),
    },
  );
  return { rows: verdict.rows, indexStatements: statements, figures };
}
