import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';

/**
 * Sealing the deployment's SSH private key under a key derived from the user's cloud token, so
 * whoever holds only the database and KMS cannot read it once the token item is gone. Kept apart
 * from key generation (ssh2) so a sandbox that only opens the key does not load an SSH library.
 */

const VERSION = 1;
const INFO = Buffer.from('ctd/deployment-ssh-key/v1');

function wrappingKey(token: string, deploymentId: string): Buffer {
  return Buffer.from(hkdfSync('sha256', Buffer.from(token, 'utf8'), Buffer.from(deploymentId, 'utf8'), INFO, 32));
}

/** AES-256-GCM under HKDF(token, salt = deploymentId); the deployment id is also the AAD. */
export function sealPrivateKey(privateKey: string, token: string, deploymentId: string): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', wrappingKey(token, deploymentId), iv);
  cipher.setAAD(Buffer.from(deploymentId, 'utf8'));
  const body = Buffer.concat([cipher.update(privateKey, 'utf8'), cipher.final()]);
  return Buffer.concat([Buffer.from([VERSION]), iv, cipher.getAuthTag(), body]).toString('base64');
}

export function openPrivateKey(sealed: string, token: string, deploymentId: string): string {
  const raw = Buffer.from(sealed, 'base64');
  if (raw.length < 29 || raw[0] !== VERSION) throw new Error('sealed SSH key has an unknown format');
  const decipher = createDecipheriv('aes-256-gcm', wrappingKey(token, deploymentId), raw.subarray(1, 13));
  decipher.setAAD(Buffer.from(deploymentId, 'utf8'));
  decipher.setAuthTag(raw.subarray(13, 29));
  try {
    return Buffer.concat([decipher.update(raw.subarray(29)), decipher.final()]).toString('utf8');
  } catch {
    // Never echo the token or key material: only say that this token does not open this key.
    throw new Error('the SSH key cannot be opened with this token');
  }
}
