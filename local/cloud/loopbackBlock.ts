import { createServer } from 'node:net';

export interface LoopbackBlock {
  /** The /24 itself, e.g. `127.83.17.0/24`. */
  cidr: string;
  /** Lower half: the external network's floating IPs (bastions listen there). */
  floatingCidr: string;
  /** Upper half: where the ssh2 hypervisor's VMs really listen. */
  listenCidr: string;
}

/** Splits a /24 of loopback addresses between floating IPs and VM listeners. */
export function splitBlock(cidr: string): LoopbackBlock {
  const match = /^127\.(\d{1,3})\.(\d{1,3})\.0\/24$/.exec(cidr);
  if (!match || Number(match[1]) > 255 || Number(match[2]) > 255) throw new Error(`loopback block "${cidr}" must be a 127.X.Y.0/24`);
  const prefix = `127.${match[1]}.${match[2]}`;
  return { cidr, floatingCidr: `${prefix}.0/25`, listenCidr: `${prefix}.128/25` };
}

function bindable(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, host, () => server.close(() => resolve(true)));
  });
}

/**
 * A /24 of loopback addresses no other engine on this machine uses: a random 127.X.Y.0/24
 * (X in 64–127, away from the 127.0.x addresses tools commonly take) whose first bastion
 * address is still free. Two engines, or a test beside `ctd local up`, each get their own.
 */
export async function pickLoopbackBlock(bastionPort = 2222): Promise<LoopbackBlock> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const cidr = `127.${64 + Math.floor(Math.random() * 64)}.${Math.floor(Math.random() * 256)}.0/24`;
    const block = splitBlock(cidr);
    if (await bindable(block.floatingCidr.replace(/\.0\/25$/, '.2'), bastionPort)) return block;
  }
  throw new Error('no free loopback block found after 20 attempts');
}
