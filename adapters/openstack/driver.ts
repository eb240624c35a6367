import type { NetworkSpec, SecurityGroupSpec, VmSpec } from '../../core/deployment/schema.ts';
import { ErrorName, StepError } from '../../core/errors.ts';
import type { BastionInfo, BastionRef, CloudContext, CloudDriver, CloudResourceRef, VmInfo } from '../../core/ports.ts';
import { errorForStatus } from './errors.ts';
import { Glance } from './glance.ts';
import { OpenStackHttp, type Fetch } from './http.ts';
import { Keystone, type TokenSession } from './keystone.ts';
import { asCidr, BASTION_RULE_KIND, deletionRank, hostKeyFromConsole, marks, type ResourceKind } from './marks.ts';
import { Neutron, type Collection } from './neutron.ts';
import { Nova } from './nova.ts';
import type { Port, SecurityGroupRule, Server } from './schemas.ts';

/** How the engine reaches one OpenStack: everything else comes from the user's token. */
export interface OpenStackDriverOptions {
  /** Keystone v3 base URL, e.g. `https://iam.eu-de.otc.t-systems.com/v3` (CTD_KEYSTONE_URL). */
  keystoneUrl: string;
  /** Addresses or CIDRs under which the engine reaches the bastion; one rule each (CTD_EGRESS_ADDRESSES). */
  egressCidrs?: readonly string[];
  /** Catalog interface; default `public` (CTD_OS_INTERFACE). */
  interface?: string;
  /** Catalog region; default the first endpoint of the interface (CTD_OS_REGION). */
  region?: string;
  /** Injected for tests; default the global fetch. */
  fetch?: Fetch;
  /** Per-request limit; a request that takes longer counts as unreachable. Default 60 s. */
  requestTimeoutMs?: number;
  /** Pause between status polls (ACTIVE, deleted). Default 2 s. */
  pollIntervalMs?: number;
  /** Bound of the wait for a server to become ACTIVE. Default 10 min. */
  activeTimeoutMs?: number;
  /** Bound of the wait for a deleted server to disappear. Default 3 min. */
  deleteTimeoutMs?: number;
  /** Injected for tests; default setTimeout. */
  sleep?: (ms: number) => Promise<void>;
}

/** The clients of one token, built from its catalog once per driver instance. */
interface Apis {
  session: TokenSession;
  nova: Nova;
  neutron: Neutron;
  glance: Glance;
}

const VM_KINDS: readonly string[] = ['floatingIp', 'server', 'port'];
/** Recorded by grantBastionAccess: the bastion server whose metadata holds the deployment's key. */
const BASTION_ACCESS_KIND = 'bastionAccess';
const RULE_ID_IN_MESSAGE = /rule id is ([0-9a-f-]{8,})/i;

const defaultSleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * The production CloudDriver: Keystone v3, Nova v2.1, Neutron v2.0 and Glance v2 over `fetch`,
 * acting with the user's token only (docs/OPENSTACK.md is the contract).
 *
 * - Endpoints come from the token's catalog (`GET {keystoneUrl}/auth/tokens`), cached per token.
 * - Everything created is recorded through `ctx.record` before the next cloud call and marked
 *   (`ctd-<deploymentId>-<name>`, tag and description `ctd:<deploymentId>`, server metadata), so a
 *   retry adopts it (also after a POST that answered 502 having created it) and {@link sweep}
 *   finds it without any record.
 * - Failures are StepErrors of the error table: 502/503/504, OTC's "backend server is unreachable"
 *   and connection failures → Ctd.BackendUnreachable; 401 → Ctd.StepFailed ("token was refused");
 *   any other failed create/delete, quota, or a server in ERROR → Ctd.ProvisioningError.
 * - The token is sent only as X-Auth-Token and never appears in an error.
 *
 * @example
 * const driver = new OpenStackDriver({ keystoneUrl: 'http://127.0.0.1:5000/v3', egressCidrs: ['127.0.0.1'] });
 * const ctx = { token, deploymentId: 'd-1', record: async () => {}, forget: async () => {} };
 * await driver.ensureNetwork(ctx, { network: { name: 'private' }, index: 0, externalNetwork: 'public' });
 * await driver.sweep(ctx);
 */
export class OpenStackDriver implements CloudDriver {
  private readonly http: OpenStackHttp;
  private readonly keystone: Keystone;
  private readonly apisByToken = new Map<string, Promise<Apis>>();
  private readonly pollMs: number;
  private readonly activeTimeoutMs: number;
  private readonly deleteTimeoutMs: number;
  private readonly sleep: (ms: number) => Promise<void>;

