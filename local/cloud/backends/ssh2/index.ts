import { randomUUID, createHash } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { NetworkSpec, SecurityGroupSpec, VmSpec } from '../../../../core/deployment/schema.ts';
import type { BastionInfo, VmInfo } from '../../../../core/ports.ts';
import type { CloudBackend, CloudScope } from '../../../cloud-backend.ts';
import { CloudApiError } from '../../errors.ts';
import { readJson, writeJson, WriteQueue } from '../../jsonFile.ts';
import { BastionServer } from './bastionServer.ts';
import { inCidr, isValidCidr } from './cidr.ts';
import { loadOrCreateHostKey } from './hostKey.ts';
import { ProcessGroups } from './processes.ts';
import { keyBlob } from './publicKeyAuth.ts';
import { removeTree } from './sftpServer.ts';
import { emptyState, sameScope, type CloudState, type VmRecord } from './state.ts';
import { applyCloudConfig, parseCloudConfig, vmPaths } from './userData.ts';
import { VmServer } from './vmServer.ts';

export interface Ssh2BackendOptions {
  stateDir: string;
  bastion?: {
    /** Default 127.0.0.2. */
    address?: string;
    /** Default 2222. */
    port?: number;
    /** Default "bastion". */
    securityGroup?: string;
    /** Default "ctd". */
    user?: string;
  };
  /** First three octets of VM addresses, e.g. "127.0.1" → VMs get 127.0.1.10, .11, … */
  vmAddressBase?: string;
  /** Default 2222. */
  vmPort?: number;
}

interface VmRuntime {
  server: VmServer;
  processes: ProcessGroups;
  /** Cloud-init still running, awaited before the VM's directory is removed. */
  userData: Promise<void>;
}

const FIRST_VM_HOST = 10;

/** A path segment for a tenant or deployment id; odd ids are hashed rather than trusted in a path. */
function segment(id: string): string {
  return /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$/.test(id) ? id : createHash('sha256').update(id).digest('hex').slice(0, 16);
}

const key = (r: { tenantId: string; deploymentId: string; name: string }) => `${r.tenantId}\0${r.deploymentId}\0${r.name}`;

/**
 * The `local` cloud backend: pure npm, no root. The bastion and every VM are ssh2 servers on
 * loopback addresses; security-group rules, the forwarding switch and VMs persist under
 * `<stateDir>/cloud/` and come back on `start()`.
 *
 * Bastion logins: the bastion accepts the keys listed in `ssh_authorized_keys` of the user data
 * of the cloud's VMs — in effect the deployment's key pair is registered with the cloud when
 * its VMs are created (an OpenStack keypair) — and forwards a key only to the VMs whose user
 * data lists that same key, so one tenant's key never reaches another tenant's VMs. The key
 * counts for the bastion even when the VM's cloud-init fails; only the VM then refuses it.
 */
export class Ssh2Backend implements CloudBackend {
  readonly kind = 'local' as const;
  private readonly bastionAddress: string;
  private readonly bastionPort: number;
  private readonly bastionGroup: string;
  private readonly bastionUser: string;
  private readonly vmBase: string;
  private readonly vmPort: number;
  private readonly root: string;
  private readonly queue = new WriteQueue();
  private state: CloudState = emptyState();
  private bastion: BastionServer | undefined;
  private bastionHostKey = '';
  private readonly vms = new Map<string, VmRuntime>();

  constructor(opts: Ssh2BackendOptions) {
    this.root = join(opts.stateDir, 'cloud');
    this.bastionAddress = opts.bastion?.address ?? '127.0.0.2';
    this.bastionPort = opts.bastion?.port ?? 2222;
    this.bastionGroup = opts.bastion?.securityGroup ?? 'bastion';
    this.bastionUser = opts.bastion?.user ?? 'ctd';
    this.vmBase = opts.vmAddressBase ?? '127.0.1';
    this.vmPort = opts.vmPort ?? 2222;
  }

  private get statePath(): string {
    return join(this.root, 'state.json');
  }

  private save(): Promise<void> {
    return this.queue.run(() => writeJson(this.statePath, this.state));
  }

  private vmDir(r: { tenantId: string; deploymentId: string; name: string }): string {
    return join(this.root, 'vms', segment(r.tenantId), segment(r.deploymentId), r.name);
  }

