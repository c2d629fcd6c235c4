/**
 * The state machine definition exactly as `cdk synth` writes it, for running outside AWS with
 * aws-local-stepfunctions: the stack is synthesized in-process (bundling skipped, so no
 * Lambda is built), the definition is taken from the template, and each Task state is bound
 * to a local handler through the function its Resource names.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { App, type CfnResource } from 'aws-cdk-lib';
import { ExecutionError, StateMachine, type StateMachineDefinition } from 'aws-local-stepfunctions';
import type { AwsSettings, RuntimeConfig } from '../../lambdas/core/config';
import type { PipelineFunctionName } from '../../lib/function-access';
import { SyncStack } from '../../lib/sync-stack';

installPromiseWithResolvers();

/**
 * aws-local-stepfunctions 3 calls Promise.withResolvers (Node 22+) for every Task state;
 * Node 20.19, which this project supports, does not have it.
 */
function installPromiseWithResolvers(): void {
  const promise = Promise as unknown as { withResolvers?: unknown };
  if (typeof promise.withResolvers === 'function') return;
  Object.defineProperty(Promise, 'withResolvers', {
    configurable: true,
    writable: true,
    value: <T>() => {
      let resolve!: (value: T | PromiseLike<T>) => void;
      let reject!: (reason?: unknown) => void;
      const created = new Promise<T>((onResolve, onReject) => {
        resolve = onResolve;
        reject = onReject;
      });
      return { promise: created, resolve, reject };
    },
  });
}

/**
 * Stand-ins for the AWS settings: they only reach environment variables and IAM statements,
 * never the definition, which depends on the runtime configuration alone. Secret ARNs are
 * complete, with the 6 characters Secrets Manager appends to a secret's name, as a config file
 * gives them: IAM evaluates GetSecretValue against that full ARN.
 */
const LOCAL_ACCOUNT = '000000000000';
const LOCAL_REGION = 'us-east-1';
const LOCAL_AWS: AwsSettings = {
  account: LOCAL_ACCOUNT,
  region: LOCAL_REGION,
  redshift: {
    clusterIdentifier: 'local',
    database: 'local',
    secretArn: `arn:aws:secretsmanager:${LOCAL_REGION}:${LOCAL_ACCOUNT}:secret:local-redshift-AbCdEf`,
  },
  aurora: {
    clusterArn: `arn:aws:rds:${LOCAL_REGION}:${LOCAL_ACCOUNT}:cluster:local`,
    secretArn: `arn:aws:secretsmanager:${LOCAL_REGION}:${LOCAL_ACCOUNT}:secret:local-aurora-AbCdEf`,
    database: 'local',
  },
  schedule: { expression: 'rate(1 day)', timeZone: 'UTC', enabled: false },
};

export interface SynthesizeOptions {
  /** Names the in-memory stack and its state machine; the definition does not depend on it. Default `local`. */
  readonly environmentName?: string;
  /** An existing UNLOAD role (aws.unloadRoleArn) instead of the one the stack creates. */
  readonly unloadRoleArn?: string;
}

export interface SynthesizedDefinition {
  /** The Amazon States Language document, Lambda ARNs resolved to `arn:aws:lambda:...:function:<logical id>`. */
  readonly definition: StateMachineDefinition;
  /** The handler each Task state runs, by state name (Map iterations included). */
  readonly handlerByState: Readonly<Record<string, PipelineFunctionName>>;
  /** The whole synthesized CloudFormation template, as `cdk synth` writes it. */
  readonly template: SynthesizedTemplate;
  /** Each handler's AWS::Lambda::Function logical ID in `template`. */
  readonly functionLogicalIds: Readonly<Record<PipelineFunctionName, string>>;
  /** Where the stack was synthesized for: what its pseudo parameters resolve to. */
  readonly environment: {
    readonly account: string;
    readonly region: string;
    readonly partition: string;
  };
}

export interface SynthesizedTemplate {
  readonly Resources: Record<string, { Type: string; Properties: Record<string, unknown> }>;
}

/**
 * The definitions synthesized in this process, as JSON, by the configuration and options they
 * were made from: synthesizing takes 0.15 to 1 s (the first time the most), which a process
 * running several local runs with one configuration (the benchmark, the demo) paid before
 * every run. The stack depends on nothing else, so the same input gives the same definition.
 * A few are kept, the oldest dropped first.
 */
const synthesizedByInput = new Map<string, string>();
const SYNTHESIZED_KEPT = 8;

/**
 * Builds the stack in memory and returns its state machine definition: a fresh copy each call
 * (callers may change what they get), synthesized once per configuration and options.
 */
export function synthesizeDefinition(
  runtimeConfig: RuntimeConfig,
  options: SynthesizeOptions = {},
): SynthesizedDefinition {
  const input = JSON.stringify([runtimeConfig, options]);
  let synthesized = synthesizedByInput.get(input);
  if (synthesized === undefined) {
    synthesized = JSON.stringify(synthesize(runtimeConfig, options));
    if (synthesizedByInput.size >= SYNTHESIZED_KEPT) {
      synthesizedByInput.delete(synthesizedByInput.keys().next().value!);
    }
    synthesizedByInput.set(input, synthesized);
  }
  return JSON.parse(synthesized) as SynthesizedDefinition;
}