  constructor(private readonly opts: OpenStackDriverOptions) {
    if (!opts.keystoneUrl) throw new Error('the openstack driver needs a Keystone URL (CTD_KEYSTONE_URL)');
    this.http = new OpenStackHttp({ ...(opts.fetch ? { fetch: opts.fetch } : {}), ...(opts.requestTimeoutMs ? { timeoutMs: opts.requestTimeoutMs } : {}) });
    this.keystone = new Keystone(this.http, {
      url: opts.keystoneUrl,
      interface: opts.interface ?? 'public',
      ...(opts.region ? { region: opts.region } : {}),
    });
    this.pollMs = opts.pollIntervalMs ?? 2000;
    this.activeTimeoutMs = opts.activeTimeoutMs ?? 600_000;
    this.deleteTimeoutMs = opts.deleteTimeoutMs ?? 180_000;
    this.sleep = opts.sleep ?? defaultSleep;
  }

  /** The token's project; undefined when Keystone refuses the token (401/404) or it has no project. */
  async identify(token: string): Promise<{ tenantId: string } | undefined> {
    const body = await this.keystone.validate(token);
    return body?.project ? { tenantId: body.project.id } : undefined;
  }

  private apis(token: string): Promise<Apis> {
    let apis = this.apisByToken.get(token);
    if (!apis) {
      apis = this.keystone.session(token).then((session) => ({
        session,
        nova: new Nova(this.http, token, session.endpoint('compute')),
        neutron: new Neutron(this.http, token, session.endpoint('network')),
        glance: new Glance(this.http, token, session.endpoint('image')),
      }));
      // A failed validation (unreachable Keystone) must not stick for the next attempt.
      apis.catch(() => this.apisByToken.delete(token));
      this.apisByToken.set(token, apis);
    }
    return apis;
  }

  async egressCidrs(): Promise<string[]> {
    const cidrs = (this.opts.egressCidrs ?? []).map((a) => a.trim()).filter(Boolean).map(asCidr);
    if (cidrs.length === 0) throw new StepError(ErrorName.StepFailed, 'no egress address is configured (CTD_EGRESS_ADDRESSES): the bastion cannot be opened');
    return cidrs;
  }

  // ---- bastion ------------------------------------------------------------------------------

  async describeBastion(ctx: CloudContext, bastion: BastionRef): Promise<BastionInfo> {
    const api = await this.apis(ctx.token);
    const server = await this.findServer(api, bastion.server, 'the bastion');
    const metaPort = Number(server.metadata.ssh_port);
    const port = bastion.port ?? (Number.isInteger(metaPort) && metaPort > 0 && metaPort < 65536 ? metaPort : 22);
    const address = floatingAddress(server) ?? (await this.floatingOfDevice(api, server.id)) ?? fixedAddress(server);
    if (!address) throw new StepError(ErrorName.StepFailed, `the bastion server "${bastion.server}" has no address`);
    const hostKey = hostKeyFromConsole(await api.nova.consoleOutput(server.id, 'reading the bastion console'));
    return { address, port, ...(hostKey ? { hostKey } : {}) };
  }

  async openBastionRule(ctx: CloudContext, input: { securityGroup: string; cidr: string; port: number }): Promise<{ ruleId: string }> {
    const api = await this.apis(ctx.token);
    const group = await this.findOwnByRef(api, 'securityGroups', input.securityGroup, "the bastion's security group");
    const cidr = asCidr(input.cidr);
    const wanted = {
      security_group_id: group.id,
      direction: 'ingress',
      ethertype: cidr.includes(':') ? 'IPv6' : 'IPv4',
      protocol: 'tcp',
      port_range_min: input.port,
      port_range_max: input.port,
      remote_ip_prefix: cidr,
      description: marks.bastionRuleDescription(ctx.deploymentId),
    };
    const ruleId = await this.adoptOrCreateRule(ctx, api, wanted, `opening the bastion's port ${input.port} to ${cidr}`);
    // Neutron keeps one rule per (group, port, source): the one found may be the tenant's own rule,
    // which already opens the port. Only an engine-made rule is recorded, so only one is ever deleted.
    const rule = await api.neutron.get('securityGroupRules', ruleId, `reading bastion rule ${ruleId}`);
    if (rule && isBastionRuleMark(rule.description)) await ctx.record({ kind: BASTION_RULE_KIND, id: ruleId, name: 'bastion' });
    return { ruleId };
  }

