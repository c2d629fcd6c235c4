/**
 * The evaluator against the examples of AWS's documentation, each with the outcome the page
 * states. The pages' examples are mostly about IAM users; the evaluator's principals are roles,
 * and without permissions boundaries or session policies (the stack has none) the same rules
 * decide for a role. Where a page's policy is quoted from memory of its rule rather than
 * verbatim, the test says so.
 */
import { describe, expect, it } from 'vitest';
import type { AwsRequest } from './aws-contract/access';
import { evaluate } from './aws-contract/iam/evaluate';
import type { PolicyDocument, PolicyStatement } from './aws-contract/iam/policy';

const ACCOUNT = '111122223333';
const ROLE = `arn:aws:iam::${ACCOUNT}:role/carlossalazar`;
const OTHER_ROLE = `arn:aws:iam::${ACCOUNT}:role/someone-else`;

function policy(...statements: PolicyStatement[]): PolicyDocument {
  return { Version: '2012-10-17', Statement: statements };
}

function decide(
  request: AwsRequest,
  identityPolicies: PolicyDocument[],
  resourcePolicy?: PolicyDocument,
  roleArn = ROLE,
) {
  return evaluate(request, {
    identityPolicies,
    principal: { roleArn },
    ...(resourcePolicy ? { resourcePolicy } : {}),
  });
}

describe('policy evaluation within a single account', () => {
  // https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic_policy-eval-basics.html
  // "Example identity-based and resource-based policy evaluation": Carlos's identity policy,
  // verbatim.
  const carlos = policy(
    {
      Sid: 'AllowS3ListRead',
      Effect: 'Allow',
      Action: [
        's3:GetBucketLocation',
        's3:GetAccountPublicAccessBlock',
        's3:ListAccessPoints',
        's3:ListAllMyBuckets',
      ],
      Resource: 'arn:aws:s3:::*',
    },
    {
      Sid: 'AllowS3Self',
      Effect: 'Allow',
      Action: 's3:*',
      Resource: [
        'arn:aws:s3:::amzn-s3-demo-bucket-carlossalazar/*',
        'arn:aws:s3:::amzn-s3-demo-bucket-carlossalazar',
      ],
    },
    { Sid: 'DenyS3Logs', Effect: 'Deny', Action: 's3:*', Resource: 'arn:aws:s3:::*log*' },
  );
  // The page's bucket policy on the logs bucket allows Carlos to write there (its exact text is
  // not reproduced here): the point of the example is that the explicit deny still wins.
  const logsBucketPolicy = policy({
    Effect: 'Allow',
    Principal: { AWS: ROLE },
    Action: 's3:*',
    Resource: 'arn:aws:s3:::amzn-s3-demo-bucket-carlossalazar-logs/*',
  });

  it('denies Carlos saving a file to the logs bucket: the explicit deny overrides the allow', () => {
    const save = {
      action: 's3:PutObject',
      resource: 'arn:aws:s3:::amzn-s3-demo-bucket-carlossalazar-logs/file.txt',
    };
    expect(decide(save, [carlos], logsBucketPolicy)).toBe('explicit deny');
  });

  it('allows Carlos full access to the bucket named after him, and listing the account', () => {
    expect(
      decide(
        { action: 's3:PutObject', resource: 'arn:aws:s3:::amzn-s3-demo-bucket-carlossalazar/a' },
        [carlos],
      ),
    ).toBe('allow');
    expect(
      decide({ action: 's3:GetBucketLocation', resource: 'arn:aws:s3:::any-bucket' }, [carlos]),
    ).toBe('allow');
    expect(
      decide({ action: 's3:GetObject', resource: 'arn:aws:s3:::any-bucket/a' }, [carlos]),
    ).toBe('implicit deny');
  });

  it('allows when either the identity-based or the resource-based policy allows', () => {
    // "If either the identity-based policy or the resource-based policy within the same account
    // allows the request and the other doesn't, the request is still allowed."
    const write = {
      action: 's3:PutObject',
      resource: 'arn:aws:s3:::amzn-s3-demo-bucket-shared/report.csv',
    };
    const bucketPolicy = policy({
      Effect: 'Allow',
      Principal: { AWS: ROLE },
      Action: 's3:PutObject',
      Resource: 'arn:aws:s3:::amzn-s3-demo-bucket-shared/*',
    });
    expect(decide(write, [], bucketPolicy)).toBe('allow');
    expect(decide(write, [], bucketPolicy, OTHER_ROLE)).toBe('implicit deny');
    expect(
      decide(write, [
        policy({ Effect: 'Allow', Action: 's3:PutObject', Resource: write.resource }),
      ]),
    ).toBe('allow');
    // "By default, all requests are implicitly denied."
    expect(decide(write, [])).toBe('implicit deny');
  });

  it('a bucket policy naming only the account leaves the decision to identity-based policies', () => {
    // https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_principal.html#principal-accounts
    // "Both delegate permissions to the account."
    const read = { action: 's3:GetObject', resource: 'arn:aws:s3:::amzn-s3-demo-bucket/a' };
    for (const account of [ACCOUNT, `arn:aws:iam::${ACCOUNT}:root`]) {
      const bucketPolicy = policy({
        Effect: 'Allow',
        Principal: { AWS: account },
        Action: 's3:GetObject',
        Resource: 'arn:aws:s3:::amzn-s3-demo-bucket/*',
      });
      expect(decide(read, [], bucketPolicy)).toBe('implicit deny');
      expect(
        decide(read, [policy({ Effect: 'Allow', Action: 's3:*', Resource: '*' })], bucketPolicy),
      ).toBe('allow');
    }
  });
});

