/**
 * AWS's policy evaluation logic for a request made by an IAM role to a resource in its own
 * account, restricted to the policy types the stack has: identity-based policies of the role,
 * and the resource's resource-based policy (bucket policy, key policy, topic policy). No
 * Organizations SCPs/RCPs, permissions boundaries or session policies exist in the stack.
 * https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic_policy-eval-denyallow.html
 * https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic_policy-eval-basics.html
 */
import type { AwsPrincipal, AwsRequest } from '../access';
import { checkCondition, conditionHolds, type RequestContext } from './conditions';
import {
  actionMatches,
  listOf,
  type PolicyDocument,
  type PolicyStatement,
  type PrincipalElement,
  resourceMatches,
  statementsOf,
} from './policy';

export interface EvaluationPolicies {
  /** Every identity-based policy of the calling role (inline and managed). */
  readonly identityPolicies: readonly PolicyDocument[];
  /** The resource's resource-based policy, if it has one; for a KMS key its key policy. */
  readonly resourcePolicy?: PolicyDocument;
  readonly principal: AwsPrincipal;
}

export type Decision = 'allow' | 'explicit deny' | 'implicit deny';

/** How a resource-based statement's Principal covers the calling role. */
type PrincipalMatch =
  /** Names the role itself, or everyone: the statement alone decides. */
  | 'direct'
  /** Names the role's account: it delegates to the account's identity-based policies. */
  | 'account'
  | 'none';

const ROLE_ARN = /^arn:[a-z-]+:iam::(\d{12}):role\/.+$/;

export function accountOfRole(roleArn: string): string {
  const account = ROLE_ARN.exec(roleArn)?.[1];
  if (!account)
    throw new Error(`${roleArn} is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)`);
  return account;
}

function principalMatch(element: PrincipalElement, roleArn: string): PrincipalMatch {
  if (element === '*') return 'direct';
  const account = accountOfRole(roleArn);
  let best: PrincipalMatch = 'none';
  // A Service principal is never a role's request; statementsOf allows no other type.
  for (const value of listOf(element.AWS)) {
    if (value === '*' || value === roleArn) return 'direct';
    // "The account ARN and the shortened account ID behave the same way. Both delegate
    // permissions to the account. Using the account ARN in the Principal element does not limit
    // permissions to only the root user of the account."
    // https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_principal.html#principal-accounts
    const named = /^\d{12}$/.test(value)
      ? value
      : /^arn:[a-z-]+:iam::(\d{12}):root$/.exec(value)?.[1];
    if (named === account) best = 'account';
  }
  return best;
}

interface Checked {
  readonly statement: PolicyStatement;
  readonly where: string;
}

/** The statements of `document`, throwing on anything the evaluator does not support. */
export function checkedStatements(
  document: PolicyDocument,
  kind: 'identity' | 'resource',
  where: string,
): readonly Checked[] {
  return statementsOf(document, kind, where).map((statement, position) => {
    const at = `${where}, statement ${statement.Sid ?? position}`;
    if (statement.Condition) checkCondition(statement.Condition, at);
    return { statement, where: at };
  });
}

/** Action, Resource and Condition all match the request (Principal is the caller's concern). */
function applies(
  statement: PolicyStatement,
  request: AwsRequest,
  context: RequestContext,
): boolean {
  const actionMatch = statement.Action
    ? actionMatches(listOf(statement.Action), request.action)
    : !actionMatches(listOf(statement.NotAction), request.action);
  if (!actionMatch) return false;
  const resourceMatch = statement.Resource
    ? resourceMatches(listOf(statement.Resource), request.resource)
    : !resourceMatches(listOf(statement.NotResource), request.resource);
  if (!resourceMatch) return false;
  return statement.Condition ? conditionHolds(statement.Condition, context) : true;
}

/**
 * The decision for `request`: an explicit Deny in any policy wins; otherwise an Allow in an
 * identity-based policy, or in the resource-based policy naming the role (or everyone), allows
 * it: "If either the identity-based policy or the resource-based policy within the same account
 * allows the request and the other doesn't, the request is still allowed." A resource-based
 * Allow that names only the account delegates to the identity-based policies and allows nothing
 * by itself.
 *
 * AWS KMS is the exception: "No AWS principal has any permissions to a KMS key unless that
 * permission is explicitly allowed in the key policy" and IAM policies count only where the key
 * policy delegates to them by allowing the account ("Allows access to the AWS account and
 * enables IAM policies"). https://docs.aws.amazon.com/kms/latest/developerguide/key-policies.html
 */
export function evaluate(request: AwsRequest, policies: EvaluationPolicies): Decision {
  const { roleArn } = policies.principal;
  const context = request.context ?? {};
  const identity = policies.identityPolicies.flatMap((document, index) =>
    checkedStatements(document, 'identity', `identity-based policy ${document.Id ?? index}`),
  );
  const resource = (
    policies.resourcePolicy
      ? checkedStatements(policies.resourcePolicy, 'resource', 'resource-based policy')
      : []
  ).map((checked) => ({
    ...checked,
    principal: principalMatch(checked.statement.Principal!, roleArn),
  }));

  const applying = (statement: PolicyStatement, effect: 'Allow' | 'Deny') =>
    statement.Effect === effect && applies(statement, request, context);

  const denied =
    identity.some(({ statement }) => applying(statement, 'Deny')) ||
    resource.some(
      ({ statement, principal }) => principal !== 'none' && applying(statement, 'Deny'),
    );
  if (denied) return 'explicit deny';

  const identityAllows = identity.some(({ statement }) => applying(statement, 'Allow'));
  const resourceAllows = (match: PrincipalMatch) =>
    resource.some(
      ({ statement, principal }) => principal === match && applying(statement, 'Allow'),
    );

  if (request.action.toLowerCase().startsWith('kms:')) {
    if (!policies.resourcePolicy) return 'implicit deny'; // every KMS key has a key policy
    if (resourceAllows('direct')) return 'allow';
    return resourceAllows('account') && identityAllows ? 'allow' : 'implicit deny';
  }
  return identityAllows || resourceAllows('direct') ? 'allow' : 'implicit deny';
}
