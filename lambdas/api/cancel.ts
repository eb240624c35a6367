import middy from '@middy/core';
import type { APIGatewayProxyEvent, APIGatewayProxyResult } from 'aws-lambda';
import { cancelDeployment } from '../../core/usecases/cancel.ts';
import { depsFromEnv, type DepsProvider } from '../deps.ts';
import { httpErrors, json, pathParam, tenantOf } from '../http.ts';
import { observe } from '../observability.ts';

/** DELETE /deployments/{id} → 202: running steps are stopped, Cleanup still runs. */
export const createHandler = (deps: DepsProvider) =>
  middy(async (event: APIGatewayProxyEvent): Promise<APIGatewayProxyResult> =>
    json(202, await cancelDeployment(deps(), tenantOf(event), pathParam(event, 'id'))),
  ).use(observe('api')).use(httpErrors((m, d) => deps().log(m, d)));

export const handler = createHandler(depsFromEnv('cancel'));