describe('Action and NotAction', () => {
  it('matches action names case-insensitively, with * and ? wildcards', () => {
    // https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_action.html
    // "the action name is case-insensitive"; "iam:*AccessKey*" covers the access key actions.
    const accessKeys = policy({ Effect: 'Allow', Action: 'iam:*AccessKey*', Resource: '*' });
    for (const action of ['iam:CreateAccessKey', 'iam:ListAccessKeys', 'IAM:deleteaccesskey']) {
      expect(decide({ action, resource: '*' }, [accessKeys])).toBe('allow');
    }
    expect(decide({ action: 'iam:CreateUser', resource: '*' }, [accessKeys])).toBe('implicit deny');
    const oneCharacter = policy({ Effect: 'Allow', Action: 's3:?etObject', Resource: '*' });
    expect(decide({ action: 's3:GetObject', resource: '*' }, [oneCharacter])).toBe('allow');
    expect(decide({ action: 's3:PutObject', resource: '*' }, [oneCharacter])).toBe('implicit deny');
    expect(decide({ action: 's3:GetObjectAcl', resource: '*' }, [oneCharacter])).toBe(
      'implicit deny',
    );
  });

  // https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_notaction.html
  it('NotAction with Allow: every S3 action on S3 resources except deleting a bucket', () => {
    const allButDeleteBucket = policy({
      Effect: 'Allow',
      NotAction: 's3:DeleteBucket',
      Resource: 'arn:aws:s3:::*',
    });
    expect(
      decide({ action: 's3:GetObject', resource: 'arn:aws:s3:::bucket/key' }, [allButDeleteBucket]),
    ).toBe('allow');
    expect(
      decide({ action: 's3:DeleteBucket', resource: 'arn:aws:s3:::bucket' }, [allButDeleteBucket]),
    ).toBe('implicit deny');
    // "This policy also does not allow actions in other services, because other service actions
    // are not applicable to the S3 resources."
    expect(
      decide(
        {
          action: 'ec2:StartInstances',
          resource: 'arn:aws:ec2:us-east-1:111122223333:instance/i-1',
        },
        [allButDeleteBucket],
      ),
    ).toBe('implicit deny');
  });

  it('NotAction with Allow: every action in every service except IAM', () => {
    const allButIam = policy({ Effect: 'Allow', NotAction: 'iam:*', Resource: '*' });
    expect(decide({ action: 'sqs:SendMessage', resource: 'arn:aws:sqs:::q' }, [allButIam])).toBe(
      'allow',
    );
    expect(decide({ action: 'iam:CreateUser', resource: '*' }, [allButIam])).toBe('implicit deny');
  });

  it('NotAction with Deny: denies everything but IAM to a session without MFA', () => {
    // The page's DenyAllUsersNotUsingMFA statement, verbatim, next to an allow of everything.
    const denyWithoutMfa = policy({
      Sid: 'DenyAllUsersNotUsingMFA',
      Effect: 'Deny',
      NotAction: 'iam:*',
      Resource: '*',
      Condition: { BoolIfExists: { 'aws:MultiFactorAuthPresent': 'false' } },
    });
    const everything = policy({ Effect: 'Allow', Action: '*', Resource: '*' });
    const read = { action: 's3:GetObject', resource: 'arn:aws:s3:::bucket/key' };
    expect(decide(read, [everything, denyWithoutMfa])).toBe('explicit deny');
    expect(
      decide({ ...read, context: { 'aws:MultiFactorAuthPresent': 'false' } }, [
        everything,
        denyWithoutMfa,
      ]),
    ).toBe('explicit deny');
    expect(
      decide({ ...read, context: { 'aws:MultiFactorAuthPresent': 'true' } }, [
        everything,
        denyWithoutMfa,
      ]),
    ).toBe('allow');
    // "this doesn't grant the user access to any action; it only explicitly denies all other
    // actions except for IAM actions."
    expect(decide({ action: 'iam:ListUsers', resource: '*' }, [denyWithoutMfa])).toBe(
      'implicit deny',
    );
    expect(decide({ action: 'iam:ListUsers', resource: '*' }, [everything, denyWithoutMfa])).toBe(
      'allow',
    );
  });
});

