import { Match } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { API_FUNCTIONS } from '../../cdk/api.ts';
import { actionsOf, logicalId, roleStatements, synthCtdStack } from './helpers.ts';

const { stack, template } = synthCtdStack();
const methods = template.findResources('AWS::ApiGateway::Method');

describe('Construct: Api', () => {
  it('serves exactly the documented routes', () => {
    const resources = template.findResources('AWS::ApiGateway::Resource');
    const pathOf = (resourceId: unknown): string => {
      const ref = (resourceId as { Ref?: string }).Ref;
      if (!ref) return '';
      const r = resources[ref]!.Properties;
      return `${pathOf(r.ParentId)}/${r.PathPart}`;
    };
    const routes = Object.values(methods).map((m) => `${m.Properties.HttpMethod} ${pathOf(m.Properties.ResourceId)}`);
    expect(routes.sort()).toEqual(
      [
        'POST /deployments',
        'GET /deployments',
        'GET /deployments/{id}',
        'DELETE /deployments/{id}',
        'GET /deployments/{id}/history',
        'GET /deployments/{id}/logs',
      ].sort(),
    );
  });

  it('puts every method behind the Lambda authorizer, reading the Authorization header', () => {
    const authorizerId = logicalId(stack.api.node.findChild('Authorizer'));
    for (const method of Object.values(methods)) {
      expect(method.Properties).toMatchObject({ AuthorizationType: 'CUSTOM', AuthorizerId: { Ref: authorizerId } });
    }
    template.hasResourceProperties('AWS::ApiGateway::Authorizer', {
      Type: 'TOKEN',
      IdentitySource: 'method.request.header.Authorization',
      AuthorizerResultTtlInSeconds: 0,
    });
  });

  it('validates every request, and the submission body against a model', () => {
    for (const method of Object.values(methods)) expect(method.Properties.RequestValidatorId).toBeDefined();
    template.hasResourceProperties('AWS::ApiGateway::Method', {
      HttpMethod: 'POST',
      RequestModels: { 'application/json': Match.anyValue() },
    });
    template.hasResourceProperties('AWS::ApiGateway::RequestValidator', { ValidateRequestBody: true });
  });

  it('throttles, traces and access-logs the stage', () => {
    template.hasResourceProperties('AWS::ApiGateway::Stage', {
      TracingEnabled: true,
      AccessLogSetting: { DestinationArn: Match.anyValue(), Format: Match.stringLikeRegexp('requestId') },
      MethodSettings: [
        Match.objectLike({ HttpMethod: '*', ResourcePath: '/*', ThrottlingRateLimit: 20, ThrottlingBurstLimit: 40 }),
      ],
    });
  });

  it('sits behind a WAF web ACL', () => {
    template.hasResourceProperties('AWS::WAFv2::WebACLAssociation', { WebACLArn: Match.anyValue() });
  });

  it('gives each handler only its own access: submit starts executions and releases keys, cancel answers and stops steps', () => {
    type Access = { writes: boolean; deletes: boolean; starts: boolean; answers: boolean; stops: boolean };
    const none: Access = { writes: false, deletes: false, starts: false, answers: false, stops: false };
    const expectations: Record<string, Access> = {
      submit: { ...none, writes: true, deletes: true, starts: true },
      get: none,
      list: none,
      history: none,
      logs: none,
      cancel: { ...none, writes: true, answers: true, stops: true },
      authorizer: none,
    };
    for (const name of Object.keys(API_FUNCTIONS)) {
      const fn = stack.api.functions[name as keyof typeof API_FUNCTIONS];
      const actions = roleStatements(template, logicalId(fn.role!)).flatMap(actionsOf);
      expect({
        name,
        writes: actions.includes('dynamodb:PutItem') || actions.includes('dynamodb:UpdateItem'),
        deletes: actions.includes('dynamodb:DeleteItem'),
        starts: actions.includes('states:StartExecution'),
        answers: actions.includes('states:SendTaskFailure'),
        stops: actions.includes('ecs:StopTask'),
      }).toEqual({ name, ...expectations[name] });
    }
  });
});
