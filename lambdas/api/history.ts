import middy from '@middy/core';
import type { APIGatewayProxyEvent, APIGatewayProxyResult } from 'aws-lambda';
import { getHistory } from '../../core/usecases/queries.ts';
import { depsFromEnv, type DepsProvider } from '../deps.ts';
import { httpErrors, json, pathParam, tenantOf } from '../http.ts';
import { observe } from '../observability.ts';

/** GET /deployments/{id}/history → the execution's Step Functions events, each with its workflow step, and every step's attempts. */
export const createHandler = (deps: DepsProvider) =>
  middy(async (event: APIGatewayProxyEvent): Promise<APIGatewayProxyResult> =>
    json(200, await getHistory(deps(), tenantOf(event), pathParam(event, 'id'))),
  ).use(observe('api')).use(httpErrors((m, d) => deps().log(m, d)));

export const handler = createHandler(depsFromEnv('history'));
