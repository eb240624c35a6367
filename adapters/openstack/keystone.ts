import { ErrorName, StepError } from '../../core/errors.ts';
import { TOKEN_REFUSED } from './errors.ts';
import { parseBody, type OpenStackHttp } from './http.ts';
import { TokenBodySchema, type TokenBody } from './schemas.ts';

/** Catalog service types the driver uses. */
export type ServiceType = 'compute' | 'network' | 'image';

/** What a validated token tells the driver: whose it is and where its project's services are. */
export interface TokenSession {
  projectId: string;
  expiresAt?: string;
  endpoint(type: ServiceType): string;
}

/**
 * Keystone v3 token validation (`GET /auth/tokens`, the token being both the caller and the
 * subject), as the authorizer and the driver need it. Endpoints come from the token's catalog,
 * filtered by interface and, when configured, region (else the first endpoint of the interface).
 */
export class Keystone {
  constructor(
    private readonly http: OpenStackHttp,
    private readonly opts: { url: string; interface: string; region?: string },
  ) {}

  /** The token's body, or undefined when Keystone says it is not valid (401/404). */
  async validate(token: string): Promise<TokenBody | undefined> {
    const what = 'validating the cloud token with Keystone';
    const answer = await this.http.call(token, {
      method: 'GET',
      url: `${this.opts.url.replace(/\/+$/, '')}/auth/tokens`,
      what,
      headers: { 'x-subject-token': token },
      accept: [401, 404],
    });
    if (answer.status === 401 || answer.status === 404) return undefined;
    return parseBody(TokenBodySchema, answer, what, token).token;
  }

  async session(token: string): Promise<TokenSession> {
    const body = await this.validate(token);
    if (!body) throw new StepError(ErrorName.StepFailed, `${TOKEN_REFUSED}: Keystone does not accept it`);
    if (!body.project) throw new StepError(ErrorName.StepFailed, 'the cloud token is not scoped to a project; issue a project-scoped token');
    const catalog = body.catalog;
    const { interface: iface, region } = this.opts;
    return {
      projectId: body.project.id,
      ...(body.expires_at ? { expiresAt: body.expires_at } : {}),
      endpoint: (type) => {
        const service = catalog.find((s) => s.type === type);
        const candidates = service?.endpoints.filter((e) => e.interface === iface) ?? [];
        const match = region ? candidates.find((e) => e.region_id === region || e.region === region) : candidates[0];
        if (!match) {
          const where = region ? `interface "${iface}", region "${region}"` : `interface "${iface}"`;
          throw new StepError(ErrorName.StepFailed, `the token's catalog has no "${type}" endpoint for ${where} (see CTD_OS_INTERFACE, CTD_OS_REGION)`);
        }
        return versioned(type, match.url.replace(/\/+$/, ''));
      },
    };
  }
}

/**
 * Catalog URLs come with or without the API version (Nova's usually has it, Neutron's and
 * Glance's usually not); the driver speaks compute v2.1, network v2.0, image v2.
 */
function versioned(type: ServiceType, url: string): string {
  switch (type) {
    case 'compute':
      return /\/v2(\.1)?(\/[^/]+)?$/.test(url) ? url : `${url}/v2.1`;
    case 'network':
      return /\/v2\.0$/.test(url) ? url : `${url}/v2.0`;
    case 'image':
      return /\/v2$/.test(url) ? url : `${url}/v2`;
  }
}
