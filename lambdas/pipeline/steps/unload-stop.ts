/**
 * After a failure (fail-run): stop what the run still has running in Redshift, so that it
 * stops writing into the run's folder and lets go of the source tables. The state fail-run is
 * given can be behind: "Check whether the unload finished" may have submitted the next call of
 * the session and then failed (`$.unload` names the call before), and "Unload the tables from
 * Redshift" may have failed after submitting the first call (no `$.unload` at all), or even
 * after that call had finished, its transaction left open for the next. So the run's
 * statements are found by name as well (runStatementPrefix): every one still running is
 * cancelled, and every session found rolled back, but for one whose last unload call finished
 * (it committed), and one a ROLLBACK of the run already ended: "Check whether the unload
 * finished" rolls its session back when it refuses the snapshot (rollBack in ./unload.ts) and
 * then fails the run, and a second ROLLBACK there would only be one more call (and, on a
 * session with no transaction, a WARNING). Such a session is left alone only when the listing
 * shows that ROLLBACK finished and nothing of the run still running on it: a session runs one
 * call at a time, so every call before the ROLLBACK had ended, and none is submitted after
 * one. If the step was killed before its ROLLBACK ran, or the ROLLBACK failed, is still
 * running or is not listed, the session is rolled back here as any other.
 */
import { waitForStatement } from '../../core/unload/wait';
import type { PipelineDeps } from '../deps';
import type { RunningUnload } from '../state';
import {
  rollbackName,
  runStatementPrefix,
  SESSION_KEEP_ALIVE_SECONDS,
  UnloadFailedError,
  unloadCallOf,
} from './unload';

/**
 * How long fail-run waits for the cancelled statements to end, and then for the ROLLBACKs
 * (its function's timeout is 60 s: lib/function-access.ts).
 */
export const CANCEL_WAIT_MS = 15_000;
const CANCEL_POLL_MS = 500;

interface Target {
  readonly statementId: string;
  /** How messages name it. */
  readonly label: string;
  readonly sessionId: string | null;
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * The run's statements to stop (the state's unload call and every running one of the run), and
 * the sessions of unload calls that ended with their transaction still open: every one but a
 * session whose last call finished, since that call ended with COMMIT. A session a ROLLBACK of
 * the run finished on, with nothing of the run running on it, has neither.
 */
async function targetsOf(
  deps: PipelineDeps,
  runId: string,
  unload: RunningUnload | null,
  problems: string[],
): Promise<{ targets: Target[]; openSessions: string[] }> {
  const targets = new Map<string, Target>();
  const ended = new Set<string>();
  const committed = new Set<string>();
  const rolledBack = new Set<string>();
  const running = new Set<string>();
  if (unload) {
    targets.set(unload.statementId, {
      statementId: unload.statementId,
      label: `unload call ${unload.batch + 1} of ${unload.batches}`,
      sessionId: unload.sessionId,
    });
  }
  try {
    for (const found of await deps.warehouse.listStatements(runStatementPrefix(runId))) {
      if (found.state !== 'running') {
        const call = unloadCallOf(runId, found.name);
        if (call && found.sessionId) {
          ended.add(found.sessionId);
          if (call.call === call.calls && found.state === 'done') committed.add(found.sessionId);
        }
        if (found.name === rollbackName(runId) && found.sessionId && found.state === 'done') {
          rolledBack.add(found.sessionId);
        }
        continue;
      }
      if (found.sessionId) running.add(found.sessionId);
      if (targets.has(found.statementId)) continue;
      targets.set(found.statementId, {
        statementId: found.statementId,
        label: JSON.stringify(found.name),
        sessionId: found.sessionId,
      });
    }
  } catch (error) {
    problems.push(`could not list the run's statements: ${message(error)}`);
  }
  const closed = new Set([...rolledBack].filter((sessionId) => !running.has(sessionId)));
  const open = (sessionId: string | null) => sessionId === null || !closed.has(sessionId);
  return {
    targets: [...targets.values()].filter((target) => open(target.sessionId)),
    openSessions: [...ended].filter((sessionId) => !committed.has(sessionId) && open(sessionId)),
  };
}

