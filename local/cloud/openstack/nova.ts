import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { CloudCore } from './cloud.ts';
import { FLAVORS, IMAGES, type FlavorRecord } from './catalog.ts';
import { member, novaError, now, projectOf, reply, type OsRequest, type OsReply, type Route } from './http.ts';
import type { ServerRecord } from './state.ts';

export const MIN_VERSION = '2.1';
export const MAX_VERSION = '2.90';
/** Nova refuses user data longer than this once base64-encoded. */
export const MAX_USER_DATA = 65535;

const minor = (v: string): number => Number(v.split('.')[1]);

/** The requested compute microversion (`OpenStack-API-Version: compute 2.x`, or the legacy header); 2.1 by default. */
export function microversion(req: OsRequest): string {
  const header = (name: string) => {
    const v = req.headers[name];
    return (Array.isArray(v) ? v[0] : v)?.trim();
  };
  let wanted = header('openstack-api-version')?.replace(/^compute\s+/i, '') ?? header('x-openstack-nova-api-version') ?? MIN_VERSION;
  if (wanted === 'latest') wanted = MAX_VERSION;
  if (!/^2\.\d+$/.test(wanted) || minor(wanted) < minor(MIN_VERSION) || minor(wanted) > minor(MAX_VERSION)) {
    throw novaError(406, `Version ${wanted} is not supported by the API. Minimum is ${MIN_VERSION} and maximum is ${MAX_VERSION}.`);
  }
  return wanted;
}

export function versionHeaders(version: string): Record<string, string> {
  return {
    'OpenStack-API-Version': `compute ${version}`,
    'X-OpenStack-Nova-API-Version': version,
    Vary: 'OpenStack-API-Version, X-OpenStack-Nova-API-Version',
  };
}

/** The cloud-init style console log: the `SSH HOST KEY KEYS` block carries the VM's real host key. */
export function consoleLog(server: ServerRecord): string {
  const lines = [
    '[    0.000000] Linux version 6.1.0-ctd-local (local cloud)',
    `Cloud-init v. 22.4.2 running 'init' at ${server.created}. Up 1.00 seconds.`,
  ];
  if (server.hostKey) {
    const blob = Buffer.from(server.hostKey.split(' ')[1] ?? '', 'base64');
    const fingerprint = createHash('sha256').update(blob).digest('base64').replace(/=+$/, '');
    lines.push(
      '-----BEGIN SSH HOST KEY FINGERPRINTS-----',
      `256 SHA256:${fingerprint} root@${server.name} (ED25519)`,
      '-----END SSH HOST KEY FINGERPRINTS-----',
      '-----BEGIN SSH HOST KEY KEYS-----',
      `${server.hostKey} root@${server.name}`,
      '-----END SSH HOST KEY KEYS-----',
      `Cloud-init v. 22.4.2 finished at ${server.updated}. Datasource DataSourceOpenStackLocal.  Up 3.00 seconds`,
    );
  }
  return `${lines.join('\n')}\n`;
}

/**
 * Nova v2.1 with microversions up to {@link MAX_VERSION}: servers (create with ports or
 * networks, user data, metadata, security groups by name; 202 + BUILD → ACTIVE/ERROR with
 * `fault`), list with Nova's regex `name` filter, metadata items, `os-getConsoleOutput`,
 * flavors, and empty keypairs.
 */
