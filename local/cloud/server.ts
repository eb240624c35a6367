import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Hypervisor } from '../cloud-backend.ts';
import { BodyTooLargeError, closeServer, listen, readBody } from '../services/httpUtil.ts';
import { FaultInjector, type FaultSpec } from './faults.ts';
import { CloudCore } from './openstack/cloud.ts';
import { glanceRoutes } from './openstack/glance.ts';
import { keystoneError, OsError, type OsReply, type OsRequest, type Route } from './openstack/http.ts';
import { keystoneRoutes, type ServiceUrls } from './openstack/keystone.ts';
import { neutronRoutes } from './openstack/neutron.ts';
import { novaRoutes } from './openstack/nova.ts';
import { openrcEnv } from './openstack/openrc.ts';

export interface LocalCloudOptions {
  stateDir: string;
  hypervisor: Hypervisor;
  /** The external network's CIDR: floating IPs (bastions included) come from it. Locally a block of loopback addresses of this engine's own. */
  floatingCidr: string;
  /** Loopback only; default 127.0.0.1. */
  host?: string;
  /** Default 0 (a free port). */
  port?: number;
  /** Accept `POST /_admin/faults` (tests only). Default false. */
  faultInjection?: boolean;
}

export interface LocalCloud {
  /** The base URL; the services live below it (see {@link serviceUrls}). */
  url: string;
  /** Keystone v3: what the engine gets as `CTD_KEYSTONE_URL` and the openrc as `OS_AUTH_URL`. */
  keystoneUrl: string;
  /** A Keystone token scoped to the tenant's project (created with its bastion on first use). */
  mintToken(tenantId: string): Promise<string>;
  /** The OpenStack RC of a tenant, with a fresh password for its user. */
  openrc(tenantId: string): Promise<Record<string, string>>;
  /**
   * Closes a deployment's bastion access without its (deleted) token: the engine owns the local
   * cloud, so after a crash it removes the `ctd:<deploymentId>:bastion` rules and the
   * `ctd-access-<deploymentId>` item of the tenant's bastion itself.
   */
  closeBastionAccess(tenantId: string, deploymentId: string): Promise<void>;
  /** The tenant's bastion (created with its project on first use): floating IP, SSH port, host key. */
  bastionOf(tenantId: string): Promise<{ address: string; port: number; hostKey: string }>;
  /** The address a bastion sees the engine's sandboxes come from (`CTD_EGRESS_ADDRESSES`). */
  egressAddress(): Promise<string>;
  readonly hypervisor: Hypervisor;
  /** Stops the API and the hypervisor (every SSH server and VM process). */
  close(): Promise<void>;
}

/** The URL layout of the local cloud below its base URL. */
export function serviceUrls(base: string): ServiceUrls {
  return { identity: `${base}/identity/v3`, compute: `${base}/compute/v2.1`, network: `${base}/network`, image: `${base}/image` };
}

const MAX_BODY_BYTES = 1024 * 1024;
const LOOPBACK = /^(127\.|::1$|::ffff:127\.)/;

/**
 * The embedded local cloud: the subset of Keystone v3, Nova v2.1, Neutron v2.0 and Glance v2
 * that the `openstack` driver and the `openstack` CLI use, on one loopback port, over a
 * {@link Hypervisor}. Services: `/identity`, `/compute`, `/network`, `/image`; `/_admin` is the
 * loopback-only side door for tokens, openrc and (when enabled) fault injection.
 *
 * Local mode is single-user: anyone who can reach the loopback port may mint a token for any
 * project through `/_admin`. Tokens still separate projects' resources, which is what the
 * engine's tenant isolation is tested against; they are not a security boundary here.
 */
