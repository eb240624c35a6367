import ssh2 from 'ssh2';

// ssh2 is CommonJS whose `utils` Node's ESM loader cannot see as a named export.
const { utils } = ssh2;

/**
 * Whether the key a server presented is the pinned one. Compares the key blobs, so a comment
 * or whitespace in the pinned OpenSSH line does not matter. A pinned line that does not parse
 * never matches: an unverifiable host is refused, never trusted.
 */
export function hostKeyMatches(pinnedLine: string, presented: Buffer): boolean {
  const parsed = utils.parseKey(pinnedLine.trim());
  if (parsed instanceof Error) return false;
  return parsed.getPublicSSH().equals(presented);
}
