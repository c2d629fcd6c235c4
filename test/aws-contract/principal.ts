/**
 * Who is calling: the harness runs each function's handler inside `asPrincipal(itsRole, ...)`,
 * and the SDK client mocks read the caller from here, so concurrent Map iterations of different
 * functions each call AWS as their own role.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { AwsPrincipal } from './access';

const current = new AsyncLocalStorage<AwsPrincipal>();

export function asPrincipal<T>(principal: AwsPrincipal, fn: () => T): T {
  return current.run(principal, fn);
}

/** The principal of the code running now; an AWS call made outside any is a harness bug. */
export function callingPrincipal(): AwsPrincipal {
  const principal = current.getStore();
  if (!principal) {
    throw new Error(
      'an AWS call was made outside asPrincipal(); run the code that calls AWS as the role it has in the stack.',
    );
  }
  return principal;
}
