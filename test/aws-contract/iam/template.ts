/**
 * The policies of a synthesized CloudFormation template, with the intrinsic functions CDK emits
 * resolved to concrete ARNs: each role's identity-based policies, each bucket's, key's and
 * topic's resource-based policy, and each Lambda function's role. Resources get deterministic
 * stand-in physical names: the name property the template gives, else the logical ID lowercased
 * (lowercase because bucket names must be).
 * Intrinsics: https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/intrinsic-function-reference.html
 * Return values (Ref, Fn::GetAtt) are those of each resource type's page in the CloudFormation
 * template reference, e.g. https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-resource-s3-bucket.html#aws-resource-s3-bucket-return-values
 */
import { roleIdOf } from '../access';
import { checkedStatements } from './evaluate';
import type { PolicyDocument } from './policy';

export interface TemplateEnvironment {
  readonly account: string;
  readonly region: string;
  /** `aws`, or `aws-cn`, `aws-us-gov`. */
  readonly partition: string;
}

export interface CloudFormationTemplate {
  readonly Resources: Readonly<
    Record<string, { readonly Type: string; readonly Properties?: Record<string, unknown> }>
  >;
}

export interface RolePolicies {
  readonly logicalId: string;
  readonly arn: string;
  /** Inline `Policies`, attached `AWS::IAM::Policy`/`ManagedPolicy` resources, managed ARNs. */
  readonly policies: readonly PolicyDocument[];
}

export interface LambdaFunction {
  readonly arn: string;
  /** The role the function calls AWS as. */
  readonly roleArn: string;
  /**
   * Its environment variables resolved with the same stand-in names the policies use, so that
   * a handler run locally with them names the buckets, keys and topics the policies speak of.
   */
  readonly environment: Readonly<Record<string, string>>;
}

export interface TemplatePolicies {
  /** By role ARN. */
  readonly roles: Readonly<Record<string, RolePolicies>>;
  /** Bucket policies, by bucket name. */
  readonly bucketPolicies: Readonly<Record<string, PolicyDocument>>;
  /** Key policies, by key ARN. */
  readonly keyPolicies: Readonly<Record<string, PolicyDocument>>;
  /** Topic policies, by topic ARN. */
  readonly topicPolicies: Readonly<Record<string, PolicyDocument>>;
  /** Each Lambda function by logical ID. */
  readonly functions: Readonly<Record<string, LambdaFunction>>;
  /**
   * The KMS key of each bucket whose default encryption is SSE-KMS, by bucket name: S3 uses it
   * with the caller's permissions on every object written or read there.
   * https://docs.aws.amazon.com/AmazonS3/latest/userguide/UsingKMSEncryption.html
   */
  readonly bucketKeys: Readonly<Record<string, string>>;
  /**
   * The KMS key of each topic with server-side encryption, by topic ARN: a publisher needs
   * kms:GenerateDataKey and kms:Decrypt on it.
   * https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html
   */
  readonly topicKeys: Readonly<Record<string, string>>;
}

/**
 * AWS managed policies a role may list in ManagedPolicyArns, by name. None of the stack's roles
 * lists one (each function's log permissions are granted on its own log group instead of
 * through AWSLambdaBasicExecutionRole); a role that does makes policiesFromTemplate fail until
 * the policy's documented JSON is added here.
 */
const AWS_MANAGED_POLICIES: Readonly<Record<string, PolicyDocument>> = {};

type Resource = CloudFormationTemplate['Resources'][string];

