import { randomBytes, randomInt } from 'node:crypto';
import { utils } from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OpenStackDriver, TOKEN_REFUSED } from '../../adapters/openstack/index.ts';
import { renderUserData } from '../../core/cloudInit.ts';
import { NetworkSchema, SecurityGroupSchema, VmSchema, type VmSpec } from '../../core/deployment/schema.ts';
import { ERROR_TABLE, ErrorName, StepError } from '../../core/errors.ts';
import type { CloudContext, CloudDriver, CloudResourceRef, VmInfo } from '../../core/ports.ts';
import {
  CloudView,
  loadBed,
  passwordToken,
  requireOpenStackBed,
  revokeToken,
  type Bed,
  type IssuedToken,
  type Json,
} from './helpers/openstackBed.ts';

/**
 * The production OpenStack driver against a real OpenStack: Keystone, Nova (fake virt driver),
 * Neutron and Glance from Debian's packages (scripts/openstack-bed/setup.sh). The driver acts
 * with the demo user's token only; every check looks at the cloud from outside, with the admin's
 * token and plain REST. The fake driver has no data plane, so no SSH into the servers.
 */
const runSuite = await requireOpenStackBed();

const SLOW = { timeout: 300_000 };
const BASTION = { server: 'bastion', securityGroup: 'bastion' };
const USED: string[] = [];

/** A deployment id of this run, unique so parallel runs and leftovers of earlier runs never match. */
function deploymentId(label: string): string {
  const id = `e2e-${label}-${randomBytes(3).toString('hex')}`;
  USED.push(id);
  return id;
}

/**
 * An egress address of its own per test (a documentation address: a Neutron record, no packet).
 * Neutron keeps one rule per (group, direction, protocol, port, remote prefix): two deployments
 * or test runs opening the same bastion from the same address share a single rule.
 */
const egressAddress = (): string => `192.0.2.${randomInt(1, 255)}`;

/** What the store would keep: the driver records every id the moment it exists. */
class Records {
  readonly refs: CloudResourceRef[] = [];
  context(token: string, deploymentId: string): CloudContext {
    return {
      token,
      deploymentId,
      record: async (ref) => {
        if (!this.refs.some((r) => r.kind === ref.kind && r.id === ref.id)) this.refs.push(ref);
      },
      forget: async (ref) => {
        const i = this.refs.findIndex((r) => r.kind === ref.kind && r.id === ref.id);
        if (i >= 0) this.refs.splice(i, 1);
      },
    };
  }
  ids(kind: string): string[] {
    return this.refs.filter((r) => r.kind === kind).map((r) => r.id);
  }
}

const tags = (r: Json): string[] => (r.tags as string[] | undefined) ?? [];
const str = (r: Json, key: string): string => String(r[key] ?? '');

/** Everything of the demo project that carries one deployment's marks, seen by the admin. */
interface Marked {
  networks: Json[];
  subnets: Json[];
  routers: Json[];
  securityGroups: Json[];
  rules: Json[];
  ports: Json[];
  floatingIps: Json[];
  servers: Json[];
}

