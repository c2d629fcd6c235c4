/**
 * The house's import rules (.dependency-cruiser.cjs), checked by dependency-cruiser over the
 * whole source tree: no circle of imports, and no import that points up a layer.
 */
import { execFile } from 'node:child_process';
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
      ['depcruise', '--output-type', 'json', 'lambdas', 'lib', 'bin', 'ops', 'local', 'bench'],
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
