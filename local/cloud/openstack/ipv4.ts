/** IPv4 arithmetic for CIDRs, fixed-IP allocation and rule matching. */

export function ipToInt(ip: string): number | undefined {
  const parts = ip.replace(/^::ffff:/, '').split('.');
  if (parts.length !== 4) return undefined;
  let n = 0;
  for (const part of parts) {
    if (!/^\d{1,3}$/.test(part) || Number(part) > 255) return undefined;
    n = n * 256 + Number(part);
  }
  return n;
}

export function intToIp(n: number): string {
  return [24, 16, 8, 0].map((shift) => Math.floor(n / 2 ** shift) % 256).join('.');
}

export interface Cidr {
  base: number;
  bits: number;
  size: number;
}

/** Parses `a.b.c.d/n`; a bare address is a /32. Undefined when malformed. */
export function parseCidr(cidr: string): Cidr | undefined {
  const [addr, bitsText = '32'] = cidr.split('/');
  const ip = ipToInt(addr ?? '');
  const bits = Number(bitsText);
  if (ip === undefined || !/^\d{1,2}$/.test(bitsText) || bits > 32) return undefined;
  const size = 2 ** (32 - bits);
  return { base: Math.floor(ip / size) * size, bits, size };
}

/** Whether `cidr` is a network address (no host bits set), as Neutron requires of a subnet. */
export function isNetworkCidr(cidr: string): boolean {
  const parsed = parseCidr(cidr);
  return parsed !== undefined && ipToInt(cidr.split('/')[0]!) === parsed.base;
}

export function inCidr(address: string, cidr: string): boolean {
  const ip = ipToInt(address);
  const net = parseCidr(cidr);
  return ip !== undefined && net !== undefined && ip >= net.base && ip < net.base + net.size;
}

/** The first host address of `cidr` from `firstHost` on that is not in `used`. */
export function firstFree(cidr: string, used: Iterable<string>, firstHost = 2, lastHost?: number): string | undefined {
  const net = parseCidr(cidr);
  if (!net) return undefined;
  const taken = new Set(used);
  const last = lastHost ?? net.size - 2;
  for (let host = firstHost; host <= last; host++) {
    const ip = intToIp(net.base + host);
    if (!taken.has(ip)) return ip;
  }
  return undefined;
}