describe('Resource and NotResource', () => {
  it('matches resources with wildcards across segments, case-sensitively', () => {
    // https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_resource.html
    const objects = policy({
      Effect: 'Allow',
      Action: 's3:GetObject',
      Resource: 'arn:aws:s3:::amzn-s3-demo-bucket/*',
    });
    const get = (resource: string) => decide({ action: 's3:GetObject', resource }, [objects]);
    expect(get('arn:aws:s3:::amzn-s3-demo-bucket/a/b/c.txt')).toBe('allow');
    expect(get('arn:aws:s3:::amzn-s3-demo-bucket')).toBe('implicit deny');
    expect(get('arn:aws:s3:::amzn-s3-demo-bucket-other/a')).toBe('implicit deny');
    expect(get('arn:aws:s3:::AMZN-S3-DEMO-BUCKET/a')).toBe('implicit deny');
  });

  it('NotResource with Allow: all of S3 except the payroll folder', () => {
    // https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_notresource.html
    const notPayroll = policy({
      Effect: 'Allow',
      Action: 's3:*',
      NotResource: ['arn:aws:s3:::HRBucket/Payroll', 'arn:aws:s3:::HRBucket/Payroll/*'],
    });
    const get = (resource: string) => decide({ action: 's3:GetObject', resource }, [notPayroll]);
    expect(get('arn:aws:s3:::HRBucket/Payroll/june.csv')).toBe('implicit deny');
    expect(get('arn:aws:s3:::HRBucket/Benefits/plan.pdf')).toBe('allow');
    expect(get('arn:aws:s3:::AnyOtherBucket/x')).toBe('allow');
  });
});