function synthesize(
  runtimeConfig: RuntimeConfig,
  options: SynthesizeOptions,
): SynthesizedDefinition {
  const outdir = mkdtempSync(join(tmpdir(), 'redshift-aurora-sync-synth-'));
  try {
    // No stack is bundled (the definition needs the functions' ARNs, not their code) and the
    // template is not run through CDK's built-in CloudFormation checks, which take seconds;
    // `cdk synth` does both.
    const app = new App({
      outdir,
      builtinCloudFormationValidation: false,
      context: { 'aws:cdk:bundling-stacks': [] },
    });
    const stack = new SyncStack(app, {
      environmentName: options.environmentName ?? 'local',
      runtimeConfig,
      aws: options.unloadRoleArn
        ? { ...LOCAL_AWS, unloadRoleArn: options.unloadRoleArn }
        : LOCAL_AWS,
    });
    const handlerByFunction = new Map<string, PipelineFunctionName>();
    for (const [handler, fn] of Object.entries(stack.sync.functions)) {
      const logicalId = stack.getLogicalId(fn.node.defaultChild as CfnResource);
      handlerByFunction.set(logicalId, handler as PipelineFunctionName);
    }
    const template = app.synth().getStackByName(stack.stackName).template as SynthesizedTemplate;
    const stateMachines = Object.values(template.Resources).filter(
      (resource) => resource.Type === 'AWS::StepFunctions::StateMachine',
    );
    if (stateMachines.length !== 1) {
      throw new Error(`expected one state machine in the template, found ${stateMachines.length}`);
    }
    const definitionText = resolveDefinitionString(
      stateMachines[0]!.Properties.DefinitionString,
      (logicalId) => {
        if (!handlerByFunction.has(logicalId)) {
          throw new Error(
            `the definition refers to ${logicalId}, which is not a pipeline function`,
          );
        }
        return functionArn(logicalId);
      },
    );
    const definition = JSON.parse(definitionText) as StateMachineDefinition;
    return {
      definition,
      handlerByState: handlersOfTasks(definition, handlerByFunction),
      template,
      functionLogicalIds: Object.fromEntries(
        [...handlerByFunction].map(([logicalId, handler]) => [handler, logicalId]),
      ) as Record<PipelineFunctionName, string>,
      environment: { account: LOCAL_ACCOUNT, region: LOCAL_REGION, partition: 'aws' },
    };
  } finally {
    rmSync(outdir, { recursive: true, force: true });
  }
}

function functionArn(logicalId: string): string {
  return `arn:aws:lambda:${LOCAL_REGION}:${LOCAL_ACCOUNT}:function:${logicalId}`;
}

/** Joins the template's `Fn::Join` of the definition, putting in the functions' ARNs. */
function resolveDefinitionString(value: unknown, lambdaArn: (logicalId: string) => string): string {
  if (typeof value === 'string') return value;
  const joined = (value as { 'Fn::Join'?: [string, unknown[]] })['Fn::Join'];
  if (!joined) throw new Error(`unexpected DefinitionString ${JSON.stringify(value)}`);
  const [delimiter, parts] = joined;
  return parts
    .map((part) => {
      if (typeof part === 'string') return part;
      const getAtt = (part as { 'Fn::GetAtt'?: [string, string] })['Fn::GetAtt'];
      if (getAtt && getAtt[1] === 'Arn') return lambdaArn(getAtt[0]);
      const ref = (part as { Ref?: string }).Ref;
      if (ref === 'AWS::Partition') return 'aws';
      if (ref === 'AWS::Region') return LOCAL_REGION;
      if (ref === 'AWS::AccountId') return LOCAL_ACCOUNT;
      throw new Error(`cannot resolve ${JSON.stringify(part)} in the state machine definition`);
    })
    .join(delimiter);
}

type States = StateMachineDefinition['States'];

/** Every Task state, nested Map processors included, mapped to the handler its Resource names. */
function handlersOfTasks(
  definition: Pick<StateMachineDefinition, 'States'>,
  handlerByFunction: ReadonlyMap<string, PipelineFunctionName>,
): Record<string, PipelineFunctionName> {
  const handlers: Record<string, PipelineFunctionName> = {};
  const visit = (states: States) => {
    for (const [name, state] of Object.entries(states)) {
      if (state.Type === 'Task') {
        const logicalId = state.Resource.slice(state.Resource.lastIndexOf(':') + 1);
        const handler = handlerByFunction.get(logicalId);
        if (!handler)
          throw new Error(`Task state "${name}" runs ${state.Resource}, no pipeline function`);
        handlers[name] = handler;
      }
      if (state.Type === 'Map') {
        const processor = state.ItemProcessor ?? state.Iterator;
        if (processor) visit(processor.States);
      }
    }
  };
  visit(definition.States);
  return handlers;
}

