import { parse } from 'yaml';

/** `type base64` of an OpenSSH public key line (options and comment dropped), or undefined. */
export function normalizeKey(line: string): string | undefined {
  const match = /(?:^|\s)((?:ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp\d+|sk-[\w@.-]+)\s+[A-Za-z0-9+/=]+)/.exec(line.trim());
  return match ? match[1]!.replace(/\s+/, ' ') : undefined;
}

/** The `ssh_authorized_keys` of `#cloud-config` user data, normalized; [] for anything else. */
export function authorizedKeysOf(userData: string): string[] {
  if (!userData.startsWith('#cloud-config')) return [];
  let doc: unknown;
  try {
    doc = parse(userData);
  } catch {
    return [];
  }
  const keys = (doc as { ssh_authorized_keys?: unknown } | null)?.ssh_authorized_keys;
  if (!Array.isArray(keys)) return [];
  return keys.flatMap((k) => {
    const key = normalizeKey(String(k));
    return key ? [key] : [];
  });
}

export function decodeUserData(base64: string): string {
  return base64 ? Buffer.from(base64, 'base64').toString('utf8') : '';
}
