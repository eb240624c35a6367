import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import ssh2 from 'ssh2';
import { generateSshKeyPair } from '../../../../core/crypto/deploymentKey.ts';

// ssh2 is CommonJS whose `utils` Node's ESM loader cannot see as a named export.
const { utils } = ssh2;

export interface HostKey {
  /** OpenSSH-format private key; stays on disk (0600) and in this process. */
  privateKey: string;
  /** "ssh-ed25519 AAAA…", what clients pin. */
  publicKey: string;
}

/** The OpenSSH public key line of a private or public key. */
export function publicLineOf(key: string): string {
  const parsed = utils.parseKey(key);
  if (parsed instanceof Error) throw parsed;
  return `${parsed.type} ${parsed.getPublicSSH().toString('base64')}`;
}

/**
 * Loads a server's ed25519 host key, creating it on first use. Persisted so a restarted
 * cloud presents the same host keys and pinned clients keep trusting it.
 */
export async function loadOrCreateHostKey(path: string): Promise<HostKey> {
  let privateKey: string;
  try {
    privateKey = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    privateKey = generateSshKeyPair('ctd-local-cloud-host').privateKey;
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    await writeFile(path, privateKey, { mode: 0o600 });
  }
  return { privateKey, publicKey: publicLineOf(privateKey) };
}
