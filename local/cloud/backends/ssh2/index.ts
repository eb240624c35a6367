import { createSocket } from 'node:dgram';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { BastionAccess, BastionSpec, Hypervisor, ServerSpec } from '../../../cloud-backend.ts';
import { readJson, writeJson, WriteQueue } from '../../jsonFile.ts';
import { authorizedKeysOf } from '../../openstack/cloudConfig.ts';
import { firstFree, inCidr, parseCidr } from '../../openstack/ipv4.ts';
import { BastionServer } from './bastionServer.ts';
import { loadOrCreateHostKey } from './hostKey.ts';
import { ProcessGroups } from './processes.ts';
import { ProcessLedger } from './processLedger.ts';
import { keyBlob } from './publicKeyAuth.ts';
import { removeTree } from './sftpServer.ts';
import { applyCloudConfig, parseCloudConfig, vmPaths, type CloudConfig } from './userData.ts';
import { VmServer } from './vmServer.ts';

export interface Ssh2HypervisorOptions {
  stateDir: string;
  /** Loopback addresses for VM listeners, this engine's own (e.g. `127.77.3.128/25`). */
  listenCidr: string;
  /** The TCP port of bastions (on their floating IP) and VMs (on their listener address); default 2222, so no root is needed. */
  port?: number;
}

interface VmRuntime {
  spec: ServerSpec;
  listen: string;
  server: VmServer;
  processes: ProcessGroups;
  /** Cloud-init still running, awaited before the VM's directory is removed. */
  userData: Promise<void>;
}

interface BastionRuntime {
  spec: BastionSpec;
  server: BastionServer;
  access: BastionAccess;
}

/** Listener addresses, kept so a restarted VM comes back where it was. */
interface Ssh2File {
  listeners: Record<string, string>;
}

/**
 * The `ssh2` hypervisor: pure npm, no root. Each bastion is an ssh2 server on its floating IP
 * (port 2222 by default: the front publishes it as `ssh_port`), each VM an ssh2 server on a
 * loopback address of {@link Ssh2HypervisorOptions.listenCidr}. VMs are addressed by their
 * Neutron fixed IP: a bastion routes a forward to `fixedIp:22` of its own project to the VM's
 * real listener, so two projects may use the same CIDR and two engines never collide.
 */
export class Ssh2Hypervisor implements Hypervisor {
  readonly kind = 'ssh2' as const;
  private readonly root: string;
  private readonly listenCidr: string;
  private readonly port: number;
  private readonly queue = new WriteQueue();
  private file: Ssh2File = { listeners: {} };
  private readonly vms = new Map<string, VmRuntime>();
  private readonly bastions = new Map<string, BastionRuntime>();
  private readonly ledger: ProcessLedger;

  constructor(opts: Ssh2HypervisorOptions) {
    if (!parseCidr(opts.listenCidr)) throw new Error(`listenCidr "${opts.listenCidr}" is not an IPv4 CIDR`);
    this.root = join(opts.stateDir, 'cloud', 'ssh2');
    this.listenCidr = opts.listenCidr;
    this.port = opts.port ?? 2222;
    this.ledger = new ProcessLedger(join(this.root, 'process-groups.json'));
  }

  private get filePath(): string {
    return join(this.root, 'listeners.json');
  }

  private dir(id: string): string {
    return join(this.root, 'servers', id.replace(/[^A-Za-z0-9-]/g, '_'));
  }

  async start(): Promise<void> {
    await mkdir(this.root, { recursive: true, mode: 0o700 });
    this.file = await readJson<Ssh2File>(this.filePath, { listeners: {} });
    // A previous engine killed with SIGKILL could not stop its VMs' commands: they end here.
    const killed = this.ledger.sweep();
    if (killed.length > 0) console.error(`[local cloud] killed ${killed.length} VM process(es) a previous engine left running`);
  }

  async stop(): Promise<void> {
    for (const id of [...this.vms.keys()]) await this.halt(id);
    for (const bastion of this.bastions.values()) await bastion.server.close();
    this.bastions.clear();
    await this.queue.run(async () => undefined);
  }

  /** The source address the kernel picks toward this engine's loopback block (a connected UDP socket sends nothing). */
  egressAddress(): Promise<string> {
    const probe = firstFree(this.listenCidr, [], 1)!;
    return new Promise((resolve, reject) => {
      const socket = createSocket('udp4');
      socket.once('error', reject);
      socket.connect(this.port, probe, () => {
        const { address } = socket.address();
        socket.close();
        resolve(address);
      });
    });
  }

