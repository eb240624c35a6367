import { createHash, randomBytes, randomUUID, scryptSync, timingSafeEqual } from 'node:crypto';
import { join } from 'node:path';
import type { BastionAccess, Hypervisor, ServerSpec } from '../../cloud-backend.ts';
import { readJson, writeJson, WriteQueue } from '../jsonFile.ts';
import { authorizedKeysOf, decodeUserData, normalizeKey } from './cloudConfig.ts';
import { keystoneError, neutronError, now } from './http.ts';
import { firstFree, parseCidr, intToIp } from './ipv4.ts';
import { emptyCloudState, type CloudStateFile, type PortRecord, type ProjectRecord, type ServerRecord, type TokenRecord } from './state.ts';
import { DEBIAN_12_IMAGE_ID, SMALL_FLAVOR_ID } from './catalog.ts';

export const PUBLIC_NETWORK_ID = '5e0ba7a9-0d0b-4c46-9a3c-2f1a3e5b0c01';
export const PUBLIC_SUBNET_ID = '5e0ba7a9-0d0b-4c46-9a3c-2f1a3e5b0c02';
/** The project that owns shared resources (the external network). */
export const SERVICE_PROJECT = 'service';
const BASTION_CIDR = '192.168.254.0/24';
const TOKEN_TTL_MS = 24 * 3600 * 1000;
const PROJECT_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;
/** Keystone's token prefix: the subject of a bastion's metadata item key. */
export const ACCESS_ITEM_PREFIX = 'ctd-access-';
export const BASTION_NAME = 'bastion';
export const BASTION_USER = 'ctd';

export interface CloudCoreOptions {
  stateDir: string;
  hypervisor: Hypervisor;
  /** The external network's subnet: floating IPs are allocated from it (an engine's own loopback block locally). */
  floatingCidr: string;
}

const digest = (token: string): string => createHash('sha256').update(token).digest('hex');
const mac = (): string => `fa:16:3e:${randomBytes(3).toString('hex').match(/../g)!.join(':')}`;

/**
 * The local OpenStack's bookkeeping, shared by the Keystone, Nova, Neutron and Glance fronts:
 * the persisted state, project bootstrap (each project starts with a `bastion` server), fixed
 * and floating IP allocation, server boots through the {@link Hypervisor}, and the bastion's
 * gate recomputed whenever its rules, metadata or the project's servers change.
 */
export class CloudCore {
  state: CloudStateFile = emptyCloudState();
  readonly hypervisor: Hypervisor;
  private readonly path: string;
  private readonly queue = new WriteQueue();
  private readonly floatingCidr: string;
  /** Server boots still running, awaited by close(). */
  private readonly boots = new Set<Promise<void>>();
  /** Test-only: the next servers whose name matches fail to boot with this fault. */
  readonly serverFaults: { pattern: RegExp; message: string; remaining: number }[] = [];

  constructor(opts: CloudCoreOptions) {
    this.hypervisor = opts.hypervisor;
    this.path = join(opts.stateDir, 'cloud', 'openstack.json');
    const block = parseCidr(opts.floatingCidr);
    if (!block || block.size < 8) throw new Error(`floatingCidr "${opts.floatingCidr}" must be an IPv4 CIDR of /29 or larger`);
    this.floatingCidr = opts.floatingCidr;
  }

  save(): Promise<void> {
    return this.queue.run(() => writeJson(this.path, this.state));
  }

