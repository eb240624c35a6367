import { run } from './run.ts';

/**
 * The bastion's security group as an nftables table inside the bastion namespace. Traffic from
 * the public veth is dropped unless a rule in `ingress_rules` accepts it; established
 * sessions stay up when a rule is deleted, as with a cloud's stateful security groups.
 */

export function baseRuleset(table: string, publicIf: string): string {
  return `table inet ${table} {
  chain ingress_rules {
  }
  chain input {
    type filter hook input priority 0; policy accept;
    iifname != "${publicIf}" accept
    ct state established,related accept
    jump ingress_rules
    drop
  }
}
`;
}

function nftIn(ns: string, args: string[], input?: string): Promise<{ stdout: string }> {
  return run('ip', ['netns', 'exec', ns, 'nft', ...args], input === undefined ? {} : { input });
}

export async function installTable(ns: string, table: string, publicIf: string): Promise<void> {
  await nftIn(ns, ['-f', '-'], baseRuleset(table, publicIf));
}

const CIDR = /^(\d{1,3}\.){3}\d{1,3}(\/\d{1,2})?$/;
const RULE_ID = /^[A-Za-z0-9_.:-]{1,64}$/;

/** One Neutron ingress rule as the bastion's gate sees it (see Hypervisor's IngressRule). */
export interface GateRule {
  id: string;
  protocol: string | null;
  portMin: number | null;
  portMax: number | null;
  remoteIpPrefix: string | null;
}

const PROTOCOLS: Record<string, 'tcp' | 'udp' | 'icmp'> = { tcp: 'tcp', '6': 'tcp', udp: 'udp', '17': 'udp', icmp: 'icmp', '1': 'icmp' };

function port(n: number, what: string): number {
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new Error(`${what} ${n} is not a port`);
  return n;
}

/**
 * One nft rule for a Neutron rule, or undefined for what never admits anything here (IPv6,
 * protocols other than tcp/udp/icmp). Inputs end up in an nft script: each is checked first.
 */
export function nftRule(table: string, rule: GateRule): string | undefined {
  if (!RULE_ID.test(rule.id)) throw new Error(`invalid rule id "${rule.id}"`);
  const match: string[] = [];
  if (rule.remoteIpPrefix !== null) {
    if (rule.remoteIpPrefix.includes(':')) return undefined;
    if (!CIDR.test(rule.remoteIpPrefix)) throw new Error(`rule ${rule.id}: invalid remote_ip_prefix "${rule.remoteIpPrefix}"`);
    match.push('ip', 'saddr', rule.remoteIpPrefix);
  }
  if (rule.protocol !== null) {
    const proto = PROTOCOLS[rule.protocol.toLowerCase()];
    if (!proto) return undefined;
    if (proto === 'icmp') match.push('ip', 'protocol', 'icmp');
    else {
      match.push('meta', 'l4proto', proto);
      if (rule.portMin !== null || rule.portMax !== null) {
        const lo = port(rule.portMin ?? 0, `rule ${rule.id}: port_range_min`);
        const hi = port(rule.portMax ?? 65535, `rule ${rule.id}: port_range_max`);
        match.push(`${proto}`, 'dport', lo === hi ? String(lo) : `${lo}-${hi}`);
      }
    }
  }
  return `add rule inet ${table} ingress_rules ${match.join(' ')} accept comment "${rule.id}"`;
}

/**
 * Replaces every rule of the bastion's gate in one nft transaction: a login never sees a
 * half-applied set, and established sessions survive (conntrack), as with a stateful group.
 */
export async function replaceIngressRules(ns: string, table: string, rules: readonly GateRule[]): Promise<void> {
  const lines = [`flush chain inet ${table} ingress_rules`];
  for (const rule of rules) {
    const line = nftRule(table, rule);
    if (line) lines.push(line);
  }
  await nftIn(ns, ['-f', '-'], `${lines.join('\n')}\n`);
}