  /**
   * Every deployment of this engine comes from the same egress addresses, and Neutron keeps one
   * rule per (group, port, source): concurrent deployments share the bastion's rules. So a rule
   * is deleted only when no deployment holds access to the bastion any more — the last one out
   * deletes every engine-made bastion rule, whoever created it. bastion-close revokes its own
   * access first, so of two deployments closing together at least the later one sees none left.
   */
  async closeBastionRules(
    ctx: CloudContext,
    input: { securityGroup: string; server?: string; recorded: readonly CloudResourceRef[] },
  ): Promise<{ deleted: string[]; keptFor: string[] }> {
    const api = await this.apis(ctx.token);
    const ours = marks.accessMetadataKey(ctx.deploymentId);
    const bastion = input.server === undefined ? undefined : await this.findServerOrUndefined(api, input.server);
    const keptFor = Object.keys(bastion?.metadata ?? {})
      .filter((k) => k.startsWith(marks.accessMetadataKey('')) && k !== ours)
      .map((k) => k.slice(marks.accessMetadataKey('').length));
    const deleted: string[] = [];
    const recordedIds = [...new Set(input.recorded.filter((r) => r.kind === BASTION_RULE_KIND).map((r) => r.id))];
    if (keptFor.length === 0) {
      for (const id of recordedIds) {
        const rule = await api.neutron.get('securityGroupRules', id, `reading bastion rule ${id}`);
        if (rule && isBastionRuleMark(rule.description)) {
          await api.neutron.remove('securityGroupRules', id, `deleting bastion rule ${id}`);
          deleted.push(id);
        }
      }
      const group = await this.findByRef(api, 'securityGroups', input.securityGroup, { ownProject: true });
      if (group) {
        const rules = await api.neutron.list('securityGroupRules', { security_group_id: group.id }, "listing the bastion group's rules");
        for (const rule of rules.filter((r) => isBastionRuleMark(r.description) && !deleted.includes(r.id))) {
          await api.neutron.remove('securityGroupRules', rule.id, `deleting bastion rule ${rule.id}`);
          deleted.push(rule.id);
        }
      }
    }
    for (const id of recordedIds) await ctx.forget({ kind: BASTION_RULE_KIND, id, name: 'bastion' });
    return { deleted, keptFor };
  }

  async grantBastionAccess(ctx: CloudContext, input: { server: string; publicKey: string }): Promise<void> {
    const api = await this.apis(ctx.token);
    const server = await this.findServer(api, input.server, 'the bastion');
    await ctx.record({ kind: BASTION_ACCESS_KIND, id: server.id, name: 'bastion' });
    await api.nova.setMetadataItem(server.id, marks.accessMetadataKey(ctx.deploymentId), input.publicKey.trim(), 'publishing the deployment key on the bastion');
  }

  async revokeBastionAccess(ctx: CloudContext, input: { server: string }): Promise<void> {
    const api = await this.apis(ctx.token);
    const server = await this.findServerOrUndefined(api, input.server);
    if (!server) return;
    await api.nova.deleteMetadataItem(server.id, marks.accessMetadataKey(ctx.deploymentId), 'removing the deployment key from the bastion');
    await ctx.forget({ kind: BASTION_ACCESS_KIND, id: server.id, name: 'bastion' });
  }

  // ---- topology -----------------------------------------------------------------------------

  async ensureNetwork(ctx: CloudContext, input: { network: NetworkSpec; index: number; externalNetwork?: string }): Promise<void> {
    const api = await this.apis(ctx.token);
    const { network, index } = input;
    const name = marks.name(ctx.deploymentId, network.name);
    const net = await this.adoptOrCreate(ctx, api, 'networks', 'network', network.name, { name }, { name, admin_state_up: true }, `creating network ${network.name}`);
    const cidr = network.cidr ?? `10.${index}.0.0/24`;
    const subnet = await this.adoptOrCreate(
      ctx,
      api,
      'subnets',
      'subnet',
      network.name,
      { name, network_id: net.id },
      { name, network_id: net.id, cidr, ip_version: 4 },
      `creating subnet ${cidr} of network ${network.name}`,
    );
    const wantsRouter = network.router ?? input.externalNetwork !== undefined;
    if (!wantsRouter || input.externalNetwork === undefined) return;
    const external = await this.findByRef(api, 'networks', input.externalNetwork, { ownProject: false });
    if (!external) throw new StepError(ErrorName.StepFailed, `external network "${input.externalNetwork}" does not exist`);
    const router = await this.adoptOrCreate(
      ctx,
      api,
      'routers',
      'router',
      network.name,
      { name },
      { name, admin_state_up: true, external_gateway_info: { network_id: external.id } },
      `creating the router of network ${network.name}`,
    );
    const attached = await api.neutron.list('ports', { device_id: router.id }, `listing the interfaces of router ${network.name}`);
    if (!attached.some((p) => p.fixed_ips.some((ip) => ip.subnet_id === subnet.id))) {
      await api.neutron.routerInterface('add', router.id, subnet.id, `connecting network ${network.name} to its router`);
    }
  }

