/** Strips the IPv4-mapped IPv6 prefix a dual-stack socket may report. */
export function plainIPv4(address: string | undefined): string {
  return (address ?? '').replace(/^::ffff:/, '');
}

function toInt(ip: string): number | undefined {
  const parts = ip.split('.');
  if (parts.length !== 4) return undefined;
  let n = 0;
  for (const part of parts) {
    if (!/^\d{1,3}$/.test(part) || Number(part) > 255) return undefined;
    n = n * 256 + Number(part);
  }
  return n;
}

/** Whether an IPv4 address lies in a CIDR (a bare address counts as /32). Malformed input never matches. */
export function inCidr(address: string, cidr: string): boolean {
  const [base, bitsText = '32'] = cidr.split('/');
  const ip = toInt(plainIPv4(address));
  const net = toInt(base ?? '');
  const bits = Number(bitsText);
  if (ip === undefined || net === undefined || !Number.isInteger(bits) || bits < 0 || bits > 32) return false;
  const size = 2 ** (32 - bits);
  return Math.floor(ip / size) === Math.floor(net / size);
}

export function isValidCidr(cidr: string): boolean {
  return /^(\d{1,3}\.){3}\d{1,3}\/\d{1,2}$/.test(cidr) && inCidr(cidr.split('/')[0]!, cidr);
}
