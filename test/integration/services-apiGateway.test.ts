import { afterEach, describe, expect, it, vi } from 'vitest';
import type { APIGatewayAuthorizerResult, APIGatewayProxyEvent, APIGatewayRequestAuthorizerEvent, Context } from 'aws-lambda';
import fc from 'fast-check';
import { startLocalApiGateway, type LocalApiGateway, type LocalRoute } from '../../local/services/apiGateway.ts';
import { matchRoute } from '../../local/services/apiGatewayRouting.ts';

function policy(effect: 'Allow' | 'Deny', resource: string, context?: Record<string, string>): APIGatewayAuthorizerResult {
  return {
    principalId: 'tenant-1',
    policyDocument: { Version: '2012-10-17', Statement: [{ Effect: effect, Action: 'execute-api:Invoke', Resource: resource }] },
    ...(context && { context }),
  };
}

const echo: LocalRoute['handler'] = async (event) => ({ statusCode: 200, body: JSON.stringify(event) });

describe('Function: startLocalApiGateway', () => {
  let gateway: LocalApiGateway | undefined;

  afterEach(async () => {
    await gateway?.close();
    gateway = undefined;
  });

  it('routes by resource template and fills the proxy event', async () => {
    const seen: { event?: APIGatewayProxyEvent; context?: Context } = {};
    gateway = await startLocalApiGateway({
      routes: [
        { method: 'GET', resource: '/deployments', handler: async () => ({ statusCode: 200, body: '"list"' }) },
        {
          method: 'GET',
          resource: '/deployments/{id}',
          handler: async (event, context) => {
            seen.event = event;
            seen.context = context;
            return { statusCode: 200, headers: { 'X-Custom': 'yes' }, body: '{"ok":true}' };
          },
        },
        { method: 'GET', resource: '/deployments/{id}/history', handler: async () => ({ statusCode: 200, body: '"history"' }) },
        { method: 'POST', resource: '/deployments', handler: echo },
      ],
    });

    const res = await fetch(`${gateway.url}/deployments/dep%2D42?view=full&tag=a&tag=b`, { headers: { 'X-Trace': 't1' } });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-custom')).toBe('yes');
    expect(res.headers.get('content-type')).toBe('application/json');
    expect(await res.json()).toEqual({ ok: true });

    const event = seen.event!;
    expect(event).toMatchObject({
      httpMethod: 'GET',
      path: '/deployments/dep%2D42',
      resource: '/deployments/{id}',
      pathParameters: { id: 'dep-42' },
      queryStringParameters: { view: 'full', tag: 'b' },
      multiValueQueryStringParameters: { view: ['full'], tag: ['a', 'b'] },
      body: null,
      isBase64Encoded: false,
      requestContext: { stage: 'local', resourcePath: '/deployments/{id}', httpMethod: 'GET' },
    });
    expect(event.headers['X-Trace']).toBe('t1');
    expect(event.multiValueHeaders['X-Trace']).toEqual(['t1']);
    expect(event.requestContext.requestId).toMatch(/^[0-9a-f-]{36}$/);
    expect(seen.context!.awsRequestId).toBe(event.requestContext.requestId);
    expect(seen.context!.getRemainingTimeInMillis()).toBeGreaterThan(20_000);

    expect(await (await fetch(`${gateway.url}/deployments/dep-42/history`)).json()).toBe('history');
    expect(await (await fetch(`${gateway.url}/deployments`)).json()).toBe('list');

    const posted = await fetch(`${gateway.url}/deployments`, { method: 'POST', body: '{"name":"x"}' });
    const postedEvent = (await posted.json()) as APIGatewayProxyEvent;
    expect(postedEvent.body).toBe('{"name":"x"}');
    expect(postedEvent.pathParameters).toBeNull();
  });

  it('answers an unknown route 404 and a known resource with another method 403, both as Missing Authentication Token', async () => {
    const handler = vi.fn(echo);
    gateway = await startLocalApiGateway({ routes: [{ method: 'GET', resource: '/deployments/{id}', handler }] });

    const unknown = await fetch(`${gateway.url}/nope`);
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toEqual({ message: 'Missing Authentication Token' });

    const wrongMethod = await fetch(`${gateway.url}/deployments/1`, { method: 'PUT', body: 'x' });
    expect(wrongMethod.status).toBe(403);
    expect(await wrongMethod.json()).toEqual({ message: 'Missing Authentication Token' });
    expect(handler).not.toHaveBeenCalled();
  });

  it('answers 401 without calling the handler when the authorizer denies or throws Unauthorized', async () => {
    const handler = vi.fn(echo);
    const authorizer = vi.fn(async (event: APIGatewayRequestAuthorizerEvent) => {
      if (event.headers?.Authorization === 'Bearer deny') return policy('Deny', event.methodArn);
      throw new Error('Unauthorized');
    });
    gateway = await startLocalApiGateway({ routes: [{ method: 'GET', resource: '/deployments', handler }], authorizer });

    for (const auth of ['Bearer deny', 'Bearer bad']) {
      const res = await fetch(`${gateway.url}/deployments`, { headers: { Authorization: auth } });
      expect(res.status).toBe(401);
      expect(await res.json()).toEqual({ message: 'Unauthorized' });
    }
    expect(authorizer).toHaveBeenCalledTimes(2);
    expect(handler).not.toHaveBeenCalled();
  });

  it('keeps a policy per Authorization header for the TTL, for every route of the stage, as API Gateway\'s results cache', async () => {
    let now = 1_000_000;
    const authorizer = vi.fn(async (event: APIGatewayRequestAuthorizerEvent) => {
      const who = event.headers?.Authorization;
      if (who === 'Bearer deny') return policy('Deny', 'arn:aws:execute-api:us-east-1:000000000000:local/local/*');
      if (who?.startsWith('Bearer ok')) return policy('Allow', 'arn:aws:execute-api:us-east-1:000000000000:local/local/*', { tenantId: who.slice(7) });
      throw new Error('Unauthorized');
    });
    const tenantOf: LocalRoute['handler'] = async (event) => ({ statusCode: 200, body: JSON.stringify(event.requestContext.authorizer?.tenantId) });
    gateway = await startLocalApiGateway({
      routes: [
        { method: 'GET', resource: '/deployments', handler: tenantOf },
        { method: 'GET', resource: '/deployments/{id}', handler: tenantOf },
      ],
      authorizer,
      authorizerCacheTtlMs: 300_000,
      now: () => now,
    });
    const get = async (path: string, auth: string) => {
      const res = await fetch(`${gateway!.url}${path}`, { headers: { Authorization: auth } });
      return [res.status, await res.json()];
    };

    // Concurrent first calls share one decision; the cached Allow serves another route too.
    expect(await Promise.all([get('/deployments', 'Bearer ok-a'), get('/deployments', 'Bearer ok-a')])).toEqual([[200, 'ok-a'], [200, 'ok-a']]);
    expect(await get('/deployments/d1', 'Bearer ok-a')).toEqual([200, 'ok-a']);
    // Another header is another identity: asked, with its own tenant.
    expect(await get('/deployments', 'Bearer ok-b')).toEqual([200, 'ok-b']);
    expect(authorizer).toHaveBeenCalledTimes(2);

    // A cached Deny stays a 401; a thrown Unauthorized is not cached (asked each time).
    expect(await get('/deployments', 'Bearer deny')).toEqual([401, { message: 'Unauthorized' }]);
    expect(await get('/deployments/d1', 'Bearer deny')).toEqual([401, { message: 'Unauthorized' }]);
    expect(await get('/deployments', 'Bearer bad')).toEqual([401, { message: 'Unauthorized' }]);
    expect(await get('/deployments', 'Bearer bad')).toEqual([401, { message: 'Unauthorized' }]);
    expect(authorizer).toHaveBeenCalledTimes(5);

    // Past the TTL the authorizer is asked again.
    now += 300_001;
    expect(await get('/deployments', 'Bearer ok-a')).toEqual([200, 'ok-a']);
    expect(authorizer).toHaveBeenCalledTimes(6);
  });

  it('answers an authorizer failure with the configured gateway response, logs it, and asks again next time', async () => {
    const onError = vi.fn();
    let cloudUp = false;
    const authorizer = vi.fn(async (event: APIGatewayRequestAuthorizerEvent) => {
      if (!cloudUp) throw new Error('keystone: connect ECONNREFUSED');
      return policy('Allow', event.methodArn, { tenantId: 't' });
    });
    gateway = await startLocalApiGateway({
      routes: [{ method: 'GET', resource: '/deployments', handler: echo }],
      authorizer,
      authorizerCacheTtlMs: 300_000,
      authorizerFailure: { status: 503, message: 'identity service unreachable' },
      onError,
    });
    const down = await fetch(`${gateway.url}/deployments`, { headers: { Authorization: 'Bearer x' } });
    expect(down.status).toBe(503);
    expect(await down.json()).toEqual({ message: 'identity service unreachable' });
    expect(onError).toHaveBeenCalledWith(expect.objectContaining({ message: 'keystone: connect ECONNREFUSED' }), expect.anything());

    cloudUp = true;
    expect((await fetch(`${gateway.url}/deployments`, { headers: { Authorization: 'Bearer x' } })).status).toBe(200);
  });

  it('answers an authorizer failure with AWS\'s default 500 {"message":null} when no gateway response is configured', async () => {
    gateway = await startLocalApiGateway({
      routes: [{ method: 'GET', resource: '/deployments', handler: echo }],
      authorizer: async () => Promise.reject(new Error('boom')),
      onError: () => undefined,
    });
    const res = await fetch(`${gateway.url}/deployments`, { headers: { Authorization: 'Bearer x' } });
    expect(res.status).toBe(500);
    expect(res.headers.get('x-amzn-errortype')).toBe('AuthorizerConfigurationException');
    expect(await res.json()).toEqual({ message: null });
  });

  it('passes the authorizer context and principalId to the handler', async () => {
    let received: APIGatewayProxyEvent | undefined;
    const authorizer = vi.fn(async (event: APIGatewayRequestAuthorizerEvent) => {
      expect(event).toMatchObject({ type: 'REQUEST', resource: '/deployments/{id}', pathParameters: { id: 'd1' }, httpMethod: 'DELETE' });
      expect(event.methodArn).toBe('arn:aws:execute-api:us-east-1:000000000000:local/local/DELETE/deployments/d1');
      // A wildcard resource, as real authorizers return to stay cacheable.
      return policy('Allow', 'arn:aws:execute-api:us-east-1:000000000000:local/local/*', { tenantId: 'tenant-1' });
    });
    gateway = await startLocalApiGateway({
      routes: [
        {
          method: 'DELETE',
          resource: '/deployments/{id}',
          handler: async (event) => {
            received = event;
            return { statusCode: 202, body: '' };
          },
        },
      ],
      authorizer,
    });

    const res = await fetch(`${gateway.url}/deployments/d1`, { method: 'DELETE', headers: { Authorization: 'Bearer ok' } });
    expect(res.status).toBe(202);
    expect(received?.requestContext.authorizer).toMatchObject({ tenantId: 'tenant-1', principalId: 'tenant-1' });
  });

  it('answers 502 with no error detail when the handler throws', async () => {
    const onError = vi.fn();
    gateway = await startLocalApiGateway({
      routes: [{ method: 'GET', resource: '/boom', handler: async () => Promise.reject(new Error('secret db password in stack')) }],
      onError,
    });
    const res = await fetch(`${gateway.url}/boom`);
    expect(res.status).toBe(502);
    const text = await res.text();
    expect(JSON.parse(text)).toEqual({ message: 'Internal server error' });
    expect(text).not.toContain('secret');
    expect(onError).toHaveBeenCalledOnce();
  });

  it('refuses bodies over 10 MB with 413 before calling the handler', async () => {
    const handler = vi.fn(echo);
    gateway = await startLocalApiGateway({ routes: [{ method: 'POST', resource: '/deployments', handler }] });
    const res = await fetch(`${gateway.url}/deployments`, { method: 'POST', body: Buffer.alloc(10 * 1024 * 1024 + 1, 0x61) });
    expect(res.status).toBe(413);
    expect(handler).not.toHaveBeenCalled();
  });
});

describe('Function: matchRoute', () => {
  const routes = [
    { method: 'GET', resource: '/deployments/{id}' },
    { method: 'GET', resource: '/deployments/{id}/history' },
    { method: 'GET', resource: '/deployments/latest' },
    { method: 'ANY', resource: '/files/{path+}' },
  ];

  it('decodes any encoded path parameter back to its value', () => {
    fc.assert(
      fc.property(fc.string({ minLength: 1 }), (id) => {
        const match = matchRoute(routes, 'GET', `/deployments/${encodeURIComponent(id)}/history`);
        expect(match).toEqual({ kind: 'matched', route: routes[1], pathParameters: { id } });
      }),
    );
  });

  it('prefers a literal segment over a parameter and lets a greedy parameter take the rest', () => {
    expect(matchRoute(routes, 'GET', '/deployments/latest')).toMatchObject({ route: routes[2], pathParameters: null });
    expect(matchRoute(routes, 'PATCH', '/files/a/b/c.txt')).toMatchObject({ route: routes[3], pathParameters: { path: 'a/b/c.txt' } });
    expect(matchRoute(routes, 'GET', '/files')).toEqual({ kind: 'noResource' });
  });
});
