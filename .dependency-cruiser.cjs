/**
 * The import rules of the house, checked by test/architecture.test.ts (and by
 * `npx depcruise lambdas lib bin ops local bench test/aws-contract`). Layers, lowest first:
 *   lambdas/core      pure logic and SQL
 *   lambdas/pipeline  the steps, over ports
 *   lambdas/adapters, lambdas/handlers
 *   lib               the CDK app's constructs (bin runs them)
 *   local             the local run and its stand-ins (benchmarks and tests use them)
 *   ops, bench, bin   on top, apart from each other
 *   test              tests and their infrastructure (test/aws-contract: the AWS contract
 *                     harness), which nothing else imports
 * A module imports only from its own layer or those below, and no import goes round a circle.
 */
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment:
        'A circle of imports: one of them points the wrong way; give the shared part a module of its own.',
      from: {},
      to: { circular: true },
    },
    {
      name: 'lambdas-stay-below',
      severity: 'error',
      comment:
        'The Lambda code is bundled alone: it must not reach into the CDK app, the local run, the operator commands, benchmarks or tests.',
      from: { path: '^lambdas/' },
      to: { path: '^(lib|bin|local|ops|bench|test)/' },
    },
    {
      name: 'core-is-the-bottom',
      severity: 'error',
      comment: 'lambdas/core is pure logic: it knows no pipeline step, adapter or handler.',
      from: { path: '^lambdas/core/' },
      to: { path: '^lambdas/(pipeline|adapters|handlers)/' },
    },
    {
      name: 'pipeline-over-ports',
      severity: 'error',
      comment: 'The steps run over ports; adapters and handlers are above them.',
      from: { path: '^lambdas/pipeline/' },
      to: { path: '^lambdas/(adapters|handlers)/' },
    },
    {
      name: 'adapters-not-handlers',
      severity: 'error',
      from: { path: '^lambdas/adapters/' },
      to: { path: '^lambdas/handlers/' },
    },
    {
      name: 'lib-is-cdk-only',
      severity: 'error',
      comment:
        'lib/ is the CDK app: the local run, operator commands and benchmarks sit on top of it.',
      from: { path: '^lib/' },
      to: { path: '^(bin|local|ops|bench|test)/' },
    },
    {
      name: 'bin-runs-lib',
      severity: 'error',
      comment:
        'The CDK app builds stacks from lib/; what it shares with the operator commands goes below both.',
      from: { path: '^bin/' },
      to: { path: '^(ops|local|bench|test)/' },
    },
    {
      name: 'ops-is-production',
      severity: 'error',
      comment:
        'The operator commands act on deployed environments: they never lean on the local stand-ins.',
      from: { path: '^ops/' },
      to: { path: '^(local|bench|bin|test)/' },
    },
    {
      name: 'local-below-bench',
      severity: 'error',
      comment:
        'The local run and its stand-ins serve benchmarks and tests, never the other way round.',
      from: { path: '^local/' },
      to: { path: '^(ops|bench|bin|test)/' },
    },
    {
      name: 'contract-harness-over-local',
      severity: 'error',
      comment:
        'The AWS contract harness runs the CDK app and the Lambda code over fakes, with the local stand-ins; it has no use for the operator commands, benchmarks or the CDK entry point.',
      from: { path: '^test/aws-contract/' },
      to: { path: '^(ops|bench|bin)/' },
    },
    {
      name: 'bench-on-top',
      severity: 'error',
      comment:
        'Benchmarks measure the product; of the test infrastructure they may use only the AWS contract harness (bench:cost counts what a run is billed for through it).',
      from: { path: '^bench/' },
      to: { path: '^(ops|bin)/|^test/(?!aws-contract/)' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: 'node_modules' },
    tsConfig: { fileName: 'tsconfig.json' },
    tsPreCompilationDeps: true,
    enhancedResolveOptions: { extensions: ['.ts', '.js', '.json'] },
  },
};