/**
 * Cancels every statement of the run still running (and the call the state names, which may
 * have ended: its transaction is still open), waits for them to end (a session runs one call
 * at a time), then rolls back each session they ran on, so it holds no locks on the source
 * tables for the rest of its keep-alive. A session with a statement that could not be stopped
 * is not rolled back (it would refuse: busy). Data API statements and sessions answer only the
 * role that submitted them, which is why fail-run shares start-unload's role
 * (lib/function-access.ts, roleGroupOf). Tries everything, then throws what failed, for the
 * caller to report; nothing is retried.
 */
export async function stopRunStatements(
  deps: PipelineDeps,
  runId: string,
  unload: RunningUnload | null,
): Promise<{ cancelled: string[]; rolledBack: string[] }> {
  const problems: string[] = [];
  const { targets, openSessions } = await targetsOf(deps, runId, unload, problems);
  const cancelled: string[] = [];
  const stuck = new Set<string | null>();
  const pending: Target[] = [];
  for (const target of targets) {
    try {
      if (await deps.warehouse.cancel(target.statementId)) cancelled.push(target.statementId);
      pending.push(target);
    } catch (error) {
      problems.push(message(error));
      stuck.add(target.sessionId);
    }
  }
  const started = deps.now();
  const lastStatus = new Map<string, string>();
  while (pending.length > 0) {
    for (const target of [...pending]) {
      const status = await deps.warehouse.describe(target.statementId);
      lastStatus.set(target.statementId, status.status);
      if (status.state !== 'running') pending.splice(pending.indexOf(target), 1);
    }
    if (pending.length === 0) break;
    const waited = deps.now() - started;
    if (waited >= CANCEL_WAIT_MS) {
      for (const target of pending) {
        stuck.add(target.sessionId);
        problems.push(
          `${target.label} (statement ${target.statementId}) was still ${lastStatus.get(target.statementId)} ${Math.round(waited / 1000)} s after it was cancelled${target.sessionId ? `, so its session ${target.sessionId} was not rolled back; it ends after its keep-alive (${SESSION_KEEP_ALIVE_SECONDS} s)` : ''}.`,
        );
      }
      break;
    }
    await deps.sleep(Math.min(CANCEL_POLL_MS, CANCEL_WAIT_MS - waited));
  }
  const sessions = [
    ...new Set([
      ...targets.flatMap((target) => (target.sessionId ? [target.sessionId] : [])),
      ...openSessions,
    ]),
  ].filter((sessionId) => !stuck.has(sessionId));
  const rollbacks: { sessionId: string; statementId: string }[] = [];
  for (const sessionId of sessions) {
    try {
      const { statementId } = await deps.warehouse.submitInSession(
        ['ROLLBACK'],
        rollbackName(runId),
        { sessionId },
      );
      rollbacks.push({ sessionId, statementId });
    } catch (error) {
      problems.push(message(error));
    }
  }
  const rollbackStarted = deps.now();
  const rolledBack: string[] = [];
  for (const { sessionId, statementId } of rollbacks) {
    try {
      await waitForStatement(deps.warehouse, statementId, {
        sleep: deps.sleep,
        now: deps.now,
        timeoutMs: Math.max(0, CANCEL_WAIT_MS - (deps.now() - rollbackStarted)),
        pollMs: CANCEL_POLL_MS,
        what: `the ROLLBACK of unload session ${sessionId}`,
      });
      rolledBack.push(sessionId);
    } catch (error) {
      problems.push(message(error));
    }
  }
  if (problems.length > 0) throw new UnloadFailedError(problems.join(' '));
  return { cancelled, rolledBack };
}