  async startBastion(spec: BastionSpec, _opts: { restore: boolean }): Promise<{ hostKey: string; port: number }> {
    const running = this.bastions.get(spec.id);
    const hostKey = await loadOrCreateHostKey(join(this.dir(spec.id), 'ssh_host_ed25519_key'));
    if (running) return { hostKey: hostKey.publicKey, port: this.port };
    const runtime: BastionRuntime = { spec, access: { ingress: [], logins: [] }, server: undefined as never };
    runtime.server = new BastionServer({
      address: spec.address,
      port: this.port,
      user: spec.user,
      hostKey,
      policy: {
        admits: (source) => runtime.access.ingress.some((r) => this.admits(r, source)),
        loginKeys: () => runtime.access.logins.map((l) => l.publicKey),
        route: (key, address, port) => {
          if (port !== 22) return undefined;
          const login = runtime.access.logins.find((l) => keyBlob(l.publicKey)?.equals(key) && l.targets.includes(address));
          if (!login) return undefined;
          // Two networks of a project may reuse a CIDR: the VM is the one at that address whose user data lists the key.
          const vm = [...this.vms.values()].find(
            (v) => v.spec.projectId === spec.projectId && v.spec.fixedIp === address && authorizedKeysOf(v.spec.userData).includes(login.publicKey),
          );
          return vm ? { host: vm.listen, port: this.port } : undefined;
        },
      },
    });
    await runtime.server.start();
    this.bastions.set(spec.id, runtime);
    return { hostKey: hostKey.publicKey, port: this.port };
  }

  private admits(rule: BastionAccess['ingress'][number], source: string): boolean {
    if (rule.protocol !== null && rule.protocol !== 'tcp' && rule.protocol !== '6') return false;
    if (rule.portMin !== null && this.port < rule.portMin) return false;
    if (rule.portMax !== null && this.port > rule.portMax) return false;
    return inCidr(source, rule.remoteIpPrefix ?? '0.0.0.0/0');
  }

  async setBastionAccess(bastionId: string, access: BastionAccess): Promise<void> {
    const runtime = this.bastions.get(bastionId);
    if (!runtime) throw new Error(`bastion ${bastionId} is not running`);
    runtime.access = access;
  }

  private async listenAddress(id: string): Promise<string> {
    const known = this.file.listeners[id];
    if (known) return known;
    const address = firstFree(this.listenCidr, Object.values(this.file.listeners), 1);
    if (!address) throw new Error(`no free listener address left in ${this.listenCidr}`);
    this.file.listeners[id] = address;
    await this.queue.run(() => writeJson(this.filePath, this.file));
    return address;
  }

  async startServer(spec: ServerSpec, opts: { restore: boolean }): Promise<{ hostKey: string }> {
    const dir = this.dir(spec.id);
    const hostKey = await loadOrCreateHostKey(join(dir, 'ssh_host_ed25519_key'));
    if (this.vms.has(spec.id)) return { hostKey: hostKey.publicKey };
    const listen = await this.listenAddress(spec.id);
    const paths = vmPaths(dir);
    await mkdir(paths.home, { recursive: true, mode: 0o700 });
    await mkdir(paths.tmp, { recursive: true, mode: 0o700 });
    const processes = new ProcessGroups(this.ledger);
    // Bad user data does not stop a machine from booting; cloud-init only logs it.
    let config: CloudConfig | undefined;
    try {
      config = parseCloudConfig(spec.userData);
    } catch {
      config = undefined;
    }
    const hostname = config?.hostname ?? spec.name;
    const server = new VmServer({ name: hostname, address: listen, port: this.port, home: paths.home, tmp: paths.tmp, authorizedKeysPath: paths.authorizedKeys, hostKey, processes });
    await server.start();
    const runtime: VmRuntime = { spec, listen, server, processes, userData: Promise.resolve() };
    this.vms.set(spec.id, runtime);
    // Cloud-init runs after the machine is up, as on a real VM; a reboot does not run it again.
    if (!opts.restore) {
      runtime.userData = config ? applyCloudConfig(config, hostname, paths, processes).then(() => undefined, () => undefined) : Promise.resolve();
    }
    return { hostKey: hostKey.publicKey };
  }

  private async halt(id: string): Promise<VmRuntime | undefined> {
    const runtime = this.vms.get(id);
    if (!runtime) return undefined;
    this.vms.delete(id);
    runtime.processes.killAll();
    await runtime.userData;
    await runtime.server.close();
    return runtime;
  }

  async deleteServer(serverId: string): Promise<void> {
    const bastion = this.bastions.get(serverId);
    if (bastion) {
      this.bastions.delete(serverId);
      await bastion.server.close();
    }
    await this.halt(serverId);
    await removeTree(this.dir(serverId));
    if (this.file.listeners[serverId]) {
      delete this.file.listeners[serverId];
      await this.queue.run(() => writeJson(this.filePath, this.file));
    }
  }

  /** Test hook: where a VM really listens (its loopback address), e.g. to prove it is not reachable except through the bastion. */
  listenerOf(serverId: string): { host: string; port: number } | undefined {
    const vm = this.vms.get(serverId);
    return vm ? { host: vm.listen, port: this.port } : undefined;
  }
}
