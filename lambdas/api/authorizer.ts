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
    // No cloud token is this long; sent on, it overflows the cloud's header limit and failed as a 500.
    const identity = token && token.length <= MAX_TOKEN_LENGTH ? await deps().identity.identify(token) : undefined;
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

/** Keystone's Fernet tokens are ~200 characters; 4 KiB leaves room for any other token format. */
export const MAX_TOKEN_LENGTH = 4096;

/** Allow every route of this API stage, so a cached decision serves the tenant's other calls too. */
function apiWildcard(methodArn: string): string {
  const [arnPrefix, stage] = methodArn.split('/');
  return `${arnPrefix}/${stage}/*`;
}

export const handler = createHandler(depsFromEnv('authorizer'));
