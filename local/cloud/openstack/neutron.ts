import { randomUUID } from 'node:crypto';
import { PUBLIC_NETWORK_ID, type CloudCore } from './cloud.ts';
import { member, neutronError, now, projectOf, reply, type OsRequest, type Route } from './http.ts';
import { inCidr, isNetworkCidr, parseCidr, intToIp } from './ipv4.ts';
import { matches, neutronView, visible } from './neutronView.ts';
import type { PortRecord } from './state.ts';

const bad = (message: string) => neutronError(400, 'HTTPBadRequest', message);
const str = (v: unknown, fallback = ''): string => (typeof v === 'string' ? v : fallback);
const strOrNull = (v: unknown): string | null => (typeof v === 'string' && v !== '' ? v : null);

function portNumber(v: unknown, field: string): number | null {
  if (v === undefined || v === null || v === '') return null;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw bad(`Invalid value for ${field}: ${String(v)}`);
  return n;
}

/** Every collection that carries Neutron tags (`PUT /v2.0/<collection>/<id>/tags/<tag>`). */
const TAGGABLE = ['networks', 'subnets', 'routers', 'ports', 'security-groups', 'floatingips'] as const;
type Taggable = (typeof TAGGABLE)[number];

const NOT_FOUND: Record<string, [string, string]> = {
  networks: ['NetworkNotFound', 'Network'],
  subnets: ['SubnetNotFound', 'Subnet'],
  routers: ['RouterNotFound', 'Router'],
  ports: ['PortNotFound', 'Port'],
  'security-groups': ['SecurityGroupNotFound', 'Security group'],
  'security-group-rules': ['SecurityGroupRuleNotFound', 'Security group rule'],
  floatingips: ['FloatingIPNotFound', 'Floating IP'],
};

const notFound = (collection: string, id: string) => {
  const [type, what] = NOT_FOUND[collection]!;
  const message = collection.startsWith('security-group') ? `${what} ${id} does not exist` : `${what} ${id} could not be found.`;
  return neutronError(404, type, message);
};

/**
 * Neutron v2.0: networks (and the shared external `public`), subnets with fixed-IP
 * allocation, routers with gateway and interfaces, security groups and rules (409
 * SecurityGroupRuleExists naming the existing rule), ports, floating IPs from the engine's
 * loopback block, tags, and Neutron's list filters.
 */
