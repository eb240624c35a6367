import { describe, expect, it } from 'vitest';
import { spawnIdentity, stepUserFromEnv } from '../../sandbox/stepUser.ts';

describe('Function: stepUserFromEnv', () => {
  it('reads the step user the sandbox image names, or none', () => {
    expect(stepUserFromEnv({ CTD_STEP_UID: '1001', CTD_STEP_GID: '1001' })).toEqual({ uid: 1001, gid: 1001 });
    expect(stepUserFromEnv({})).toBeUndefined();
    expect(spawnIdentity(undefined)).toEqual({});
    expect(spawnIdentity({ uid: 1001, gid: 1002 })).toEqual({ uid: 1001, gid: 1002 });
  });

  it('refuses root, half a user and non-numbers, naming the variable', () => {
    expect(() => stepUserFromEnv({ CTD_STEP_UID: '0', CTD_STEP_GID: '1001' })).toThrow('CTD_STEP_UID must be a positive integer (not root), got "0"');
    expect(() => stepUserFromEnv({ CTD_STEP_UID: '1001' })).toThrow('CTD_STEP_GID must be a positive integer (not root), got undefined');
    expect(() => stepUserFromEnv({ CTD_STEP_UID: 'step', CTD_STEP_GID: '1001' })).toThrow('CTD_STEP_UID must be a positive integer');
  });
});