  async start(): Promise<void> {
    await mkdir(this.root, { recursive: true, mode: 0o700 });
    this.state = await readJson<CloudState>(this.statePath, emptyState());
    const hostKey = await loadOrCreateHostKey(join(this.root, 'bastion', 'ssh_host_ed25519_key'));
    this.bastionHostKey = hostKey.publicKey;
    this.bastion = new BastionServer({
      address: this.bastionAddress,
      port: this.bastionPort,
      user: this.bastionUser,
      hostKey,
      policy: {
        admits: (source) =>
          this.state.rules.some((r) => r.securityGroup === this.bastionGroup && r.port === this.bastionPort && inCidr(source, r.cidr)),
        loginKeys: () => [...new Set(this.state.vms.flatMap((v) => v.loginKeys))],
        forwardingEnabled: () => this.state.forwarding[this.bastionGroup] === true,
        mayForward: (blob, address, port) =>
          this.state.vms.some((v) => v.address === address && v.port === port && v.loginKeys.some((k) => keyBlob(k)?.equals(blob))),
      },
    });
    await this.bastion.start();
    // VMs come back up as machines do after a host reboot: same address, same host key;
    // cloud-init does not run again and processes started before the stop are gone.
    for (const vm of this.state.vms) {
      if (vm.status === 'building') vm.status = 'active';
      await this.bootVm(vm, Promise.resolve());
    }
    await this.save();
  }

  private async bootVm(vm: VmRecord, userData: Promise<void>): Promise<VmRuntime> {
    const dir = this.vmDir(vm);
    const paths = vmPaths(dir);
    await mkdir(paths.home, { recursive: true, mode: 0o700 });
    const hostKey = await loadOrCreateHostKey(join(dir, 'ssh_host_ed25519_key'));
    vm.hostKey = hostKey.publicKey;
    const processes = new ProcessGroups();
    const server = new VmServer({
      name: vm.name,
      address: vm.address,
      port: vm.port,
      home: paths.home,
      authorizedKeysPath: paths.authorizedKeys,
      hostKey,
      processes,
    });
    await server.start();
    const runtime = { server, processes, userData };
    this.vms.set(key(vm), runtime);
    return runtime;
  }

  private async haltVm(vm: VmRecord): Promise<void> {
    const runtime = this.vms.get(key(vm));
    if (!runtime) return;
    this.vms.delete(key(vm));
    runtime.processes.killAll();
    await runtime.userData.catch(() => undefined);
    await runtime.server.close();
  }

  async stop(): Promise<void> {
    for (const vm of this.state.vms) await this.haltVm(vm);
    await this.bastion?.close();
    this.bastion = undefined;
    await this.queue.run(async () => undefined);
  }

  private checkGroup(securityGroup: string): void {
    if (securityGroup !== this.bastionGroup) throw new CloudApiError(404, `security group "${securityGroup}" has no bastion`);
  }

  async describeBastion(securityGroup: string): Promise<BastionInfo> {
    this.checkGroup(securityGroup);
    return { address: this.bastionAddress, port: this.bastionPort, hostKey: this.bastionHostKey };
  }

  /** The source address the kernel picks toward the bastion (a connected UDP socket sends nothing). */
  egressCidr(): Promise<string> {
    return new Promise((resolve, reject) => {
      const socket = createSocket('udp4');
      socket.once('error', reject);
      socket.connect(this.bastionPort, this.bastionAddress, () => {
        const { address } = socket.address();
        socket.close();
        resolve(`${address}/32`);
      });
    });
  }

  async addBastionRule(scope: CloudScope, input: { securityGroup: string; cidr: string; port: number; description: string }): Promise<{ ruleId: string }> {
    this.checkGroup(input.securityGroup);
    if (!isValidCidr(input.cidr)) throw new CloudApiError(400, `cidr "${input.cidr}" is not an IPv4 CIDR`);
    const ruleId = randomUUID();
    this.state.rules.push({ ruleId, ...input, tenantId: scope.tenantId, deploymentId: scope.deploymentId });
    await this.save();
    return { ruleId };
  }

  async deleteBastionRule(scope: CloudScope, input: { securityGroup: string; ruleId: string }): Promise<void> {
    this.checkGroup(input.securityGroup);
    const rule = this.state.rules.find((r) => r.ruleId === input.ruleId && r.securityGroup === input.securityGroup && r.tenantId === scope.tenantId);
    if (!rule) throw new CloudApiError(404, `rule ${input.ruleId} not found`);
    this.state.rules = this.state.rules.filter((r) => r !== rule);
    await this.save();
  }

  async setBastionForwarding(input: { securityGroup: string; enabled: boolean }): Promise<void> {
    this.checkGroup(input.securityGroup);
    this.state.forwarding[input.securityGroup] = input.enabled;
    await this.save();
    this.bastion?.refreshForwarding();
  }

