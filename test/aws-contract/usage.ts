/**
 * What a run through the contract harness uses of what AWS limits or bills by count: history
 * events (limited to 25,000 per execution), Step Functions state transitions, Lambda invocations and their memory, SDK calls per service and
 * operation. The harness records them per run; bench/run-cost.ts prices them.
 */
import type { PipelineFunctionName } from '../../lib/function-access';
import type { ExecutionEvent, SynthesizedDefinition } from '../../local/run/definition';

/**
 * The events the real history would hold for one of aws-local-stepfunctions' events. Real
 * history (API_HistoryEvent.html): a Lambda Task is TaskStateEntered, TaskScheduled,
 * TaskStarted, TaskSucceeded|TaskFailed, TaskStateExited; a retry adds TaskScheduled,
 * TaskStarted and the failed attempt's TaskFailed; a Map adds MapStateStarted, per iteration
 * MapIterationStarted and MapIterationSucceeded|Failed, and MapStateSucceeded|Failed; other
 * states are <Type>StateEntered and <Type>StateExited; the execution ExecutionStarted and
 * ExecutionSucceeded|Failed. The local engine reports states entered/exited/failed/retried and
 * Map iterations, so Task and Map events are derived from those; a Catch adds no event of its own.
 */
export function countHistoryEvents(event: ExecutionEvent): number {
  const type = 'state' in event ? event.state.type : undefined;
  switch (event.type) {
    case 'ExecutionStarted':
    case 'ExecutionSucceeded':
    case 'ExecutionFailed':
    case 'MapIterationStarted':
    case 'MapIterationSucceeded':
    case 'MapIterationFailed':
      return 1;
    case 'StateEntered':
      return type === 'Task' ? 3 : type === 'Map' ? 2 : 1;
    case 'StateExited':
      return type === 'Task' || type === 'Map' ? 2 : 1;
    case 'StateFailed':
      return type === 'Task' || type === 'Map' ? 1 : 0;
    case 'StateRetried':
      return 3;
    default:
      return 0;
  }
}

/**
 * Standard workflows are billed per state transition: "Step Functions counts a state
 * transition each time a step of your workflow is executed ... including retries"
 * (https://aws.amazon.com/step-functions/pricing/). So every state entered (inside Map
 * iterations too) and every retry of a Task.
 */
export function countStateTransitions(event: ExecutionEvent): number {
  return event.type === 'StateEntered' || event.type === 'StateRetried' ? 1 : 0;
}

/** A function's MemorySize in the synthesized template (Lambda's default, 128 MB, when unset). */
export function functionMemoryMb(
  synthesized: SynthesizedDefinition,
  handler: PipelineFunctionName,
): number {
  const resource = synthesized.template.Resources[synthesized.functionLogicalIds[handler]];
  const memory = resource?.Properties.MemorySize;
  return typeof memory === 'number' ? memory : 128;
}

/** What the harness uses of an aws-sdk-client-mock stub: the calls it received. */
export interface RecordingStub {
  calls(): readonly { readonly args: readonly unknown[] }[];
  restore(): void;
}

/** The SDK mocks a harness installs, each with its service's name. */
export type ServiceStubs = readonly { readonly service: string; readonly stub: RecordingStub }[];

/** Calls received so far, by `service:CommandName` (e.g. `rds-data:ExecuteStatement`). */
export function sdkCallCounts(stubs: ServiceStubs): Map<string, number> {
  const counts = new Map<string, number>();
  for (const { service, stub } of stubs) {
    for (const call of stub.calls()) {
      const command = (call.args[0] as object).constructor.name.replace(/Command$/, '');
      const key = `${service}:${command}`;
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
  }
  return counts;
}

/** `after` minus `before`, leaving out what did not change. */
export function countsSince(
  before: ReadonlyMap<string, number>,
  after: ReadonlyMap<string, number>,
): Record<string, number> {
  const delta: Record<string, number> = {};
  for (const [key, count] of after) {
    const added = count - (before.get(key) ?? 0);
    if (added > 0) delta[key] = added;
  }
  return delta;
}