describe('Condition operators', () => {
  // https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html
  const list = (prefix?: string): AwsRequest => ({
    action: 's3:ListBucket',
    resource: 'arn:aws:s3:::amzn-s3-demo-bucket',
    ...(prefix === undefined ? {} : { context: { 's3:prefix': prefix } }),
  });
  const listWith = (operator: string, value: string | string[]) =>
    policy({
      Effect: 'Allow',
      Action: 's3:ListBucket',
      Resource: 'arn:aws:s3:::amzn-s3-demo-bucket',
      Condition: { [operator]: { 's3:prefix': value } },
    });

  it('StringLike matches * and ? case-sensitively; several values are an OR', () => {
    const projects = listWith('StringLike', ['projects/*', 'home/?/*']);
    expect(decide(list('projects/2024/'), [projects])).toBe('allow');
    expect(decide(list('home/a/docs'), [projects])).toBe('allow');
    expect(decide(list('home/ab/docs'), [projects])).toBe('implicit deny');
    expect(decide(list('Projects/2024/'), [projects])).toBe('implicit deny');
  });

  it('a key absent from the request context makes the condition false, the negated ones true', () => {
    // "If the key that you specify in a policy condition is not present in the request context,
    // the values do not match and the condition is false. If the policy condition requires that
    // the key is not matched, such as StringNotLike or ArnNotLike, and the right key is not
    // present, the condition is true."
    expect(decide(list(), [listWith('StringLike', 'projects/*')])).toBe('implicit deny');
    expect(decide(list(), [listWith('StringEquals', 'projects/')])).toBe('implicit deny');
    expect(decide(list(), [listWith('StringNotLike', 'secret/*')])).toBe('allow');
    expect(decide(list('secret/x'), [listWith('StringNotLike', 'secret/*')])).toBe('implicit deny');
    // ...IfExists: "If the key is not present, evaluate the condition element as true."
    expect(decide(list(), [listWith('StringLikeIfExists', 'projects/*')])).toBe('allow');
    expect(decide(list('other/'), [listWith('StringLikeIfExists', 'projects/*')])).toBe(
      'implicit deny',
    );
  });

  it('StringEquals is exact and case-sensitive; StringEqualsIgnoreCase is not', () => {
    expect(decide(list('Projects/'), [listWith('StringEquals', 'projects/')])).toBe(
      'implicit deny',
    );
    expect(decide(list('Projects/'), [listWith('StringEqualsIgnoreCase', 'projects/')])).toBe(
      'allow',
    );
    expect(decide(list('projects/*'), [listWith('StringEquals', 'projects/*')])).toBe('allow');
    expect(decide(list('projects/x'), [listWith('StringEquals', 'projects/*')])).toBe(
      'implicit deny',
    );
  });

  it('Null tests whether the key is in the request context', () => {
    // The page's example: allow EC2 only without temporary credentials,
    // "Condition": {"Null": {"aws:TokenIssueTime": "true"}}.
    const noTemporaryCredentials = policy({
      Effect: 'Allow',
      Action: 'ec2:*',
      Resource: '*',
      Condition: { Null: { 'aws:TokenIssueTime': 'true' } },
    });
    const describeInstances = { action: 'ec2:DescribeInstances', resource: '*' };
    expect(decide(describeInstances, [noTemporaryCredentials])).toBe('allow');
    expect(
      decide({ ...describeInstances, context: { 'aws:TokenIssueTime': '2024-01-01T00:00:00Z' } }, [
        noTemporaryCredentials,
      ]),
    ).toBe('implicit deny');
  });

  it('ArnLike checks each of the six ARN components with wildcards', () => {
    const fromStateMachines = policy({
      Effect: 'Allow',
      Action: 'lambda:InvokeFunction',
      Resource: '*',
      Condition: {
        ArnLike: { 'aws:SourceArn': 'arn:aws:states:eu-west-1:111122223333:stateMachine:*' },
      },
    });
    const invoke = (sourceArn: string) =>
      decide(
        { action: 'lambda:InvokeFunction', resource: '*', context: { 'aws:SourceArn': sourceArn } },
        [fromStateMachines],
      );
    expect(invoke('arn:aws:states:eu-west-1:111122223333:stateMachine:sync')).toBe('allow');
    expect(invoke('arn:aws:states:eu-west-1:444455556666:stateMachine:sync')).toBe('implicit deny');
    expect(invoke('arn:aws:states:eu-west-1:111122223333:activity:sync')).toBe('implicit deny');
    // A `*` stays inside its component: it does not stand for the account's colon.
    const anyRegion = policy({
      Effect: 'Allow',
      Action: '*',
      Resource: '*',
      Condition: { ArnLike: { 'aws:SourceArn': 'arn:aws:states:*:stateMachine:sync' } },
    });
    expect(
      decide(
        {
          action: 'lambda:InvokeFunction',
          resource: '*',
          context: { 'aws:SourceArn': 'arn:aws:states:eu-west-1:111122223333:stateMachine:sync' },
        },
        [anyRegion],
      ),
    ).toBe('implicit deny');
  });

  it('ForAllValues and ForAnyValue over a multivalued key', () => {
    // https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-single-vs-multi-valued-context-keys.html
    const tagging = (operator: string) =>
      policy({
        Effect: 'Allow',
        Action: 'ec2:CreateTags',
        Resource: '*',
        Condition: { [operator]: { 'aws:TagKeys': ['environment', 'cost-center'] } },
      });
    const tag = (keys?: string[]) => ({
      action: 'ec2:CreateTags',
      resource: '*',
      ...(keys ? { context: { 'aws:TagKeys': keys } } : {}),
    });
    const all = tagging('ForAllValues:StringEquals');
    expect(decide(tag(['environment']), [all])).toBe('allow');
    expect(decide(tag(['environment', 'owner']), [all])).toBe('implicit deny');
    // "ForAllValues ... also returns true if there are no context keys in the request".
    expect(decide(tag(), [all])).toBe('allow');
    const any = tagging('ForAnyValue:StringEquals');
    expect(decide(tag(['environment', 'owner']), [any])).toBe('allow');
    expect(decide(tag(['owner']), [any])).toBe('implicit deny');
    expect(decide(tag(), [any])).toBe('implicit deny');
  });

  it('refuses an operator, key or element it does not support, naming it', () => {
    const read = { action: 's3:GetObject', resource: 'arn:aws:s3:::b/k' };
    const withCondition = (condition: PolicyStatement['Condition']) =>
      policy({ Effect: 'Allow', Action: 's3:GetObject', Resource: '*', Condition: condition! });
    expect(() =>
      decide(read, [
        withCondition({ DateGreaterThan: { 'aws:CurrentTime': '2020-01-01T00:00:00Z' } }),
      ]),
    ).toThrow(/condition operator DateGreaterThan is not supported/);
    expect(() =>
      decide(read, [withCondition({ StringEquals: { 's3:x-amz-acl': 'private' } })]),
    ).toThrow(/condition key s3:x-amz-acl is not known/);
    expect(() =>
      decide(read, [], {
        Statement: [
          {
            Effect: 'Deny',
            NotPrincipal: { AWS: ROLE },
            Action: 's3:*',
            Resource: '*',
          } as unknown as PolicyStatement,
        ],
      }),
    ).toThrow(/does not support the NotPrincipal element/);
    expect(() =>
      decide(
        read,
        [],
        policy({
          Effect: 'Allow',
          Principal: { Federated: 'cognito-identity.amazonaws.com' },
          Action: 's3:*',
          Resource: '*',
        }),
      ),
    ).toThrow(/Principal type Federated is not supported/);
    // A policy is checked whole, not only the statements the request reaches.
    expect(() =>
      decide({ action: 'sqs:SendMessage', resource: '*' }, [
        policy({ Effect: 'Allow', Action: 'sqs:*', Resource: '*' }),
        withCondition({ NumericLessThan: { 's3:max-keys': '10' } }),
      ]),
    ).toThrow(/NumericLessThan/);
  });
});

