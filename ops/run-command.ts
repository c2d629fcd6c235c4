/**
 * How the operator commands end: with main's exit code, or with 1 and the error. A SyncError is
 * a message meant for a person (name and message); anything else is a bug (its stack).
 */
import { SyncError } from '../lambdas/core/errors';

export function runCommand(main: () => Promise<number>): void {
  main().then(
    (code) => process.exit(code),
    (error: unknown) => {
      process.stderr.write(
        `${error instanceof SyncError ? `${error.name}: ${error.message}` : error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
      );
      process.exit(1);
    },
  );
}
