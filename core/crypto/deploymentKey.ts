import ssh2 from 'ssh2';

/**
 * The per-deployment SSH key pair, generated at submit. Its private part is sealed with
 * sealedKey.ts: the user's token is the second factor of the key.
 */

export interface DeploymentKeyPair {
  privateKey: string;
  publicKey: string;
}

/**
 * An OpenSSH-format ed25519 key pair (ssh2 and OpenSSH both reject PKCS8 PEM). ssh2 1.17's
 * generator emits a private key that does not parse back about once in 250 pairs (measured:
 * 13 of 3,000), which failed deployments at random; only a pair that parses is returned.
 */
export function generateSshKeyPair(comment: string): DeploymentKeyPair {
  for (let attempt = 0; attempt < 10; attempt++) {
    const { private: privateKey, public: publicKey } = ssh2.utils.generateKeyPairSync('ed25519', { comment });
    if (!(ssh2.utils.parseKey(privateKey) instanceof Error)) return { privateKey, publicKey: publicKey.trim() };
  }
  throw new Error('could not generate a well-formed ed25519 key pair');
}

export function generateDeploymentKey(deploymentId: string): DeploymentKeyPair {
  return generateSshKeyPair(`ctd-${deploymentId}`);
}
