import type { CloudCore } from './cloud.ts';
import { SERVICE_PROJECT } from './cloud.ts';
import { intToIp, parseCidr } from './ipv4.ts';
import type { FloatingIpRecord, NetworkRecord, PortRecord, RouterRecord, RuleRecord, SecurityGroupRecord, SubnetRecord } from './state.ts';

/** Neutron's wire shapes: the stored record plus the fields Neutron derives or always shows. */
export const neutronView = {
  network: (c: CloudCore, n: NetworkRecord) => ({
    ...n,
    tenant_id: n.project_id,
    admin_state_up: true,
    status: 'ACTIVE',
    mtu: 1500,
    subnets: c.state.subnets.filter((s) => s.network_id === n.id).map((s) => s.id),
    availability_zone_hints: [],
    availability_zones: ['nova'],
    ipv4_address_scope: null,
    ipv6_address_scope: null,
    port_security_enabled: true,
    is_default: false,
    revision_number: 1,
  }),
  subnet: (_c: CloudCore, s: SubnetRecord) => {
    const net = parseCidr(s.cidr)!;
    return {
      ...s,
      tenant_id: s.project_id,
      allocation_pools: [{ start: intToIp(net.base + 2), end: intToIp(net.base + net.size - 2) }],
      host_routes: [],
      dns_nameservers: [],
      ipv6_ra_mode: null,
      ipv6_address_mode: null,
      subnetpool_id: null,
      service_types: [],
      revision_number: 0,
    };
  },
  router: (_c: CloudCore, r: RouterRecord) => ({
    ...r,
    tenant_id: r.project_id,
    admin_state_up: true,
    status: 'ACTIVE',
    routes: [],
    distributed: false,
    ha: false,
    availability_zone_hints: [],
    availability_zones: ['nova'],
    revision_number: 1,
  }),
  port: (_c: CloudCore, p: PortRecord) => {
    const { autoDelete: _auto, ...rest } = p;
    return {
      ...rest,
      tenant_id: p.project_id,
      admin_state_up: true,
      status: p.device_id ? 'ACTIVE' : 'DOWN',
      allowed_address_pairs: [],
      extra_dhcp_opts: [],
      'binding:vnic_type': 'normal',
      port_security_enabled: true,
      revision_number: 1,
    };
  },
  rule: (_c: CloudCore, r: RuleRecord) => ({
    ...r,
    tenant_id: r.project_id,
    normalized_cidr: r.remote_ip_prefix,
    remote_address_group_id: null,
    tags: [],
    revision_number: 0,
  }),
  securityGroup: (c: CloudCore, g: SecurityGroupRecord) => ({
    ...g,
    tenant_id: g.project_id,
    stateful: true,
    shared: false,
    security_group_rules: c.state.rules.filter((r) => r.security_group_id === g.id).map((r) => neutronView.rule(c, r)),
    revision_number: 1,
  }),
  floatingIp: (c: CloudCore, f: FloatingIpRecord) => {
    const port = c.state.ports.find((p) => p.id === f.port_id);
    return {
      ...f,
      tenant_id: f.project_id,
      status: f.port_id ? 'ACTIVE' : 'DOWN',
      port_details: port
        ? { name: port.name, network_id: port.network_id, mac_address: port.mac_address, admin_state_up: true, status: 'ACTIVE', device_id: port.device_id, device_owner: port.device_owner }
        : null,
      revision_number: 0,
    };
  },
};

/** Whether a project sees a resource: its own, or the shared external network and its subnet. */
export function visible(projectId: string, r: { project_id: string }): boolean {
  return r.project_id === projectId || r.project_id === SERVICE_PROJECT;
}

const PAGING = new Set(['fields', 'limit', 'marker', 'sort_key', 'sort_dir', 'page_reverse', 'tags', 'tags-any', 'not-tags', 'not-tags-any']);

function same(actual: unknown, wanted: string): boolean {
  if (typeof actual === 'boolean') return String(actual) === wanted.toLowerCase();
  if (actual === null || actual === undefined) return wanted === '' || wanted.toLowerCase() === 'none';
  if (Array.isArray(actual)) return actual.map(String).includes(wanted);
  return String(actual) === wanted;
}

const tagList = (query: URLSearchParams, key: string): string[] => query.getAll(key).flatMap((v) => v.split(',')).filter(Boolean);

/** Neutron's list filters: any attribute by equality (repeat a key for "any of"), plus tags. */
export function matches(query: URLSearchParams, view: Record<string, unknown>): boolean {
  for (const key of new Set(query.keys())) {
    if (PAGING.has(key)) continue;
    const wanted = query.getAll(key);
    if (!wanted.some((w) => same(view[key], w))) return false;
  }
  const tags = Array.isArray(view.tags) ? (view.tags as string[]) : [];
  const all = tagList(query, 'tags');
  const any = tagList(query, 'tags-any');
  const notAll = tagList(query, 'not-tags');
  const notAny = tagList(query, 'not-tags-any');
  if (!all.every((t) => tags.includes(t))) return false;
  if (any.length > 0 && !any.some((t) => tags.includes(t))) return false;
  if (notAll.length > 0 && notAll.every((t) => tags.includes(t))) return false;
  if (notAny.some((t) => tags.includes(t))) return false;
  return true;
}
