/**
 * The house's rules: imports (.dependency-cruiser.cjs), checked by dependency-cruiser over the
 * whole source tree: no circle of imports, and no import that points up a layer; and files in
 * lambdas/ small enough to be one concern each.
 */
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);

interface Violation {
  readonly from: string;
  readonly to: string;
  readonly rule: { readonly name: string };
  readonly cycle?: readonly { readonly name: string }[];
}

describe('imports', () => {
  it('go round no circle and never point up a layer', async () => {
    const { stdout } = await run(
      'npx',
      [
        'depcruise',
        '--output-type',
        'json',
        ...['lambdas', 'lib', 'bin', 'ops', 'local', 'bench', 'test/aws-contract'],
      ],
      { maxBuffer: 64 * 1024 * 1024 },
    ).catch((error: { stdout?: string }) => ({ stdout: error.stdout ?? '' }));
    const { summary } = JSON.parse(stdout) as {
      summary: { violations: Violation[]; totalCruised: number };
    };
    expect(summary.totalCruised).toBeGreaterThan(100);
    const described = summary.violations.map((violation) =>
      violation.cycle
        ? `${violation.rule.name}: ${[violation.from, ...violation.cycle.map((step) => step.name)].join(' -> ')}`
        : `${violation.rule.name}: ${violation.from} -> ${violation.to}`,
    );
    expect(described).toEqual([]);
  }, 60_000);
});

/** A file past this many lines is usually two concerns; one that is not says why in its header. */
const MAX_LINES = 450;
const REASON = /Longer than \d+ lines because/;

function typeScriptFiles(directory: string): string[] {
  return readdirSync(directory, { withFileTypes: true }).flatMap((entry) => {
    const path = join(directory, entry.name);
    if (entry.isDirectory()) return typeScriptFiles(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

describe('files in lambdas/', () => {
  it(`stay under ${MAX_LINES} lines, or say in their header why not`, () => {
    const tooLong = typeScriptFiles('lambdas').flatMap((path) => {
      const text = readFileSync(path, 'utf8');
      const lines = text.split('\n').length;
      const header = text.slice(0, text.indexOf('*/') + 2);
      return lines > MAX_LINES && !REASON.test(header) ? [`${path}: ${lines} lines`] : [];
    });
    expect(tooLong).toEqual([]);
  });
});
