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
const COMMENT = /^[A-Za-z0-9_.:-]{1,64}$/;

/** Adds an accept rule and returns its nftables handle (what deletion needs). */
export async function addIngressRule(
  ns: string,
  table: string,
  rule: { cidr: string; port: number; comment: string },
): Promise<number> {
  // The inputs end up in an nft command line: accept only what a rule can legitimately contain.
  if (!CIDR.test(rule.cidr)) throw new Error(`invalid cidr "${rule.cidr}"`);
  if (!Number.isInteger(rule.port) || rule.port < 1 || rule.port > 65535) throw new Error(`invalid port ${rule.port}`);
  if (!COMMENT.test(rule.comment)) throw new Error(`invalid rule comment "${rule.comment}"`);
  const { stdout } = await nftIn(ns, [
    '--echo',
    '--handle',
    'add',
    'rule',
    'inet',
    table,
    'ingress_rules',
    'ip',
    'saddr',
    rule.cidr,
    'tcp',
    'dport',
    String(rule.port),
    'accept',
    'comment',
    `"${rule.comment}"`,
  ]);
  const m = /# handle (\d+)/.exec(stdout);
  if (!m) throw new Error(`nft did not report a handle: ${stdout.trim()}`);
  return Number(m[1]);
}

export async function deleteIngressRule(ns: string, table: string, handle: number): Promise<void> {
  await nftIn(ns, ['delete', 'rule', 'inet', table, 'ingress_rules', 'handle', String(handle)]);
}