export function policiesFromTemplate(
  template: CloudFormationTemplate,
  environment: TemplateEnvironment,
): TemplatePolicies {
  const resolver = new Resolver(template, environment);
  const resources = Object.entries(template.Resources);
  const ofType = (type: string) => resources.filter(([, resource]) => resource.Type === type);

  const roles: Record<string, { logicalId: string; arn: string; policies: PolicyDocument[] }> = {};
  const roleByName = new Map<string, string>();
  for (const [logicalId, resource] of ofType('AWS::IAM::Role')) {
    const arn = resolver.getAtt(logicalId, 'Arn');
    roleByName.set(resolver.ref(logicalId), arn);
    const properties = resource.Properties ?? {};
    const inline = ((properties.Policies as { PolicyDocument: unknown }[] | undefined) ?? []).map(
      (entry) => resolver.resolve(entry.PolicyDocument) as PolicyDocument,
    );
    const managed = ((properties.ManagedPolicyArns as unknown[] | undefined) ?? []).map((entry) =>
      managedPolicy(resolver.resolve(entry) as string, template, resolver, logicalId),
    );
    roles[arn] = { logicalId, arn, policies: [...inline, ...managed] };
  }
  for (const type of ['AWS::IAM::Policy', 'AWS::IAM::ManagedPolicy']) {
    for (const [logicalId, resource] of ofType(type)) {
      const properties = resource.Properties ?? {};
      const document = resolver.resolve(properties.PolicyDocument) as PolicyDocument;
      for (const name of resolver.resolve(properties.Roles ?? []) as string[]) {
        const arn = roleByName.get(name);
        if (!arn) {
          throw new Error(
            `${logicalId} attaches to role ${name}, which the template does not define`,
          );
        }
        roles[arn]!.policies.push(document);
      }
    }
  }

  const bucketPolicies: Record<string, PolicyDocument> = {};
  for (const [, resource] of ofType('AWS::S3::BucketPolicy')) {
    const bucket = resolver.resolve(resource.Properties?.Bucket) as string;
    bucketPolicies[bucket] = resolver.resolve(
      resource.Properties?.PolicyDocument,
    ) as PolicyDocument;
  }
  const keyPolicies: Record<string, PolicyDocument> = {};
  for (const [logicalId, resource] of ofType('AWS::KMS::Key')) {
    keyPolicies[resolver.getAtt(logicalId, 'Arn')] = resolver.resolve(
      resource.Properties?.KeyPolicy,
    ) as PolicyDocument;
  }
  const topicPolicies: Record<string, PolicyDocument> = {};
  for (const [, resource] of ofType('AWS::SNS::TopicPolicy')) {
    const document = resolver.resolve(resource.Properties?.PolicyDocument) as PolicyDocument;
    for (const topic of resolver.resolve(resource.Properties?.Topics) as string[]) {
      topicPolicies[topic] = document;
    }
  }
  const bucketKeys: Record<string, string> = {};
  for (const [logicalId, resource] of ofType('AWS::S3::Bucket')) {
    const encryption = resource.Properties?.BucketEncryption as
      | { ServerSideEncryptionConfiguration?: { ServerSideEncryptionByDefault?: unknown }[] }
      | undefined;
    for (const rule of encryption?.ServerSideEncryptionConfiguration ?? []) {
      const byDefault = resolver.resolve(rule.ServerSideEncryptionByDefault) as
        | { SSEAlgorithm?: string; KMSMasterKeyID?: string }
        | undefined;
      if (byDefault?.SSEAlgorithm?.startsWith('aws:kms') && byDefault.KMSMasterKeyID) {
        bucketKeys[resolver.ref(logicalId)] = byDefault.KMSMasterKeyID;
      }
    }
  }
  const topicKeys: Record<string, string> = {};
  for (const [logicalId, resource] of ofType('AWS::SNS::Topic')) {
    const key = resolver.resolve(resource.Properties?.KmsMasterKeyId);
    if (typeof key === 'string') topicKeys[resolver.ref(logicalId)] = key;
  }
  const functions: Record<string, LambdaFunction> = {};
  for (const [logicalId, resource] of ofType('AWS::Lambda::Function')) {
    const environment = resource.Properties?.Environment as { Variables?: unknown } | undefined;
    functions[logicalId] = {
      arn: resolver.getAtt(logicalId, 'Arn'),
      roleArn: resolver.resolve(resource.Properties?.Role) as string,
      environment: (resolver.resolve(environment?.Variables) ?? {}) as Record<string, string>,
    };
  }
  // Every policy is checked now, not when a request first reaches it, so that a condition or
  // element the evaluator does not support fails the harness at its start.
  for (const role of Object.values(roles)) {
    for (const document of role.policies) {
      checkedStatements(document, 'identity', `a policy of role ${role.logicalId}`);
    }
  }
  for (const [name, document] of [
    ...Object.entries(bucketPolicies),
    ...Object.entries(keyPolicies),
    ...Object.entries(topicPolicies),
  ]) {
    checkedStatements(document, 'resource', `the resource-based policy of ${name}`);
  }
  return { roles, bucketPolicies, keyPolicies, topicPolicies, functions, bucketKeys, topicKeys };
}

