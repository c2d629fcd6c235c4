/**
 * What the benchmarks share: a session to the embedded server, a progress line, the median,
 * number formatting, the two table printers (aligned text for the terminal, Markdown for
 * bench/RESULTS.md), the machine line that goes with every set of numbers, and the reading of
 * whole-number flags (`--rows N`, `--rows=N`).
 */
import os from 'node:os';
import pg from 'pg';

export const log = (message: string) => console.log(`  … ${message}`);

export async function connect(url: string, applicationName: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url, application_name: applicationName });
  // A session the server ends while the benchmark stops must not crash the process.
  client.on('error', () => {});
  await client.connect();
  return client;
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export const fmt = (value: number, digits = 1) => value.toFixed(digits);

/** Columns aligned for the terminal: the first left, the others right. */
export function textTable(
  headers: readonly string[],
  rows: readonly (readonly string[])[],
): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: readonly string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/**
 * The same table in Markdown, numbers right-aligned, to paste into bench/RESULTS.md. A `|`
 * inside a cell is escaped so that it does not split the cell.
 */
export function markdownTable(
  headers: readonly string[],
  rows: readonly (readonly string[])[],
): string {
  const line = (cells: readonly string[]) =>
    `| ${cells.map((cell) => cell.replaceAll('|', '\\|')).join(' | ')} |`;
  return [
    line(headers),
    `| ${headers.map((_, i) => (i === 0 ? '---' : '---:')).join(' | ')} |`,
    ...rows.map(line),
  ].join('\n');
}

/** CPUs, memory, OS and Node: what a reader needs to compare numbers across machines. */
export function machineDescription(): string {
  const cpus = os.cpus();
  return `${cpus.length} × ${cpus[0]?.model.trim() ?? 'unknown CPU'}, ${fmt(os.totalmem() / 2 ** 30)} GiB RAM, ${os.type()} ${os.release()} ${os.arch()}, Node ${process.version}`;
}

/** A whole-number flag: its value when not given, and the least value it takes. */
export interface WholeNumberFlag<D extends number | null> {
  readonly default: D;
  readonly least: number;
}

/**
 * Reads `--name N` or `--name=N` for each flag, `--help` (prints `usage`, exits), and refuses
 * anything else by name.
 */
export function parseWholeNumberFlags<F extends Record<string, WholeNumberFlag<number | null>>>(
  argv: readonly string[],
  flags: F,
  usage: string,
): { [K in keyof F]: F[K]['default'] | number } {
  const values: Record<string, number | null> = Object.fromEntries(
    Object.entries(flags).map(([name, flag]) => [name, flag.default]),
  );
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--help' || arg === '-h') {
      console.log(usage);
      process.exit(0);
    }
    const [flag, inline] = arg.split('=', 2);
    const name = flag!.slice(2);
    const spec = flag!.startsWith('--') ? flags[name] : undefined;
    if (!spec) throw new Error(`unknown argument ${JSON.stringify(arg)}; try --help`);
    const value = Number(inline ?? argv[++i]);
    if (!Number.isInteger(value) || value < spec.least) {
      throw new Error(`${flag} must be a whole number, at least ${spec.least}`);
    }
    values[name] = value;
  }
  return values as { [K in keyof F]: F[K]['default'] | number };
}