describe('bucket policy: deny requests that do not use HTTPS', () => {
  // https://docs.aws.amazon.com/AmazonS3/latest/userguide/example-bucket-policies.html
  // "Managing access based on HTTP or HTTPS requests": Deny s3:* on the bucket and its objects
  // when aws:SecureTransport is false. (CDK's enforceSSL writes the same statement.)
  const bucketPolicy = policy({
    Sid: 'RestrictToTLSRequestsOnly',
    Effect: 'Deny',
    Principal: '*',
    Action: 's3:*',
    Resource: ['arn:aws:s3:::amzn-s3-demo-bucket', 'arn:aws:s3:::amzn-s3-demo-bucket/*'],
    Condition: { Bool: { 'aws:SecureTransport': 'false' } },
  });
  const reader = policy({ Effect: 'Allow', Action: 's3:GetObject', Resource: '*' });
  const read = (secure: string) => ({
    action: 's3:GetObject',
    resource: 'arn:aws:s3:::amzn-s3-demo-bucket/report.csv',
    context: { 'aws:SecureTransport': secure },
  });

  it('denies a plain HTTP request even to a role allowed to read', () => {
    expect(decide(read('false'), [reader], bucketPolicy)).toBe('explicit deny');
  });

  it('leaves an HTTPS request to the identity-based policy', () => {
    expect(decide(read('true'), [reader], bucketPolicy)).toBe('allow');
    expect(decide(read('true'), [], bucketPolicy)).toBe('implicit deny');
  });
});

