import ssh2 from 'ssh2';
import { describe, expect, it } from 'vitest';
import { generateDeploymentKey, generateSshKeyPair } from '../../core/crypto/deploymentKey.ts';
import { openPrivateKey, sealPrivateKey } from '../../core/crypto/sealedKey.ts';

describe('Function: generateSshKeyPair', () => {
  it('only returns keys that parse back (ssh2 alone gets about one in 250 wrong)', () => {
    for (let i = 0; i < 1500; i++) {
      const pair = generateSshKeyPair(`k${i}`);
      expect(ssh2.utils.parseKey(pair.privateKey), `key ${i}`).not.toBeInstanceOf(Error);
      expect(pair.publicKey).toMatch(/^ssh-ed25519 \S+ k\d+$/);
    }
  });
});

describe('Function: sealPrivateKey / openPrivateKey', () => {
  const { privateKey } = generateDeploymentKey('d-1');

  it('opens with the same token and deployment, and the sealed form shows nothing of the key', () => {
    const sealed = sealPrivateKey(privateKey, 'user-token-123', 'd-1');
    expect(sealed).not.toContain('OPENSSH');
    expect(openPrivateKey(sealed, 'user-token-123', 'd-1')).toBe(privateKey);
  });

  it.each([
    ['another token', 'other-token', 'd-1'],
    ['another deployment', 'user-token-123', 'd-2'],
  ])('refuses %s without echoing secrets', (_what, token, deploymentId) => {
    const sealed = sealPrivateKey(privateKey, 'user-token-123', 'd-1');
    expect(() => openPrivateKey(sealed, token, deploymentId)).toThrow('the SSH key cannot be opened with this token');
  });
});
