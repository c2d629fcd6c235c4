import type { Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { type IRole, Role } from 'aws-cdk-lib/aws-iam';
import { Key } from 'aws-cdk-lib/aws-kms';
import { Bucket } from 'aws-cdk-lib/aws-s3';
import { type ISecret, Secret } from 'aws-cdk-lib/aws-secretsmanager';
import { afterAll, describe, expect, it } from 'vitest';
import { PIPELINE_FUNCTIONS, type PipelineFunctionName } from '../lib/function-access';
import { PipelineFunctions, type PipelineFunctionsProps } from '../lib/pipeline-functions';
import type { RedshiftTarget } from '../lib/redshift-access';
import { RunStorage } from '../lib/run-storage';
import { createAlarmTopic } from '../lib/sync-alarms';
import { actionsOf, nagFindings, removeTestOutput, type Statement, testStack } from './support/cdk';

afterAll(removeTestOutput);

const CLUSTER_ARN = 'arn:aws:rds:eu-west-1:123456789012:cluster:app';
const SECRET_ARN = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:aurora/sync-AbCdEf';
const UNLOAD_ROLE_ARN = 'arn:aws:iam::123456789012:role/existing-unload';

interface Built {
  readonly stack: Stack;
  readonly app: ReturnType<typeof testStack>['app'];
  readonly parts: PipelineFunctions;
  readonly template: Template;
}

function build(
  options: {
    readonly auroraSecret?: (stack: Stack) => ISecret;
    readonly redshift?: (stack: Stack) => RedshiftTarget;
    readonly unloadRole?: (stack: Stack) => IRole;
    readonly existingBucket?: boolean;
  } = {},
  overrides: (stack: Stack) => Partial<PipelineFunctionsProps> = () => ({}),
): Built {
  const { app, stack } = testStack();
  const storage = new RunStorage(stack, 'Storage', {
    ...(options.existingBucket
      ? { bucket: Bucket.fromBucketName(stack, 'Existing', 'team-run-files') }
      : {}),
  });
  const parts = new PipelineFunctions(stack, 'Functions', {
    environmentName: 'test',
    storage,
    redshift: options.redshift?.(stack) ?? {
      clusterIdentifier: 'analytics',
      database: 'analytics',
      dbUser: 'sync',
    },
    aurora: {
      clusterArn: CLUSTER_ARN,
      secret:
        options.auroraSecret?.(stack) ??
        Secret.fromSecretCompleteArn(stack, 'AuroraSecret', SECRET_ARN),
      database: 'app',
    },
    unloadRole: options.unloadRole?.(stack),
    alarmTopic: createAlarmTopic(stack, 'Topic', { encryptionKey: storage.key }),
    stateMachineName: 'sync-test',
    tableCount: 3,
    ...overrides(stack),
  });
  return { app, stack, parts, template: Template.fromStack(stack) };
}

/** Every statement of the identity policies attached to the function's role. */
function statementsOf(built: Built, name: PipelineFunctionName): Statement[] {
  const role = built.parts.functions[name].role!;
  const roleId = built.stack.getLogicalId(role.node.defaultChild as never);
  return Object.values(
    built.template.findResources('AWS::IAM::Policy', { Properties: { Roles: [{ Ref: roleId }] } }),
  ).flatMap((policy) => policy.Properties.PolicyDocument.Statement as Statement[]);
}

function resourcesFor(statements: Statement[], action: string): unknown[] {
  return statements
    .filter((statement) => actionsOf(statement).includes(action))
    .flatMap((statement) => [statement.Resource].flat());
}

function keyArnOf(built: Built, key: Key): unknown {
  return { 'Fn::GetAtt': [built.stack.getLogicalId(key.node.defaultChild as never), 'Arn'] };
}

describe('PipelineFunctions', () => {
  it('lets the Aurora steps decrypt a secret under a customer-managed key, with that key only', () => {
    let secretKey!: Key;
    const built = build({
      auroraSecret: (stack) => {
        secretKey = new Key(stack, 'SecretKey', { enableKeyRotation: true });
        return new Secret(stack, 'AuroraSecret', { encryptionKey: secretKey });
      },
    });
    for (const name of PIPELINE_FUNCTIONS) {
      const decrypts = resourcesFor(statementsOf(built, name), 'kms:Decrypt');
      expect(decrypts).toContainEqual(keyArnOf(built, secretKey));
      expect(resourcesFor(statementsOf(built, name), 'secretsmanager:GetSecretValue')).toEqual([
        {
          Ref: built.stack.getLogicalId(
            built.stack.node.findChild('AuroraSecret').node.defaultChild as never,
          ),
        },
      ]);
    }
    expect(
      nagFindings(built.app).filter((finding) => !finding.includes('AwsSolutions-SMG4')),
    ).toEqual([]);
  });

  it('grants no key for a secret under the AWS-managed key: only the run key is decrypted', () => {
    const built = build();
    const runKey = built.stack.node.findChild('Storage').node.findChild('Key') as Key;
    for (const name of PIPELINE_FUNCTIONS) {
      const statements = statementsOf(built, name);
      expect(resourcesFor(statements, 'secretsmanager:GetSecretValue')).toEqual([SECRET_ARN]);
      for (const resource of resourcesFor(statements, 'kms:Decrypt')) {
        expect(resource).toEqual(keyArnOf(built, runKey));
      }
    }
    expect(nagFindings(built.app)).toEqual([]);
  });

  it('lets the Redshift role decrypt a Redshift secret under a customer-managed key; a partial ARN is granted as <arn>-??????', () => {
    let secretKey!: Key;
    const built = build({
      redshift: (stack) => {
        secretKey = new Key(stack, 'RedshiftSecretKey', { enableKeyRotation: true });
        return {
          workgroupName: 'wg-1',
          workgroupId: '0f0e0d0c-0b0a-0908-0706-050403020100',
          database: 'dev',
          secret: Secret.fromSecretAttributes(stack, 'RedshiftSecret', {
            secretPartialArn: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:redshift',
            encryptionKey: secretKey,
          }),
        };
      },
    });
    const statements = statementsOf(built, 'start-unload');
    expect(resourcesFor(statements, 'kms:Decrypt')).toContainEqual(keyArnOf(built, secretKey));
    expect(resourcesFor(statements, 'secretsmanager:GetSecretValue')).toContain(
      'arn:aws:secretsmanager:eu-west-1:123456789012:secret:redshift-??????',
    );
    expect(resourcesFor(statementsOf(built, 'finish-run'), 'kms:Decrypt')).not.toContainEqual(
      keyArnOf(built, secretKey),
    );
    expect(nagFindings(built.app)).toEqual([]);
  });

  it('gives a role this stack may extend the UNLOAD access in its own policy', () => {
    const built = build({
      unloadRole: (stack) => Role.fromRoleArn(stack, 'Unload', UNLOAD_ROLE_ARN),
    });
    expect(built.parts.unloadRoleCreated).toBe(false);
    const policies = Object.values(
      built.template.findResources('AWS::IAM::Policy', {
        Properties: { Roles: ['existing-unload'] },
      }),
    ).flatMap((policy) => policy.Properties.PolicyDocument.Statement as Statement[]);
    expect(policies.flatMap(actionsOf).sort()).toEqual(
      [
        'kms:Decrypt',
        'kms:Encrypt',
        'kms:GenerateDataKey',
        's3:GetBucketLocation',
        's3:ListBucket',
        's3:PutObject',
      ].sort(),
    );
    built.template.resourcePropertiesCountIs(
      'AWS::IAM::Role',
      {
        AssumeRolePolicyDocument: {
          Statement: [{ Principal: { Service: 'redshift.amazonaws.com' } }],
        },
      },
      0,
    );
    expect(nagFindings(built.app)).toEqual([]);
  });

  it('refuses an immutable UNLOAD role with an existing bucket, naming unloadRole and what to grant', () => {
    expect(() =>
      build({
        existingBucket: true,
        unloadRole: (stack) =>
          Role.fromRoleArn(stack, 'Unload', UNLOAD_ROLE_ARN, {
            mutable: false,
            addGrantsToResources: true,
          }),
      }),
    ).toThrow(
      /PartTest\/Functions: unloadRole \(arn:aws:iam::123456789012:role\/existing-unload\) takes no policy from this stack.*s3:PutObject on runs\/\*/,
    );
  });

  it('refuses, naming the prop, a cluster ARN, state machine name, table count or memory it cannot use', () => {
    expect(() =>
      build({}, (stack) => ({
        aurora: {
          clusterArn: 'app',
          secret: Secret.fromSecretCompleteArn(stack, 'Other', SECRET_ARN),
          database: 'app',
        },
      })),
    ).toThrow(/PartTest\/Functions: aurora\.clusterArn is "app"; give an Aurora cluster ARN/);
    expect(() => build({}, () => ({ stateMachineName: 'sync test' }))).toThrow(
      /PartTest\/Functions: stateMachineName is "sync test"/,
    );
    expect(() => build({}, () => ({ tableCount: 0 }))).toThrow(
      /PartTest\/Functions: tableCount is 0/,
    );
    expect(() => build({}, () => ({ memorySizeMb: 64 }))).toThrow(
      /PartTest\/Functions: memorySizeMb is 64; Lambda takes whole MB from 128 to 10240/,
    );
  });
});
