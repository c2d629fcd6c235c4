/**
 * How the operator commands end: with main's exit code, or with 1 and one line saying what
 * went wrong. A SyncError is a message meant for a person (name and message); so is what AWS
 * answers (a service error carries `$metadata`), a missing set of credentials and a network
 * that does not answer, which the person fixes outside this code; anything else is a bug (its
 * stack).
 */
import { SyncError } from '../lambdas/core/errors';

/** The AWS SDK's error when no provider of its chain found credentials. */
const NO_CREDENTIALS = 'CredentialsProviderError';

/** What the command prints on stderr when `main` fails with `error`. */
export function describeFailure(error: unknown): string {
  if (error instanceof SyncError) return `${error.name}: ${error.message}`;
  if (!(error instanceof Error)) return String(error);
  if (error.name === NO_CREDENTIALS) {
    return `${error.name}: ${error.message}. This command calls AWS with the credentials of the usual places: set AWS_PROFILE to a profile of the environment's account (after \`aws sso login --profile <name>\` for SSO), or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, and run it again.`;
  }
  // A system call that failed (ENOTFOUND, ECONNREFUSED, ETIMEDOUT...): the network, not the code.
  if ('syscall' in error && 'code' in error) {
    return `${error.name}: ${error.message}; check the network (a proxy, a VPN) and the region in the environment's config file.`;
  }
  if ('$metadata' in error) return `${error.name}: ${error.message}`;
  return error.stack ?? error.message;
}

export function runCommand(main: () => Promise<number>): void {
  main().then(
    (code) => process.exit(code),
    (error: unknown) => {
      process.stderr.write(`${describeFailure(error)}\n`);
      process.exit(1);
    },
  );
}
