import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { CloudBackend, CloudScope } from '../cloud-backend.ts';
import { BodyTooLargeError, closeServer, listen, readBody } from '../services/httpUtil.ts';
import { CloudApiError } from './errors.ts';
import { FaultInjector, type FaultSpec } from './faults.ts';
import { IdentityStore } from './identity.ts';

export interface LocalCloudOptions {
  stateDir: string;
  backend: CloudBackend;
  /** Loopback only; default 127.0.0.1. */
  host?: string;
  /** Default 0 (a free port). */
  port?: number;
  /** Accept `POST /_faults` (test-only fault injection). Default true: the local cloud is a test double on loopback. */
  faultInjection?: boolean;
}

export interface LocalCloud {
  url: string;
  /** Mints a token for a tenant, as `POST /identity/tokens` does. */
  mintToken(tenantId: string): Promise<string>;
  /** Stops the API and the backend (every SSH server and VM process). */
  close(): Promise<void>;
}

const MAX_BODY_BYTES = 1024 * 1024;

interface Request {
  method: string;
  path: string;
  params: string[];
  body: Record<string, unknown>;
  tenantId: string | undefined;
}

type Handler = (req: Request) => Promise<{ status: number; body?: unknown }>;

interface Route {
  method: string;
  pattern: RegExp;
  /** Routes that anyone on loopback may call (identity, test faults). */
  open?: boolean;
  handler: Handler;
}

function str(body: Record<string, unknown>, key: string): string {
  const value = body[key];
  if (typeof value !== 'string' || value === '') throw new CloudApiError(400, `${key} is required`);
  return value;
}

/**
 * The local cloud's REST API — an OpenStack-like front (identity, bastion security group,
 * networks, security groups, VMs) over a {@link CloudBackend}. The engine reaches it only
 * through adapters/local/localCloudDriver.ts, exactly as it would a real cloud.
 *
 * Local mode is single-user: anyone who can reach the loopback port may mint a token for any
 * tenant (`POST /identity/tokens`). Tokens still separate tenants' resources, which is what
 * the engine's tenant isolation is tested against; they are not a security boundary here.
 */