function managedPolicy(
  arn: string,
  template: CloudFormationTemplate,
  resolver: Resolver,
  roleLogicalId: string,
): PolicyDocument {
  // A customer managed policy of the template: its own AWS::IAM::ManagedPolicy resource is
  // attached through its Roles property or through this ARN; take the document from there.
  for (const [logicalId, resource] of Object.entries(template.Resources)) {
    if (resource.Type === 'AWS::IAM::ManagedPolicy' && resolver.ref(logicalId) === arn) {
      return resolver.resolve(resource.Properties?.PolicyDocument) as PolicyDocument;
    }
  }
  const name = /^arn:[a-z-]+:iam::aws:policy\/(?:.*\/)?([^/]+)$/.exec(arn)?.[1];
  const document = name ? AWS_MANAGED_POLICIES[name] : undefined;
  if (!document) {
    throw new Error(
      `role ${roleLogicalId} has managed policy ${arn}, whose document the evaluator does not have; add its documented JSON to AWS_MANAGED_POLICIES in test/aws-contract/iam/template.ts`,
    );
  }
  return document;
}

/** Resolves the intrinsic functions and pseudo parameters CDK emits, and refuses the others. */
class Resolver {
  constructor(
    private readonly template: CloudFormationTemplate,
    private readonly environment: TemplateEnvironment,
  ) {}

  resolve(value: unknown): unknown {
    if (Array.isArray(value)) return value.map((item) => this.resolve(item));
    if (typeof value !== 'object' || value === null) return value;
    const entries = Object.entries(value);
    const [first] = entries;
    if (entries.length === 1 && first && (first[0] === 'Ref' || first[0].startsWith('Fn::'))) {
      return this.intrinsic(first[0], first[1]);
    }
    return Object.fromEntries(entries.map(([key, item]) => [key, this.resolve(item)]));
  }

