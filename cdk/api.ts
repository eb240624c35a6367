import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as apigw from 'aws-cdk-lib/aws-apigateway';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as wafv2 from 'aws-cdk-lib/aws-wafv2';
import { Construct } from 'constructs';
import type { DeploymentsTable } from './data.ts';
import type { ConfigSection } from '../core/config/schema.ts';
import { API_LAMBDAS, AUTHORIZER_CACHE_TTL_SECONDS, AUTHORIZER_FAILURE_RESPONSE, entryOf, environmentOf } from '../lambdas/catalog.ts';
import { HandlerFunction } from './functions.ts';
import type { TokenKey } from './keys.ts';
import { executionsArn, grantHandler, stateMachineArn, type HandlerGrants } from './permissions.ts';
import { acknowledge } from './nag.ts';
import type { Sandbox } from './sandbox.ts';

interface ApiFunctionSpec extends HandlerGrants {
  readonly startsExecutions?: boolean;
  readonly readsHistory?: boolean;
  readonly config: readonly ConfigSection[];
}

/**
 * What each API handler may do (test/integration/iam-usage.test.ts checks it against what each
 * one calls), from the one catalog of Lambdas.
 */
export const API_FUNCTIONS = API_LAMBDAS;

export type ApiFunctionName = keyof typeof API_FUNCTIONS;

/** Common Rule Set body rules that real deployment bodies trip (see the WAF rule that scopes them). */
export const SUBMIT_BODY_RULES = ['EC2MetaDataSSRF_BODY', 'GenericLFI_BODY', 'GenericRFI_BODY'] as const;
/** The labels those rules add to a request they match (AWS WAF managed rule group documentation). */
const COMMON_RULE_LABELS: Record<(typeof SUBMIT_BODY_RULES)[number], string> = {
  EC2MetaDataSSRF_BODY: 'EC2MetaDataSSRF_Body',
  GenericLFI_BODY: 'GenericLFI_Body',
  GenericRFI_BODY: 'GenericRFI_Body',
};

export interface ApiProps {
  readonly data: DeploymentsTable;
  readonly tokenKey: TokenKey;
  /** Whom each deployment's decrypt grant names (the sandbox task role) and who retires it (DeleteSecrets). */
  readonly tokenGrants: { decrypter: iam.IRole; retirer: iam.IRole };
  readonly sandbox: Sandbox;
  /** Every configuration value the stack knows; each function gets those of its sections. */
  readonly values: Record<string, string>;
  readonly logRetention: logs.RetentionDays;
}

/**
 * The REST API: every method behind the Lambda authorizer (the caller's cloud token), throttled,
 * access-logged, traced, behind a WAF web ACL.
 */
export class Api extends Construct {
  readonly functions: Record<ApiFunctionName, lambda.IFunction>;
  readonly restApi: apigw.RestApi;

