/**
 * Names and addresses of one netns hypervisor. Every namespace, interface, nftables table and
 * /run directory carries the run's prefix, so leftovers of a run are found (and removed) by
 * prefix alone, and two engines on one machine never collide. Linux caps interface names at
 * 15 characters, hence the short prefix and the numeric indexes.
 */

export const PREFIX_PATTERN = /^[a-z][a-z0-9]{1,9}$/;
export const DEFAULT_SUBNET = '10.213.0.0/16';
/** Indexes (projects, networks, VM slots) stay below this so every interface name fits 15 characters. */
export const MAX_INDEX = 9999;

export interface Layout {
  prefix: string;
  /** The engine side: step sandboxes run here. */
  hostNs: string;
  /** The engine's source address (on the host namespace's loopback): what a bastion rule must admit. */
  egressAddress: string;
  /** Floating IPs the front should hand out for this hypervisor's bastions (A.B.255.0/24 minus the egress address). */
  floatingRange: { cidr: string; first: string; last: string };
  /** A project's namespace: its bastion's sshd and nftables table, and one bridge per subnet. */
  projectNs(project: number): string;
  /** Host-side end of a project's public veth. */
  hostIf(project: number): string;
  /** Project-side end of the public veth (carries the bastion's floating IP). */
  publicIf(project: number): string;
  /** The bridge of one subnet inside its project's namespace (the bastion holds the gateway address). */
  bridge(network: number): string;
  vmNs(slot: number): string;
  /** Project-side end of a VM's veth (on its subnet's bridge). */
  vmBridgeIf(slot: number): string;
  /** VM-side end of a VM's veth. */
  vmIf(slot: number): string;
  /** nftables table (family inet) in each project namespace: the bastion's security groups. */
  table: string;
}

export function layoutFor(prefix: string, subnet: string = DEFAULT_SUBNET): Layout {
  if (!PREFIX_PATTERN.test(prefix)) {
    throw new Error(`netns prefix "${prefix}" must be 2–10 lowercase letters/digits starting with a letter (interface names are capped at 15 characters)`);
  }
  const m = /^(\d{1,3})\.(\d{1,3})\.0\.0\/16$/.exec(subnet);
  if (!m || Number(m[1]) > 255 || Number(m[2]) > 255 || m[1] === '127') {
    throw new Error(`netns subnet "${subnet}" must be a /16 written as A.B.0.0/16, outside 127.0.0.0/8`);
  }
  const ab = `${m[1]}.${m[2]}`;
  return {
    prefix,
    hostNs: `${prefix}-host`,
    egressAddress: `${ab}.255.1`,
    floatingRange: { cidr: `${ab}.255.0/24`, first: `${ab}.255.2`, last: `${ab}.255.254` },
    projectNs: (n) => `${prefix}-p${n}`,
    hostIf: (n) => `${prefix}h${n}`,
    publicIf: (n) => `${prefix}b${n}`,
    bridge: (n) => `${prefix}n${n}`,
    vmNs: (slot) => `${prefix}-vm${slot}`,
    vmBridgeIf: (slot) => `${prefix}v${slot}`,
    vmIf: (slot) => `${prefix}e${slot}`,
    table: prefix,
  };
}
