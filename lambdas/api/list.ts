import middy from '@middy/core';
import type { APIGatewayProxyEvent, APIGatewayProxyResult } from 'aws-lambda';
import { listDeployments } from '../../core/usecases/queries.ts';
import { depsFromEnv, type DepsProvider } from '../deps.ts';
import { httpErrors, json, tenantOf } from '../http.ts';
import { observe } from '../observability.ts';

/** GET /deployments?limit&cursor → the tenant's deployments, newest first. */
export const createHandler = (deps: DepsProvider) =>
  middy(async (event: APIGatewayProxyEvent): Promise<APIGatewayProxyResult> => {
    const q = event.queryStringParameters ?? {};
    return json(200, await listDeployments(deps(), tenantOf(event), { ...(q.limit ? { limit: q.limit } : {}), ...(q.cursor ? { cursor: q.cursor } : {}) }));
  }).use(observe('api')).use(httpErrors((m, d) => deps().log(m, d)));

export const handler = createHandler(depsFromEnv('list'));
