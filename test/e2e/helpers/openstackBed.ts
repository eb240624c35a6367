import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse } from 'yaml';

/**
 * The real-OpenStack test bed (scripts/openstack-bed/setup.sh), seen from a test: its
 * clouds.yaml, password tokens for its users, and an admin view to check from outside what the
 * driver did. Locally a bed that is not up skips the suite with the reason; under CI it fails.
 */
export const BED_DIR = process.env.OSBED_DIR ?? '/tmp/osbed';
export const CLOUDS_YAML = join(BED_DIR, 'clouds.yaml');

export interface CloudCredentials {
  authUrl: string;
  username: string;
  password: string;
  projectName: string;
  userDomainName: string;
  projectDomainName: string;
}

export interface Bed {
  keystoneUrl: string;
  demo: CloudCredentials;
  admin: CloudCredentials;
}

interface CloudsYaml {
  clouds?: Record<string, { auth?: Record<string, string> } | undefined>;
}

function credentials(doc: CloudsYaml, name: string): CloudCredentials {
  const auth = doc.clouds?.[name]?.auth;
  if (!auth?.auth_url || !auth.username || !auth.password || !auth.project_name) {
    throw new Error(`${CLOUDS_YAML}: cloud ${name} lacks auth_url/username/password/project_name`);
  }
  return {
    authUrl: auth.auth_url.replace(/\/+$/, ''),
    username: auth.username,
    password: auth.password,
    projectName: auth.project_name,
    userDomainName: auth.user_domain_name ?? 'Default',
    projectDomainName: auth.project_domain_name ?? 'Default',
  };
}

export async function loadBed(): Promise<Bed> {
  const doc = parse(await readFile(CLOUDS_YAML, 'utf8')) as CloudsYaml;
  const demo = credentials(doc, 'osbed-demo');
  return { keystoneUrl: demo.authUrl, demo, admin: credentials(doc, 'osbed-admin') };
}

/** Why the bed cannot be used, or undefined when its Keystone issues the demo user a token. */
async function bedProblem(): Promise<string | undefined> {
  let bed: Bed;
  try {
    bed = await loadBed();
  } catch (err) {
    return `no usable ${CLOUDS_YAML} (${(err as Error).message.split('\n')[0]})`;
  }
  try {
    await passwordToken(bed.demo);
    return undefined;
  } catch (err) {
    return `the bed's Keystone (${bed.keystoneUrl}) gives the demo user no token: ${(err as Error).message}`;
  }
}

/**
 * Whether the suite runs. Locally prints why not and skips; under CI (process.env.CI set) a bed
 * that is not up fails the suite, so it can never pass by skipping.
 */
export async function requireOpenStackBed(): Promise<boolean> {
  const problem = await bedProblem();
  if (!problem) return true;
  const explanation = `real-OpenStack e2e suite: ${problem}. Start the bed with: sudo scripts/openstack-bed/setup.sh (packages: .ci/install-openstack-bed.sh)`;
  if (process.env.CI) throw new Error(`CI is set and the OpenStack test bed is not up — ${explanation}`);
  console.warn(`[skipped] ${explanation}`);
  return false;
}

export interface CatalogEntry {
  type: string;
  endpoints: { interface: string; url: string; region_id?: string }[];
}

export interface IssuedToken {
  token: string;
  projectId: string;
  userId: string;
  catalog: CatalogEntry[];
}

/** Keystone v3 password authentication, scoped to the user's project (what a user's CLI does). */
export async function passwordToken(c: CloudCredentials): Promise<IssuedToken> {
  const res = await fetch(`${c.authUrl}/auth/tokens`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      auth: {
        identity: { methods: ['password'], password: { user: { name: c.username, domain: { name: c.userDomainName }, password: c.password } } },
        scope: { project: { name: c.projectName, domain: { name: c.projectDomainName } } },
      },
    }),
    signal: AbortSignal.timeout(30_000),
  });
  const token = res.headers.get('x-subject-token');
  if (res.status !== 201 || !token) throw new Error(`POST ${c.authUrl}/auth/tokens answered ${res.status}`);
  const body = (await res.json()) as { token: { project: { id: string }; user: { id: string }; catalog: CatalogEntry[] } };
  return { token, projectId: body.token.project.id, userId: body.token.user.id, catalog: body.token.catalog };
}

/** Revokes a token (Keystone DELETE /v3/auth/tokens); later validation of it answers 401/404. */
export async function revokeToken(keystoneUrl: string, actingToken: string, subject: string): Promise<void> {
  const res = await fetch(`${keystoneUrl}/auth/tokens`, {
    method: 'DELETE',
    headers: { 'x-auth-token': actingToken, 'x-subject-token': subject },
  });
  if (res.status !== 204) throw new Error(`revoking a token answered ${res.status}`);
}

