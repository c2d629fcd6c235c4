/**
 * IAM policy documents as the synthesized stack writes them, checked on the way in so that an
 * element this evaluator does not understand is an error instead of a silent allow or deny.
 * Grammar: https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_grammar.html
 */

export type OneOrMany<T> = T | readonly T[];

/** `"*"`, or `{ AWS: ..., Service: ... }`: who a resource-based policy's statement is about. */
export type PrincipalElement = '*' | Readonly<Record<string, OneOrMany<string>>>;

/** `{ operator: { key: value(s) } }`. */
export type ConditionElement = Readonly<Record<string, Readonly<Record<string, unknown>>>>;

export interface PolicyStatement {
  readonly Sid?: string;
  readonly Effect: 'Allow' | 'Deny';
  readonly Action?: OneOrMany<string>;
  readonly NotAction?: OneOrMany<string>;
  readonly Resource?: OneOrMany<string>;
  readonly NotResource?: OneOrMany<string>;
  readonly Principal?: PrincipalElement;
  readonly Condition?: ConditionElement;
}

export interface PolicyDocument {
  readonly Version?: string;
  readonly Id?: string;
  readonly Statement: OneOrMany<PolicyStatement>;
}

export function listOf<T>(value: OneOrMany<T> | undefined): readonly T[] {
  if (value === undefined) return [];
  return Array.isArray(value) ? (value as readonly T[]) : [value as T];
}

const STATEMENT_ELEMENTS = new Set([
  'Sid',
  'Effect',
  'Action',
  'NotAction',
  'Resource',
  'NotResource',
  'Principal',
  'Condition',
]);

/**
 * The statements of `document`, each checked: a known Effect, exactly one of Action/NotAction
 * and of Resource/NotResource, a Principal where (and only where) the policy is resource-based,
 * no element this evaluator ignores (NotPrincipal), no policy variables.
 */
export function statementsOf(
  document: PolicyDocument,
  kind: 'identity' | 'resource',
  where: string,
): readonly PolicyStatement[] {
  if (typeof document !== 'object' || document === null || !('Statement' in document)) {
    throw new Error(`${where}: not a policy document (no Statement): ${JSON.stringify(document)}`);
  }
  if (document.Version !== undefined && !['2012-10-17', '2008-10-17'].includes(document.Version)) {
    throw new Error(`${where}: unknown policy Version ${JSON.stringify(document.Version)}`);
  }
  return listOf(document.Statement).map((statement, index) => {
    const at = `${where}, statement ${statement.Sid ?? index}`;
    for (const element of Object.keys(statement)) {
      if (!STATEMENT_ELEMENTS.has(element)) {
        throw new Error(`${at}: the evaluator does not support the ${element} element; add it`);
      }
    }
    if (statement.Effect !== 'Allow' && statement.Effect !== 'Deny') {
      throw new Error(
        `${at}: Effect must be Allow or Deny, not ${JSON.stringify(statement.Effect)}`,
      );
    }
    if ((statement.Action === undefined) === (statement.NotAction === undefined)) {
      throw new Error(`${at}: needs exactly one of Action and NotAction`);
    }
    if ((statement.Resource === undefined) === (statement.NotResource === undefined)) {
      throw new Error(`${at}: needs exactly one of Resource and NotResource`);
    }
    if (kind === 'identity' && statement.Principal !== undefined) {
      throw new Error(`${at}: an identity-based policy cannot name a Principal`);
    }
    if (kind === 'resource' && statement.Principal === undefined) {
      throw new Error(`${at}: a resource-based policy must name a Principal`);
    }
    if (typeof statement.Principal === 'object') {
      for (const type of Object.keys(statement.Principal)) {
        if (type !== 'AWS' && type !== 'Service') {
          throw new Error(`${at}: Principal type ${type} is not supported by the evaluator`);
        }
      }
    } else if (statement.Principal !== undefined && statement.Principal !== '*') {
      throw new Error(
        `${at}: Principal must be "*" or an object, not ${JSON.stringify(statement.Principal)}`,
      );
    }
    for (const value of [
      ...listOf(statement.Action),
      ...listOf(statement.NotAction),
      ...listOf(statement.Resource),
      ...listOf(statement.NotResource),
    ]) {
      if (typeof value !== 'string') {
        throw new Error(`${at}: ${JSON.stringify(value)} is not a string (unresolved intrinsic?)`);
      }
      if (value.includes('${')) {
        throw new Error(`${at}: policy variables (${value}) are not supported by the evaluator`);
      }
    }
    return statement;
  });
}

/**
 * Whether `value` matches `pattern`, where `*` matches any run of characters (including none,
 * and across `:` and `/`) and `?` any one character, as in Action, Resource and the *Like
 * condition operators.
 * https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_resource.html
 */
export function wildcardMatch(pattern: string, value: string, ignoreCase = false): boolean {
  const source = [...pattern]
    .map((character) =>
      character === '*'
        ? '.*'
        : character === '?'
          ? '.'
          : character.replace(/[\\^$.|+()[\]{}]/g, '\\$&'),
    )
    .join('');
  return new RegExp(`^${source}$`, ignoreCase ? 'is' : 's').test(value);
}

/**
 * Action names are case-insensitive ("s3:getobject" is s3:GetObject); resources are not.
 * https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_action.html
 */
export function actionMatches(patterns: readonly string[], action: string): boolean {
  return patterns.some((pattern) => wildcardMatch(pattern, action, true));
}

export function resourceMatches(patterns: readonly string[], resource: string): boolean {
  return patterns.some((pattern) => wildcardMatch(pattern, resource));
}
