import type { APIGatewayProxyEvent, Context } from 'aws-lambda';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { logPort } from '../../adapters/aws/telemetry.ts';
import { TELEMETRY } from '../../core/config/names.ts';
import { newDeploymentId } from '../../core/ids.ts';
import { createHandler as createGet } from '../../lambdas/api/get.ts';
import { createHandler as createSubmit } from '../../lambdas/api/submit.ts';
import { createHandler as createPrepare } from '../../lambdas/engine/prepare.ts';
import { deploymentIdOf, telemetryOf } from '../../lambdas/observability.ts';
import { memoryDeps } from '../helpers/memoryEngine.ts';

/**
 * What a Lambda writes to CloudWatch Logs: the Powertools JSON lines of a handler, captured from
 * stdout as Lambda would ship them. An unknown error is logged at ERROR with its message and
 * stack; every line carries the Lambda context and the deployment id as correlation id; the
 * user's bearer token never appears.
 */

const context = {
  functionName: 'ctd-get',
  functionVersion: '$LATEST',
  invokedFunctionArn: 'arn:aws:lambda:us-east-1:123456789012:function:ctd-get',
  memoryLimitInMB: '256',
  awsRequestId: 'req-1',
  getRemainingTimeInMillis: () => 10_000,
} as unknown as Context;

const TOKEN = 'tok-alice-0123456789abcdef-secret';

function apiEvent(overrides: Partial<APIGatewayProxyEvent>): APIGatewayProxyEvent {
  return {
    headers: { Authorization: `Bearer ${TOKEN}` },
    pathParameters: null,
    queryStringParameters: null,
    isBase64Encoded: false,
    body: null,
    requestContext: { authorizer: { tenantId: 'alice' } },
    ...overrides,
  } as unknown as APIGatewayProxyEvent;
}

let written: string[] = [];
beforeEach(() => {
  written = [];
  // Powertools writes through its own Console on stdout (WARN and ERROR on stderr); Lambda ships both.
  for (const stream of [process.stdout, process.stderr]) {
    vi.spyOn(stream, 'write').mockImplementation((chunk: string | Uint8Array) => {
      written.push(String(chunk));
      return true;
    });
  }
});
afterEach(() => {
  vi.restoreAllMocks();
});

const logLines = () =>
  written
    .join('')
    .split('\n')
    .filter((l) => l.startsWith('{') && !l.includes('"_aws"'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);

/** Deps whose log is the handler's own Powertools Logger, as in a deployed function. */
function lambdaDeps(kind: 'api' | 'engine') {
  const deps = memoryDeps();
  deps.log = logPort(telemetryOf(kind).logger);
  return deps;
}

describe('Middleware: observe (Powertools Logger on the api handlers)', () => {
  it('logs a 500 at ERROR with the error\'s message and stack, the Lambda context and the deployment as correlation id', async () => {
    const deps = lambdaDeps('api');
    deps.store.getDeployment = async () => {
      throw new Error('table ctd-deployments answered ProvisionedThroughputExceededException');
    };
    const handler = createGet(() => deps);
    const id = newDeploymentId(Date.now());
    const response = await handler(apiEvent({ pathParameters: { id } }), context);
    expect(response.statusCode).toBe(500);
    expect(JSON.parse(response.body)).toEqual({ message: 'internal error' });

    const [line, ...more] = logLines().filter((l) => l.message === 'request failed');
    expect(more).toEqual([]);
    expect(line).toMatchObject({
      level: 'ERROR',
      service: TELEMETRY.services.api,
      correlation_id: id,
      function_name: 'ctd-get',
      function_request_id: 'req-1',
      error: { name: 'Error', message: 'table ctd-deployments answered ProvisionedThroughputExceededException' },
    });
    expect((line?.error as { stack?: string }).stack).toMatch(/^Error: table ctd-deployments answered .*\n\s+at /);
    expect(written.join('')).not.toContain(TOKEN);
  });

  it('keeps the bearer token out of the log when a submit fails inside', async () => {
    const deps = lambdaDeps('api');
    deps.executions.start = async () => {
      throw new Error('StateMachineDoesNotExist');
    };
    const handler = createSubmit(() => deps);
    const body = JSON.stringify({ name: 'x', bastion: { server: 'bastion', user: 'ctd', securityGroup: 'bastion' }, workflow: { steps: [{ id: 'a', action: 'run', command: `echo ${TOKEN}` }] } });
    const response = await handler(apiEvent({ body }), context);
    expect(response.statusCode, written.join('')).toBe(500);
    expect(logLines().some((l) => l.level === 'ERROR'), written.join('')).toBe(true);
    // The body (the user's own command) may name anything; the token from the header must not be in the log.
    expect(written.join('').replaceAll(`echo ${TOKEN}`, '')).not.toContain(TOKEN);
  });

  it('does not log a known error (404) as an error', async () => {
    const deps = lambdaDeps('api');
    const response = await createGet(() => deps)(apiEvent({ pathParameters: { id: 'dep-missing' } }), context);
    expect(response.statusCode).toBe(404);
    expect(logLines().filter((l) => l.level === 'ERROR')).toEqual([]);
  });
});

describe('Middleware: observe (engine handlers)', () => {
  it('correlates an engine Lambda\'s lines by the deployment id the state machine passes, and resets it after', async () => {
    const deps = lambdaDeps('engine');
    const handler = createPrepare(() => deps);
    await expect(handler({ deploymentId: 'dep-0002' }, context)).rejects.toThrow('dep-0002 does not exist');
    telemetryOf('engine').logger.info('between invocations');
    const between = logLines().find((l) => l.message === 'between invocations');
    expect(between).toBeDefined();
    expect(between).not.toHaveProperty('correlation_id');
  });

  it.each([
    ['an engine Lambda', { deploymentId: 'd-1', stepId: 'a' }, 'd-1'],
    ['the API', { pathParameters: { id: 'd-2' } }, 'd-2'],
    ['ECS task state change', { detail: { overrides: { containerOverrides: [{ name: 'runner', environment: [{ name: 'CTD_DEPLOYMENT_ID', value: 'd-3' }] }] } } }, 'd-3'],
    ['Step Functions status change', { detail: { name: 'd-4', status: 'FAILED' } }, 'd-4'],
    ['an event without one', { foo: 1 }, undefined],
  ])('finds the deployment id of %s', (_, event, id) => {
    expect(deploymentIdOf(event)).toBe(id);
  });
});