  async ensureSecurityGroup(ctx: CloudContext, group: SecurityGroupSpec): Promise<void> {
    const api = await this.apis(ctx.token);
    const name = marks.name(ctx.deploymentId, group.name);
    const tag = marks.tag(ctx.deploymentId);
    const sg = await this.adoptOrCreate(ctx, api, 'securityGroups', 'securityGroup', group.name, { name }, { name, description: tag }, `creating security group ${group.name}`);
    for (const [i, rule] of group.rules.entries()) {
      const protocol = rule.protocol === 'any' ? null : rule.protocol;
      const ported = (protocol === 'tcp' || protocol === 'udp') && rule.port !== undefined;
      const remote = rule.source === undefined ? {} : await this.ruleRemote(api, ctx, rule.source);
      const ethertype = 'remote_ip_prefix' in remote && String(remote.remote_ip_prefix).includes(':') ? 'IPv6' : 'IPv4';
      const wanted = {
        security_group_id: sg.id,
        direction: rule.direction,
        ethertype,
        protocol,
        port_range_min: ported ? rule.port : null,
        port_range_max: ported ? rule.port : null,
        ...remote,
        description: tag,
      };
      const id = await this.adoptOrCreateRule(ctx, api, wanted, `creating rule ${i + 1} of security group ${group.name}`);
      await ctx.record({ kind: 'securityGroupRule', id, name: group.name });
    }
  }

  async ensureSshAccess(ctx: CloudContext, input: { bastionSecurityGroup: string }): Promise<void> {
    const api = await this.apis(ctx.token);
    const bastionGroup = await this.findOwnByRef(api, 'securityGroups', input.bastionSecurityGroup, "the bastion's security group");
    const name = marks.name(ctx.deploymentId, marks.sshGroup);
    const tag = marks.tag(ctx.deploymentId);
    const sg = await this.adoptOrCreate(ctx, api, 'securityGroups', 'securityGroup', marks.sshGroup, { name }, { name, description: tag }, 'creating the SSH access group');
    const wanted = {
      security_group_id: sg.id,
      direction: 'ingress',
      ethertype: 'IPv4',
      protocol: 'tcp',
      port_range_min: 22,
      port_range_max: 22,
      remote_group_id: bastionGroup.id,
      description: tag,
    };
    const id = await this.adoptOrCreateRule(ctx, api, wanted, 'letting the bastion reach the VMs over SSH');
    await ctx.record({ kind: 'securityGroupRule', id, name: marks.sshGroup });
  }

  /** A rule's `source`: a security group of the topology, else a CIDR (or a bare address). */
  private async ruleRemote(api: Apis, ctx: CloudContext, source: string): Promise<Record<string, string>> {
    if (/^[0-9a-f.:]+(\/\d+)?$/i.test(source)) return { remote_ip_prefix: asCidr(source) };
    const group = await this.findMarked(api, ctx, 'securityGroups', source);
    if (!group) throw new StepError(ErrorName.StepFailed, `rule source "${source}" is neither a CIDR nor a security group of the deployment`);
    return { remote_group_id: group.id };
  }

