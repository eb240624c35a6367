import { describe, expect, it } from 'vitest';
import { idleLimitOf } from '../../sandbox/idleLimit.ts';

/** A sandbox's idle limit comes with its release (CTD_RELEASE); a bad one means no limit, never a failed step. */
describe('the idle limit a sandbox reads from its release', () => {
  it("is a pre-start's maxIdleSeconds", () => {
    expect(idleLimitOf(JSON.stringify({ run: true, prestart: true, timeoutSeconds: 900, maxIdleSeconds: 600 }))).toEqual({ maxIdleSeconds: 600 });
  });

  it('is none for a sandbox started at its release, or without a release', () => {
    expect(idleLimitOf(JSON.stringify({ run: true, timeoutSeconds: 900 }))).toEqual({});
    expect(idleLimitOf(JSON.stringify({ run: true, timeoutSeconds: 900, maxIdleSeconds: 600 }))).toEqual({});
    expect(idleLimitOf(JSON.stringify({ run: true, prestart: true, timeoutSeconds: 900 }))).toEqual({});
    expect(idleLimitOf(undefined)).toEqual({});
  });

  it.each([
    ['{"prestart": true, "maxIdleSeconds": 0}', 'CTD_RELEASE: maxIdleSeconds must be a number of seconds > 0, got 0'],
    ['{"prestart": true, "maxIdleSeconds": "600"}', 'CTD_RELEASE: maxIdleSeconds must be a number of seconds > 0, got "600"'],
    ['{"prestart": tru', 'CTD_RELEASE is not JSON: "{\\"prestart\\": tru"'],
    ['[600]', 'CTD_RELEASE is not an object: "[600]"'],
    ['null', 'CTD_RELEASE is not an object: "null"'],
  ])('is none for %s, and says why', (raw, problem) => {
    expect(idleLimitOf(raw)).toEqual({ problem });
  });
});
