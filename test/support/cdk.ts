/**
 * A bare stack for testing one construct part on its own: no bundling (the functions' code
 * does not matter to their template), no CloudFormation validation, and cdk-nag's
 * AwsSolutions findings of the whole app.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { App, Stack } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';

const outdirs: string[] = [];

export function testStack(): { readonly app: App; readonly stack: Stack } {
  const outdir = mkdtempSync(join(tmpdir(), 'cdk-part-test-'));
  outdirs.push(outdir);
  const app = new App({
    outdir,
    builtinCloudFormationValidation: false,
    context: { 'aws:cdk:bundling-stacks': [] },
  });
  const stack = new Stack(app, 'PartTest', {
    env: { account: '123456789012', region: 'eu-west-1' },
  });
  return { app, stack };
}

export function removeTestOutput(): void {
  for (const outdir of outdirs.splice(0)) rmSync(outdir, { recursive: true, force: true });
}

/** cdk-nag's AwsSolutions findings not acknowledged, as `rule: construct paths`. */
export function nagFindings(app: App): string[] {
  const report = new AwsSolutionsChecks(app).validateScope(app);
  return report.violations.map(
    (violation) =>
      `${violation.ruleName}: ${violation.violatingResources.map((r) => r.constructPath).join(', ')}`,
  );
}

export interface Statement {
  readonly Action: string | string[];
  readonly Resource: unknown;
  readonly Principal?: unknown;
  readonly Condition?: unknown;
}

export function actionsOf(statement: Statement): string[] {
  return Array.isArray(statement.Action) ? statement.Action : [statement.Action];
}
