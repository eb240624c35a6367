/** IPv4 arithmetic for the netns hypervisor's address checks (networks, floating IPs). */

import { ipToInt } from '../../openstack/ipv4.ts';

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
  const [addr = '', bitsText = '32', ...rest] = text.split('/');
  const ip = ipToInt(addr);
  const bits = Number(bitsText);
  if (ip === undefined || rest.length > 0 || !/^\d{1,2}$/.test(bitsText) || bits > 32) throw new Error(`"${text}" is not an IPv4 CIDR`);
  const size = 2 ** (32 - bits);
  return { base: Math.floor(ip / size) * size, bits, text };
}

export function contains(cidr: Cidr, ip: string): boolean {
  const n = ipToInt(ip);
  if (n === undefined) return false;
  const size = 2 ** (32 - cidr.bits);
  return Math.floor(n / size) * size === cidr.base;
}

export function overlaps(a: Cidr, b: Cidr): boolean {
  const bits = Math.min(a.bits, b.bits);
  const size = 2 ** (32 - bits);
  return Math.floor(a.base / size) === Math.floor(b.base / size);
}