describe('KMS key policies', () => {
  // https://docs.aws.amazon.com/kms/latest/developerguide/key-policy-default.html
  // "Allows access to the AWS account and enables IAM policies", verbatim.
  const KEY = `arn:aws:kms:us-east-2:${ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab`;
  const enableIam = (principal: string) =>
    policy({
      Sid: 'Enable IAM User Permissions',
      Effect: 'Allow',
      Principal: { AWS: principal },
      Action: 'kms:*',
      Resource: '*',
    });
  const decryptWithIam = policy({ Effect: 'Allow', Action: 'kms:Decrypt', Resource: KEY });
  const decrypt = { action: 'kms:Decrypt', resource: KEY };

  it('with the default statement, IAM policies decide', () => {
    for (const principal of [`arn:aws:iam::${ACCOUNT}:root`, ACCOUNT]) {
      expect(decide(decrypt, [decryptWithIam], enableIam(principal))).toBe('allow');
      expect(decide(decrypt, [], enableIam(principal))).toBe('implicit deny');
    }
  });

  it('without it, IAM policies alone allow nothing', () => {
    // "If the key policy doesn't allow it, IAM policies can't grant access to the KMS key":
    // here the key policy only lets another account's principals in.
    expect(decide(decrypt, [decryptWithIam], enableIam('arn:aws:iam::444455556666:root'))).toBe(
      'implicit deny',
    );
    expect(decide(decrypt, [decryptWithIam])).toBe('implicit deny');
  });

  it('a key policy naming the role allows it without any IAM policy', () => {
    // The console default's "Allow use of the key" statement for a key user.
    const keyUsers = policy({
      Sid: 'Allow use of the key',
      Effect: 'Allow',
      Principal: { AWS: ROLE },
      Action: [
        'kms:Encrypt',
        'kms:Decrypt',
        'kms:ReEncrypt*',
        'kms:GenerateDataKey*',
        'kms:DescribeKey',
      ],
      Resource: '*',
    });
    expect(decide(decrypt, [], keyUsers)).toBe('allow');
    expect(
      decide({ action: 'kms:GenerateDataKeyWithoutPlaintext', resource: KEY }, [], keyUsers),
    ).toBe('allow');
    expect(decide({ action: 'kms:ScheduleKeyDeletion', resource: KEY }, [], keyUsers)).toBe(
      'implicit deny',
    );
    expect(decide(decrypt, [], keyUsers, OTHER_ROLE)).toBe('implicit deny');
  });

  it('an explicit deny in the key policy overrides the IAM allow', () => {
    const denyDecrypt = policy(
      {
        Effect: 'Allow',
        Principal: { AWS: `arn:aws:iam::${ACCOUNT}:root` },
        Action: 'kms:*',
        Resource: '*',
      },
      { Effect: 'Deny', Principal: { AWS: '*' }, Action: 'kms:Decrypt', Resource: '*' },
    );
    expect(decide(decrypt, [decryptWithIam], denyDecrypt)).toBe('explicit deny');
  });
});
