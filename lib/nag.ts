/**
 * What the construct parts share: acknowledging cdk-nag findings next to the resource they
 * concern, and the synth-time check of a prop.
 */
import { Stack, Token, Validations } from 'aws-cdk-lib';
import type { IConstruct } from 'constructs';

export interface WildcardResource {
  /** As given to the policy statement: a literal or a token. */
  readonly resource: string;
  /** Why the grant cannot be narrower, for the reviewer reading the cdk-nag report. */
  readonly reason: string;
}

/**
 * Acknowledges cdk-nag's AwsSolutions-IAM5 finding for each wildcard resource granted to
 * `scope` (a role, so its default policy is covered too). cdk-nag names each finding by the
 * resource flattened the way it flattens CloudFormation references, so the acknowledgment
 * covers exactly that resource and nothing wider. Reasons for one resource are joined.
 */
export function acknowledgeWildcardResources(
  scope: IConstruct,
  wildcards: readonly WildcardResource[],
): void {
  const stack = Stack.of(scope);
  const reasons = new Map<string, string[]>();
  for (const { resource, reason } of wildcards) {
    const finding = `AwsSolutions-IAM5[Resource::${flattenReference(stack.resolve(resource))}]`;
    reasons.set(finding, [...(reasons.get(finding) ?? []), reason]);
  }
  for (const [id, reasonList] of reasons) {
    Validations.of(scope).acknowledge({ id, reason: reasonList.join(' ') });
  }
}

/** `{Fn::Join}`, `{Fn::GetAtt}` and `{Ref}` as cdk-nag writes them in finding names: `<Logical.Arn>/runs/*`. */
function flattenReference(value: unknown): string {
  if (typeof value === 'string') return value.replace(/\$\{/g, '<').replace(/\}/g, '>');
  const reference = value as Record<string, unknown>;
  if ('Fn::Join' in reference) {
    const [delimiter, parts] = reference['Fn::Join'] as [string, unknown[]];
    return parts.map(flattenReference).join(delimiter);
  }
  if ('Fn::GetAtt' in reference) {
    const [logicalId, attribute] = reference['Fn::GetAtt'] as [string, string];
    return `<${logicalId}.${attribute}>`;
  }
  if ('Ref' in reference) return `<${reference.Ref as string}>`;
  return JSON.stringify(value);
}

/**
 * Throws, at synth time, an error naming the construct and the prop: `<path>: <prop> <problem>`.
 * Values that are tokens (known only at deploy time) are never checked.
 */
export function refuseProp(scope: IConstruct, prop: string, problem: string): never {
  throw new Error(`${scope.node.path}: ${prop} ${problem}`);
}

/** Whether `value` is a literal (not a token), so it can be checked at synth time. */
export function isLiteral(value: string | undefined): value is string {
  return value !== undefined && !Token.isUnresolved(value);
}