  async ensureVm(ctx: CloudContext, input: { vm: VmSpec; userData: string; externalNetwork?: string }): Promise<VmInfo> {
    const api = await this.apis(ctx.token);
    const { vm } = input;
    const name = marks.name(ctx.deploymentId, vm.name);
    const network = await this.findMarked(api, ctx, 'networks', vm.network);
    if (!network) throw new StepError(ErrorName.StepFailed, `network ${vm.network} of VM ${vm.name} does not exist (provision the whole topology first)`);
    const groupIds: string[] = [];
    for (const g of vm.securityGroups) {
      const group = await this.findMarked(api, ctx, 'securityGroups', g);
      if (!group) throw new StepError(ErrorName.StepFailed, `security group ${g} of VM ${vm.name} does not exist (provision the whole topology first)`);
      groupIds.push(group.id);
    }
    const ssh = await this.findMarked(api, ctx, 'securityGroups', marks.sshGroup);
    if (ssh) groupIds.push(ssh.id);
    const port = await this.adoptOrCreate(
      ctx,
      api,
      'ports',
      'port',
      vm.name,
      { name, network_id: network.id },
      { name, network_id: network.id, security_groups: groupIds, admin_state_up: true },
      `creating the port of VM ${vm.name}`,
    );

    let server = (await this.findMarkedServers(api, ctx, vm.name))[0];
    if (server && server.status === 'ERROR') {
      // What an earlier attempt left in ERROR cannot become ACTIVE: replace it.
      await this.deleteServerAndWait(api, server.id, vm.name);
      server = undefined;
    }
    let serverId = server?.id;
    if (!serverId) {
      const imageRef = await api.glance.findImage(vm.image, `finding image "${vm.image}" for VM ${vm.name}`);
      const flavorRef = await api.nova.findFlavor(vm.flavor, `finding flavor "${vm.flavor}" for VM ${vm.name}`);
      serverId = await api.nova.createServer(
        {
          name,
          imageRef,
          flavorRef,
          networks: [{ port: port.id }],
          user_data: Buffer.from(input.userData, 'utf8').toString('base64'),
          metadata: { [marks.serverMetadataKey]: ctx.deploymentId },
        },
        `creating server ${vm.name}`,
      );
    }
    await ctx.record({ kind: 'server', id: serverId, name: vm.name });
    const active = await this.waitActive(api, serverId, vm.name);

    let floatingIp: string | undefined;
    if (vm.floatingIp) {
      if (input.externalNetwork === undefined) throw new StepError(ErrorName.StepFailed, `VM ${vm.name} asks for a floating IP but the topology has no externalNetwork`);
      floatingIp = await this.ensureFloatingIp(ctx, api, vm.name, port.id, input.externalNetwork);
    }
    const address = port.fixed_ips[0]?.ip_address ?? fixedAddress(active);
    if (!address) throw new StepError(ErrorName.ProvisioningError, `VM ${vm.name} has no fixed address on network ${vm.network}`);
    const hostKey = hostKeyFromConsole(await api.nova.consoleOutput(serverId, `reading the console of ${vm.name}`));
    return { name: vm.name, id: serverId, address, port: 22, status: 'active', ...(hostKey ? { hostKey } : {}), ...(floatingIp ? { floatingIp } : {}) };
  }

  private async ensureFloatingIp(ctx: CloudContext, api: Apis, vmName: string, portId: string, externalNetwork: string): Promise<string> {
    const what = `creating the floating IP of VM ${vmName}`;
    const existing = (await api.neutron.list('floatingIps', { port_id: portId }, what))[0];
    let fip = existing;
    if (!fip) {
      const external = await this.findByRef(api, 'networks', externalNetwork, { ownProject: false });
      if (!external) throw new StepError(ErrorName.StepFailed, `external network "${externalNetwork}" does not exist`);
      fip = (await api.neutron.create('floatingIps', { floating_network_id: external.id, port_id: portId, description: marks.tag(ctx.deploymentId) }, what)).item!;
    }
    await ctx.record({ kind: 'floatingIp', id: fip.id, name: vmName });
    await api.neutron.tag('floatingIps', fip.id, marks.tag(ctx.deploymentId), `tagging the floating IP of VM ${vmName}`);
    return fip.floating_ip_address;
  }

  /** Polls until ACTIVE; ERROR fails at once with Nova's fault; the wait is bounded. */
  private async waitActive(api: Apis, serverId: string, vmName: string): Promise<Server> {
    const deadline = Date.now() + this.activeTimeoutMs;
    for (;;) {
      const server = await api.nova.getServer(serverId, `waiting for server ${vmName}`);
      if (!server) throw new StepError(ErrorName.ProvisioningError, `server ${vmName} disappeared while it was being created`);
      if (server.status === 'ACTIVE') return server;
      if (server.status === 'ERROR') {
        const fault = server.fault?.message.trim() ? `: ${server.fault.message.trim()}` : ' (Nova gave no fault message)';
        throw new StepError(ErrorName.ProvisioningError, `server ${vmName} went to ERROR${fault}`);
      }
      if (Date.now() >= deadline) {
        throw new StepError(ErrorName.ProvisioningError, `server ${vmName} is still ${server.status} ${Math.round(this.activeTimeoutMs / 1000)} s after its creation`);
      }
      await this.sleep(this.pollMs);
    }
  }

