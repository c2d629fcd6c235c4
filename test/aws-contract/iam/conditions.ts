/**
 * The Condition element, for the operators and keys the stack's policies (and the documented
 * examples the tests check) use. Anything else is an error naming it: a condition the evaluator
 * misread would silently allow or deny, so a new one in the stack must come here first.
 * Operators: https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html
 * Sets: https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-single-vs-multi-valued-context-keys.html
 */
import { type ConditionElement, listOf, wildcardMatch } from './policy';

export type RequestContext = Readonly<Record<string, string | readonly string[]>>;

/**
 * Condition keys the evaluator has been checked with: the stack's and those of the documented
 * examples in the tests (key names are case-insensitive). A key not listed here makes the
 * policy an error, because a fake that does not supply it would make every condition on it
 * quietly false (or, with IfExists and the negated operators, quietly true).
 */
const KNOWN_KEYS = new Set(
  [
    // Global keys: https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html
    'aws:SecureTransport',
    'aws:PrincipalArn',
    'aws:PrincipalAccount',
    'aws:SourceArn',
    'aws:SourceAccount',
    'aws:MultiFactorAuthPresent',
    'aws:TokenIssueTime',
    'aws:TagKeys',
    // https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazons3.html
    's3:prefix',
    's3:x-amz-server-side-encryption',
    // https://docs.aws.amazon.com/kms/latest/developerguide/conditions-kms.html
    'kms:ViaService',
    'kms:CallerAccount',
    // https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonredshiftdataapi.html
    'redshift-data:session-owner-iam-userid',
  ].map((key) => key.toLowerCase()),
);

type Comparison = (policyValue: string, contextValue: string) => boolean;

/** Each base operator: how one policy value compares with one context value, and whether negated. */
const OPERATORS: Readonly<Record<string, { compare: Comparison; negated: boolean }>> = {
  StringEquals: { compare: (p, c) => p === c, negated: false },
  StringNotEquals: { compare: (p, c) => p === c, negated: true },
  StringEqualsIgnoreCase: {
    compare: (p, c) => p.toLowerCase() === c.toLowerCase(),
    negated: false,
  },
  StringNotEqualsIgnoreCase: {
    compare: (p, c) => p.toLowerCase() === c.toLowerCase(),
    negated: true,
  },
  StringLike: { compare: (p, c) => wildcardMatch(p, c), negated: false },
  StringNotLike: { compare: (p, c) => wildcardMatch(p, c), negated: true },
  // "ArnEquals, ArnLike: case-sensitive matching of the ARN. Each of the six colon-delimited
  // components of the ARN is checked separately and each can include multi-character match
  // wildcards (*) or single-character match wildcards (?)." Both names behave the same.
  ArnEquals: { compare: arnMatch, negated: false },
  ArnLike: { compare: arnMatch, negated: false },
  ArnNotEquals: { compare: arnMatch, negated: true },
  ArnNotLike: { compare: arnMatch, negated: true },
  Bool: { compare: (p, c) => p.toLowerCase() === c.toLowerCase(), negated: false },
};

function arnComponents(arn: string): string[] | undefined {
  const parts = arn.split(':');
  if (parts.length < 6) return undefined;
  return [...parts.slice(0, 5), parts.slice(5).join(':')];
}

function arnMatch(pattern: string, arn: string): boolean {
  const patternParts = arnComponents(pattern);
  const arnParts = arnComponents(arn);
  if (!patternParts || !arnParts) return false;
  return patternParts.every((part, index) => wildcardMatch(part, arnParts[index]!));
}

interface ParsedOperator {
  readonly base: string;
  readonly set?: 'ForAnyValue' | 'ForAllValues';
  readonly ifExists: boolean;
}

function parseOperator(operator: string): ParsedOperator {
  const [prefix, rest] = operator.includes(':') ? operator.split(':', 2) : [undefined, operator];
  if (prefix !== undefined && prefix !== 'ForAnyValue' && prefix !== 'ForAllValues') {
    throw new Error(`unknown condition set operator ${prefix} in ${operator}`);
  }
  const ifExists = rest!.endsWith('IfExists');
  const base = ifExists ? rest!.slice(0, -'IfExists'.length) : rest!;
  if (base !== 'Null' && !OPERATORS[base]) {
    throw new Error(
      `condition operator ${operator} is not supported by the evaluator (test/aws-contract/iam/conditions.ts); add it`,
    );
  }
  if (base === 'Null' && (ifExists || prefix)) {
    throw new Error(`condition operator ${operator}: Null takes neither IfExists nor a set prefix`);
  }
  if (base === 'Bool' && prefix) {
    throw new Error(`condition operator ${operator}: the evaluator has no set form of Bool`);
  }
  return { base, ifExists, ...(prefix ? { set: prefix } : {}) };
}

/** Throws when `condition` uses an operator or key the evaluator does not know. */
export function checkCondition(condition: ConditionElement, where: string): void {
  for (const [operator, keys] of Object.entries(condition)) {
    try {
      parseOperator(operator);
    } catch (error) {
      throw new Error(`${where}: ${(error as Error).message}`);
    }
    for (const key of Object.keys(keys)) {
      if (!KNOWN_KEYS.has(key.toLowerCase())) {
        throw new Error(
          `${where}: condition key ${key} is not known to the evaluator; add it to KNOWN_KEYS in test/aws-contract/iam/conditions.ts and make the fakes put it in the request context`,
        );
      }
    }
  }
}

/** Every operator, and every key under it, must hold (the Condition element is an AND). */
export function conditionHolds(condition: ConditionElement, context: RequestContext): boolean {
  const byLowerKey = new Map(
    Object.entries(context).map(([key, value]) => [key.toLowerCase(), value] as const),
  );
  return Object.entries(condition).every(([operator, keys]) => {
    const parsed = parseOperator(operator);
    return Object.entries(keys).every(([key, policyValue]) =>
      keyHolds(
        parsed,
        listOf(policyValue as unknown).map(String),
        byLowerKey.get(key.toLowerCase()),
        key,
      ),
    );
  });
}

function keyHolds(
  operator: ParsedOperator,
  policyValues: readonly string[],
  contextValue: string | readonly string[] | undefined,
  key: string,
): boolean {
  if (operator.base === 'Null') {
    // "true": the key is absent from the request context; "false": it is present.
    const absent = contextValue === undefined;
    return policyValues.some((value) => (value.toLowerCase() === 'true') === absent);
  }
  const { compare, negated } = OPERATORS[operator.base]!;
  const matchesOne = (value: string) => {
    const any = policyValues.some((policyValue) => compare(policyValue, value));
    return negated ? !any : any;
  };
  if (contextValue === undefined) {
    // "If the key that you specify in a policy condition is not present in the request context,
    // the values do not match and the condition is false. If the policy condition requires that
    // the key is not matched, such as StringNotLike or ArnNotLike, and the right key is not
    // present, the condition is true." ...IfExists: "If the key is not present, evaluate the
    // condition element as true." ForAllValues over an absent key is true, ForAnyValue false.
    if (operator.ifExists) return true;
    if (operator.set === 'ForAllValues') return true;
    if (operator.set === 'ForAnyValue') return false;
    return negated;
  }
  if (operator.set) {
    const values = listOf(contextValue);
    return operator.set === 'ForAllValues' ? values.every(matchesOne) : values.some(matchesOne);
  }
  if (typeof contextValue !== 'string') {
    throw new Error(
      `condition key ${key} has several values in the request context; a policy must test it with ForAnyValue: or ForAllValues:`,
    );
  }
  return matchesOne(contextValue);
}
