import middy from '@middy/core';
import type { APIGatewayProxyEvent, APIGatewayProxyResult } from 'aws-lambda';
import { submitDeployment } from '../../core/usecases/submit.ts';
import { depsFromEnv, type DepsProvider } from '../deps.ts';
import { bearerToken, header, httpErrors, json, jsonBody, tenantOf } from '../http.ts';
import { observe } from '../observability.ts';

/** POST /deployments → 202 {deploymentId, executionArn, consoleUrl}; 200 on an Idempotency-Key replay. */
export const createHandler = (deps: DepsProvider) =>
  middy(async (event: APIGatewayProxyEvent): Promise<APIGatewayProxyResult> => {
    const idempotencyKey = header(event, 'Idempotency-Key');
    const { created, ...response } = await submitDeployment(deps(), {
      tenantId: tenantOf(event),
      token: bearerToken(event),
      body: jsonBody(event),
      ...(idempotencyKey !== undefined ? { idempotencyKey } : {}),
    });
    return json(created ? 202 : 200, response);
  }).use(observe('api')).use(httpErrors((m, d) => deps().log(m, d)));

export const handler = createHandler(depsFromEnv('submit'));