export async function startLocalCloud(opts: LocalCloudOptions): Promise<LocalCloud> {
  const cloud = new CloudCore({ stateDir: opts.stateDir, hypervisor: opts.hypervisor, floatingCidr: opts.floatingCidr });
  const faults = new FaultInjector();
  const server = createServer();
  let url: string;
  try {
    url = await listen(server, opts.port ?? 0, opts.host ?? '127.0.0.1');
    await cloud.start();
  } catch (e) {
    server.close();
    await opts.hypervisor.stop().catch(() => undefined);
    throw e;
  }
  const urls = serviceUrls(url);
  const services: Record<string, Route[]> = {
    identity: keystoneRoutes(cloud, urls),
    compute: novaRoutes(cloud, `${url}/compute`),
    network: neutronRoutes(cloud, urls.network),
    image: glanceRoutes(urls.image),
  };

  const mintToken = async (tenantId: string) => {
    const project = await cloud.ensureProject(tenantId);
    return (await cloud.issueToken(project.id, ['token'])).token;
  };
  const openrc = async (tenantId: string) => {
    const project = await cloud.ensureProject(tenantId);
    const password = await cloud.setPassword(project.id);
    return openrcEnv({ keystoneUrl: urls.identity, project: project.name, user: project.userName, password });
  };

  const admin = async (method: string, path: string, body: Record<string, unknown>): Promise<OsReply> => {
    const tenant = typeof body.tenant === 'string' ? body.tenant : '';
    if (method === 'POST' && path === '/tokens') return { status: 201, body: { token: await mintToken(tenant), projectId: tenant } };
    if (method === 'POST' && path === '/openrc') return { status: 200, body: { env: await openrc(tenant) } };
    if (path === '/faults') {
      if (!opts.faultInjection) return { status: 404, body: { message: 'fault injection is disabled' } };
      if (method === 'DELETE') {
        faults.clear();
        cloud.serverFaults.length = 0;
        return { status: 204 };
      }
      if (method === 'POST') {
        if (body.kind === 'server-boot') {
          cloud.serverFaults.push({ pattern: new RegExp(String(body.namePattern ?? '.*')), message: String(body.message ?? 'injected boot failure'), remaining: Math.max(1, Number(body.times ?? 1)) });
        } else faults.add(body as unknown as FaultSpec);
        return { status: 204 };
      }
    }
    return { status: 404, body: { message: `no admin route ${method} ${path}` } };
  };

  const send = (res: ServerResponse, answer: OsReply, contentType = 'application/json') => {
    const headers: Record<string, string> = { 'x-openstack-request-id': `req-${randomUUID()}`, ...answer.headers };
    if (answer.body === undefined) {
      res.writeHead(answer.status, { ...headers, 'content-length': '0' }).end();
      return;
    }
    const text = typeof answer.body === 'string' ? answer.body : JSON.stringify(answer.body);
    res.writeHead(answer.status, { 'content-type': contentType, 'content-length': String(Buffer.byteLength(text)), ...headers }).end(text);
  };

  const unauthorized = () => {
    const e = keystoneError(401, 'The request you have made requires authentication.');
    return { status: 401, body: e.body, headers: { 'WWW-Authenticate': `Keystone uri="${urls.identity}"` } };
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const method = req.method ?? 'GET';
    const parsed = new URL(req.url ?? '/', 'http://local');
    const fullPath = parsed.pathname.replace(/\/{2,}/g, '/');
    const readJsonBody = async (): Promise<Record<string, unknown>> => {
      const raw = await readBody(req, MAX_BODY_BYTES);
      if (raw.length === 0) return {};
      const value: unknown = JSON.parse(raw.toString('utf8'));
      if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new SyntaxError('body must be a JSON object');
      return value as Record<string, unknown>;
    };
    if (fullPath.startsWith('/_admin/')) {
      if (!LOOPBACK.test(req.socket.remoteAddress ?? '')) return send(res, { status: 403, body: { message: 'the admin path answers loopback only' } });
      return send(res, await admin(method, fullPath.slice('/_admin'.length), await readJsonBody()));
    }
    const fault = faults.take(method, fullPath);
    if (fault) {
      req.resume();
      res.writeHead(fault.status, { 'content-type': fault.contentType, 'content-length': Buffer.byteLength(fault.body) }).end(fault.body);
      return;
    }
    const [, service = '', ...rest] = fullPath.split('/');
    const routes = services[service];
    const path = `/${rest.join('/')}`;
    const match = routes
      ?.map((route) => ({ route, m: route.method === method || (method === 'HEAD' && route.method === 'GET') ? route.pattern.exec(path) : null }))
      .find((x) => x.m);
    if (!routes || !match) {
      req.resume();
      return send(res, { status: 404, body: { message: `The resource could not be found: ${method} ${fullPath}` } });
    }
    const header = req.headers['x-auth-token'];
    const token = Array.isArray(header) ? header[0] : header;
    const record = cloud.tokenRecord(token);
    if (!match.route.open && !record) {
      req.resume();
      return send(res, unauthorized());
    }
    const request: OsRequest = {
      method,
      path,
      query: parsed.searchParams,
      body: await readJsonBody(),
      headers: req.headers,
      caller: record && token ? { token, record } : undefined,
    };
    const answer = await match.route.handler(request, match.m!.slice(1).map((p) => decodeURIComponent(p)));
    send(res, method === 'HEAD' ? { ...answer, body: undefined } : answer);
  };

  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    handle(req, res).catch((e: unknown) => {
      if (res.headersSent) return res.destroy();
      if (e instanceof OsError) {
        const headers = e.status === 401 ? { 'WWW-Authenticate': `Keystone uri="${urls.identity}"` } : undefined;
        return send(res, { status: e.status, body: e.body, headers }, e.contentType);
      }
      if (e instanceof BodyTooLargeError) return send(res, { status: 413, body: { message: e.message } });
      if (e instanceof SyntaxError) return send(res, { status: 400, body: { message: `body is not valid JSON: ${e.message}` } });
      send(res, { status: 500, body: { message: e instanceof Error ? e.message : String(e) } });
    });
  });

  return {
    url,
    keystoneUrl: urls.identity,
    mintToken,
    openrc,
    bastionOf: async (tenantId) => {
      await cloud.ensureProject(tenantId);
      const bastion = cloud.bastionOf(tenantId);
      if (!bastion) throw new Error(`the bastion of ${tenantId} has no floating IP`);
      return bastion;
    },
    closeBastionAccess: (tenantId, deploymentId) => cloud.closeBastionAccess(tenantId, deploymentId),
    egressAddress: () => opts.hypervisor.egressAddress(),
    hypervisor: opts.hypervisor,
    close: async () => {
      server.closeAllConnections();
      await closeServer(server);
      await cloud.close();
    },
  };
}