  private intrinsic(name: string, argument: unknown): unknown {
    switch (name) {
      case 'Ref':
        return this.ref(argument as string);
      case 'Fn::GetAtt': {
        const [logicalId, attribute] =
          typeof argument === 'string'
            ? [argument.slice(0, argument.indexOf('.')), argument.slice(argument.indexOf('.') + 1)]
            : (argument as [string, string]);
        return this.getAtt(logicalId, attribute);
      }
      case 'Fn::Join': {
        const [delimiter, parts] = argument as [string, unknown];
        return (this.resolve(parts) as unknown[])
          .map((part) => this.string(part, name))
          .join(delimiter);
      }
      case 'Fn::Select': {
        const [index, list] = this.resolve(argument) as [string | number, unknown[]];
        const item = list[Number(index)];
        if (item === undefined)
          throw new Error(`Fn::Select: no item ${index} in ${JSON.stringify(list)}`);
        return item;
      }
      case 'Fn::Split': {
        const [delimiter, source] = argument as [string, unknown];
        return this.string(this.resolve(source), name).split(delimiter);
      }
      case 'Fn::Sub': {
        const [text, variables] =
          typeof argument === 'string'
            ? [argument, {}]
            : (argument as [string, Record<string, unknown>]);
        return text.replace(/\$\{([^}!][^}]*)\}/g, (_, reference: string) => {
          if (reference in variables) return this.string(this.resolve(variables[reference]), name);
          const dot = reference.indexOf('.');
          return dot < 0 || reference.startsWith('AWS::')
            ? this.ref(reference)
            : this.getAtt(reference.slice(0, dot), reference.slice(dot + 1));
        });
      }
      default:
        throw new Error(
          `intrinsic function ${name} is not resolved by test/aws-contract/iam/template.ts; add it`,
        );
    }
  }

  private string(value: unknown, where: string): string {
    if (typeof value !== 'string') {
      throw new Error(`${where}: expected a string, got ${JSON.stringify(value)}`);
    }
    return value;
  }

  private resource(logicalId: string): Resource {
    const resource = this.template.Resources[logicalId];
    if (!resource) throw new Error(`the template has no resource ${logicalId}`);
    return resource;
  }

  /** The given name property, else the logical ID lowercased. */
  private nameOf(logicalId: string, property: string): string {
    const given = this.resource(logicalId).Properties?.[property];
    return given === undefined
      ? logicalId.toLowerCase()
      : this.string(this.resolve(given), property);
  }

  private arn(service: string, resource: string, regional = true): string {
    const { partition, region, account } = this.environment;
    return `arn:${partition}:${service}:${regional ? region : ''}:${account}:${resource}`;
  }

  ref(logicalId: string): string {
    const { account, region, partition } = this.environment;
    switch (logicalId) {
      case 'AWS::AccountId':
        return account;
      case 'AWS::Region':
        return region;
      case 'AWS::Partition':
        return partition;
      case 'AWS::URLSuffix':
        return partition === 'aws-cn' ? 'amazonaws.com.cn' : 'amazonaws.com';
    }
    const { Type } = this.resource(logicalId);
    switch (Type) {
      case 'AWS::IAM::Role':
        return this.nameOf(logicalId, 'RoleName');
      case 'AWS::IAM::ManagedPolicy':
        return this.arn('iam', `policy/${this.nameOf(logicalId, 'ManagedPolicyName')}`, false);
      case 'AWS::S3::Bucket':
        return this.nameOf(logicalId, 'BucketName');
      case 'AWS::KMS::Key':
        return logicalId.toLowerCase();
      case 'AWS::Lambda::Function':
        return this.nameOf(logicalId, 'FunctionName');
      case 'AWS::Logs::LogGroup':
        return this.nameOf(logicalId, 'LogGroupName');
      case 'AWS::SNS::Topic':
        return this.arn('sns', this.nameOf(logicalId, 'TopicName'));
      case 'AWS::StepFunctions::StateMachine':
        return this.arn('states', `stateMachine:${this.nameOf(logicalId, 'StateMachineName')}`);
      default:
        throw new Error(
          `Ref to ${logicalId} (${Type}) is not resolved by test/aws-contract/iam/template.ts`,
        );
    }
  }

  getAtt(logicalId: string, attribute: string): string {
    const { Type } = this.resource(logicalId);
    const unsupported = () =>
      new Error(
        `Fn::GetAtt ${logicalId}.${attribute} (${Type}) is not resolved by test/aws-contract/iam/template.ts`,
      );
    if (Type === 'AWS::SNS::Topic' && attribute === 'TopicArn') return this.ref(logicalId);
    if (Type === 'AWS::SNS::Topic' && attribute === 'TopicName') {
      return this.nameOf(logicalId, 'TopicName');
    }
    if (Type === 'AWS::StepFunctions::StateMachine' && attribute === 'Name') {
      return this.nameOf(logicalId, 'StateMachineName');
    }
    if (Type === 'AWS::IAM::Role' && attribute === 'RoleId') {
      return roleIdOf(this.getAtt(logicalId, 'Arn'));
    }
    if (attribute !== 'Arn') throw unsupported();
    switch (Type) {
      case 'AWS::IAM::Role': {
        const path = (this.resource(logicalId).Properties?.Path as string | undefined) ?? '/';
        return this.arn('iam', `role${path}${this.ref(logicalId)}`, false);
      }
      case 'AWS::S3::Bucket':
        return `arn:${this.environment.partition}:s3:::${this.ref(logicalId)}`;
      case 'AWS::KMS::Key':
        return this.arn('kms', `key/${this.ref(logicalId)}`);
      case 'AWS::Lambda::Function':
        return this.arn('lambda', `function:${this.ref(logicalId)}`);
      // "The ARN of the log group, such as arn:aws:logs:us-west-1:123456789012:log-group:/mystack-testgroup-12ABC1AB12A1:*"
      // https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-resource-logs-loggroup.html#aws-resource-logs-loggroup-return-values
      case 'AWS::Logs::LogGroup':
        return this.arn('logs', `log-group:${this.ref(logicalId)}:*`);
      case 'AWS::StepFunctions::StateMachine':
        return this.ref(logicalId);
      default:
        throw unsupported();
    }
  }
}
