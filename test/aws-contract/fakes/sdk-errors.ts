/**
 * Errors shaped as the AWS SDK v3 throws them: an instance of the service's exception class
 * (so `instanceof DatabaseErrorException` in an adapter holds), with the service's error code
 * as `name`, the HTTP status in `$metadata` and the service's own message.
 */
import { AccessDeniedError, type Authorize, type AwsPrincipal, type AwsRequest } from '../access';

/** Any exception class of a service: each takes its own fields besides message and $metadata. */
type ServiceErrorClass<E> = new (options: never) => E;

export function sdkError<E extends Error>(
  ErrorClass: ServiceErrorClass<E>,
  message: string,
  httpStatusCode = 400,
  fields: Record<string, unknown> = {},
): E {
  const error = new ErrorClass({ message, $metadata: { httpStatusCode }, ...fields } as never);
  return Object.assign(error, fields);
}

/**
 * An error of a code the SDK has no class for (S3's AccessDenied on some calls, the
 * Redshift Data API's AccessDeniedException), as the SDK builds it: the service's base class
 * with `name` set to the code.
 */
export function namedSdkError<E extends Error>(
  BaseClass: new (options: {
    name: string;
    $fault: 'client' | 'server';
    message: string;
    $metadata: { httpStatusCode?: number };
  }) => E,
  name: string,
  message: string,
  httpStatusCode = 400,
): E {
  return new BaseClass({ name, $fault: 'client', message, $metadata: { httpStatusCode } });
}

/** Calls `authorize`, turning its refusal into `denied(message)`: each service's own error. */
export function authorizeOrThrow(
  authorize: Authorize,
  principal: AwsPrincipal,
  request: AwsRequest,
  denied: (message: string) => Error,
): void {
  try {
    authorize(principal, request);
  } catch (error) {
    if (error instanceof AccessDeniedError) throw denied(error.message);
    throw error;
  }
}
