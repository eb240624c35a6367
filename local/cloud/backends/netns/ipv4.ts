/** IPv4 arithmetic for the netns hypervisor's address checks (networks, floating IPs). */

import { inCidr, ipToInt, parseCidr as parseOrUndefined } from '../../openstack/ipv4.ts';

export { ipToInt };

export interface Cidr {
  /** Network address as an unsigned 32-bit integer. */
  base: number;
  bits: number;
  text: string;
}

export function isIpv4(ip: string): boolean {
  return ipToInt(ip) !== undefined;
}

/** Parses "A.B.C.D/N" (a bare address is a /32); throws naming the input when it is not IPv4. */
export function parseCidr(text: string): Cidr {
  const parsed = text.split('/').length <= 2 ? parseOrUndefined(text) : undefined;
  if (!parsed) throw new Error(`"${text}" is not an IPv4 CIDR`);
  return { base: parsed.base, bits: parsed.bits, text };
}

export function contains(cidr: Cidr, ip: string): boolean {
  return inCidr(ip, cidr.text);
}

export function overlaps(a: Cidr, b: Cidr): boolean {
  const bits = Math.min(a.bits, b.bits);
  const size = 2 ** (32 - bits);
  return Math.floor(a.base / size) === Math.floor(b.base / size);
}
