import { ErrorName, StepError } from '../../core/errors.ts';
import type { OpenStackHttp } from './http.ts';
import { parseBody } from './http.ts';
import { ConsoleOutputSchema, CreatedServerSchema, FlavorSchema, ServerSchema, type Server } from './schemas.ts';
import { z } from 'zod';

/** The compute microversion the driver speaks: the v2.1 base, which every Nova (and OTC) serves. */
export const COMPUTE_MICROVERSION = '2.1';
const MICROVERSION_HEADERS = {
  'openstack-api-version': `compute ${COMPUTE_MICROVERSION}`,
  'x-openstack-nova-api-version': COMPUTE_MICROVERSION,
};

/** Nova v2.1 with one user's token: the server calls of docs/OPENSTACK.md. */
export class Nova {
  constructor(
    private readonly http: OpenStackHttp,
    private readonly token: string,
    private readonly url: string,
  ) {}

  private call(method: 'GET' | 'POST' | 'PUT' | 'DELETE', path: string, what: string, body?: unknown, accept?: readonly number[]) {
    return this.http.call(this.token, {
      method,
      url: `${this.url}${path}`,
      what,
      headers: MICROVERSION_HEADERS,
      ...(body === undefined ? {} : { body }),
      ...(accept ? { accept } : {}),
    });
  }

  async getServer(id: string, what: string): Promise<Server | undefined> {
    const answer = await this.call('GET', `/servers/${encodeURIComponent(id)}`, what, undefined, [404]);
    if (answer.status === 404) return undefined;
    return parseBody(z.object({ server: ServerSchema }), answer, what, this.token).server;
  }

  /** Servers whose name matches the regular expression (Nova's `name` filter). */
  async listServers(nameRegex: string, what: string): Promise<Server[]> {
    const answer = await this.call('GET', `/servers/detail?name=${encodeURIComponent(nameRegex)}`, what);
    return parseBody(z.object({ servers: z.array(ServerSchema) }), answer, what, this.token).servers;
  }

  async createServer(server: Record<string, unknown>, what: string): Promise<string> {
    const answer = await this.call('POST', '/servers', what, { server });
    return parseBody(CreatedServerSchema, answer, what, this.token).server.id;
  }

  async deleteServer(id: string, what: string): Promise<boolean> {
    const answer = await this.call('DELETE', `/servers/${encodeURIComponent(id)}`, what, undefined, [404]);
    return answer.status !== 404;
  }

  async consoleOutput(id: string, what: string): Promise<string> {
    const answer = await this.call('POST', `/servers/${encodeURIComponent(id)}/action`, what, { 'os-getConsoleOutput': { length: -1 } }, [404, 409]);
    // 409: the server is not running (yet); 404: gone. Either way nothing to read.
    if (answer.status !== 200) return '';
    return parseBody(ConsoleOutputSchema, answer, what, this.token).output ?? '';
  }

  async setMetadataItem(id: string, key: string, value: string, what: string): Promise<void> {
    await this.call('PUT', `/servers/${encodeURIComponent(id)}/metadata/${encodeURIComponent(key)}`, what, { meta: { [key]: value } });
  }

  /** False when the item (or the server) was already gone. */
  async deleteMetadataItem(id: string, key: string, what: string): Promise<boolean> {
    const answer = await this.call('DELETE', `/servers/${encodeURIComponent(id)}/metadata/${encodeURIComponent(key)}`, what, undefined, [404]);
    return answer.status !== 404;
  }

  /** A flavor by id, else by exact name (`GET /flavors/<id>` then `/flavors/detail`). */
  async findFlavor(ref: string, what: string): Promise<string> {
    const direct = await this.call('GET', `/flavors/${encodeURIComponent(ref)}`, what, undefined, [404]);
    if (direct.status !== 404) return parseBody(z.object({ flavor: FlavorSchema }), direct, what, this.token).flavor.id;
    const listed = await this.call('GET', '/flavors/detail', what);
    const flavors = parseBody(z.object({ flavors: z.array(FlavorSchema) }), listed, what, this.token).flavors.filter((f) => f.name === ref);
    if (flavors.length === 1) return flavors[0]!.id;
    throw new StepError(
      ErrorName.StepFailed,
      flavors.length === 0 ? `flavor "${ref}" does not exist in this project` : `flavor name "${ref}" is ambiguous (${flavors.length} flavors); use its id`,
    );
  }
}