export type Json = Record<string, unknown>;

/**
 * Plain REST calls with one user's token, apart from the driver: the admin's view is how the
 * tests check the cloud from outside; the demo user's is how a tenant acts by hand.
 */
export class CloudView {
  private constructor(
    private readonly token: string,
    private readonly urls: { compute: string; network: string; image: string },
  ) {}

  static async open(who: CloudCredentials): Promise<CloudView> {
    const t = await passwordToken(who);
    const url = (type: string): string => {
      const e = t.catalog.find((s) => s.type === type)?.endpoints.find((x) => x.interface === 'public');
      if (!e) throw new Error(`the admin catalog has no public ${type} endpoint`);
      return e.url.replace(/\/+$/, '');
    };
    return new CloudView(t.token, { compute: url('compute'), network: url('network'), image: url('image') });
  }

  async request(method: string, url: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: Json }> {
    const res = await fetch(url, {
      method,
      headers: {
        'x-auth-token': this.token,
        accept: 'application/json',
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        ...headers,
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(60_000),
    });
    const text = await res.text();
    let parsed: Json = {};
    try {
      parsed = text ? (JSON.parse(text) as Json) : {};
    } catch {
      parsed = { text };
    }
    return { status: res.status, body: parsed };
  }

  private async ok(method: string, url: string, body?: unknown, headers?: Record<string, string>): Promise<Json> {
    const r = await this.request(method, url, body, headers);
    if (r.status >= 300) throw new Error(`${method} ${url} answered ${r.status}: ${JSON.stringify(r.body).slice(0, 300)}`);
    return r.body;
  }

  /** GET /v2.0/<collection>?<query> (e.g. 'security-group-rules', { project_id }). */
  async neutron(collection: string, query: Record<string, string> = {}): Promise<Json[]> {
    const key = collection.replace(/-/g, '_');
    const body = await this.ok('GET', `${this.urls.network}/v2.0/${collection}?${new URLSearchParams(query)}`);
    return body[key] as Json[];
  }

  /** One Neutron resource, or undefined on 404. */
  async neutronGet(collection: string, id: string): Promise<Json | undefined> {
    const r = await this.request('GET', `${this.urls.network}/v2.0/${collection}/${id}`);
    if (r.status === 404) return undefined;
    if (r.status >= 300) throw new Error(`GET ${collection}/${id} answered ${r.status}`);
    return Object.values(r.body)[0] as Json; // { "<resource>": {...} }
  }

  async neutronPost(collection: string, resource: string, body: Json): Promise<{ status: number; body: Json }> {
    return this.request('POST', `${this.urls.network}/v2.0/${collection}`, { [resource]: body });
  }

  async neutronDelete(collection: string, id: string): Promise<number> {
    return (await this.request('DELETE', `${this.urls.network}/v2.0/${collection}/${id}`)).status;
  }

  /** Servers of a project, with details (all_tenants + project_id: the admin's view). */
  async servers(projectId: string): Promise<Json[]> {
    const body = await this.ok('GET', `${this.urls.compute}/servers/detail?${new URLSearchParams({ all_tenants: '1', project_id: projectId })}`);
    return body.servers as Json[];
  }

  /** One server, or undefined on 404; 'compute 2.3' or later shows an admin its user data. */
  async server(id: string, microversion = 'compute 2.26'): Promise<Json | undefined> {
    const r = await this.request('GET', `${this.urls.compute}/servers/${id}`, undefined, { 'openstack-api-version': microversion });
    if (r.status === 404) return undefined;
    if (r.status >= 300) throw new Error(`GET servers/${id} answered ${r.status}`);
    return r.body.server as Json;
  }

  async serverMetadata(id: string): Promise<Record<string, string>> {
    return (await this.ok('GET', `${this.urls.compute}/servers/${id}/metadata`)).metadata as Record<string, string>;
  }

  async deleteServerMetadata(id: string, key: string): Promise<void> {
    const r = await this.request('DELETE', `${this.urls.compute}/servers/${id}/metadata/${encodeURIComponent(key)}`);
    if (r.status !== 204 && r.status !== 404) throw new Error(`DELETE metadata answered ${r.status}`);
  }

  /** Deletes a server and waits until Nova no longer knows it. */
  async deleteServer(id: string): Promise<void> {
    await this.request('DELETE', `${this.urls.compute}/servers/${id}`);
    const until = Date.now() + 120_000;
    while ((await this.server(id)) !== undefined) {
      if (Date.now() > until) throw new Error(`server ${id} still exists 120 s after DELETE`);
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}
