/**
 * How the driver marks what it creates, so it can be found again without the store's record
 * (docs/OPENSTACK.md, "Resources, names and marks").
 */
export const marks = {
  /** Name of networks, subnets, routers, ports, security groups and servers. */
  name: (deploymentId: string, name: string): string => `ctd-${deploymentId}-${name}`,
  /** Neutron tag; also the description of floating IPs and security-group rules. */
  tag: (deploymentId: string): string => `ctd:${deploymentId}`,
  bastionRuleDescription: (deploymentId: string): string => `ctd:${deploymentId}:bastion`,
  /**
   * The topology name of the engine's own SSH group: a leading "-" no topology name may have
   * (NAME_PATTERN), so it never collides with the user's groups.
   */
  sshGroup: '-ssh',
  /** Nova metadata on servers. */
  serverMetadataKey: 'ctd-deployment',
  /** Nova metadata on the bastion: the deployment's public key, read by its AuthorizedKeysCommand. */
  accessMetadataKey: (deploymentId: string): string => `ctd-access-${deploymentId}`,
  /** Nova's name filter is a regular expression; deployment ids hold only [a-z0-9-]. */
  serverNameFilter: (deploymentId: string): string => `^ctd-${deploymentId}-`,
  /** The topology name inside a marked name, or undefined when it is not this deployment's. */
  topologyName: (deploymentId: string, marked: string): string | undefined => {
    const prefix = `ctd-${deploymentId}-`;
    return marked.startsWith(prefix) ? marked.slice(prefix.length) : undefined;
  },
};

/** The kinds of CloudResourceRef this driver records, in creation order. */
export const KINDS = ['network', 'subnet', 'router', 'securityGroup', 'securityGroupRule', 'port', 'server', 'floatingIp'] as const;
export type ResourceKind = (typeof KINDS)[number];
/** The bastion's rule is bastion-close's to delete, never the topology's deletion. */
export const BASTION_RULE_KIND = 'bastionRule';

/** Position in the deletion order, the reverse of creation (floating IPs 0, networks last); -1 for other kinds. */
export function deletionRank(kind: string): number {
  const i = KINDS.indexOf(kind as ResourceKind);
  return i < 0 ? -1 : KINDS.length - 1 - i;
}

/** An egress address as a rule's remote prefix: "203.0.113.7" → "203.0.113.7/32". */
export function asCidr(address: string): string {
  const a = address.trim();
  if (a.includes('/')) return a;
  return a.includes(':') ? `${a}/128` : `${a}/32`;
}

/**
 * The host keys cloud-init prints on the console, preferring ed25519, as "type base64".
 * Undefined while the block has not appeared (the server is still booting).
 */
export function hostKeyFromConsole(output: string): string | undefined {
  const block = /-----BEGIN SSH HOST KEY KEYS-----([\s\S]*?)-----END SSH HOST KEY KEYS-----/.exec(output);
  if (!block?.[1]) return undefined;
  const keys = block[1]
    .split(/\r?\n/)
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f.length >= 2 && /^(ssh-|ecdsa-)/.test(f[0]!))
    .map((f) => `${f[0]} ${f[1]}`);
  return keys.find((k) => k.startsWith('ssh-ed25519 ')) ?? keys[0];
}