export async function startLocalCloud(opts: LocalCloudOptions): Promise<LocalCloud> {
  const identity = new IdentityStore(opts.stateDir);
  await identity.load();
  const faults = new FaultInjector();
  const backend = opts.backend;
  await backend.start();

  const scoped = (req: Request, deploymentId = ''): CloudScope => ({ tenantId: req.tenantId ?? '', deploymentId });
  const ok = (body?: unknown, status = 200) => ({ status, body });

  const routes: Route[] = [
    {
      method: 'POST',
      pattern: /^\/identity\/tokens$/,
      open: true,
      handler: async (r) => ok({ token: await identity.mint(str(r.body, 'tenantId')) }, 201),
    },
    {
      method: 'GET',
      pattern: /^\/identity\/whoami$/,
      handler: async (r) => ok({ tenantId: r.tenantId }),
    },
    {
      method: 'POST',
      pattern: /^\/_faults$/,
      open: true,
      handler: async (r) => {
        if (opts.faultInjection === false) throw new CloudApiError(404, 'fault injection is disabled');
        faults.add(r.body as unknown as FaultSpec);
        return ok(undefined, 204);
      },
    },
    { method: 'GET', pattern: /^\/egress$/, handler: async () => ok({ cidr: await backend.egressCidr() }) },
    {
      method: 'GET',
      pattern: /^\/bastions\/([^/]+)$/,
      handler: async (r) => ok(await backend.describeBastion(r.params[0]!)),
    },
    {
      method: 'POST',
      pattern: /^\/bastions\/([^/]+)\/rules$/,
      handler: async (r) => {
        const port = r.body.port;
        if (typeof port !== 'number') throw new CloudApiError(400, 'port is required');
        const deploymentId = typeof r.body.deploymentId === 'string' ? r.body.deploymentId : '';
        const input = { securityGroup: r.params[0]!, cidr: str(r.body, 'cidr'), port, description: String(r.body.description ?? '') };
        return ok(await backend.addBastionRule(scoped(r, deploymentId), input), 201);
      },
    },
    {
      method: 'DELETE',
      pattern: /^\/bastions\/([^/]+)\/rules\/([^/]+)$/,
      handler: async (r) => {
        await backend.deleteBastionRule(scoped(r), { securityGroup: r.params[0]!, ruleId: r.params[1]! });
        return ok(undefined, 204);
      },
    },
    {
      method: 'PUT',
      pattern: /^\/bastions\/([^/]+)\/forwarding$/,
      handler: async (r) => {
        if (typeof r.body.enabled !== 'boolean') throw new CloudApiError(400, 'enabled must be true or false');
        await backend.setBastionForwarding({ securityGroup: r.params[0]!, enabled: r.body.enabled });
        return ok(undefined, 204);
      },
    },
    {
      method: 'POST',
      pattern: /^\/deployments\/([^/]+)\/networks$/,
      handler: async (r) => {
        await backend.createNetwork(scoped(r, r.params[0]), { name: str(r.body, 'name'), cidr: r.body.cidr as string | undefined });
        return ok(undefined, 201);
      },
    },
    {
      method: 'DELETE',
      pattern: /^\/deployments\/([^/]+)\/networks\/([^/]+)$/,
      handler: async (r) => {
        await backend.deleteNetwork(scoped(r, r.params[0]), r.params[1]!);
        return ok(undefined, 204);
      },
    },
    {
      method: 'POST',
      pattern: /^\/deployments\/([^/]+)\/security-groups$/,
      handler: async (r) => {
        const rules = Array.isArray(r.body.rules) ? (r.body.rules as never[]) : [];
        await backend.createSecurityGroup(scoped(r, r.params[0]), { name: str(r.body, 'name'), rules });
        return ok(undefined, 201);
      },
    },
    {
      method: 'DELETE',
      pattern: /^\/deployments\/([^/]+)\/security-groups\/([^/]+)$/,
      handler: async (r) => {
        await backend.deleteSecurityGroup(scoped(r, r.params[0]), r.params[1]!);
        return ok(undefined, 204);
      },
    },
    {
      method: 'POST',
      pattern: /^\/deployments\/([^/]+)\/vms$/,
      handler: async (r) => {
        const spec = r.body.spec;
        if (typeof spec !== 'object' || spec === null) throw new CloudApiError(400, 'spec is required');
        const userData = typeof r.body.userData === 'string' ? r.body.userData : '';
        // The spec was validated by the engine's schema before it reached the cloud.
        return ok(await backend.createVm(scoped(r, r.params[0]), spec as never, userData), 201);
      },
    },
    {
      method: 'DELETE',
      pattern: /^\/deployments\/([^/]+)\/vms\/([^/]+)$/,
      handler: async (r) => {
        await backend.deleteVm(scoped(r, r.params[0]), r.params[1]!);
        return ok(undefined, 204);
      },
    },
    {
      method: 'GET',
      pattern: /^\/deployments\/([^/]+)\/vms$/,
      handler: async (r) => ok(await backend.describeVms(scoped(r, r.params[0]))),
    },
  ];

  const send = (res: ServerResponse, status: number, body?: unknown) => {
    if (body === undefined) {
      res.writeHead(status).end();
      return;
    }
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }).end(text);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const method = req.method ?? 'GET';
    const path = new URL(req.url ?? '/', 'http://local').pathname;
    const params: string[] = [];
    let route: Route | undefined;
    for (const candidate of routes) {
      const match = candidate.method === method ? candidate.pattern.exec(path) : null;
      if (match) {
        route = candidate;
        params.push(...match.slice(1).map((p) => decodeURIComponent(p)));
        break;
      }
    }
    if (!route) return send(res, 404, { message: `no route for ${method} ${path}` });
    if (path !== '/_faults') {
      const fault = faults.take(method, path);
      if (fault) {
        req.resume();
        return send(res, fault.status, { message: fault.message });
      }
    }
    const header = req.headers['x-auth-token'];
    const tenantId = identity.tenantOf(Array.isArray(header) ? header[0] : header);
    if (!route.open && !tenantId) {
      req.resume();
      return send(res, 401, { message: 'The request you have made requires authentication.' });
    }
    const raw = await readBody(req, MAX_BODY_BYTES);
    let body: Record<string, unknown> = {};
    if (raw.length > 0) {
      const parsed: unknown = JSON.parse(raw.toString('utf8'));
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new CloudApiError(400, 'body must be a JSON object');
      body = parsed as Record<string, unknown>;
    }
    const answer = await route.handler({ method, path, params, body, tenantId });
    send(res, answer.status, answer.body);
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((e: unknown) => {
      if (res.headersSent) return res.destroy();
      if (e instanceof CloudApiError) return send(res, e.status, { message: e.message });
      if (e instanceof BodyTooLargeError) return send(res, 413, { message: e.message });
      if (e instanceof SyntaxError) return send(res, 400, { message: 'body is not valid JSON' });
      send(res, 500, { message: e instanceof Error ? e.message : String(e) });
    });
  });

  let url: string;
  try {
    url = await listen(server, opts.port ?? 0, opts.host ?? '127.0.0.1');
  } catch (e) {
    await backend.stop();
    throw e;
  }

  return {
    url,
    mintToken: (tenantId) => identity.mint(tenantId),
    close: async () => {
      server.closeAllConnections();
      await closeServer(server);
      await backend.stop();
    },
  };
}