describe.skipIf(!runSuite)('OpenStackDriver against a real OpenStack (Keystone, Nova, Neutron, Glance)', () => {
  let bed: Bed;
  let admin: CloudView;
  let demo: IssuedToken;
  /** The production driver, used through the port only. */
  let driver: CloudDriver;
  let publicNetId: string;
  let bastionSgId: string;
  let bastionServerId: string;

  beforeAll(async () => {
    bed = await loadBed();
    admin = await CloudView.open(bed.admin);
    demo = await passwordToken(bed.demo);
    driver = new OpenStackDriver({ keystoneUrl: bed.keystoneUrl, egressCidrs: ['127.0.0.1'], pollIntervalMs: 500 });
    const [pub] = await admin.neutron('networks', { name: 'public' });
    const [sg] = await admin.neutron('security-groups', { name: 'bastion', project_id: demo.projectId });
    const [srv] = (await admin.servers(demo.projectId)).filter((s) => s.name === 'bastion');
    if (!pub || !sg || !srv) throw new Error('the bed lacks its fixture (network public, security group and server bastion): re-run scripts/openstack-bed/setup.sh');
    publicNetId = str(pub, 'id');
    bastionSgId = str(sg, 'id');
    bastionServerId = str(srv, 'id');
    // A run that was killed may have left deployments on a bed that stays up between runs.
    await cleanUp(await earlierRuns());
  }, 600_000);

  afterAll(async () => {
    if (driver && demo) await cleanUp(USED);
  }, 600_000);

  /** Deployment ids of this suite's earlier runs that still own something in the demo project. */
  async function earlierRuns(): Promise<string[]> {
    const ids = new Set<string>();
    const pattern = /^ctd[-:](e2e-[a-z]+-[0-9a-f]{6})[-:]/;
    for (const collection of ['networks', 'routers', 'security-groups', 'ports', 'security-group-rules']) {
      for (const r of await admin.neutron(collection, { project_id: demo.projectId })) {
        const m = pattern.exec(str(r, 'name')) ?? pattern.exec(`${str(r, 'description')}:`);
        if (m) ids.add(m[1]!);
      }
    }
    for (const s of await admin.servers(demo.projectId)) {
      const m = pattern.exec(str(s, 'name'));
      if (m) ids.add(m[1]!);
    }
    return [...ids];
  }

  /** Removes what these deployments left: found by its marks, as the engine's sweep would. */
  async function cleanUp(ids: readonly string[]): Promise<void> {
    for (const id of ids) {
      await driver.sweep(new Records().context(demo.token, id)).catch((e: unknown) => console.warn(`sweep ${id}: ${String(e)}`));
      for (const rule of await admin.neutron('security-group-rules', { security_group_id: bastionSgId })) {
        if (str(rule, 'description').startsWith(`ctd:${id}`)) await admin.neutronDelete('security-group-rules', str(rule, 'id'));
      }
      await admin.deleteServerMetadata(bastionServerId, `ctd-access-${id}`).catch(() => undefined);
    }
  }

  const ownedBy = (dep: string) => (r: Json): boolean =>
    tags(r).includes(`ctd:${dep}`) || str(r, 'name').startsWith(`ctd-${dep}-`) || str(r, 'description').startsWith(`ctd:${dep}`);

  async function marked(dep: string): Promise<Marked> {
    const project = { project_id: demo.projectId };
    const mine = ownedBy(dep);
    const networks = (await admin.neutron('networks', project)).filter(mine);
    const netIds = new Set(networks.map((n) => str(n, 'id')));
    const subnets = (await admin.neutron('subnets', project)).filter((s) => mine(s) || netIds.has(str(s, 'network_id')));
    const routers = (await admin.neutron('routers', project)).filter(mine);
    const securityGroups = (await admin.neutron('security-groups', project)).filter(mine);
    const rules = (await admin.neutron('security-group-rules', project)).filter((r) => str(r, 'description').startsWith(`ctd:${dep}`));
    const servers = (await admin.servers(demo.projectId)).filter(
      (s) => str(s, 'name').startsWith(`ctd-${dep}-`) || (s.metadata as Record<string, string> | undefined)?.['ctd-deployment'] === dep,
    );
    const deviceIds = new Set([...routers, ...servers].map((r) => str(r, 'id')));
    const ports = (await admin.neutron('ports', project)).filter((p) => mine(p) || netIds.has(str(p, 'network_id')) || deviceIds.has(str(p, 'device_id')));
    // A router's gateway port belongs to no project: ask for it by its device.
    for (const r of routers) {
      for (const p of await admin.neutron('ports', { device_id: str(r, 'id') })) {
        if (!ports.some((q) => q.id === p.id)) ports.push(p);
      }
    }
    const portIds = new Set(ports.map((p) => str(p, 'id')));
    const floatingIps = (await admin.neutron('floatingips', project)).filter((f) => mine(f) || portIds.has(str(f, 'port_id')));
    return { networks, subnets, routers, securityGroups, rules, ports, floatingIps, servers };
  }

  const describeAll = (m: Marked): string[] =>
    Object.entries(m).flatMap(([kind, list]: [string, Json[]]) => list.map((r) => `${kind} ${str(r, 'id')} ${str(r, 'name') || str(r, 'description')}`));

  /** Ids seen earlier that the cloud still knows. */
  async function stillThere(ids: Map<string, string>): Promise<string[]> {
    const left: string[] = [];
    for (const [id, kind] of ids) {
      const found = kind === 'servers' ? await admin.server(id) : await admin.neutronGet(kind, id);
      if (found) left.push(`${kind} ${id}`);
    }
    return left;
  }
  function remember(m: Marked): Map<string, string> {
    const kinds: Record<keyof Marked, string> = {
      networks: 'networks', subnets: 'subnets', routers: 'routers', securityGroups: 'security-groups',
      rules: 'security-group-rules', ports: 'ports', floatingIps: 'floatingips', servers: 'servers',
    };
    const ids = new Map<string, string>();
    for (const [key, list] of Object.entries(m) as [keyof Marked, Json[]][]) for (const r of list) ids.set(str(r, 'id'), kinds[key]);
    return ids;
  }

  async function expectNothingLeft(dep: string, seen: Map<string, string>): Promise<void> {
    expect(describeAll(await marked(dep))).toEqual([]);
    expect(await stillThere(seen)).toEqual([]);
    expect(Object.keys(await admin.serverMetadata(bastionServerId))).not.toContain(`ctd-access-${dep}`);
    // What the tenant had before is untouched.
    expect(await admin.neutronGet('security-groups', bastionSgId)).toBeDefined();
    expect((await admin.server(bastionServerId))?.status).toBe('ACTIVE');
    expect(await admin.neutronGet('networks', publicNetId)).toBeDefined();
  }

  const publicKey = (): string => utils.generateKeyPairSync('ed25519', { comment: 'ctd-e2e' }).public;

  function vm(input: Record<string, unknown>): VmSpec {
    return VmSchema.parse({ image: 'debian-12', flavor: 'm1.small', ...input });
  }

  /**
   * What the provision action does with a topology (sandbox/actions/provision.ts): networks, then
   * groups, then the engine's SSH group, then the VMs in parallel with their cloud-init user data.
   */
  async function provision(
    ctx: CloudContext,
    t: { networks: Record<string, unknown>[]; securityGroups: Record<string, unknown>[]; vms: VmSpec[]; publicKey: string },
  ): Promise<VmInfo[]> {
    for (const [index, n] of t.networks.entries()) {
      await driver.ensureNetwork(ctx, { network: NetworkSchema.parse(n), index, externalNetwork: 'public' });
    }
    for (const g of t.securityGroups) await driver.ensureSecurityGroup(ctx, SecurityGroupSchema.parse(g));
    await driver.ensureSshAccess(ctx, { bastionSecurityGroup: 'bastion' });
    const settled = await Promise.allSettled(
      t.vms.map((v) => driver.ensureVm(ctx, { vm: v, userData: renderUserData(v, t.publicKey), externalNetwork: 'public' })),
    );
    const failed = settled.find((r) => r.status === 'rejected');
    if (failed) throw failed.reason;
    return settled.map((r) => (r as PromiseFulfilledResult<VmInfo>).value);
  }

  const TWO_NETWORKS = {
    networks: [
      { name: 'front', cidr: '10.61.1.0/24' },
      { name: 'back', cidr: '10.61.2.0/24' },
    ],
    securityGroups: [
      { name: 'web', rules: [{ direction: 'ingress', protocol: 'tcp', port: 8080 }] },
      { name: 'db', rules: [{ direction: 'ingress', protocol: 'tcp', port: 5432, source: '10.61.1.0/24' }] },
    ],
  };

  it('provisions a 2-network topology, opens and closes the bastion, and deprovisions it without a trace', SLOW, async () => {
    const dep = deploymentId('full');
    const records = new Records();
    const ctx = records.context(demo.token, dep);
    const key = publicKey();
    const times: string[] = [];
    let t0 = Date.now();
    const lap = (what: string): void => {
      times.push(`${what} ${((Date.now() - t0) / 1000).toFixed(1)} s`);
      t0 = Date.now();
    };

    // ---- provision
    const webSpec = vm({ name: 'web1', network: 'front', securityGroups: ['web'], floatingIp: true });
    const dbSpec = vm({ name: 'db1', network: 'back', securityGroups: ['db'], userData: { runcmd: ['echo db'] } });
    const vms = await provision(ctx, {
      ...TWO_NETWORKS,
      vms: [webSpec, dbSpec],
      publicKey: key,
    });
    lap('provision');
    expect(vms.map((v) => [v.name, v.status])).toEqual([['web1', 'active'], ['db1', 'active']]);

    const m = await marked(dep);
    const byName = (list: Json[], name: string): Json => {
      const found = list.filter((r) => r.name === `ctd-${dep}-${name}`);
      expect(found, `exactly one ctd-${dep}-${name}`).toHaveLength(1);
      return found[0]!;
    };
    // networks and subnets
    expect(m.networks.map((n) => n.name).sort()).toEqual([`ctd-${dep}-back`, `ctd-${dep}-front`]);
    for (const n of [...m.networks, ...m.subnets, ...m.routers, ...m.securityGroups]) expect(tags(n)).toContain(`ctd:${dep}`);
    const front = byName(m.networks, 'front');
    const back = byName(m.networks, 'back');
    expect(m.subnets.map((s) => [s.network_id, s.cidr]).sort()).toEqual(
      [[front.id, '10.61.1.0/24'], [back.id, '10.61.2.0/24']].sort(),
    );
    for (const s of m.subnets) expect(str(s, 'name')).toMatch(new RegExp(`^ctd-${dep}-`));
    // routers: a gateway on public, an interface on each subnet
    expect(m.routers).toHaveLength(2);
    for (const r of m.routers) expect((r.external_gateway_info as Json | null)?.network_id).toBe(publicNetId);
    const interfaceSubnets = m.ports
      .filter((p) => p.device_owner === 'network:router_interface')
      .flatMap((p) => (p.fixed_ips as { subnet_id: string }[]).map((f) => f.subnet_id));
    expect(interfaceSubnets.sort()).toEqual(m.subnets.map((s) => str(s, 'id')).sort());
    // security groups and their marked rules
    const web = byName(m.securityGroups, 'web');
    const db = byName(m.securityGroups, 'db');
    // the engine's own group: port 22 from the bastion's group, on every VM's port
    const ssh = byName(m.securityGroups, '-ssh');
    expect(m.securityGroups).toHaveLength(3);
    const ruleOf = (g: Json): Json[] => m.rules.filter((r) => r.security_group_id === g.id);
    expect(ruleOf(web).map((r) => [r.direction, r.protocol, r.port_range_min, r.port_range_max, r.description])).toEqual([
      ['ingress', 'tcp', 8080, 8080, `ctd:${dep}`],
    ]);
    expect(ruleOf(db).map((r) => [r.direction, r.protocol, r.port_range_min, r.remote_ip_prefix, r.description])).toEqual([
      ['ingress', 'tcp', 5432, '10.61.1.0/24', `ctd:${dep}`],
    ]);
    expect(ruleOf(ssh).map((r) => [r.direction, r.protocol, r.port_range_min, r.port_range_max, r.remote_group_id, r.description])).toEqual([
      ['ingress', 'tcp', 22, 22, bastionSgId, `ctd:${dep}`],
    ]);
    // ports: one per VM, on its network, in its groups, tagged
    const web1Port = byName(m.ports, 'web1');
    const db1Port = byName(m.ports, 'db1');
    const groupsOf = (p: Json): string[] => [...(p.security_groups as string[])].sort();
    expect([web1Port.network_id, groupsOf(web1Port)]).toEqual([front.id, [str(web, 'id'), str(ssh, 'id')].sort()]);
    expect([db1Port.network_id, groupsOf(db1Port)]).toEqual([back.id, [str(db, 'id'), str(ssh, 'id')].sort()]);
    for (const p of [web1Port, db1Port]) expect(tags(p)).toContain(`ctd:${dep}`);
    // servers: ACTIVE, on their port, marked, with the user data as given
    const web1 = byName(m.servers, 'web1');
    const db1 = byName(m.servers, 'db1');
    expect(m.servers).toHaveLength(2);
    for (const [server, port, spec] of [[web1, web1Port, webSpec], [db1, db1Port, dbSpec]] as const) {
      expect(server.status).toBe('ACTIVE');
      expect((server.metadata as Record<string, string>)['ctd-deployment']).toBe(dep);
      expect(port.device_id).toBe(server.id);
      const detail = await admin.server(str(server, 'id'), 'compute 2.3');
      expect(Buffer.from(str(detail!, 'OS-EXT-SRV-ATTR:user_data'), 'base64').toString()).toBe(renderUserData(spec, key));
    }
    expect(vms.map((v) => v.id).sort()).toEqual([str(web1, 'id'), str(db1, 'id')].sort());
    // one floating IP, on web1's port, marked
    expect(m.floatingIps).toHaveLength(1);
    const fip = m.floatingIps[0]!;
    expect([fip.port_id, fip.floating_network_id]).toEqual([web1Port.id, publicNetId]);
    expect(tags(fip).includes(`ctd:${dep}`) || fip.description === `ctd:${dep}`).toBe(true);
    expect(vms.find((v) => v.name === 'web1')?.floatingIp).toBe(fip.floating_ip_address);
    expect(vms.find((v) => v.name === 'db1')?.floatingIp).toBeUndefined();
    // the store's records and the cloud agree
    for (const [kind, list] of [
      ['network', m.networks], ['subnet', m.subnets], ['router', m.routers], ['securityGroup', m.securityGroups],
      ['securityGroupRule', m.rules], ['port', [web1Port, db1Port]], ['server', m.servers], ['floatingIp', m.floatingIps],
    ] as const) {
      expect(records.ids(kind).sort(), `recorded ${kind}s`).toEqual(list.map((r) => str(r, 'id')).sort());
    }
    const seen = remember(m);
    lap('checks');

    // ---- bastion-open
    const egress = egressAddress();
    const engine: CloudDriver = new OpenStackDriver({ keystoneUrl: bed.keystoneUrl, egressCidrs: [egress], pollIntervalMs: 500 });
    const cidrs = await engine.egressCidrs(ctx);
    expect(cidrs).toEqual([`${egress}/32`]);
    const ruleIds: string[] = [];
    for (const cidr of cidrs) ruleIds.push((await engine.openBastionRule(ctx, { securityGroup: 'bastion', cidr, port: 22 })).ruleId);
    await engine.grantBastionAccess(ctx, { server: 'bastion', publicKey: key });
    lap('bastion-open');
    const rule = await admin.neutronGet('security-group-rules', ruleIds[0]!);
    expect(rule && [rule.security_group_id, rule.direction, rule.protocol, rule.port_range_min, rule.port_range_max, rule.remote_ip_prefix, rule.description]).toEqual([
      bastionSgId, 'ingress', 'tcp', 22, 22, `${egress}/32`, `ctd:${dep}:bastion`,
    ]);
    expect(records.refs).toContainEqual(expect.objectContaining({ id: ruleIds[0] }));
    expect((await admin.serverMetadata(bastionServerId))[`ctd-access-${dep}`]).toBe(key);
    const [bastionFip] = await admin.neutron('floatingips', { project_id: demo.projectId, description: 'bastion' });
    expect(await engine.describeBastion(ctx, BASTION)).toMatchObject({ address: bastionFip?.floating_ip_address, port: 22 });

    // ---- bastion-close
    const closed = await engine.closeBastionRules(ctx, { securityGroup: 'bastion', recorded: [...records.refs] });
    await engine.revokeBastionAccess(ctx, { server: 'bastion' });
    lap('bastion-close');
    expect(closed.deleted).toEqual(ruleIds);
    expect(await admin.neutronGet('security-group-rules', ruleIds[0]!)).toBeUndefined();
    const bastionRules = await admin.neutron('security-group-rules', { security_group_id: bastionSgId });
    expect(bastionRules.filter((r) => str(r, 'description').startsWith(`ctd:${dep}`))).toEqual([]);
    expect(Object.keys(await admin.serverMetadata(bastionServerId))).not.toContain(`ctd-access-${dep}`);

    // ---- deprovision, from the records
    const deleted = await driver.deleteResources(ctx, [...records.refs]);
    lap('deprovision');
    expect(deleted.map((r) => r.id).sort()).toEqual(
      [...m.networks, ...m.subnets, ...m.routers, ...m.securityGroups, ...m.rules, web1Port, db1Port, ...m.servers, ...m.floatingIps].map((r) => str(r, 'id')).sort(),
    );
    await expectNothingLeft(dep, seen);
    expect(records.refs).toEqual([]);
    console.log(`[openstack-real] ${times.join(', ')}`);
  });

  it("adopts an engine-made bastion rule that already exists (409 SecurityGroupRuleExists) and closes it; the tenant's own identical rule is used but never deleted", SLOW, async () => {
    const tenant = await CloudView.open(bed.demo);
    const engine: CloudDriver = new OpenStackDriver({ keystoneUrl: bed.keystoneUrl, egressCidrs: [egressAddress()] });
    const sameRules = async (cidr: string) =>
      (await admin.neutron('security-group-rules', { security_group_id: bastionSgId }))
        .filter((r) => r.direction === 'ingress' && r.port_range_min === 22 && r.remote_ip_prefix === cidr)
        .map((r) => r.id);
    const made = async (cidr: string, description?: string) => {
      const res = await tenant.neutronPost('security-group-rules', 'security_group_rule', {
        security_group_id: bastionSgId, direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp',
        port_range_min: 22, port_range_max: 22, remote_ip_prefix: cidr, ...(description ? { description } : {}),
      });
      expect(res.status).toBe(201);
      return str(res.body.security_group_rule as Json, 'id');
    };

    // Another deployment of the engine opened the port from the same egress address: shared, and closed by the last one out.
    {
      const records = new Records();
      const ctx = records.context(demo.token, deploymentId('dup'));
      const [cidr] = await engine.egressCidrs(ctx);
      const engineMade = await made(cidr!, `ctd:${deploymentId('earlier')}:bastion`);
      try {
        const { ruleId } = await engine.openBastionRule(ctx, { securityGroup: 'bastion', cidr: cidr!, port: 22 });
        expect(ruleId).toBe(engineMade);
        expect(records.refs).toContainEqual(expect.objectContaining({ kind: 'bastionRule', id: engineMade }));
        expect(await sameRules(cidr!)).toEqual([engineMade]);
        const closed = await engine.closeBastionRules(ctx, { securityGroup: 'bastion', recorded: [...records.refs] });
        expect(closed.deleted).toContain(engineMade);
        expect(await admin.neutronGet('security-group-rules', engineMade)).toBeUndefined();
      } finally {
        await admin.neutronDelete('security-group-rules', engineMade);
      }
    }

    // The tenant made the very same rule by hand: it opens the port already, so it is used, not recorded, and survives close.
    {
      const records = new Records();
      const ctx = records.context(demo.token, deploymentId('own'));
      const [cidr] = await engine.egressCidrs(ctx);
      const byHand = await made(cidr!);
      try {
        const { ruleId } = await engine.openBastionRule(ctx, { securityGroup: 'bastion', cidr: cidr!, port: 22 });
        expect(ruleId).toBe(byHand);
        expect(records.refs.filter((r) => r.kind === 'bastionRule')).toEqual([]);
        await engine.closeBastionRules(ctx, { securityGroup: 'bastion', recorded: [...records.refs] });
        expect(await sameRules(cidr!)).toEqual([byHand]);
      } finally {
        await admin.neutronDelete('security-group-rules', byHand);
      }
    }
  });

  it("fails a server that goes to ERROR with Ctd.ProvisioningError and Nova's fault, and a retry duplicates nothing", SLOW, async () => {
    const dep = deploymentId('err');
    const records = new Records();
    const ctx = records.context(demo.token, dep);
    const topology = {
      networks: [{ name: 'solo', cidr: '10.62.1.0/24' }],
      securityGroups: [{ name: 'app', rules: [{ protocol: 'tcp', port: 80 }] }],
      // the bed's flavor that requires a trait no compute host has: the scheduler finds no host
      vms: [vm({ name: 'doomed', network: 'solo', securityGroups: ['app'], flavor: 'm1.unschedulable' })],
      publicKey: publicKey(),
    };
    const attempt = async (): Promise<StepError> => {
      const err: unknown = await provision(ctx, topology).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(StepError);
      return err as StepError;
    };
    const first = await attempt();
    expect(first.errorName).toBe(ErrorName.ProvisioningError);
    expect(first.message).toMatch(/No valid host was found/);
    expect(first.message).not.toContain(demo.token);
    const afterFirst = await marked(dep);
    expect(afterFirst.servers.map((s) => [s.name, s.status])).toEqual([[`ctd-${dep}-doomed`, 'ERROR']]);

    // The state machine retries a ProvisioningError once: the same provision again.
    expect(ERROR_TABLE.find((p) => p.name === ErrorName.ProvisioningError)?.retry?.maxAttempts).toBe(1);
    const second = await attempt();
    expect(second.errorName).toBe(ErrorName.ProvisioningError);
    expect(second.message).toMatch(/No valid host was found/);
    const afterSecond = await marked(dep);
    const shape = (m: Marked) => ({
      networks: m.networks.map((r) => r.id), subnets: m.subnets.map((r) => r.id), routers: m.routers.map((r) => r.id),
      securityGroups: m.securityGroups.map((r) => r.id), rules: m.rules.map((r) => r.id),
      vmPorts: m.ports.filter((p) => str(p, 'name') === `ctd-${dep}-doomed`).length,
      servers: m.servers.length,
    });
    expect(shape(afterSecond)).toEqual(shape(afterFirst));
    expect(shape(afterSecond)).toMatchObject({ vmPorts: 1, servers: 1 });

    const seen = new Map([...remember(afterFirst), ...remember(afterSecond)]);
    await driver.deleteResources(ctx, [...records.refs]);
    await expectNothingLeft(dep, seen);
  });

  it('refuses an invalid and a revoked token at once with the 401 message, creating nothing', SLOW, async () => {
    const dep = deploymentId('tok');
    const refused = async (token: string): Promise<void> => {
      const fresh: CloudDriver = new OpenStackDriver({ keystoneUrl: bed.keystoneUrl, egressCidrs: ['127.0.0.1'] });
      const err: unknown = await fresh
        .ensureNetwork(new Records().context(token, dep), { network: NetworkSchema.parse({ name: 'n' }), index: 0, externalNetwork: 'public' })
        .then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(StepError);
      expect((err as StepError).message).toContain(TOKEN_REFUSED);
      expect((err as StepError).message).not.toContain(token);
      // not an error the state machine retries
      expect(ERROR_TABLE.find((p) => p.name === (err as StepError).errorName)?.retry).toBeUndefined();
      expect(await fresh.identify(token)).toBeUndefined();
    };

    await refused('gAAAAAB-not-a-token-at-all');

    const issued = await passwordToken(bed.demo);
    expect(await driver.identify(issued.token)).toEqual({ tenantId: issued.projectId });
    await revokeToken(bed.keystoneUrl, issued.token, issued.token);
    await refused(issued.token);

    expect(describeAll(await marked(dep))).toEqual([]);
  });

  it('deprovisions by the marks alone when the records are lost', SLOW, async () => {
    const dep = deploymentId('lost');
    const ctx = new Records().context(demo.token, dep);
    await provision(ctx, {
      ...TWO_NETWORKS,
      vms: [vm({ name: 'app1', network: 'front', securityGroups: ['web'], floatingIp: true }), vm({ name: 'app2', network: 'back', securityGroups: ['db'] })],
      publicKey: publicKey(),
    });
    const before = await marked(dep);
    expect([before.networks.length, before.routers.length, before.servers.length, before.floatingIps.length]).toEqual([2, 2, 2, 1]);

    // A new context with no records: what a deprovision sees after the store lost them.
    const swept = await driver.sweep(new Records().context(demo.token, dep));
    // (the groups' rules go with their groups)
    const created = [...before.networks, ...before.subnets, ...before.routers, ...before.securityGroups, ...before.servers, ...before.floatingIps];
    expect(swept.map((r) => r.id)).toEqual(expect.arrayContaining(created.map((r) => str(r, 'id'))));
    await expectNothingLeft(dep, remember(before));
  });
});