  async createNetwork(scope: CloudScope, spec: NetworkSpec): Promise<void> {
    if (this.state.networks.some((n) => sameScope(n, scope) && n.name === spec.name)) throw new CloudApiError(409, `network "${spec.name}" already exists`);
    this.state.networks.push({ ...scope, name: spec.name, cidr: spec.cidr });
    await this.save();
  }

  async deleteNetwork(scope: CloudScope, name: string): Promise<void> {
    if (!this.state.networks.some((n) => sameScope(n, scope) && n.name === name)) throw new CloudApiError(404, `network "${name}" not found`);
    if (this.state.vms.some((v) => sameScope(v, scope) && v.network === name)) {
      throw new CloudApiError(409, `network "${name}" still has VMs`);
    }
    this.state.networks = this.state.networks.filter((n) => !(sameScope(n, scope) && n.name === name));
    await this.save();
  }

  async createSecurityGroup(scope: CloudScope, spec: SecurityGroupSpec): Promise<void> {
    if (this.state.securityGroups.some((g) => sameScope(g, scope) && g.name === spec.name)) {
      throw new CloudApiError(409, `security group "${spec.name}" already exists`);
    }
    this.state.securityGroups.push({ ...scope, name: spec.name });
    await this.save();
  }

  async deleteSecurityGroup(scope: CloudScope, name: string): Promise<void> {
    if (!this.state.securityGroups.some((g) => sameScope(g, scope) && g.name === name)) throw new CloudApiError(404, `security group "${name}" not found`);
    this.state.securityGroups = this.state.securityGroups.filter((g) => !(sameScope(g, scope) && g.name === name));
    await this.save();
  }

  private nextAddress(): string {
    const used = new Set(this.state.vms.map((v) => v.address));
    for (let host = FIRST_VM_HOST; host < 255; host++) {
      const address = `${this.vmBase}.${host}`;
      if (!used.has(address)) return address;
    }
    throw new CloudApiError(507, 'no free VM address left');
  }

  async createVm(scope: CloudScope, spec: VmSpec, userData: string): Promise<VmInfo> {
    if (this.state.vms.some((v) => sameScope(v, scope) && v.name === spec.name)) throw new CloudApiError(409, `VM "${spec.name}" already exists`);
    if (!this.state.networks.some((n) => sameScope(n, scope) && n.name === spec.network)) {
      throw new CloudApiError(404, `network "${spec.network}" not found`);
    }
    for (const group of spec.securityGroups ?? []) {
      if (!this.state.securityGroups.some((g) => sameScope(g, scope) && g.name === group)) throw new CloudApiError(404, `security group "${group}" not found`);
    }
    const config = parseCloudConfig(userData);
    const vm: VmRecord = {
      ...scope,
      name: spec.name,
      network: spec.network,
      address: this.nextAddress(),
      port: this.vmPort,
      hostKey: '',
      status: 'building',
      loginKeys: config.sshAuthorizedKeys,
      createdAt: new Date().toISOString(),
    };
    this.state.vms.push(vm);
    let runtime: VmRuntime;
    try {
      runtime = await this.bootVm(vm, Promise.resolve());
    } catch (e) {
      this.state.vms = this.state.vms.filter((v) => v !== vm);
      throw e;
    }
    await this.save();
    runtime.userData = applyCloudConfig(config, vm.name, vmPaths(this.vmDir(vm)), runtime.processes)
      .catch(() => false)
      .then(async () => {
        // Nova reports ACTIVE once the machine runs, whatever cloud-init did; the SSH check finds out.
        if (this.state.vms.includes(vm)) {
          vm.status = 'active';
          await this.save();
        }
      });
    return this.info(vm);
  }

  async deleteVm(scope: CloudScope, name: string): Promise<void> {
    const vm = this.state.vms.find((v) => sameScope(v, scope) && v.name === name);
    if (!vm) throw new CloudApiError(404, `VM "${name}" not found`);
    this.state.vms = this.state.vms.filter((v) => v !== vm);
    await this.haltVm(vm);
    await removeTree(this.vmDir(vm));
    await this.save();
  }

  async describeVms(scope: CloudScope): Promise<VmInfo[]> {
    return this.state.vms.filter((v) => sameScope(v, scope)).map((v) => this.info(v));
  }

  private info(vm: VmRecord): VmInfo {
    return { name: vm.name, address: vm.address, port: vm.port, hostKey: vm.hostKey, status: vm.status };
  }
}
