/**
 * Names and addresses of one netns test bed. Every namespace, interface and nftables table
 * carries the run's prefix, so leftovers of a run are found (and removed) by prefix alone, and
 * two runs on one machine never collide. Linux caps interface names at 15 characters, hence
 * the short prefix and the numeric VM slots.
 */

export const PREFIX_PATTERN = /^[a-z][a-z0-9]{1,9}$/;
export const DEFAULT_SUBNET = '10.213.0.0/16';
/** VM slots: addresses .10–.254 of the private /24. */
export const FIRST_VM_SLOT = 10;
export const LAST_VM_SLOT = 254;

export interface Layout {
  prefix: string;
  hostNs: string;
  bastionNs: string;
  /** Host-side end of the public veth (in the host namespace). */
  hostIf: string;
  /** Bastion-side end of the public veth. */
  bastionPublicIf: string;
  /** The bridge inside the bastion namespace joining the VMs' veths. */
  bridge: string;
  hostAddress: string;
  bastionPublicAddress: string;
  /** Prefix length of the public link between host and bastion. */
  publicPrefixLength: number;
  bastionPrivateAddress: string;
  privatePrefixLength: number;
  /** nftables table (family inet) in the bastion namespace holding the security group. */
  table: string;
  vmNs(slot: number): string;
  /** Bastion-side end of a VM's veth (on the bridge). */
  vmBridgeIf(slot: number): string;
  /** VM-side end of a VM's veth. */
  vmIf(slot: number): string;
  vmAddress(slot: number): string;
}

export function layoutFor(prefix: string, subnet: string = DEFAULT_SUBNET): Layout {
  if (!PREFIX_PATTERN.test(prefix)) {
    throw new Error(`netns prefix "${prefix}" must be 2–10 lowercase letters/digits starting with a letter (interface names are capped at 15 characters)`);
  }
  const m = /^(\d{1,3})\.(\d{1,3})\.0\.0\/16$/.exec(subnet);
  if (!m || Number(m[1]) > 255 || Number(m[2]) > 255) {
    throw new Error(`netns subnet "${subnet}" must be a /16 written as A.B.0.0/16`);
  }
  const ab = `${m[1]}.${m[2]}`;
  return {
    prefix,
    hostNs: `${prefix}-host`,
    bastionNs: `${prefix}-bastion`,
    hostIf: `${prefix}h`,
    bastionPublicIf: `${prefix}b`,
    bridge: `${prefix}br`,
    hostAddress: `${ab}.255.1`,
    bastionPublicAddress: `${ab}.255.2`,
    publicPrefixLength: 30,
    bastionPrivateAddress: `${ab}.1.1`,
    privatePrefixLength: 24,
    table: prefix,
    vmNs: (slot) => `${prefix}-vm${slot}`,
    vmBridgeIf: (slot) => `${prefix}v${slot}`,
    vmIf: (slot) => `${prefix}e${slot}`,
    vmAddress: (slot) => `${ab}.1.${slot}`,
  };
}