  async describeVms(ctx: CloudContext, names?: readonly string[]): Promise<VmInfo[]> {
    const api = await this.apis(ctx.token);
    const servers = await api.nova.listServers(marks.serverNameFilter(ctx.deploymentId), 'listing the servers of the deployment');
    const out: VmInfo[] = [];
    for (const server of servers) {
      const name = this.ownServerName(ctx, server);
      if (name === undefined || (names && !names.includes(name))) continue;
      let address = fixedAddress(server);
      if (!address) {
        const ports = await api.neutron.list('ports', { device_id: server.id }, `finding the address of ${name}`);
        address = ports[0]?.fixed_ips[0]?.ip_address;
      }
      const status = server.status === 'ACTIVE' ? 'active' : server.status === 'ERROR' ? 'error' : 'building';
      const hostKey = status === 'active' ? hostKeyFromConsole(await api.nova.consoleOutput(server.id, `reading the console of ${name}`)) : undefined;
      const floatingIp = floatingAddress(server);
      out.push({ name, id: server.id, address: address ?? '', port: 22, status, ...(hostKey ? { hostKey } : {}), ...(floatingIp ? { floatingIp } : {}) });
    }
    return out;
  }

  // ---- deletion -----------------------------------------------------------------------------

  async deleteVm(ctx: CloudContext, name: string, recorded: readonly CloudResourceRef[]): Promise<void> {
    const api = await this.apis(ctx.token);
    const refs = recorded.filter((r) => r.name === name && VM_KINDS.includes(r.kind));
    for (const server of await this.findMarkedServers(api, ctx, name)) refs.push({ kind: 'server', id: server.id, name });
    const port = await this.findMarked(api, ctx, 'ports', name);
    if (port) {
      refs.push({ kind: 'port', id: port.id, name });
      for (const fip of await api.neutron.list('floatingIps', { port_id: port.id }, `finding the floating IP of ${name}`)) {
        refs.push({ kind: 'floatingIp', id: fip.id, name });
      }
    }
    await this.deleteResources(ctx, refs);
  }

  async deleteResources(ctx: CloudContext, refs: readonly CloudResourceRef[]): Promise<CloudResourceRef[]> {
    const api = await this.apis(ctx.token);
    const unique = new Map<string, { ref: CloudResourceRef; order: number }>();
    refs.forEach((ref, order) => {
      if (deletionRank(ref.kind) >= 0 && !unique.has(`${ref.kind}#${ref.id}`)) unique.set(`${ref.kind}#${ref.id}`, { ref, order });
    });
    // Reverse creation order: by kind, and within a kind the last created first.
    const ordered = [...unique.values()].sort((a, b) => deletionRank(a.ref.kind) - deletionRank(b.ref.kind) || b.order - a.order).map((e) => e.ref);
    for (const ref of ordered) {
      await this.deleteOne(api, ref);
      await ctx.forget(ref);
    }
    return ordered;
  }

  private async deleteOne(api: Apis, ref: CloudResourceRef): Promise<void> {
    const kind = ref.kind as ResourceKind;
    const label = `${kind} ${ref.name} (${ref.id})`;
    switch (kind) {
      case 'server':
        await this.deleteServerAndWait(api, ref.id, ref.name);
        return;
      case 'router': {
        const ports = await api.neutron.list('ports', { device_id: ref.id }, `listing the interfaces of ${label}`);
        // Every interface on a subnet (HA routers name theirs network:ha_router_replicated_interface), not the gateway or HA ports.
        const interfaces = ports.filter((p) => !['network:router_gateway', 'network:router_ha_interface'].includes(p.device_owner));
        for (const port of interfaces) {
          for (const ip of port.fixed_ips) {
            if (ip.subnet_id) await api.neutron.routerInterface('remove', ref.id, ip.subnet_id, `disconnecting ${label} from its subnet`);
          }
        }
        await api.neutron.remove('routers', ref.id, `deleting ${label}`);
        return;
      }
      default:
        await api.neutron.remove(COLLECTION_OF[kind], ref.id, `deleting ${label}`);
    }
  }

  private async deleteServerAndWait(api: Apis, id: string, name: string): Promise<void> {
    if (!(await api.nova.deleteServer(id, `deleting server ${name}`))) return;
    // Its port and network can go only once Nova has let go of them.
    const deadline = Date.now() + this.deleteTimeoutMs;
    for (;;) {
      const server = await api.nova.getServer(id, `waiting for server ${name} to be deleted`);
      if (!server || server.status === 'DELETED') return;
      if (Date.now() >= deadline) {
        const fault = server.fault?.message ? `: ${server.fault.message}` : '';
        throw new StepError(ErrorName.ProvisioningError, `server ${name} is still ${server.status} ${Math.round(this.deleteTimeoutMs / 1000)} s after its deletion${fault}`);
      }
      await this.sleep(this.pollMs);
    }
  }

