import type { Context } from 'aws-lambda';
import { describe, expect, it } from 'vitest';
import { createHandler } from '../../lambdas/api/authorizer.ts';
import { memoryDeps } from '../helpers/memoryEngine.ts';

const context = {} as Context;
const methodArn = 'arn:aws:execute-api:us-east-1:123456789012:abc123/prod/GET/deployments';

describe('Handler: authorizer', () => {
  const deps = memoryDeps();
  const handler = createHandler(() => deps);

  it('allows a token the cloud knows, for every route of the stage, with the tenant in the context (TOKEN event)', async () => {
    const result = await handler({ type: 'TOKEN', authorizationToken: 'Bearer tok-alice', methodArn }, context);
    expect(result.principalId).toBe('alice');
    expect(result.context).toEqual({ tenantId: 'alice' });
    expect(result.policyDocument.Statement).toEqual([
      { Action: 'execute-api:Invoke', Effect: 'Allow', Resource: 'arn:aws:execute-api:us-east-1:123456789012:abc123/prod/*' },
    ]);
  });

  it('reads the header of a REQUEST event the same way', async () => {
    const event = { type: 'REQUEST', methodArn, headers: { authorization: 'Bearer tok-bob' } } as never;
    expect((await handler(event, context)).context).toEqual({ tenantId: 'bob' });
  });

  it.each(['Bearer nope', 'tok-alice', ''])('refuses %j with Unauthorized', async (header) => {
    await expect(handler({ type: 'TOKEN', authorizationToken: header, methodArn }, context)).rejects.toThrow('Unauthorized');
  });

  it('refuses an oversize token as Unauthorized without asking the cloud (the fuzz test found a 500 here)', async () => {
    const asked: string[] = [];
    const probing = createHandler(() => ({
      ...deps,
      identity: {
        identify: async (token: string) => {
          asked.push(token);
          // What the OpenStack driver does when Keystone refuses the oversize header.
          throw new Error('keystone answered 431');
        },
      },
    }));
    const header = `Bearer ${'a'.repeat(9000)}`;
    await expect(probing({ type: 'TOKEN', authorizationToken: header, methodArn }, context)).rejects.toThrow('Unauthorized');
    expect(asked).toEqual([]);
  });

  it('lets a cloud failure through as a failure, not "Unauthorized": the gateway answers 503 and does not cache it', async () => {
    // A valid token must not be refused (and that refusal cached) because Keystone was down for a second.
    const failing = createHandler(() => ({
      ...deps,
      identity: {
        identify: async () => {
          throw new Error('keystone unreachable: connect ECONNREFUSED 127.0.0.1:5000');
        },
      },
    }));
    const refused = failing({ type: 'TOKEN', authorizationToken: 'Bearer tok-alice', methodArn }, context);
    await expect(refused).rejects.toThrow('keystone unreachable');
    await expect(refused).rejects.not.toThrow(/^Unauthorized$/);
  });
});
