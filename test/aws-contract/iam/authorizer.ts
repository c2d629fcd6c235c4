/**
 * The Authorize the AWS stand-ins call (../access.ts), answering from a synthesized template's
 * policies: the calling role's identity-based policies, and the resource-based policy of the
 * resource the request is on.
 */
import { AccessDeniedError, type Authorize, type AwsPrincipal, type AwsRequest } from '../access';
import { accountOfRole, evaluate } from './evaluate';
import type { PolicyDocument } from './policy';
import {
  type CloudFormationTemplate,
  policiesFromTemplate,
  type TemplateEnvironment,
  type TemplatePolicies,
} from './template';

/** The resource-based policy governing `resource`, if the template gives it one. */
function resourcePolicyOf(
  policies: TemplatePolicies,
  resource: string,
): PolicyDocument | undefined {
  // S3 ARNs have neither region nor account: arn:aws:s3:::bucket and arn:aws:s3:::bucket/key.
  const bucket = /^arn:[a-z-]+:s3:::([^/]+)/.exec(resource)?.[1];
  if (bucket !== undefined) return policies.bucketPolicies[bucket];
  return policies.keyPolicies[resource] ?? policies.topicPolicies[resource];
}

/**
 * Request context every call of the stand-ins has, as AWS fills it in: the SDK always speaks
 * HTTPS, and the principal keys name the role (for a role session aws:PrincipalArn is the
 * role's ARN). A request's own context overrides these.
 * https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html
 */
function contextOf(principal: AwsPrincipal, request: AwsRequest): AwsRequest {
  return {
    ...request,
    context: {
      'aws:SecureTransport': 'true',
      'aws:PrincipalArn': principal.roleArn,
      'aws:PrincipalAccount': accountOfRole(principal.roleArn),
      ...request.context,
    },
  };
}

export function authorizerFromPolicies(policies: TemplatePolicies): Authorize {
  return (principal, request) => {
    const resourcePolicy = resourcePolicyOf(policies, request.resource);
    const decision = evaluate(contextOf(principal, request), {
      identityPolicies: policies.roles[principal.roleArn]?.policies ?? [],
      principal,
      ...(resourcePolicy ? { resourcePolicy } : {}),
    });
    if (decision !== 'allow') throw new AccessDeniedError(principal, request, decision);
  };
}

/** Authorizes every request as AWS would with the template's policies deployed in `environment`. */
export function authorizerFromTemplate(
  template: CloudFormationTemplate,
  environment: TemplateEnvironment,
): Authorize {
  return authorizerFromPolicies(policiesFromTemplate(template, environment));
}
