import type { CloudCore } from './cloud.ts';
import { keystoneError, member, reply, type OsRequest, type Route } from './http.ts';
import type { ProjectRecord, TokenRecord } from './state.ts';

/** Where each service lives below the cloud's base URL (the catalog points back here). */
export interface ServiceUrls {
  identity: string;
  compute: string;
  network: string;
  image: string;
}

export const REGION = 'RegionOne';
const DOMAIN = { id: 'default', name: 'Default' };

function catalog(urls: ServiceUrls) {
  const entry = (type: string, name: string, url: string, n: number) => ({
    id: `0000000000000000000000000000000${n}`,
    type,
    name,
    endpoints: ['public', 'internal', 'admin'].map((iface, i) => ({
      id: `${n}${i}000000000000000000000000000000`.slice(0, 32),
      interface: iface,
      region_id: REGION,
      region: REGION,
      url,
    })),
  });
  return [
    entry('identity', 'keystone', urls.identity, 1),
    entry('compute', 'nova', urls.compute, 2),
    entry('network', 'neutron', urls.network, 3),
    entry('image', 'glance', urls.image, 4),
  ];
}

function tokenBody(project: ProjectRecord, record: TokenRecord, urls: ServiceUrls) {
  return {
    token: {
      methods: record.methods,
      user: { domain: DOMAIN, id: project.userId, name: project.userName, password_expires_at: null },
      audit_ids: [project.userId.slice(0, 22)],
      expires_at: record.expiresAt.replace(/Z$/, '000Z'),
      issued_at: record.issuedAt.replace(/Z$/, '000Z'),
      project: { domain: DOMAIN, id: project.id, name: project.name },
      is_domain: false,
      roles: [
        { id: 'b2a44adaba46481b8739a010a9b9abe9', name: 'reader' },
        { id: '1b2873e65cc4497f867745b1ef257b84', name: 'member' },
      ],
      catalog: catalog(urls),
    },
  };
}

const bad = (message: string) => keystoneError(400, message);

/** Finds the project a password or token authentication asks to be scoped to. */
function scopedProject(cloud: CloudCore, auth: Record<string, unknown>, fallback: ProjectRecord | undefined): ProjectRecord {
  const scope = auth.scope as { project?: { id?: string; name?: string } } | undefined;
  const wanted = scope?.project?.id ?? scope?.project?.name;
  if (!wanted) {
    if (fallback) return fallback;
    throw keystoneError(401, 'The request you have made requires authentication.');
  }
  const project = cloud.project(wanted);
  if (!project || (fallback && fallback.id !== project.id)) throw keystoneError(401, 'The request you have made requires authentication.');
  return project;
}

/**
 * Keystone v3: the version documents, password and token authentication
 * (`POST /v3/auth/tokens`, token in `X-Subject-Token`), token validation with the catalog
 * (`GET /v3/auth/tokens`) and revocation. One user per project, named like the project.
 */
export function keystoneRoutes(cloud: CloudCore, urls: ServiceUrls): Route[] {
  const version = {
    id: 'v3.14',
    status: 'stable',
    updated: '2020-04-07T00:00:00Z',
    links: [{ rel: 'self', href: urls.identity }],
    'media-types': [{ base: 'application/json', type: 'application/vnd.openstack.identity-v3+json' }],
  };
  const authenticate = async (req: OsRequest) => {
    const auth = member(req.body, 'auth', bad);
    const identity = member(auth, 'identity', bad);
    const methods = Array.isArray(identity.methods) ? identity.methods.map(String) : [];
    let project: ProjectRecord;
    if (methods.includes('password')) {
      const user = (identity.password as { user?: { name?: string; id?: string; password?: string } } | undefined)?.user;
      const owner = user && (cloud.state.projects.find((p) => p.userName === user.name) ?? cloud.state.projects.find((p) => p.userId === user.id));
      if (!owner || typeof user?.password !== 'string' || !cloud.checkPassword(owner, user.password)) {
        throw keystoneError(401, 'The request you have made requires authentication.');
      }
      project = scopedProject(cloud, auth, owner);
    } else if (methods.includes('token')) {
      const id = (identity.token as { id?: string } | undefined)?.id;
      const record = cloud.tokenRecord(id);
      if (!record) throw keystoneError(401, 'The request you have made requires authentication.');
      project = scopedProject(cloud, auth, cloud.project(record.projectId));
    } else throw bad('Only the password and token methods are supported.');
    const { token, record } = await cloud.issueToken(project.id, methods);
    return reply(tokenBody(project, record, urls), 201, { 'X-Subject-Token': token });
  };
  const subject = (req: OsRequest) => {
    const header = req.headers['x-subject-token'];
    const token = Array.isArray(header) ? header[0] : header;
    if (!token) throw bad('X-Subject-Token is required.');
    return token;
  };
  return [
    { method: 'GET', pattern: /^\/?$/, open: true, handler: () => reply({ versions: { values: [version] } }, 300) },
    { method: 'GET', pattern: /^\/v3\/?$/, open: true, handler: () => reply({ version }) },
    { method: 'POST', pattern: /^\/v3\/auth\/tokens$/, open: true, handler: authenticate },
    {
      method: 'GET',
      pattern: /^\/v3\/auth\/tokens$/,
      handler: (req) => {
        const record = cloud.tokenRecord(subject(req));
        const project = record && cloud.project(record.projectId);
        if (!record || !project) throw keystoneError(404, 'Could not find token.');
        return reply(tokenBody(project, record, urls), 200, { 'X-Subject-Token': subject(req) });
      },
    },
    {
      method: 'HEAD',
      pattern: /^\/v3\/auth\/tokens$/,
      handler: (req) => {
        if (!cloud.tokenRecord(subject(req))) throw keystoneError(404, 'Could not find token.');
        return reply(undefined, 200);
      },
    },
    {
      method: 'DELETE',
      pattern: /^\/v3\/auth\/tokens$/,
      handler: async (req) => {
        if (!(await cloud.revokeToken(subject(req)))) throw keystoneError(404, 'Could not find token.');
        return reply(undefined, 204);
      },
    },
    {
      method: 'GET',
      pattern: /^\/v3\/auth\/catalog$/,
      handler: () => reply({ catalog: catalog(urls) }),
    },
    {
      method: 'GET',
      pattern: /^\/v3\/auth\/projects$/,
      handler: (req) => {
        const project = cloud.project(req.caller!.record.projectId)!;
        return reply({ projects: [{ id: project.id, name: project.name, domain_id: DOMAIN.id, enabled: true, is_domain: false, parent_id: DOMAIN.id, description: '' }] });
      },
    },
  ];
}
