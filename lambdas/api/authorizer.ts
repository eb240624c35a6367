import middy from '@middy/core';
import type { APIGatewayAuthorizerResult, APIGatewayRequestAuthorizerEvent, APIGatewayTokenAuthorizerEvent } from 'aws-lambda';
import { depsFromEnv, type DepsProvider } from '../deps.ts';
import { observe } from '../observability.ts';

/**
 * The API's authorizer: the cloud itself says whose token this is. API Gateway turns a thrown
 * "Unauthorized" into 401; the tenant id reaches the api handlers as requestContext.authorizer.tenantId.
 * The deployed API uses a TOKEN authorizer; the local gateway sends REQUEST events. Both carry the header.
 */
export const createHandler = (deps: DepsProvider) =>
  middy(async (event: APIGatewayTokenAuthorizerEvent | APIGatewayRequestAuthorizerEvent): Promise<APIGatewayAuthorizerResult> => {
    const header =
      event.type === 'TOKEN'
        ? event.authorizationToken
        : (Object.entries(event.headers ?? {}).find(([k]) => k.toLowerCase() === 'authorization')?.[1] ?? '');
    const token = /^Bearer\s+(\S+)$/i.exec(header)?.[1];
    const identity = token ? await deps().identity.identify(token) : undefined;
    if (!identity) throw new Error('Unauthorized');
    return {
      principalId: identity.tenantId,
      policyDocument: {
        Version: '2012-10-17',
        Statement: [{ Action: 'execute-api:Invoke', Effect: 'Allow', Resource: apiWildcard(event.methodArn) }],
      },
      context: { tenantId: identity.tenantId },
    };
  }).use(observe('api'));

/** Allow every route of this API stage, so a cached decision serves the tenant's other calls too. */
function apiWildcard(methodArn: string): string {
  const [arnPrefix, stage] = methodArn.split('/');
  return `${arnPrefix}/${stage}/*`;
}

export const handler = createHandler(depsFromEnv('authorizer'));
