import ssh2 from 'ssh2';

/**
 * The per-deployment SSH key pair, generated at submit. Its private part is sealed with
 * sealedKey.ts: the user's token is the second factor of the key.
 */

export interface DeploymentKeyPair {
  privateKey: string;
  publicKey: string;
}

/** OpenSSH-format ed25519 keys (ssh2 and OpenSSH both reject PKCS8 PEM). */
export function generateDeploymentKey(deploymentId: string): DeploymentKeyPair {
  const { private: privateKey, public: publicKey } = ssh2.utils.generateKeyPairSync('ed25519', {
    comment: `ctd-${deploymentId}`,
  });
  return { privateKey, publicKey: publicKey.trim() };
}