  constructor(scope: Construct, id: string, props: ApiProps) {
    super(scope, id);
    const specs: Record<string, ApiFunctionSpec> = API_FUNCTIONS;
    const fns = {} as Record<ApiFunctionName, lambda.IFunction>;
    for (const [name, spec] of Object.entries(specs)) {
      const { fn } = new HandlerFunction(this, name, {
        entry: entryOf(name as ApiFunctionName),
        environment: environmentOf(spec.config, props.values),
        logRetention: props.logRetention,
      });
      grantHandler(fn, spec, props.data, props.sandbox.cluster);
      if (spec.startsExecutions) {
        fn.addToRolePolicy(new iam.PolicyStatement({ actions: ['states:StartExecution'], resources: [stateMachineArn(this)] }));
      }
      if (spec.readsHistory) {
        fn.addToRolePolicy(new iam.PolicyStatement({ actions: ['states:GetExecutionHistory'], resources: [executionsArn(this)] }));
        acknowledge(
          fn.role!,
          'AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:ctd-deployment:*]',
          'Executions are named after deployment ids, known only at run time; the wildcard covers this state machine\'s executions only.',
        );
      }
      fns[name as ApiFunctionName] = fn;
    }
    props.tokenKey.allowEncrypt(fns.submit.role!, props.tokenGrants);
    this.functions = fns;

    const accessLogs = new logs.LogGroup(this, 'AccessLogs', {
      retention: props.logRetention,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    this.restApi = new apigw.RestApi(this, 'RestApi', {
      restApiName: 'ctd-orchestrator',
      description: 'CTD Orchestrator deployments API',
      endpointTypes: [apigw.EndpointType.REGIONAL],
      cloudWatchRole: false,
      deployOptions: {
        stageName: 'v1',
        throttlingRateLimit: 20,
        throttlingBurstLimit: 40,
        tracingEnabled: true,
        metricsEnabled: true,
        accessLogDestination: new apigw.LogGroupLogDestination(accessLogs),
        accessLogFormat: apigw.AccessLogFormat.jsonWithStandardFields(),
      },
    });

    // Cached per Authorization header: the authorizer allows the whole stage, so one decision
    // serves the caller's other routes, and Keystone is asked once per token per TTL.
    const authorizer = new apigw.TokenAuthorizer(this, 'Authorizer', {
      handler: fns.authorizer,
      identitySource: apigw.IdentitySource.header('Authorization'),
      resultsCacheTtl: Duration.seconds(AUTHORIZER_CACHE_TTL_SECONDS),
    });
    // An authorizer that fails (the cloud's identity service is down) is a retryable 503 with a
    // message, not API Gateway's 500 {"message":null}. Both types: AWS does not document which one a
    // Lambda error raises.
    for (const type of [apigw.ResponseType.AUTHORIZER_CONFIGURATION_ERROR, apigw.ResponseType.AUTHORIZER_FAILURE]) {
      this.restApi.addGatewayResponse(`Gateway${type.responseType}`, {
        type,
        statusCode: String(AUTHORIZER_FAILURE_RESPONSE.status),
        templates: { 'application/json': JSON.stringify({ message: AUTHORIZER_FAILURE_RESPONSE.message }) },
      });
    }
    const bodyValidator = this.restApi.addRequestValidator('BodyValidator', {
      validateRequestBody: true,
      validateRequestParameters: true,
    });
    const paramsValidator = this.restApi.addRequestValidator('ParamsValidator', {
      validateRequestBody: false,
      validateRequestParameters: true,
    });
    // The submit handler's zod schema is the authority (its 400 names the field); this only
    // turns away what is not a JSON object before a Lambda runs.
    const submission = this.restApi.addModel('DeploymentSubmission', {
      contentType: 'application/json',
      modelName: 'DeploymentSubmission',
      schema: { schema: apigw.JsonSchemaVersion.DRAFT4, type: apigw.JsonSchemaType.OBJECT },
    });

    const auth = { authorizer, authorizationType: apigw.AuthorizationType.CUSTOM };
    const idParam = { 'method.request.path.id': true };
    const route = (resource: apigw.IResource, method: string, fn: lambda.IFunction, opts: apigw.MethodOptions = {}) =>
      resource.addMethod(method, new apigw.LambdaIntegration(fn), { ...auth, requestValidator: paramsValidator, ...opts });

    // The routes of the catalog (lambdas/catalog.ts), which local mode's gateway serves too.
    const resourceAt = (path: string): apigw.IResource =>
      path.split('/').filter(Boolean).reduce<apigw.IResource>((r, part) => r.getResource(part) ?? r.addResource(part), this.restApi.root);
    for (const [name, spec] of Object.entries(API_FUNCTIONS)) {
      if (!('route' in spec)) continue;
      const { method, resource } = spec.route;
      route(resourceAt(resource), method, fns[name as ApiFunctionName], {
        ...(resource.includes('{id}') ? { requestParameters: idParam } : {}),
        ...(method === 'POST' ? { requestValidator: bodyValidator, requestModels: { 'application/json': submission } } : {}),
      });
    }

    this.addWebAcl();
    acknowledge(
      this.restApi,
      'AwsSolutions-COG4',
      'Callers authenticate with their target cloud\'s token (e.g. Keystone), validated by the Lambda authorizer; there is no user pool by design.',
    );
    acknowledge(
      this.restApi,
      'AwsSolutions-APIG6',
      'Execution logging needs the region-wide API Gateway CloudWatch role, an account singleton this stack must not own; JSON access logs cover every request.',
    );
  }

  private addWebAcl(): void {
    const visibility = (metricName: string) => ({
      cloudWatchMetricsEnabled: true,
      sampledRequestsEnabled: true,
      metricName,
    });
    const acl = new wafv2.CfnWebACL(this, 'WebAcl', {
      scope: 'REGIONAL',
      defaultAction: { allow: {} },
      visibilityConfig: visibility('ctd-api'),
      rules: [
        {
          name: 'RatePerSourceIp',
          priority: 0,
          action: { block: {} },
          statement: { rateBasedStatement: { limit: 600, aggregateKeyType: 'IP' } },
          visibilityConfig: visibility('ctd-api-rate'),
        },
        {
          name: 'AWSManagedRulesCommonRuleSet',
          priority: 1,
          overrideAction: { none: {} },
          statement: {
            managedRuleGroupStatement: {
              vendorName: 'AWS',
              name: 'AWSManagedRulesCommonRuleSet',
              ruleActionOverrides: [
                // Submissions carry file bundles larger than the rule set's 8 KB body limit.
                { name: 'SizeRestrictions_BODY', actionToUse: { count: {} } },
                // Counted here, enforced by the next rule everywhere except POST /deployments.
                ...SUBMIT_BODY_RULES.map((name) => ({ name, actionToUse: { count: {} } })),
              ],
            },
          },
          visibilityConfig: visibility('ctd-api-common'),
        },
        {
          // A deployment body is shell, cloud-init and Ansible by design: it names OpenStack's metadata
          // address 169.254.169.254, paths like ../ and /etc/…, and URLs to fetch. These three body rules
          // would block real submissions, so they block every request but POST /deployments, whose body
          // the submit handler validates (zod) and runs only inside the tenant's own sandboxes and VMs.
          name: 'CommonRuleSetBodyExceptSubmit',
          priority: 2,
          action: { block: {} },
          statement: {
            andStatement: {
              statements: [
                {
                  orStatement: {
                    statements: SUBMIT_BODY_RULES.map((name) => ({
                      labelMatchStatement: { scope: 'LABEL', key: `awswaf:managed:aws:core-rule-set:${COMMON_RULE_LABELS[name]}` },
                    })),
                  },
                },
                {
                  notStatement: {
                    statement: {
                      andStatement: {
                        statements: [
                          {
                            byteMatchStatement: {
                              fieldToMatch: { method: {} },
                              positionalConstraint: 'EXACTLY',
                              searchString: 'POST',
                              textTransformations: [{ priority: 0, type: 'NONE' }],
                            },
                          },
                          {
                            byteMatchStatement: {
                              fieldToMatch: { uriPath: {} },
                              positionalConstraint: 'ENDS_WITH',
                              searchString: '/deployments',
                              textTransformations: [{ priority: 0, type: 'NONE' }],
                            },
                          },
                        ],
                      },
                    },
                  },
                },
              ],
            },
          },
          visibilityConfig: visibility('ctd-api-common-body'),
        },
      ],
    });
    new wafv2.CfnWebACLAssociation(this, 'WebAclAssociation', {
      resourceArn: this.restApi.deploymentStage.stageArn,
      webAclArn: acl.attrArn,
    });
  }
}