export function neutronRoutes(cloud: CloudCore, baseUrl: string): Route[] {
  const s = () => cloud.state;
  const stores = {
    networks: { list: () => s().networks, view: neutronView.network, key: 'network' },
    subnets: { list: () => s().subnets, view: neutronView.subnet, key: 'subnet' },
    routers: { list: () => s().routers, view: neutronView.router, key: 'router' },
    ports: { list: () => s().ports, view: neutronView.port, key: 'port' },
    'security-groups': { list: () => s().securityGroups, view: neutronView.securityGroup, key: 'security_group' },
    'security-group-rules': { list: () => s().rules, view: neutronView.rule, key: 'security_group_rule' },
    floatingips: { list: () => s().floatingIps, view: neutronView.floatingIp, key: 'floatingip' },
  } as const;
  type Collection = keyof typeof stores;

  const find = <C extends Collection>(collection: C, req: OsRequest, id: string): ReturnType<(typeof stores)[C]['list']>[number] => {
    const item = (stores[collection].list() as { id: string; project_id: string }[]).find((r) => r.id === id && visible(projectOf(req), r));
    if (!item) throw notFound(collection, id);
    return item as never;
  };
  const own = <C extends Collection>(collection: C, req: OsRequest, id: string) => {
    const item = find(collection, req, id) as { project_id: string };
    if (item.project_id !== projectOf(req)) throw neutronError(403, 'PolicyNotAuthorized', `rule:update_${stores[collection].key} is disallowed by policy`);
    return item as ReturnType<(typeof stores)[C]['list']>[number];
  };
  const show = (collection: Collection, item: unknown) => reply({ [stores[collection].key]: (stores[collection].view as (c: CloudCore, r: never) => unknown)(cloud, item as never) });
  const created = (collection: Collection, item: unknown) => ({ ...show(collection, item), status: 201 });
  const body = (req: OsRequest, collection: Collection) => member(req.body, stores[collection].key, bad);
  const saved = async <T>(value: T): Promise<T> => {
    await cloud.save();
    return value;
  };
  const stamp = (project_id: string, b: Record<string, unknown>) => {
    const t = now();
    return { id: randomUUID(), project_id, name: str(b.name), description: str(b.description), tags: [] as string[], created_at: t, updated_at: t };
  };
  const touch = (r: { updated_at: string }) => {
    r.updated_at = now();
  };

  const routes: Route[] = [
    { method: 'GET', pattern: /^\/?$/, open: true, handler: () => reply({ versions: [{ id: 'v2.0', status: 'CURRENT', links: [{ href: `${baseUrl}/v2.0/`, rel: 'self' }] }] }) },
    {
      method: 'GET',
      pattern: /^\/v2\.0\/?$/,
      handler: () => reply({ resources: Object.entries(stores).map(([c, v]) => ({ name: v.key, collection: c, links: [{ href: `${baseUrl}/v2.0/${c}`, rel: 'self' }] })) }),
    },
    {
      method: 'GET',
      pattern: /^\/v2\.0\/extensions$/,
      handler: () =>
        reply({
          extensions: ['router', 'external-net', 'security-group', 'standard-attr-tag', 'standard-attr-description', 'tag-ext', 'port-security', 'binding', 'quotas'].map((alias) => ({
            alias, name: alias, description: alias, links: [], updated: '2020-01-01T00:00:00-00:00',
          })),
        }),
    },
  ];

  // List and show for every collection.
  for (const collection of Object.keys(stores) as Collection[]) {
    routes.push(
      {
        method: 'GET',
        pattern: new RegExp(`^/v2\\.0/${collection}(?:\\.json)?$`),
        handler: (req) => {
          const view = stores[collection].view as (c: CloudCore, r: never) => Record<string, unknown>;
          const items = (stores[collection].list() as { project_id: string }[])
            .filter((r) => visible(projectOf(req), r))
            .map((r) => view(cloud, r as never))
            .filter((v) => matches(req.query, v));
          return reply({ [collection.replace(/-/g, '_')]: items });
        },
      },
      { method: 'GET', pattern: new RegExp(`^/v2\\.0/${collection}/([^/]+?)(?:\\.json)?$`), handler: (req, [id]) => show(collection, find(collection, req, id!)) },
    );
  }

  // Networks and subnets.
  routes.push(
    {
      method: 'POST',
      pattern: /^\/v2\.0\/networks$/,
      handler: async (req) => {
        const b = body(req, 'networks');
        if (b['router:external'] === true || b.shared === true) throw neutronError(403, 'PolicyNotAuthorized', 'rule:create_network:router:external is disallowed by policy');
        const network = { ...stamp(projectOf(req), b), 'router:external': false, shared: false };
        s().networks.push(network);
        return saved(created('networks', network));
      },
    },
    {
      method: 'PUT',
      pattern: /^\/v2\.0\/networks\/([^/]+)$/,
      handler: async (req, [id]) => {
        const network = own('networks', req, id!);
        const b = body(req, 'networks');
        if (typeof b.name === 'string') network.name = b.name;
        if (typeof b.description === 'string') network.description = b.description;
        touch(network);
        return saved(show('networks', network));
      },
    },
    {
      method: 'DELETE',
      pattern: /^\/v2\.0\/networks\/([^/]+)$/,
      handler: async (req, [id]) => {
        const network = own('networks', req, id!);
        if (s().ports.some((p) => p.network_id === network.id)) {
          throw neutronError(409, 'NetworkInUse', `Unable to complete operation on network ${network.id}. There are one or more ports still in use on the network.`);
        }
        s().subnets = s().subnets.filter((x) => x.network_id !== network.id);
        s().networks = s().networks.filter((x) => x !== network);
        return saved(reply(undefined, 204));
      },
    },
    {
      method: 'POST',
      pattern: /^\/v2\.0\/subnets$/,
      handler: async (req) => {
        const b = body(req, 'subnets');
        const network = find('networks', req, str(b.network_id));
        if (network.project_id !== projectOf(req)) throw neutronError(403, 'PolicyNotAuthorized', 'rule:create_subnet is disallowed by policy');
        if (Number(b.ip_version ?? 4) !== 4) throw bad('Only IPv4 subnets are supported by the local cloud.');
        const cidr = str(b.cidr);
        if (!isNetworkCidr(cidr) || parseCidr(cidr)!.bits > 30) throw bad(`Invalid input for cidr. Reason: '${cidr}' is not a valid IP subnet.`);
        for (const other of s().subnets.filter((x) => x.network_id === network.id)) {
          const o = parseCidr(other.cidr)!;
          const n = parseCidr(cidr)!;
          if (n.base < o.base + o.size && o.base < n.base + n.size) {
            throw bad(`Invalid input for operation: Requested subnet with cidr: ${cidr} for network: ${network.id} overlaps with another subnet.`);
          }
        }
        const gateway = b.gateway_ip === null ? null : (strOrNull(b.gateway_ip) ?? intToIp(parseCidr(cidr)!.base + 1));
        if (gateway && !inCidr(gateway, cidr)) throw bad(`Gateway IP ${gateway} is not in subnet ${cidr}.`);
        const subnet = { ...stamp(projectOf(req), b), network_id: network.id, cidr, gateway_ip: gateway, ip_version: 4 as const, enable_dhcp: b.enable_dhcp !== false };
        s().subnets.push(subnet);
        return saved(created('subnets', subnet));
      },
    },
    {
      method: 'PUT',
      pattern: /^\/v2\.0\/subnets\/([^/]+)$/,
      handler: async (req, [id]) => {
        const subnet = own('subnets', req, id!);
        const b = body(req, 'subnets');
        if (typeof b.name === 'string') subnet.name = b.name;
        if (typeof b.description === 'string') subnet.description = b.description;
        touch(subnet);
        return saved(show('subnets', subnet));
      },
    },
    {
      method: 'DELETE',
      pattern: /^\/v2\.0\/subnets\/([^/]+)$/,
      handler: async (req, [id]) => {
        const subnet = own('subnets', req, id!);
        if (s().ports.some((p) => p.fixed_ips.some((f) => f.subnet_id === subnet.id))) {
          throw neutronError(409, 'SubnetInUse', `Unable to complete operation on subnet ${subnet.id}: One or more ports have an IP allocation from this subnet.`);
        }
        s().subnets = s().subnets.filter((x) => x !== subnet);
        return saved(reply(undefined, 204));
      },
    },
  );

  // Routers.
  const gatewayOf = (req: OsRequest, info: unknown) => {
    if (info === null || info === undefined) return null;
    const networkId = str((info as { network_id?: unknown }).network_id);
    const network = find('networks', req, networkId);
    if (!network['router:external']) throw bad(`Bad router request: Network ${networkId} is not an external network.`);
    return { network_id: network.id, external_fixed_ips: [] };
  };
  const interfaceAnswer = (routerId: string, port: PortRecord) => ({
    id: routerId,
    tenant_id: port.project_id,
    project_id: port.project_id,
    port_id: port.id,
    network_id: port.network_id,
    subnet_id: port.fixed_ips[0]?.subnet_id,
    subnet_ids: port.fixed_ips.map((f) => f.subnet_id),
  });
  routes.push(
    {
      method: 'POST',
      pattern: /^\/v2\.0\/routers$/,
      handler: async (req) => {
        const b = body(req, 'routers');
        const router = { ...stamp(projectOf(req), b), external_gateway_info: gatewayOf(req, b.external_gateway_info) };
        s().routers.push(router);
        return saved(created('routers', router));
      },
    },
    {
      method: 'PUT',
      pattern: /^\/v2\.0\/routers\/([^/]+)$/,
      handler: async (req, [id]) => {
        const router = own('routers', req, id!);
        const b = body(req, 'routers');
        if (typeof b.name === 'string') router.name = b.name;
        if (typeof b.description === 'string') router.description = b.description;
        if ('external_gateway_info' in b) router.external_gateway_info = gatewayOf(req, b.external_gateway_info && Object.keys(b.external_gateway_info).length ? b.external_gateway_info : null);
        touch(router);
        return saved(show('routers', router));
      },
    },
    {
      method: 'DELETE',
      pattern: /^\/v2\.0\/routers\/([^/]+)$/,
      handler: async (req, [id]) => {
        const router = own('routers', req, id!);
        if (s().ports.some((p) => p.device_id === router.id)) throw neutronError(409, 'RouterInUse', `Router ${router.id} still has ports`);
        s().routers = s().routers.filter((x) => x !== router);
        for (const fip of s().floatingIps.filter((f) => f.router_id === router.id)) fip.router_id = null;
        return saved(reply(undefined, 204));
      },
    },
    {
      method: 'PUT',
      pattern: /^\/v2\.0\/routers\/([^/]+)\/add_router_interface$/,
      handler: async (req, [id]) => {
        const router = own('routers', req, id!);
        let port: PortRecord;
        if (typeof req.body.port_id === 'string') {
          port = own('ports', req, req.body.port_id);
          if (port.device_id) throw neutronError(409, 'PortInUse', `Unable to complete operation on port ${port.id} for network ${port.network_id}. Port already has an attached device ${port.device_id}.`);
        } else {
          const subnet = own('subnets', req, str(req.body.subnet_id));
          if (!subnet.gateway_ip) throw bad(`Bad router request: Subnet ${subnet.id} does not have a gateway IP.`);
          if (s().ports.some((p) => p.device_id === router.id && p.fixed_ips.some((f) => f.subnet_id === subnet.id))) {
            throw bad(`Bad router request: Router already has a port on subnet ${subnet.id}.`);
          }
          port = cloud.createPort({ project_id: router.project_id, network_id: subnet.network_id, name: '', security_groups: [], fixedIp: subnet.gateway_ip, subnetId: subnet.id });
        }
        port.device_id = router.id;
        port.device_owner = 'network:router_interface';
        touch(router);
        return saved(reply(interfaceAnswer(router.id, port)));
      },
    },
    {
      method: 'PUT',
      pattern: /^\/v2\.0\/routers\/([^/]+)\/remove_router_interface$/,
      handler: async (req, [id]) => {
        const router = own('routers', req, id!);
        const subnetId = str(req.body.subnet_id);
        const portId = str(req.body.port_id);
        const port = s().ports.find(
          (p) => p.device_id === router.id && (portId ? p.id === portId : p.fixed_ips.some((f) => f.subnet_id === subnetId)),
        );
        if (!port) {
          throw portId
            ? neutronError(404, 'RouterInterfaceNotFound', `Router ${router.id} does not have an interface with id ${portId}`)
            : neutronError(404, 'RouterInterfaceNotFoundForSubnet', `Router ${router.id} has no interface on subnet ${subnetId}`);
        }
        const answer = interfaceAnswer(router.id, port);
        cloud.deletePort(port);
        touch(router);
        return saved(reply(answer));
      },
    },
  );

  // Security groups and rules.
  const refreshAfter = async <T>(projectId: string, value: T): Promise<T> => {
    await cloud.refreshGate(projectId);
    return saved(value);
  };
  routes.push(
    {
      method: 'POST',
      pattern: /^\/v2\.0\/security-groups$/,
      handler: async (req) => {
        const b = body(req, 'security-groups');
        if (str(b.name) === 'default') throw neutronError(409, 'SecurityGroupDefaultAlreadyExists', 'Default security group already exists.');
        const id = cloud.createSecurityGroup(projectOf(req), str(b.name), str(b.description));
        return saved(created('security-groups', s().securityGroups.find((g) => g.id === id)));
      },
    },
    {
      method: 'PUT',
      pattern: /^\/v2\.0\/security-groups\/([^/]+)$/,
      handler: async (req, [id]) => {
        const group = own('security-groups', req, id!);
        const b = body(req, 'security-groups');
        if (typeof b.name === 'string') group.name = b.name;
        if (typeof b.description === 'string') group.description = b.description;
        touch(group);
        return saved(show('security-groups', group));
      },
    },
    {
      method: 'DELETE',
      pattern: /^\/v2\.0\/security-groups\/([^/]+)$/,
      handler: async (req, [id]) => {
        const group = own('security-groups', req, id!);
        if (group.name === 'default') throw neutronError(409, 'SecurityGroupCannotRemoveDefault', 'Insufficient rights for removing default security group.');
        if (s().ports.some((p) => p.security_groups.includes(group.id))) throw neutronError(409, 'SecurityGroupInUse', `Security Group ${group.id} in use.`);
        s().securityGroups = s().securityGroups.filter((g) => g !== group);
        s().rules = s().rules.filter((r) => r.security_group_id !== group.id);
        return saved(reply(undefined, 204));
      },
    },
    {
      method: 'POST',
      pattern: /^\/v2\.0\/security-group-rules$/,
      handler: async (req) => {
        const b = body(req, 'security-group-rules');
        const group = own('security-groups', req, str(b.security_group_id));
        const direction = str(b.direction);
        if (direction !== 'ingress' && direction !== 'egress') throw bad(`Invalid input for direction. Reason: ${direction} is not in valid_values.`);
        const ethertype = str(b.ethertype, 'IPv4');
        if (ethertype !== 'IPv4' && ethertype !== 'IPv6') throw bad(`Invalid input for ethertype. Reason: ${ethertype} is not in valid_values.`);
        const protocol = strOrNull(b.protocol === null || b.protocol === undefined ? null : String(b.protocol))?.toLowerCase() ?? null;
        let min = portNumber(b.port_range_min, 'port_range_min');
        let max = portNumber(b.port_range_max, 'port_range_max');
        if ((min !== null || max !== null) && protocol !== 'tcp' && protocol !== 'udp' && protocol !== '6' && protocol !== '17') {
          throw bad('Port range requires the protocol to be tcp or udp.');
        }
        if (min !== null && max === null) max = min;
        if (max !== null && min === null) min = max;
        if (min !== null && max !== null && min > max) throw neutronError(400, 'SecurityGroupInvalidPortRange', 'For TCP/UDP protocols, port_range_min must be <= port_range_max');
        let prefix = strOrNull(b.remote_ip_prefix);
        if (prefix !== null) {
          if (ethertype === 'IPv6' || !parseCidr(prefix)) throw bad(`Invalid input for remote_ip_prefix. Reason: '${prefix}' is not a valid IPv4 CIDR for ethertype ${ethertype}.`);
          const p = parseCidr(prefix)!;
          prefix = `${intToIp(p.base)}/${p.bits}`;
        }
        const remoteGroup = strOrNull(b.remote_group_id);
        if (remoteGroup !== null) find('security-groups', req, remoteGroup);
        const duplicate = s().rules.find(
          (r) =>
            r.security_group_id === group.id && r.direction === direction && r.ethertype === ethertype && r.protocol === protocol &&
            r.port_range_min === min && r.port_range_max === max && r.remote_ip_prefix === prefix && r.remote_group_id === remoteGroup,
        );
        if (duplicate) throw neutronError(409, 'SecurityGroupRuleExists', `Security group rule already exists. Rule id is ${duplicate.id}.`);
        const rule = cloud.addRule({
          project_id: group.project_id, security_group_id: group.id, direction, ethertype, protocol,
          port_range_min: min, port_range_max: max, remote_ip_prefix: prefix, remote_group_id: remoteGroup, description: str(b.description),
        });
        return refreshAfter(group.project_id, created('security-group-rules', rule));
      },
    },
    {
      method: 'DELETE',
      pattern: /^\/v2\.0\/security-group-rules\/([^/]+)$/,
      handler: async (req, [id]) => {
        const rule = own('security-group-rules', req, id!);
        s().rules = s().rules.filter((r) => r !== rule);
        return refreshAfter(rule.project_id, reply(undefined, 204));
      },
    },
  );

  // Ports and floating IPs.
  const groupIds = (req: OsRequest, value: unknown): string[] => {
    if (!Array.isArray(value)) return s().securityGroups.filter((g) => g.project_id === projectOf(req) && g.name === 'default').map((g) => g.id);
    return value.map((id) => find('security-groups', req, String(id)).id);
  };
  routes.push(
    {
      method: 'POST',
      pattern: /^\/v2\.0\/ports$/,
      handler: async (req) => {
        const b = body(req, 'ports');
        const network = find('networks', req, str(b.network_id));
        if (network.id === PUBLIC_NETWORK_ID) throw neutronError(403, 'PolicyNotAuthorized', 'rule:create_port is disallowed by policy');
        const fixed = Array.isArray(b.fixed_ips) ? (b.fixed_ips[0] as { ip_address?: string; subnet_id?: string } | undefined) : undefined;
        if (fixed?.ip_address && s().ports.some((p) => p.network_id === network.id && p.fixed_ips.some((f) => f.ip_address === fixed.ip_address))) {
          throw neutronError(409, 'IpAddressAlreadyAllocated', `IP address ${fixed.ip_address} already allocated in subnet ${fixed.subnet_id ?? ''}`);
        }
        const port = cloud.createPort({
          project_id: projectOf(req), network_id: network.id, name: str(b.name), description: str(b.description),
          security_groups: groupIds(req, b.security_groups), fixedIp: fixed?.ip_address, subnetId: fixed?.subnet_id,
        });
        return saved(created('ports', port));
      },
    },
    {
      method: 'PUT',
      pattern: /^\/v2\.0\/ports\/([^/]+)$/,
      handler: async (req, [id]) => {
        const port = own('ports', req, id!);
        const b = body(req, 'ports');
        if (typeof b.name === 'string') port.name = b.name;
        if (typeof b.description === 'string') port.description = b.description;
        if ('security_groups' in b) port.security_groups = groupIds(req, b.security_groups ?? []);
        touch(port);
        return refreshAfter(port.project_id, show('ports', port));
      },
    },
    {
      method: 'DELETE',
      pattern: /^\/v2\.0\/ports\/([^/]+)$/,
      handler: async (req, [id]) => {
        const port = own('ports', req, id!);
        if (port.device_owner === 'network:router_interface') {
          throw neutronError(409, 'PortInUse', `Port ${port.id} cannot be deleted directly via the port API: has device owner network:router_interface.`);
        }
        cloud.deletePort(port);
        for (const server of s().servers) server.portIds = server.portIds.filter((p) => p !== port.id);
        return refreshAfter(port.project_id, reply(undefined, 204));
      },
    },
    {
      method: 'POST',
      pattern: /^\/v2\.0\/floatingips$/,
      handler: async (req) => {
        const b = body(req, 'floatingips');
        const networkId = str(b.floating_network_id);
        const network = find('networks', req, networkId);
        if (!network['router:external']) throw bad(`Bad floatingip request: Network ${networkId} is not a valid external network.`);
        const fip = cloud.allocateFloatingIp(projectOf(req), {
          port_id: strOrNull(b.port_id), description: str(b.description), floating_ip_address: strOrNull(b.floating_ip_address) ?? undefined,
        });
        return saved(created('floatingips', fip));
      },
    },
    {
      method: 'PUT',
      pattern: /^\/v2\.0\/floatingips\/([^/]+)$/,
      handler: async (req, [id]) => {
        const fip = own('floatingips', req, id!);
        const b = body(req, 'floatingips');
        if ('port_id' in b) cloud.associate(fip, strOrNull(b.port_id));
        if (typeof b.description === 'string') fip.description = b.description;
        touch(fip);
        return saved(show('floatingips', fip));
      },
    },
    {
      method: 'DELETE',
      pattern: /^\/v2\.0\/floatingips\/([^/]+)$/,
      handler: async (req, [id]) => {
        const fip = own('floatingips', req, id!);
        if (s().servers.some((x) => x.bastion && x.portIds.includes(fip.port_id ?? ''))) {
          throw neutronError(409, 'FloatingIPInUse', `Floating IP ${fip.id} is the bastion's address; the local cloud keeps it.`);
        }
        s().floatingIps = s().floatingIps.filter((f) => f !== fip);
        return saved(reply(undefined, 204));
      },
    },
  );

  // Tags.
  const tagged = (req: OsRequest, collection: string, id: string) => own(collection as Taggable, req, id) as { tags: string[]; updated_at: string };
  const tagPattern = `^/v2\\.0/(${TAGGABLE.join('|')})/([^/]+)/tags`;
  routes.push(
    { method: 'GET', pattern: new RegExp(`${tagPattern}$`), handler: (req, [c, id]) => reply({ tags: tagged(req, c!, id!).tags }) },
    {
      method: 'PUT',
      pattern: new RegExp(`${tagPattern}$`),
      handler: async (req, [c, id]) => {
        const item = tagged(req, c!, id!);
        if (!Array.isArray(req.body.tags)) throw bad('Invalid tags body: "tags" must be a list.');
        item.tags = [...new Set(req.body.tags.map(String))];
        touch(item);
        return saved(reply({ tags: item.tags }));
      },
    },
    {
      method: 'DELETE',
      pattern: new RegExp(`${tagPattern}$`),
      handler: async (req, [c, id]) => {
        tagged(req, c!, id!).tags = [];
        return saved(reply(undefined, 204));
      },
    },
    {
      method: 'GET',
      pattern: new RegExp(`${tagPattern}/([^/]+)$`),
      handler: (req, [c, id, tag]) => {
        if (!tagged(req, c!, id!).tags.includes(tag!)) throw neutronError(404, 'TagNotFound', `Tag ${tag} could not be found for ${c} ${id}.`);
        return reply(undefined, 204);
      },
    },
    {
      method: 'PUT',
      pattern: new RegExp(`${tagPattern}/([^/]+)$`),
      handler: async (req, [c, id, tag]) => {
        if (tag!.length > 255 || tag!.includes(',')) throw bad(`Invalid tag: ${tag}`);
        const item = tagged(req, c!, id!);
        if (!item.tags.includes(tag!)) item.tags.push(tag!);
        touch(item);
        return saved(reply(undefined, 201));
      },
    },
    {
      method: 'DELETE',
      pattern: new RegExp(`${tagPattern}/([^/]+)$`),
      handler: async (req, [c, id, tag]) => {
        const item = tagged(req, c!, id!);
        if (!item.tags.includes(tag!)) throw neutronError(404, 'TagNotFound', `Tag ${tag} could not be found for ${c} ${id}.`);
        item.tags = item.tags.filter((t) => t !== tag);
        return saved(reply(undefined, 204));
      },
    },
  );
  return routes;
}
