/** RunRegistry over Step Functions: the other RUNNING executions of this state machine. */
import { ListExecutionsCommand, type SFNClient } from '@aws-sdk/client-sfn';
import type { RunRegistry } from '../pipeline/deps';

export class StepFunctionsRunRegistry implements RunRegistry {
  constructor(private readonly sfn: SFNClient) {}

  async othersInProgress(runId: string, stateMachineArn: string): Promise<string[]> {
    const running: { name: string; startDate: number }[] = [];
    let ownStart = Number.POSITIVE_INFINITY;
    let nextToken: string | undefined;
    do {
      const page = await this.sfn.send(
        new ListExecutionsCommand({
          stateMachineArn,
          statusFilter: 'RUNNING',
          nextToken,
        }),
      );
      for (const execution of page.executions ?? []) {
        const startDate = execution.startDate?.getTime() ?? 0;
        if (execution.name === runId) ownStart = startDate;
        else if (execution.name) running.push({ name: execution.name, startDate });
      }
      nextToken = page.nextToken;
    } while (nextToken);
    // Of two runs started together, the earlier one goes on (ties broken by name), so they
    // never both refuse nor both proceed.
    return running
      .filter(
        (other) =>
          other.startDate < ownStart || (other.startDate === ownStart && other.name < runId),
      )
      .sort((a, b) => a.startDate - b.startDate)
      .map((execution) => execution.name);
  }
}
