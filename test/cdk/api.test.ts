import { Match } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { API_FUNCTIONS, SUBMIT_BODY_RULES } from '../../cdk/api.ts';
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
      // API Gateway's default TTL, the one the local gateway keeps too (lambdas/catalog.ts).
      AuthorizerResultTtlInSeconds: 300,
    });
  });

  it('answers an authorizer failure (the cloud\'s identity service down) with 503 and a message, not 500 {"message":null}', () => {
    for (const type of ['AUTHORIZER_CONFIGURATION_ERROR', 'AUTHORIZER_FAILURE']) {
      template.hasResourceProperties('AWS::ApiGateway::GatewayResponse', {
        ResponseType: type,
        StatusCode: '503',
        ResponseTemplates: { 'application/json': Match.stringLikeRegexp("identity service is unreachable") },
      });
    }
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

  describe('WAF: Common Rule Set body rules scoped down for POST /deployments', () => {
    interface WafRule {
      Name: string;
      Priority: number;
      Action?: Record<string, unknown>;
      Statement: Statement;
    }
    type Statement = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- CloudFormation's WAF statement union
    const rules = (Object.values(template.findResources('AWS::WAFv2::WebACL'))[0]!.Properties.Rules as WafRule[]).sort((a, b) => a.Priority - b.Priority);
    const common = rules.find((r) => r.Name === 'AWSManagedRulesCommonRuleSet')!;
    const overridden = (common.Statement.ManagedRuleGroupStatement.RuleActionOverrides as { Name: string; ActionToUse: object }[]).map((o) => o.Name);

    /** The subset of WAF's statement language the ACL uses, evaluated for one request. */
    const matches = (st: Statement, req: { method: string; path: string; labels: string[] }): boolean => {
      if (st.AndStatement) return (st.AndStatement.Statements as Statement[]).every((s) => matches(s, req));
      if (st.OrStatement) return (st.OrStatement.Statements as Statement[]).some((s) => matches(s, req));
      if (st.NotStatement) return !matches(st.NotStatement.Statement, req);
      if (st.LabelMatchStatement) return req.labels.includes(st.LabelMatchStatement.Key);
      if (st.ByteMatchStatement) {
        const value = st.ByteMatchStatement.FieldToMatch.Method ? req.method : req.path;
        const needle = st.ByteMatchStatement.SearchString as string;
        return st.ByteMatchStatement.PositionalConstraint === 'EXACTLY' ? value === needle : value.endsWith(needle);
      }
      throw new Error(`statement not understood: ${JSON.stringify(st)}`);
    };
    const label = (rule: string) => `awswaf:managed:aws:core-rule-set:${rule.replace(/_BODY$/, '_Body')}`;
    const blockedByScope = (req: { method: string; path: string; labels: string[] }) =>
      rules.filter((r) => r.Priority > common.Priority && r.Action?.Block && matches(r.Statement, req)).map((r) => r.Name);

    it('counts only those three body rules (and the size rule) in the managed group; the rest still block', () => {
      expect(overridden.sort()).toEqual(['SizeRestrictions_BODY', ...SUBMIT_BODY_RULES].sort());
      expect(overridden).not.toContain('CrossSiteScripting_BODY');
    });

    it.each(SUBMIT_BODY_RULES)('lets a submission tripping %s through, and blocks it on every other route', (rule) => {
      expect(blockedByScope({ method: 'POST', path: '/v1/deployments', labels: [label(rule)] })).toEqual([]);
      expect(blockedByScope({ method: 'DELETE', path: '/v1/deployments/d-1', labels: [label(rule)] })).toEqual(['CommonRuleSetBodyExceptSubmit']);
      expect(blockedByScope({ method: 'GET', path: '/v1/deployments', labels: [label(rule)] })).toEqual(['CommonRuleSetBodyExceptSubmit']);
    });

    it('blocks nothing that none of the three rules labelled', () => {
      expect(blockedByScope({ method: 'GET', path: '/v1/deployments/d-1', labels: [] })).toEqual([]);
    });
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
