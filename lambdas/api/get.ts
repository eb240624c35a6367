import middy from '@middy/core';
import type { APIGatewayProxyEvent, APIGatewayProxyResult } from 'aws-lambda';
import { getDeployment } from '../../core/usecases/queries.ts';
import { depsFromEnv, type DepsProvider } from '../deps.ts';
import { httpErrors, json, pathParam, tenantOf } from '../http.ts';
import { observe } from '../observability.ts';

/** GET /deployments/{id} → the deployment with its steps. */
export const createHandler = (deps: DepsProvider) =>
  middy(async (event: APIGatewayProxyEvent): Promise<APIGatewayProxyResult> =>
    json(200, await getDeployment(deps(), tenantOf(event), pathParam(event, 'id'))),
  ).use(observe('api')).use(httpErrors((m, d) => deps().log(m, d)));

export const handler = createHandler(depsFromEnv('get'));