  /**
   * The recorded resources plus everything marked with the deployment (names, tags, descriptions,
   * server metadata), deleted together so the reverse order holds across both.
   */
  async sweep(ctx: CloudContext, recorded: readonly CloudResourceRef[] = []): Promise<CloudResourceRef[]> {
    const api = await this.apis(ctx.token);
    const found: CloudResourceRef[] = [...recorded];
    const tag = marks.tag(ctx.deploymentId);
    const add = (kind: ResourceKind, id: string, markedName: string) =>
      found.push({ kind, id, name: marks.topologyName(ctx.deploymentId, markedName) ?? markedName });

    for (const [kind, c] of [['network', 'networks'], ['subnet', 'subnets'], ['router', 'routers'], ['securityGroup', 'securityGroups'], ['port', 'ports']] as const) {
      const items = await api.neutron.list(c, {}, `finding the ${c} of deployment ${ctx.deploymentId}`);
      for (const item of items) {
        if (!this.inProject(api, item)) continue;
        if (item.tags.includes(tag) || marks.topologyName(ctx.deploymentId, item.name) !== undefined) add(kind, item.id, item.name);
      }
    }
    const ourPorts = new Set(found.filter((r) => r.kind === 'port').map((r) => r.id));
    for (const fip of await api.neutron.list('floatingIps', {}, `finding the floating IPs of deployment ${ctx.deploymentId}`)) {
      if (!this.inProject(api, fip)) continue;
      if (fip.tags.includes(tag) || fip.description === tag || (fip.port_id && ourPorts.has(fip.port_id))) add('floatingIp', fip.id, fip.description ?? '');
    }
    for (const server of await api.nova.listServers(marks.serverNameFilter(ctx.deploymentId), 'finding the servers of the deployment')) {
      if (this.ownServerName(ctx, server) !== undefined) add('server', server.id, server.name);
    }
    return this.deleteResources(ctx, found);
  }

  // ---- lookups and adoption -----------------------------------------------------------------

  /** Neutron lists what the token may see (an admin sees every project): keep the token's own. */
  private inProject(api: Apis, item: { project_id?: string | null | undefined }): boolean {
    return !item.project_id || item.project_id === api.session.projectId;
  }

  /** The topology name of one of the deployment's servers, or undefined for anybody else's. */
  private ownServerName(ctx: CloudContext, server: Server): string | undefined {
    const mark = server.metadata[marks.serverMetadataKey];
    if (mark !== undefined && mark !== ctx.deploymentId) return undefined;
    return marks.topologyName(ctx.deploymentId, server.name);
  }

  private async findMarkedServers(api: Apis, ctx: CloudContext, vmName: string): Promise<Server[]> {
    const name = marks.name(ctx.deploymentId, vmName);
    const servers = await api.nova.listServers(`^${name}$`, `looking for server ${vmName}`);
    return servers.filter((s) => s.name === name && this.ownServerName(ctx, s) !== undefined);
  }

  private async findMarked<C extends Collection>(api: Apis, ctx: CloudContext, c: C, topologyName: string) {
    const name = marks.name(ctx.deploymentId, topologyName);
    const items = await api.neutron.list(c, { name }, `looking for ${topologyName}`);
    return items.find((i) => (i as { name: string }).name === name && this.inProject(api, i));
  }

  /** A user-named resource: by id, else by exact name (ambiguous names are refused). */
  private async findByRef<C extends Collection>(api: Apis, c: C, ref: string, opts: { ownProject: boolean }) {
    const byId = await api.neutron.get(c, ref, `looking up ${ref}`);
    if (byId) return byId;
    const named = (await api.neutron.list(c, { name: ref }, `looking up ${ref}`)).filter(
      (i) => (i as { name: string }).name === ref && (!opts.ownProject || this.inProject(api, i)),
    );
    if (named.length > 1) throw new StepError(ErrorName.StepFailed, `the name "${ref}" is ambiguous (${named.length} matches); use its id`);
    return named[0];
  }

  private async findOwnByRef<C extends Collection>(api: Apis, c: C, ref: string, what: string) {
    const found = await this.findByRef(api, c, ref, { ownProject: true });
    if (!found) throw new StepError(ErrorName.StepFailed, `${what} "${ref}" does not exist in this project`);
    return found;
  }