/** One event of a local execution (state entered or left, retried, caught; execution ended). */
export type ExecutionEvent =
  ReturnType<StateMachine['run']>['eventLogs'] extends AsyncGenerator<infer Event> ? Event : never;

/** A step run in place of its Lambda function: the state in, the function's result out. */
export type LocalHandler = (input: unknown) => Promise<unknown>;

export interface RunDefinitionOptions {
  /** Milliseconds to wait in the named Wait states instead of their Seconds or SecondsPath. */
  readonly waitTimeOverrides?: Readonly<Record<string, number>>;
  /** Milliseconds between retries of the named states instead of their Retry intervals. */
  readonly retryIntervalOverrides?: Readonly<Record<string, number>>;
  /** `$$.Execution.Name`, the run's id. Default `local-<time>`. */
  readonly executionName?: string;
  /** `$$.StateMachine.Id`. Default a local ARN. */
  readonly stateMachineArn?: string;
  /** Sees every event of the execution as it happens (states entered and left, retries, catches). */
  readonly onEvent?: (event: ExecutionEvent) => void;
  /**
   * Stops the execution where it is (no Catch runs): for a caller enforcing a limit the
   * service would end the execution over. runDefinition then rejects with the signal's reason.
   */
  readonly abortSignal?: AbortSignal;
}

export type ExecutionOutcome =
  | { readonly status: 'SUCCEEDED'; readonly output: unknown }
  | { readonly status: 'FAILED'; readonly error: string; readonly cause: string };

/**
 * The definitions (as JSON) this process has already run, so validated: aws-local-stepfunctions
 * checks a definition against the Amazon States Language schema (asl-validator) every time a
 * state machine is made of it, 0.1 to 0.4 s, which every local run paid before its first state.
 * The same text passes the same check, so it is checked once; the oldest are dropped first.
 */
const validatedDefinitions = new Set<string>();

function rememberValidated(definitionText: string): void {
  validatedDefinitions.delete(definitionText);
  validatedDefinitions.add(definitionText);
  if (validatedDefinitions.size > SYNTHESIZED_KEPT) {
    validatedDefinitions.delete(validatedDefinitions.values().next().value!);
  }
}

/**
 * Runs the definition with each Task bound to `handlersByName[<its handler>]`. Every handler
 * the definition uses must be given, so a missing binding fails before anything runs.
 */
export async function runDefinition(
  synthesized: SynthesizedDefinition,
  handlersByName: Readonly<Partial<Record<PipelineFunctionName, LocalHandler>>>,
  input: unknown,
  options: RunDefinitionOptions = {},
): Promise<ExecutionOutcome> {
  const missing = [...new Set(Object.values(synthesized.handlerByState))].filter(
    (handler) => !handlersByName[handler],
  );
  if (missing.length > 0) {
    throw new Error(
      `no local handler for ${missing.join(', ')}; give one for each Task's function`,
    );
  }
  const taskResourceLocalHandlers = Object.fromEntries(
    Object.entries(synthesized.handlerByState).map(([state, handler]) => [
      state,
      async (stateInput: unknown) =>
        ((await handlersByName[handler]!(stateInput)) ?? null) as never,
    ]),
  );
  const executionName =
    options.executionName ?? `local-${new Date().toISOString().replace(/\D/g, '').slice(0, 17)}`;
  const stateMachineArn =
    options.stateMachineArn ?? `arn:aws:states:${LOCAL_REGION}:${LOCAL_ACCOUNT}:stateMachine:local`;
  const definitionText = JSON.stringify(synthesized.definition);
  const machine = new StateMachine(
    synthesized.definition,
    validatedDefinitions.has(definitionText) ? { validationOptions: { noValidate: true } } : {},
  );
  // Reached only when the definition passed: an invalid one is refused again next time.
  rememberValidated(definitionText);
  const execution = machine.run(input as never, {
    overrides: {
      taskResourceLocalHandlers,
      waitTimeOverrides: { ...options.waitTimeOverrides },
      retryIntervalOverrides: { ...options.retryIntervalOverrides },
    },
    context: {
      Execution: { Id: executionArnOf(stateMachineArn, executionName), Name: executionName },
      StateMachine: { Id: stateMachineArn },
    },
  });
  const { onEvent, abortSignal } = options;
  abortSignal?.addEventListener('abort', () => execution.abort(), { once: true });
  const watched = onEvent
    ? (async () => {
        for await (const event of execution.eventLogs) onEvent(event);
      })()
    : Promise.resolve();
  try {
    const output = await execution.result;
    await watched;
    return { status: 'SUCCEEDED', output };
  } catch (error) {
    await watched;
    if (abortSignal?.aborted) throw abortSignal.reason;
    if (!(error instanceof ExecutionError)) throw error;
    const reason = error.cause as Error;
    return { status: 'FAILED', error: reason.name, cause: reason.message };
  }
}

/** A Standard execution's ARN: its state machine's, with `execution` and its name. */
export function executionArnOf(stateMachineArn: string, executionName: string): string {
  return `${stateMachineArn.replace(':stateMachine:', ':execution:')}:${executionName}`;
}
