/**
 * Slices that each read their own part of a table, as a cluster's slices each hold their own
 * rows: when an UNLOAD's query only scans one table (`SELECT <list> FROM <table> [WHERE
 * <condition>]`, no aggregate, window, set-returning function, subquery, DISTINCT or ORDER BY),
 * slice `s` reads the rows in its range of the table's blocks (`ctid` between two block
 * numbers: a TID Range Scan, https://www.postgresql.org/docs/current/ddl-system-columns.html
 * and PostgreSQL 14's release notes), so every row is read once. Any other query is read whole
 * by every slice, which keeps every `slices`-th row (unload-format.ts copyStatement).
 */

import type pg from 'pg';
import { significantTokens, type Token } from './redshift-sql';

/** The rows of one table, split into block ranges. */
export interface BlockSplit {
  /** The table's size in blocks when the UNLOAD starts. */
  readonly blocks: number;
  /** The query, reading only the blocks from `from` up to `to` (to the end with null). */
  rangeQuery(from: number, to: number | null): string;
}

/** Words after which the query is more than a filtered scan of its table. */
const BEYOND_A_SCAN = new Set([
  'group',
  'having',
  'window',
  'qualify',
  'order',
  'limit',
  'offset',
  'fetch',
  'for',
  'union',
  'intersect',
  'except',
  'minus',
]);

/** Plan nodes that only read one table's rows, filtered, each once. */
const SCAN_NODES = new Set([
  'Seq Scan',
  'Index Scan',
  'Index Only Scan',
  'Bitmap Heap Scan',
  'Bitmap Index Scan',
  'BitmapAnd',
  'BitmapOr',
]);

interface PlanNode {
  readonly 'Node Type': string;
  readonly 'Relation Name'?: string;
  readonly 'Parent Relationship'?: string;
  readonly Plans?: readonly PlanNode[];
}

function planNodes(node: PlanNode): PlanNode[] {
  return [node, ...(node.Plans ?? []).flatMap(planNodes)];
}

const isWord = (token: Token | undefined, word: string) =>
  token?.kind === 'word' && token.value.toLowerCase() === word;
const isName = (token: Token | undefined) => token?.kind === 'word' || token?.kind === 'identifier';

/**
 * The query as `SELECT <list> FROM <table>` and the offset its WHERE condition starts at (null
 * without one), read from its tokens; null for any other shape.
 */
function scanShape(
  query: string,
): { head: string; table: string; condition: number | null } | null {
  const tokens = significantTokens(query);
  if (!isWord(tokens[0], 'select')) return null;
  let depth = 0;
  let from = -1;
  for (let index = 1; index < tokens.length && from === -1; index += 1) {
    const token = tokens[index]!;
    if (token.text === '(') depth += 1;
    else if (token.text === ')') depth -= 1;
    else if (depth === 0 && isWord(token, 'from')) from = index;
  }
  if (from === -1 || !isName(tokens[from + 1])) return null;
  let last = from + 1;
  if (tokens[last + 1]?.text === '.' && isName(tokens[last + 2])) last += 2;
  const lastToken = tokens[last]!;
  const tableEnd = lastToken.start + lastToken.text.length;
  const table = query.slice(tokens[from + 1]!.start, tableEnd);
  const head = query.slice(0, tableEnd);
  const next = tokens[last + 1];
  if (next === undefined) return { head, table, condition: null };
  if (!isWord(next, 'where')) return null;
  depth = 0;
  for (const token of tokens.slice(last + 2)) {
    if (token.text === '(') depth += 1;
    else if (token.text === ')') depth -= 1;
    else if (
      depth === 0 &&
      (token.text === ';' ||
        (token.kind === 'word' && BEYOND_A_SCAN.has(token.value.toLowerCase())))
    )
      return null;
  }
  return { head, table, condition: next.start + next.text.length };
}

/**
 * How `query` splits into block ranges, or null if it does not only scan one table: its
 * shape (scanShape), a table or materialized view with a `ctid` (not a view, a partitioned or
 * a foreign table), and a plan of scan nodes on that one relation.
 */
export async function blockSplit(client: pg.ClientBase, query: string): Promise<BlockSplit | null> {
  const shape = scanShape(query);
  if (!shape) return null;
  const relation = await client.query<{ blocks: number }>({
    text: `SELECT (pg_catalog.pg_relation_size(c.oid) / pg_catalog.current_setting('block_size')::int)::int AS blocks
             FROM pg_catalog.pg_class AS c
            WHERE c.oid = pg_catalog.to_regclass($1) AND c.relkind IN ('r', 'm')`,
    values: [shape.table],
  });
  if (relation.rows.length === 0) return null;
  const explained = await client.query<{ 'QUERY PLAN': [{ Plan: PlanNode }] }>(
    `EXPLAIN (FORMAT JSON) ${query}`,
  );
  const nodes = planNodes(explained.rows[0]!['QUERY PLAN'][0].Plan);
  const scans = nodes.filter((node) => node['Relation Name'] !== undefined);
  if (
    scans.length !== 1 ||
    nodes.some(
      (node) =>
        !SCAN_NODES.has(node['Node Type']) ||
        node['Parent Relationship'] === 'InitPlan' ||
        node['Parent Relationship'] === 'SubPlan',
    )
  ) {
    return null;
  }
  const { head, condition } = shape;
  return {
    blocks: relation.rows[0]!.blocks,
    rangeQuery(from, to) {
      const range = [
        `ctid >= '(${from},0)'::pg_catalog.tid`,
        ...(to === null ? [] : [`ctid < '(${to},0)'::pg_catalog.tid`]),
        // On lines of their own: a condition may end in a line comment.
        ...(condition === null ? [] : [`(\n${query.slice(condition)}\n)`]),
      ];
      return `${head} WHERE ${range.join(' AND ')}`;
    },
  };
}