  /** Loads the state, creates the external network, and boots every bastion and server again. */
  async start(): Promise<void> {
    this.state = await readJson<CloudStateFile>(this.path, emptyCloudState());
    this.ensurePublicNetwork();
    await this.hypervisor.start();
    for (const project of this.state.projects) await this.bootBastion(project, true);
    for (const server of this.state.servers.filter((s) => !s.bastion && s.status !== 'ERROR')) {
      try {
        const { hostKey } = await this.hypervisor.startServer(this.serverSpec(server), { restore: true });
        server.hostKey = hostKey;
        server.status = 'ACTIVE';
      } catch (e) {
        this.fail(server, e);
      }
    }
    for (const project of this.state.projects) await this.refreshGate(project.id);
    await this.save();
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.boots]);
    await this.hypervisor.stop();
    await this.queue.run(async () => undefined);
  }

  private ensurePublicNetwork(): void {
    const net = this.state.networks.find((n) => n.id === PUBLIC_NETWORK_ID);
    const t = now();
    if (!net) {
      this.state.networks.push({
        id: PUBLIC_NETWORK_ID, project_id: SERVICE_PROJECT, name: 'public', description: 'external network (floating IPs on the engine loopback block)',
        tags: [], created_at: t, updated_at: t, 'router:external': true, shared: false,
      });
    }
    const subnet = this.state.subnets.find((s) => s.id === PUBLIC_SUBNET_ID);
    if (subnet) subnet.cidr = this.floatingCidr;
    else {
      this.state.subnets.push({
        id: PUBLIC_SUBNET_ID, project_id: SERVICE_PROJECT, name: 'public-subnet', description: '', tags: [], created_at: t, updated_at: t,
        network_id: PUBLIC_NETWORK_ID, cidr: this.floatingCidr, gateway_ip: intToIp(parseCidr(this.floatingCidr)!.base + 1), ip_version: 4, enable_dhcp: false,
      });
    }
  }

  // ---- Keystone ----

  project(idOrName: string): ProjectRecord | undefined {
    return this.state.projects.find((p) => p.id === idOrName) ?? this.state.projects.find((p) => p.name === idOrName);
  }

  /** The project of a tenant, created on first use with its user, default groups and bastion. */
  async ensureProject(name: string): Promise<ProjectRecord> {
    if (!PROJECT_PATTERN.test(name)) throw keystoneError(400, 'a tenant (project) name is 1–64 letters, digits, ".", "_" or "-"');
    const existing = this.project(name);
    if (existing) return existing;
    const t = now();
    const project: ProjectRecord = { id: name, name, userId: randomUUID().replace(/-/g, ''), userName: name, bastionServerId: randomUUID(), createdAt: t };
    this.state.projects.push(project);
    const defaultGroup = this.createSecurityGroup(project.id, 'default', 'Default security group');
    for (const ethertype of ['IPv4', 'IPv6'] as const) {
      this.addRule({ project_id: project.id, security_group_id: defaultGroup, direction: 'ingress', ethertype, remote_group_id: defaultGroup });
    }
    const bastionGroup = this.createSecurityGroup(project.id, 'bastion', 'the bastion: the engine opens its SSH port here per deployment');
    const networkId = randomUUID();
    const subnetId = randomUUID();
    this.state.networks.push({ id: networkId, project_id: project.id, name: 'bastion-net', description: '', tags: [], created_at: t, updated_at: t, 'router:external': false, shared: false });
    this.state.subnets.push({
      id: subnetId, project_id: project.id, name: 'bastion-subnet', description: '', tags: [], created_at: t, updated_at: t,
      network_id: networkId, cidr: BASTION_CIDR, gateway_ip: '192.168.254.1', ip_version: 4, enable_dhcp: true,
    });
    const port = this.createPort({ project_id: project.id, network_id: networkId, name: '', security_groups: [bastionGroup] });
    port.device_id = project.bastionServerId;
    port.device_owner = 'compute:nova';
    this.state.servers.push({
      id: project.bastionServerId, project_id: project.id, name: BASTION_NAME, status: 'BUILD', imageId: DEBIAN_12_IMAGE_ID, flavorId: SMALL_FLAVOR_ID,
      userData: '', metadata: {}, portIds: [port.id], securityGroups: ['bastion'], hostKey: '', bastion: true, created: t, updated: t,
    });
    this.allocateFloatingIp(project.id, { port_id: port.id, description: 'the bastion' });
    await this.bootBastion(project, false);
    await this.refreshGate(project.id);
    await this.save();
    return project;
  }

  private async bootBastion(project: ProjectRecord, restore: boolean): Promise<void> {
    const server = this.state.servers.find((s) => s.id === project.bastionServerId);
    if (!server) return;
    const fip = this.state.floatingIps.find((f) => f.port_id === server.portIds[0]);
    try {
      if (!fip) throw new Error('the bastion has no floating IP');
      const { hostKey, port } = await this.hypervisor.startBastion(
        { id: server.id, projectId: project.id, address: fip.floating_ip_address, fixedIp: this.fixedIp(server) ?? '', user: BASTION_USER },
        { restore },
      );
      server.hostKey = hostKey;
      server.status = 'ACTIVE';
      if (port !== 22) server.metadata.ssh_port = String(port);
      else delete server.metadata.ssh_port;
    } catch (e) {
      this.fail(server, e);
    }
  }

  /** Sets a password for the project's user (what `ctd local openrc` prints). */
  async setPassword(projectId: string): Promise<string> {
    const project = this.project(projectId);
    if (!project) throw keystoneError(404, `Could not find project: ${projectId}.`);
    const password = randomBytes(18).toString('base64url');
    const salt = randomBytes(16).toString('hex');
    project.password = { salt, hash: scryptSync(password, salt, 32).toString('hex') };
    await this.save();
    return password;
  }

  checkPassword(project: ProjectRecord, password: string): boolean {
    if (!project.password) return false;
    const expected = Buffer.from(project.password.hash, 'hex');
    const actual = scryptSync(password, project.password.salt, 32);
    return actual.length === expected.length && timingSafeEqual(actual, expected);
  }

  async issueToken(projectId: string, methods: string[]): Promise<{ token: string; record: TokenRecord }> {
    const token = `gAAAA${randomBytes(32).toString('base64url')}`;
    const issued = Date.now();
    const record: TokenRecord = {
      projectId,
      methods,
      issuedAt: new Date(issued).toISOString(),
      expiresAt: new Date(issued + TOKEN_TTL_MS).toISOString(),
    };
    for (const [key, old] of Object.entries(this.state.tokens)) if (Date.parse(old.expiresAt) < issued) delete this.state.tokens[key];
    this.state.tokens[digest(token)] = record;
    await this.save();
    return { token, record };
  }

  tokenRecord(token: string | undefined): TokenRecord | undefined {
    if (!token) return undefined;
    const record = this.state.tokens[digest(token)];
    if (!record || Date.parse(record.expiresAt) <= Date.now()) return undefined;
    return record;
  }

  async revokeToken(token: string): Promise<boolean> {
    const key = digest(token);
    if (!this.state.tokens[key]) return false;
    delete this.state.tokens[key];
    await this.save();
    return true;
  }

  // ---- Neutron helpers ----

  createSecurityGroup(projectId: string, name: string, description: string): string {
    const t = now();
    const id = randomUUID();
    this.state.securityGroups.push({ id, project_id: projectId, name, description, tags: [], created_at: t, updated_at: t });
    for (const ethertype of ['IPv4', 'IPv6'] as const) this.addRule({ project_id: projectId, security_group_id: id, direction: 'egress', ethertype });
    return id;
  }

  addRule(input: {
    project_id: string;
    security_group_id: string;
    direction: 'ingress' | 'egress';
    ethertype: 'IPv4' | 'IPv6';
    protocol?: string | null;
    port_range_min?: number | null;
    port_range_max?: number | null;
    remote_ip_prefix?: string | null;
    remote_group_id?: string | null;
    description?: string;
  }) {
    const t = now();
    const rule = {
      id: randomUUID(),
      protocol: null,
      port_range_min: null,
      port_range_max: null,
      remote_ip_prefix: null,
      remote_group_id: null,
      description: '',
      ...input,
      created_at: t,
      updated_at: t,
    };
    this.state.rules.push(rule);
    return rule;
  }

  /** A port on a network with a fixed IP from its first subnet (or `fixedIp` when asked). */
  createPort(input: { project_id: string; network_id: string; name: string; security_groups: string[]; fixedIp?: string; subnetId?: string; description?: string }): PortRecord {
    const subnets = this.state.subnets.filter((s) => s.network_id === input.network_id && (!input.subnetId || s.id === input.subnetId));
    const subnet = subnets[0];
    let ip: string | undefined = input.fixedIp;
    if (subnet && !ip) {
      const used = this.state.ports.flatMap((p) => p.fixed_ips.filter((f) => f.subnet_id === subnet.id).map((f) => f.ip_address));
      if (subnet.gateway_ip) used.push(subnet.gateway_ip);
      ip = firstFree(subnet.cidr, used);
      if (!ip) throw neutronError(409, 'IpAddressGenerationFailure', `No more IP addresses available on network ${input.network_id}.`);
    }
    const t = now();
    const port: PortRecord = {
      id: randomUUID(),
      project_id: input.project_id,
      name: input.name,
      description: input.description ?? '',
      tags: [],
      created_at: t,
      updated_at: t,
      network_id: input.network_id,
      mac_address: mac(),
      fixed_ips: subnet && ip ? [{ subnet_id: subnet.id, ip_address: ip }] : [],
      security_groups: input.security_groups,
      device_id: '',
      device_owner: '',
    };
    this.state.ports.push(port);
    return port;
  }

  allocateFloatingIp(projectId: string, input: { port_id?: string | null; description?: string; floating_ip_address?: string }) {
    const used = this.state.floatingIps.map((f) => f.floating_ip_address);
    const net = parseCidr(this.floatingCidr)!;
    const address = input.floating_ip_address ?? firstFree(this.floatingCidr, used, 2, net.size - 2);
    if (!address) throw neutronError(409, 'ExternalIpAddressExhausted', `Unable to find any IP address on external network ${PUBLIC_NETWORK_ID}.`);
    if (used.includes(address)) throw neutronError(409, 'IpAddressInUse', `Unable to complete operation for network ${PUBLIC_NETWORK_ID}. The IP address ${address} is in use.`);
    const t = now();
    const fip = {
      id: randomUUID(),
      project_id: projectId,
      floating_ip_address: address,
      floating_network_id: PUBLIC_NETWORK_ID,
      port_id: null as string | null,
      fixed_ip_address: null as string | null,
      router_id: null as string | null,
      description: input.description ?? '',
      tags: [],
      created_at: t,
      updated_at: t,
    };
    this.state.floatingIps.push(fip);
    if (input.port_id) this.associate(fip, input.port_id);
    return fip;
  }

  associate(fip: CloudStateFile['floatingIps'][number], portId: string | null): void {
    if (portId === null) {
      fip.port_id = null;
      fip.fixed_ip_address = null;
      fip.router_id = null;
      return;
    }
    const port = this.state.ports.find((p) => p.id === portId && p.project_id === fip.project_id);
    if (!port) throw neutronError(404, 'PortNotFound', `Port ${portId} could not be found.`);
    const other = this.state.floatingIps.find((f) => f.port_id === portId && f.id !== fip.id);
    if (other) throw neutronError(409, 'FloatingIPPortAlreadyAssociated', `Cannot associate floating IP ${fip.floating_ip_address} (${fip.id}) with port ${portId} using fixed IP ${port.fixed_ips[0]?.ip_address}, as that fixed IP already has a floating IP on external network ${PUBLIC_NETWORK_ID}.`);
    fip.port_id = portId;
    fip.fixed_ip_address = port.fixed_ips[0]?.ip_address ?? null;
    const subnetIds = new Set(port.fixed_ips.map((f) => f.subnet_id));
    const router = this.state.routers.find(
      (r) => r.project_id === fip.project_id && this.state.ports.some((p) => p.device_id === r.id && p.fixed_ips.some((f) => subnetIds.has(f.subnet_id))),
    );
    fip.router_id = router?.id ?? null;
  }

  fixedIp(server: ServerRecord): string | undefined {
    const port = this.state.ports.find((p) => p.id === server.portIds[0]);
    return port?.fixed_ips[0]?.ip_address;
  }

  // ---- Nova helpers ----

  serverSpec(server: ServerRecord): ServerSpec {
    const port = this.state.ports.find((p) => p.id === server.portIds[0]);
    const fixed = port?.fixed_ips[0];
    const subnet = this.state.subnets.find((s) => s.id === fixed?.subnet_id);
    return {
      id: server.id,
      projectId: server.project_id,
      name: server.name,
      fixedIp: fixed?.ip_address ?? '',
      network: { id: port?.network_id ?? '', subnetId: subnet?.id ?? '', cidr: subnet?.cidr ?? '', gatewayIp: subnet?.gateway_ip ?? null },
      userData: decodeUserData(server.userData),
    };
  }

  private fail(server: ServerRecord, e: unknown): void {
    server.status = 'ERROR';
    server.updated = now();
    server.fault = { code: 500, message: e instanceof Error ? e.message : String(e), created: now() };
  }

  /** Boots a new server in the background (Nova answers 202 at once); BUILD → ACTIVE or ERROR. */
  boot(server: ServerRecord): void {
    const run = (async () => {
      try {
        const fault = this.serverFaults.find((f) => f.remaining > 0 && f.pattern.test(server.name));
        if (fault) {
          fault.remaining -= 1;
          throw new Error(fault.message);
        }
        const { hostKey } = await this.hypervisor.startServer(this.serverSpec(server), { restore: false });
        if (!this.state.servers.includes(server)) {
          await this.hypervisor.deleteServer(server.id);
          return;
        }
        server.hostKey = hostKey;
        server.status = 'ACTIVE';
        server.updated = now();
      } catch (e) {
        this.fail(server, e);
      }
      await this.refreshGate(server.project_id);
      await this.save();
    })();
    this.boots.add(run);
    void run.finally(() => this.boots.delete(run));
  }

  async deleteServer(server: ServerRecord): Promise<void> {
    this.state.servers = this.state.servers.filter((s) => s !== server);
    await this.hypervisor.deleteServer(server.id);
    for (const portId of server.portIds) {
      const port = this.state.ports.find((p) => p.id === portId);
      if (!port) continue;
      if (port.autoDelete) this.deletePort(port);
      else {
        port.device_id = '';
        port.device_owner = '';
      }
    }
    await this.refreshGate(server.project_id);
    await this.save();
  }

  /** Removes a port; a floating IP on it is disassociated, as Neutron does. */
  deletePort(port: PortRecord): void {
    this.state.ports = this.state.ports.filter((p) => p !== port);
    for (const fip of this.state.floatingIps.filter((f) => f.port_id === port.id)) this.associate(fip, null);
  }

  /** A project's bastion as a client sees it: floating IP, SSH port, host key (undefined until the project exists). */
  bastionOf(projectId: string): { address: string; port: number; hostKey: string } | undefined {
    const project = this.project(projectId);
    const bastion = this.state.servers.find((s) => s.id === project?.bastionServerId);
    const fip = this.state.floatingIps.find((f) => f.port_id === bastion?.portIds[0]);
    if (!bastion || !fip) return undefined;
    return { address: fip.floating_ip_address, port: Number(bastion.metadata.ssh_port ?? 22), hostKey: bastion.hostKey };
  }

  /** Removes a deployment's bastion rules (by their description mark) and its access item. */
  async closeBastionAccess(projectId: string, deploymentId: string): Promise<void> {
    const project = this.project(projectId);
    const bastion = this.state.servers.find((s) => s.id === project?.bastionServerId);
    if (!project || !bastion) return;
    const mark = `ctd:${deploymentId}:bastion`;
    this.state.rules = this.state.rules.filter((r) => !(r.project_id === project.id && r.description === mark));
    delete bastion.metadata[`${ACCESS_ITEM_PREFIX}${deploymentId}`];
    await this.refreshGate(project.id);
    await this.save();
  }

  /** Recomputes and hands the project's bastion its gate (rules, access keys, forward targets). */
  async refreshGate(projectId: string): Promise<void> {
    const project = this.project(projectId);
    const bastion = this.state.servers.find((s) => s.id === project?.bastionServerId);
    if (!project || !bastion || bastion.status !== 'ACTIVE') return;
    await this.hypervisor.setBastionAccess(bastion.id, this.gateOf(bastion));
  }

  gateOf(bastion: ServerRecord): BastionAccess {
    const groups = new Set(this.state.ports.filter((p) => bastion.portIds.includes(p.id)).flatMap((p) => p.security_groups));
    const ingress = this.state.rules
      .filter((r) => groups.has(r.security_group_id) && r.direction === 'ingress' && r.ethertype === 'IPv4' && r.remote_group_id === null)
      .map((r) => ({ id: r.id, protocol: r.protocol, portMin: r.port_range_min, portMax: r.port_range_max, remoteIpPrefix: r.remote_ip_prefix }));
    const servers = this.state.servers.filter((s) => s.project_id === bastion.project_id && !s.bastion && s.status === 'ACTIVE');
    const keysOf = new Map(servers.map((s) => [s, authorizedKeysOf(decodeUserData(s.userData))]));
    const logins = Object.entries(bastion.metadata).flatMap(([item, value]) => {
      const publicKey = item.startsWith(ACCESS_ITEM_PREFIX) ? normalizeKey(value) : undefined;
      if (!publicKey) return [];
      const targets = servers.filter((s) => keysOf.get(s)!.includes(publicKey)).flatMap((s) => this.fixedIp(s) ?? []);
      return [{ item, publicKey, targets }];
    });
    return { ingress, logins };
  }
}
