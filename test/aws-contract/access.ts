/**
 * How the AWS stand-ins ask whether a call is allowed: every request an in-process fake of an
 * AWS API receives is authorized, before anything else, as IAM would authorize it for the
 * principal making it (a pipeline function's role; Redshift's UNLOAD role or Aurora's s3Import
 * role for their own S3 and KMS calls). The evaluator (./iam) answers from the policies the
 * synthesized stack holds; the fakes (./fakes) answer the request only when it is allowed.
 */

import { createHash } from 'node:crypto';

/** Who makes an AWS call: an IAM role, by its ARN, in a role session. */
export interface AwsPrincipal {
  readonly roleArn: string;
  /** The role session's name; a Lambda function's is the function's name. */
  readonly sessionName?: string;
}

/**
 * The stand-in unique id of a role (CloudFormation's `Fn::GetAtt Role.RoleId`): `AROA` and 17
 * characters, as IAM's role ids look, derived from the ARN so that the template and the fakes
 * agree. https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_identifiers.html#identifiers-unique-ids
 */
export function roleIdOf(roleArn: string): string {
  return `AROA${createHash('sha256').update(roleArn).digest('hex').slice(0, 17).toUpperCase()}`;
}

/** `aws:userid` of a role session: `<role id>:<role session name>` (same page). */
export function userIdOf(principal: AwsPrincipal): string {
  return `${roleIdOf(principal.roleArn)}:${principal.sessionName ?? 'session'}`;
}

/** One request as IAM evaluates it. */
export interface AwsRequest {
  /** `service:Action`, as IAM spells it, e.g. `rds-data:ExecuteStatement`, `s3:ListBucket`. */
  readonly action: string;
  /** The ARN of the resource the action is on (for S3 objects `arn:aws:s3:::bucket/key`). */
  readonly resource: string;
  /** Request context keys the policies' conditions may test, e.g. `s3:prefix`, `kms:ViaService`. */
  readonly context?: Readonly<Record<string, string | readonly string[]>>;
}

/** Not allowed: explicitly denied, or allowed by no policy. AWS answers AccessDenied(Exception). */
export class AccessDeniedError extends Error {
  override readonly name = 'AccessDeniedError';
  constructor(
    readonly principal: AwsPrincipal,
    readonly request: AwsRequest,
    readonly why: 'explicit deny' | 'implicit deny',
  ) {
    super(
      `User: ${principal.roleArn} is not authorized to perform: ${request.action} on resource: ${request.resource} because ${why === 'explicit deny' ? 'an explicit deny' : 'no identity-based or resource-based policy allows it'}`,
    );
  }
}

/** Throws AccessDeniedError when `principal` may not make `request`. */
export type Authorize = (principal: AwsPrincipal, request: AwsRequest) => void;

/** Allows everything: for fakes tested on their own, never for the contract harness. */
export const ALLOW_ALL: Authorize = () => {};