export function novaRoutes(cloud: CloudCore, baseUrl: string): Route[] {
  const s = () => cloud.state;
  const links = (kind: string, id: string) => [
    { rel: 'self', href: `${baseUrl}/v2.1/${kind}/${id}` },
    { rel: 'bookmark', href: `${baseUrl}/${kind}/${id}` },
  ];
  const flavorView = (f: FlavorRecord) => ({
    id: f.id, name: f.name, ram: f.ram, disk: f.disk, swap: '', vcpus: f.vcpus, 'OS-FLV-EXT-DATA:ephemeral': 0, 'OS-FLV-DISABLED:disabled': false,
    'os-flavor-access:is_public': true, rxtx_factor: 1.0, links: links('flavors', f.id),
  });

  const addresses = (server: ServerRecord) => {
    const out: Record<string, unknown[]> = {};
    for (const portId of server.portIds) {
      const port = s().ports.find((p) => p.id === portId);
      if (!port || server.status === 'BUILD') continue;
      const network = s().networks.find((n) => n.id === port.network_id);
      const list = (out[network?.name ?? port.network_id] ??= []);
      for (const f of port.fixed_ips) list.push({ version: 4, addr: f.ip_address, 'OS-EXT-IPS:type': 'fixed', 'OS-EXT-IPS-MAC:mac_addr': port.mac_address });
      for (const fip of s().floatingIps.filter((f) => f.port_id === port.id)) {
        list.push({ version: 4, addr: fip.floating_ip_address, 'OS-EXT-IPS:type': 'floating', 'OS-EXT-IPS-MAC:mac_addr': port.mac_address });
      }
    }
    return out;
  };

  const view = (server: ServerRecord, version: string) => {
    const flavor = FLAVORS.find((f) => f.id === server.flavorId)!;
    const v = minor(version);
    const state = { BUILD: ['building', 'spawning', 0], ACTIVE: ['active', null, 1], ERROR: ['error', null, 0] }[server.status];
    return {
      id: server.id,
      name: server.name,
      status: server.status,
      tenant_id: server.project_id,
      user_id: cloud.project(server.project_id)?.userId ?? '',
      metadata: server.metadata,
      hostId: server.status === 'ACTIVE' ? createHash('sha224').update(server.project_id).digest('hex') : '',
      image: { id: server.imageId, links: [{ rel: 'bookmark', href: `${baseUrl}/images/${server.imageId}` }] },
      flavor: v >= 47
        ? { original_name: flavor.name, vcpus: flavor.vcpus, ram: flavor.ram, disk: flavor.disk, ephemeral: 0, swap: 0, extra_specs: {} }
        : { id: flavor.id, links: [{ rel: 'bookmark', href: `${baseUrl}/flavors/${flavor.id}` }] },
      created: server.created,
      updated: server.updated,
      addresses: addresses(server),
      accessIPv4: '',
      accessIPv6: '',
      links: links('servers', server.id),
      'OS-DCF:diskConfig': 'MANUAL',
      progress: 0,
      'OS-EXT-AZ:availability_zone': 'nova',
      config_drive: '',
      key_name: null,
      'OS-SRV-USG:launched_at': server.status === 'ACTIVE' ? server.updated.replace(/Z$/, '.000000') : null,
      'OS-SRV-USG:terminated_at': null,
      security_groups: server.securityGroups.map((name) => ({ name })),
      'OS-EXT-STS:task_state': state[1],
      'OS-EXT-STS:vm_state': state[0],
      'OS-EXT-STS:power_state': state[2],
      'os-extended-volumes:volumes_attached': [],
      ...(server.fault ? { fault: server.fault } : {}),
      ...(v >= 9 ? { locked: false } : {}),
      ...(v >= 19 ? { description: null } : {}),
      ...(v >= 26 ? { tags: [] } : {}),
    };
  };

  const find = (req: OsRequest, id: string): ServerRecord => {
    const server = s().servers.find((x) => x.id === id && x.project_id === projectOf(req));
    if (!server) throw novaError(404, `Instance ${id} could not be found.`);
    return server;
  };

  const listed = (req: OsRequest) => {
    const name = req.query.get('name');
    let test = (_n: string) => true;
    if (name !== null) {
      try {
        const re = new RegExp(name);
        test = (n) => re.test(n);
      } catch {
        test = (n) => n.includes(name);
      }
    }
    const status = req.query.get('status')?.toUpperCase();
    return s()
      .servers.filter((x) => x.project_id === projectOf(req) && test(x.name) && (!status || x.status === status))
      .sort((a, b) => b.created.localeCompare(a.created));
  };

  const bad = (message: string) => novaError(400, message);

  const create = async (req: OsRequest, version: string): Promise<OsReply> => {
    const b = member(req.body, 'server', bad);
    const project = projectOf(req);
    const name = typeof b.name === 'string' ? b.name.trim() : '';
    if (!name || name.length > 255) throw bad("Invalid input for field/attribute name. Value: must be a non-empty string of at most 255 characters.");
    if (Number(b.min_count ?? 1) !== 1 || Number(b.max_count ?? 1) !== 1) throw bad('The local cloud creates one server per request (min_count = max_count = 1).');
    const imageRef = String(b.imageRef ?? '').split('/').pop()!;
    if (!IMAGES.some((i) => i.id === imageRef)) throw bad(`Image ${imageRef} could not be found.`);
    const flavorRef = String(b.flavorRef ?? '').split('/').pop()!;
    if (!FLAVORS.some((f) => f.id === flavorRef)) throw bad(`Flavor ${flavorRef} could not be found.`);
    const userData = typeof b.user_data === 'string' ? b.user_data : '';
    if (userData.length > MAX_USER_DATA) {
      throw bad(`User data too large. User data must be no larger than ${MAX_USER_DATA} bytes once base64 encoded. Your data is ${userData.length} bytes`);
    }
    if (userData && !/^[A-Za-z0-9+/]*={0,2}$/.test(userData.replace(/\s+/g, ''))) throw bad('Invalid input for field/attribute user_data. Value: not base64.');
    const metadata: Record<string, string> = {};
    for (const [k, v] of Object.entries((b.metadata ?? {}) as Record<string, unknown>)) {
      if (typeof v !== 'string' || k.length === 0 || k.length > 255 || v.length > 255) throw bad(`Invalid metadata item ${k}: keys and values are strings of 1–255 characters.`);
      metadata[k] = v;
    }
    const groupNames = Array.isArray(b.security_groups) ? b.security_groups.map((g) => String((g as { name?: unknown }).name ?? '')) : ['default'];
    const groupIds = groupNames.map((g) => {
      const group = s().securityGroups.find((x) => x.project_id === project && (x.id === g || x.name === g));
      if (!group) throw bad(`Security group ${g} not found for project ${project}.`);
      return group.id;
    });
    let networks = b.networks;
    if (networks === undefined || networks === 'auto') {
      const candidates = s().networks.filter((n) => n.project_id === project && n.name !== 'bastion-net');
      if (candidates.length !== 1) throw novaError(409, 'Multiple possible networks found, use a Network ID to be more specific.');
      networks = [{ uuid: candidates[0]!.id }];
    }
    if (networks === 'none') networks = [];
    if (!Array.isArray(networks)) throw bad('Invalid input for field/attribute networks.');
    const id = randomUUID();
    const portIds: string[] = [];
    const ports = (networks as Record<string, unknown>[]).map((n) => {
      if (typeof n.port === 'string') {
        const port = s().ports.find((p) => p.id === n.port && p.project_id === project);
        if (!port) throw novaError(404, `Port id ${n.port} could not be found.`);
        if (port.device_id) throw novaError(409, `Port ${port.id} is still in use.`);
        return { port };
      }
      const network = s().networks.find((x) => x.id === n.uuid && (x.project_id === project));
      if (!network) throw bad(`Network ${String(n.uuid)} could not be found.`);
      return { network, fixedIp: typeof n.fixed_ip === 'string' ? n.fixed_ip : undefined };
    });
    for (const p of ports) {
      const port = 'port' in p && p.port ? p.port : cloud.createPort({ project_id: project, network_id: p.network!.id, name: '', security_groups: groupIds, fixedIp: p.fixedIp });
      if (!('port' in p && p.port)) port.autoDelete = true;
      port.device_id = id;
      port.device_owner = 'compute:nova';
      portIds.push(port.id);
    }
    const t = now();
    const server: ServerRecord = {
      id, project_id: project, name, status: 'BUILD', imageId: imageRef, flavorId: flavorRef, userData: userData.replace(/\s+/g, ''), metadata,
      portIds, securityGroups: groupNames, hostKey: '', created: t, updated: t,
    };
    s().servers.push(server);
    await cloud.save();
    cloud.boot(server);
    const body = { server: { id, links: links('servers', id), 'OS-DCF:diskConfig': 'MANUAL', security_groups: groupNames.map((n) => ({ name: n })), adminPass: randomBytes(9).toString('base64url') } };
    return reply(body, 202, { ...versionHeaders(version), Location: `${baseUrl}/v2.1/servers/${id}` });
  };

  const afterMetadata = async (server: ServerRecord, body: unknown, version: string): Promise<OsReply> => {
    server.updated = now();
    if (server.bastion) await cloud.refreshGate(server.project_id);
    await cloud.save();
    return reply(body, 200, versionHeaders(version));
  };

  const metadataItems = (req: OsRequest, key: 'metadata' | 'meta'): Record<string, string> => {
    const items = member(req.body, key, bad);
    for (const [k, v] of Object.entries(items)) {
      if (typeof v !== 'string' || k.length === 0 || k.length > 255 || v.length > 255) throw bad(`Invalid metadata item ${k}: keys and values are strings of 1–255 characters.`);
    }
    return items as Record<string, string>;
  };

  type Handler = (req: OsRequest, params: string[], version: string) => OsReply | Promise<OsReply>;
  const versioned = (method: string, pattern: RegExp, handler: Handler): Route => ({
    method,
    pattern,
    handler: async (req, params) => {
      const version = microversion(req);
      const answer = await handler(req, params, version);
      return { ...answer, headers: { ...versionHeaders(version), ...answer.headers } };
    },
  });

  const versionDoc = {
    id: 'v2.1', status: 'CURRENT', version: MAX_VERSION, min_version: MIN_VERSION, updated: '2013-07-23T11:33:21Z',
    links: [{ rel: 'self', href: `${baseUrl}/v2.1/` }],
    'media-types': [{ base: 'application/json', type: 'application/vnd.openstack.compute+json;version=2.1' }],
  };

  return [
    { method: 'GET', pattern: /^\/?$/, open: true, handler: () => reply({ versions: [versionDoc] }) },
    { method: 'GET', pattern: /^\/v2\.1\/?$/, open: true, handler: () => reply({ version: versionDoc }) },
    versioned('GET', /^\/v2\.1\/flavors$/, () => reply({ flavors: FLAVORS.map((f) => ({ id: f.id, name: f.name, links: links('flavors', f.id) })) })),
    versioned('GET', /^\/v2\.1\/flavors\/detail$/, () => reply({ flavors: FLAVORS.map(flavorView) })),
    versioned('GET', /^\/v2\.1\/flavors\/([^/]+)$/, (_req, [id]) => {
      const flavor = FLAVORS.find((f) => f.id === id);
      if (!flavor) throw novaError(404, `Flavor ${id} could not be found.`);
      return reply({ flavor: flavorView(flavor) });
    }),
    versioned('GET', /^\/v2\.1\/flavors\/([^/]+)\/os-extra_specs$/, () => reply({ extra_specs: {} })),
    versioned('GET', /^\/v2\.1\/os-keypairs$/, () => reply({ keypairs: [] })),
    versioned('GET', /^\/v2\.1\/os-keypairs\/([^/]+)$/, (_req, [name]) => {
      throw novaError(404, `Keypair ${name} not found for user.`);
    }),
    versioned('GET', /^\/v2\.1\/servers$/, (req) => reply({ servers: listed(req).map((x) => ({ id: x.id, name: x.name, links: links('servers', x.id) })) })),
    versioned('GET', /^\/v2\.1\/servers\/detail$/, (req, _p, version) => reply({ servers: listed(req).map((x) => view(x, version)) })),
    versioned('POST', /^\/v2\.1\/servers$/, (req, _p, version) => create(req, version)),
    versioned('GET', /^\/v2\.1\/servers\/([^/]+)$/, (req, [id], version) => reply({ server: view(find(req, id!), version) })),
    versioned('DELETE', /^\/v2\.1\/servers\/([^/]+)$/, async (req, [id]) => {
      const server = find(req, id!);
      if (server.bastion) throw novaError(409, `Cannot delete instance ${server.id}: it is the project's bastion, which the local cloud keeps.`);
      await cloud.deleteServer(server);
      return reply(undefined, 204);
    }),
    versioned('POST', /^\/v2\.1\/servers\/([^/]+)\/action$/, (req, [id]) => {
      const server = find(req, id!);
      if ('os-getConsoleOutput' in req.body) {
        const length = Number((req.body['os-getConsoleOutput'] as { length?: unknown } | null)?.length ?? -1);
        const lines = consoleLog(server).split('\n');
        const output = length > 0 ? lines.slice(-length - 1).join('\n') : lines.join('\n');
        return reply({ output });
      }
      throw bad(`The local cloud does not support the server action ${Object.keys(req.body).join(', ') || '(none)'}.`);
    }),
    versioned('GET', /^\/v2\.1\/servers\/([^/]+)\/metadata$/, (req, [id]) => reply({ metadata: find(req, id!).metadata })),
    versioned('POST', /^\/v2\.1\/servers\/([^/]+)\/metadata$/, (req, [id], version) => {
      const server = find(req, id!);
      Object.assign(server.metadata, metadataItems(req, 'metadata'));
      return afterMetadata(server, { metadata: server.metadata }, version);
    }),
    versioned('PUT', /^\/v2\.1\/servers\/([^/]+)\/metadata$/, (req, [id], version) => {
      const server = find(req, id!);
      server.metadata = { ...metadataItems(req, 'metadata') };
      return afterMetadata(server, { metadata: server.metadata }, version);
    }),
    versioned('GET', /^\/v2\.1\/servers\/([^/]+)\/metadata\/([^/]+)$/, (req, [id, key]) => {
      const value = find(req, id!).metadata[key!];
      if (value === undefined) throw novaError(404, 'Metadata item was not found');
      return reply({ meta: { [key!]: value } });
    }),
    versioned('PUT', /^\/v2\.1\/servers\/([^/]+)\/metadata\/([^/]+)$/, (req, [id, key], version) => {
      const server = find(req, id!);
      const meta = metadataItems(req, 'meta');
      if (Object.keys(meta).length !== 1 || !(key! in meta)) throw bad('Request body and URI mismatch');
      server.metadata[key!] = meta[key!]!;
      return afterMetadata(server, { meta }, version);
    }),
    versioned('DELETE', /^\/v2\.1\/servers\/([^/]+)\/metadata\/([^/]+)$/, async (req, [id, key], version) => {
      const server = find(req, id!);
      if (server.metadata[key!] === undefined) throw novaError(404, 'Metadata item was not found');
      delete server.metadata[key!];
      await afterMetadata(server, undefined, version);
      return reply(undefined, 204);
    }),
    versioned('GET', /^\/v2\.1\/servers\/([^/]+)\/os-security-groups$/, (req, [id]) => {
      const server = find(req, id!);
      const ids = new Set(s().ports.filter((p) => server.portIds.includes(p.id)).flatMap((p) => p.security_groups));
      return reply({ security_groups: s().securityGroups.filter((g) => ids.has(g.id)).map((g) => ({ id: g.id, name: g.name, description: g.description, tenant_id: g.project_id, rules: [] })) });
    }),
  ];
}