  private async findServerOrUndefined(api: Apis, ref: string): Promise<Server | undefined> {
    const byId = await api.nova.getServer(ref, `looking up server ${ref}`);
    if (byId) return byId;
    const named = (await api.nova.listServers(`^${escapeRegex(ref)}$`, `looking up server ${ref}`)).filter((s) => s.name === ref);
    if (named.length > 1) throw new StepError(ErrorName.StepFailed, `the server name "${ref}" is ambiguous (${named.length} servers); use its id`);
    return named[0];
  }

  private async findServer(api: Apis, ref: string, what: string): Promise<Server> {
    const server = await this.findServerOrUndefined(api, ref);
    if (!server) throw new StepError(ErrorName.StepFailed, `${what} server "${ref}" does not exist in this project`);
    return server;
  }

  private async floatingOfDevice(api: Apis, deviceId: string): Promise<string | undefined> {
    const ports: Port[] = await api.neutron.list('ports', { device_id: deviceId }, "finding the bastion's ports");
    for (const port of ports) {
      const fip = (await api.neutron.list('floatingIps', { port_id: port.id }, "finding the bastion's floating IP"))[0];
      if (fip) return fip.floating_ip_address;
    }
    return undefined;
  }

  /**
   * Finds the resource by its marked name (what an earlier attempt, or a POST that answered 502
   * after creating it, left), else creates it; records it before tagging it.
   */
  private async adoptOrCreate<C extends Collection>(
    ctx: CloudContext,
    api: Apis,
    c: C,
    kind: ResourceKind,
    topologyName: string,
    filters: Record<string, string>,
    attributes: Record<string, unknown>,
    what: string,
  ) {
    const existing = (await api.neutron.list(c, filters, what)).find((i) => this.inProject(api, i));
    const item = existing ?? (await api.neutron.create(c, attributes, what)).item!;
    await ctx.record({ kind, id: item.id, name: topologyName });
    await api.neutron.tag(c, item.id, marks.tag(ctx.deploymentId), `tagging ${kind} ${topologyName}`);
    return item;
  }

  /**
   * A rule with these attributes on the group: the existing one, else a new one. Neutron refuses a
   * duplicate with 409 SecurityGroupRuleExists naming the existing rule's id: that one is adopted.
   */
  private async adoptOrCreateRule(ctx: CloudContext, api: Apis, wanted: Record<string, unknown> & { security_group_id: string }, what: string): Promise<string> {
    const rules = await api.neutron.list('securityGroupRules', { security_group_id: wanted.security_group_id }, what);
    const same = rules.find((r) => sameRule(r, wanted));
    if (same) return same.id;
    const created = await api.neutron.create('securityGroupRules', wanted, what, [409]);
    if (created.item) return created.item.id;
    const adopted = RULE_ID_IN_MESSAGE.exec(created.text)?.[1];
    if (adopted) return adopted;
    throw errorForStatus(created.status, created.text, what, ctx.token);
  }
}

const COLLECTION_OF: Record<Exclude<ResourceKind, 'server' | 'router'>, Collection> = {
  network: 'networks',
  subnet: 'subnets',
  securityGroup: 'securityGroups',
  securityGroupRule: 'securityGroupRules',
  port: 'ports',
  floatingIp: 'floatingIps',
};

function sameRule(rule: SecurityGroupRule, wanted: Record<string, unknown>): boolean {
  const prefix = (v: unknown) => (v === null || v === undefined ? null : String(v));
  const norm = (v: unknown) => (v === undefined ? null : v);
  return (
    rule.direction === wanted.direction &&
    rule.ethertype === (wanted.ethertype ?? 'IPv4') &&
    norm(rule.protocol) === norm(wanted.protocol) &&
    norm(rule.port_range_min) === norm(wanted.port_range_min) &&
    norm(rule.port_range_max) === norm(wanted.port_range_max) &&
    prefix(rule.remote_ip_prefix) === prefix(wanted.remote_ip_prefix) &&
    prefix(rule.remote_group_id) === prefix(wanted.remote_group_id)
  );
}

function fixedAddress(server: Server): string | undefined {
  const all = Object.values(server.addresses).flat();
  return (all.find((a) => a['OS-EXT-IPS:type'] === 'fixed' && a.version !== 6) ?? all.find((a) => a['OS-EXT-IPS:type'] !== 'floating'))?.addr;
}

function floatingAddress(server: Server): string | undefined {
  return Object.values(server.addresses)
    .flat()
    .find((a) => a['OS-EXT-IPS:type'] === 'floating')?.addr;
}

function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** A bastion rule this engine made, for any deployment (`ctd:<deploymentId>:bastion`). */
function isBastionRuleMark(description: string | null | undefined): boolean {
  return description !== null && description !== undefined && description.startsWith('ctd:') && description.endsWith(':bastion');
}
