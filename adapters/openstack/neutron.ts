import type { z } from 'zod';
import type { OpenStackHttp } from './http.ts';
import { parseBody } from './http.ts';
import {
  FloatingIpSchema,
  NetworkSchema,
  PortSchema,
  RouterSchema,
  SecurityGroupRuleSchema,
  SecurityGroupSchema,
  SubnetSchema,
  many,
  one,
} from './schemas.ts';

/** Neutron's collections: URL segment, singular and plural body keys, and the shape of one item. */
const COLLECTIONS = {
  networks: { path: 'networks', one: 'network', many: 'networks', schema: NetworkSchema },
  subnets: { path: 'subnets', one: 'subnet', many: 'subnets', schema: SubnetSchema },
  routers: { path: 'routers', one: 'router', many: 'routers', schema: RouterSchema },
  securityGroups: { path: 'security-groups', one: 'security_group', many: 'security_groups', schema: SecurityGroupSchema },
  securityGroupRules: {
    path: 'security-group-rules',
    one: 'security_group_rule',
    many: 'security_group_rules',
    schema: SecurityGroupRuleSchema,
  },
  ports: { path: 'ports', one: 'port', many: 'ports', schema: PortSchema },
  floatingIps: { path: 'floatingips', one: 'floatingip', many: 'floatingips', schema: FloatingIpSchema },
} as const;

export type Collection = keyof typeof COLLECTIONS;
type Item<C extends Collection> = z.output<(typeof COLLECTIONS)[C]['schema']>;

/** Neutron v2.0 with one user's token: the generic list/get/create/delete/tag of every collection. */
export class Neutron {
  constructor(
    private readonly http: OpenStackHttp,
    private readonly token: string,
    private readonly url: string,
  ) {}

  async list<C extends Collection>(c: C, filters: Record<string, string>, what: string): Promise<Item<C>[]> {
    const spec = COLLECTIONS[c];
    const query = new URLSearchParams(filters).toString();
    const answer = await this.http.call(this.token, { method: 'GET', url: `${this.url}/${spec.path}${query ? `?${query}` : ''}`, what });
    return parseBody(many(spec.many, spec.schema), answer, what, this.token) as Item<C>[];
  }

  /** One item by id, or undefined when it does not exist. */
  async get<C extends Collection>(c: C, id: string, what: string): Promise<Item<C> | undefined> {
    const spec = COLLECTIONS[c];
    const answer = await this.http.call(this.token, { method: 'GET', url: `${this.url}/${spec.path}/${encodeURIComponent(id)}`, what, accept: [404] });
    if (answer.status === 404) return undefined;
    return parseBody(one(spec.one, spec.schema), answer, what, this.token) as Item<C>;
  }

  /** Creates; `accept` lets the caller see a 409 (an existing rule) instead of an error. */
  async create<C extends Collection>(
    c: C,
    attributes: Record<string, unknown>,
    what: string,
    accept: readonly number[] = [],
  ): Promise<{ item?: Item<C>; status: number; text: string }> {
    const spec = COLLECTIONS[c];
    const answer = await this.http.call(this.token, { method: 'POST', url: `${this.url}/${spec.path}`, what, body: { [spec.one]: attributes }, accept });
    if (!answer.status.toString().startsWith('2')) return { status: answer.status, text: answer.text };
    return { item: parseBody(one(spec.one, spec.schema), answer, what, this.token) as Item<C>, status: answer.status, text: answer.text };
  }

  async update(c: Collection, id: string, attributes: Record<string, unknown>, what: string): Promise<void> {
    const spec = COLLECTIONS[c];
    await this.http.call(this.token, { method: 'PUT', url: `${this.url}/${spec.path}/${encodeURIComponent(id)}`, what, body: { [spec.one]: attributes } });
  }

  /** Deletes; false when it was already gone. */
  async remove(c: Collection, id: string, what: string): Promise<boolean> {
    const spec = COLLECTIONS[c];
    const answer = await this.http.call(this.token, { method: 'DELETE', url: `${this.url}/${spec.path}/${encodeURIComponent(id)}`, what, accept: [404] });
    return answer.status !== 404;
  }

  /** Adds a tag (idempotent in Neutron); false when the cloud has no tag extension or the item is gone. */
  async tag(c: Collection, id: string, tag: string, what: string): Promise<boolean> {
    const spec = COLLECTIONS[c];
    const answer = await this.http.call(this.token, {
      method: 'PUT',
      url: `${this.url}/${spec.path}/${encodeURIComponent(id)}/tags/${encodeURIComponent(tag)}`,
      what,
      accept: [404],
    });
    return answer.status !== 404;
  }

  async routerInterface(action: 'add' | 'remove', routerId: string, subnetId: string, what: string): Promise<void> {
    await this.http.call(this.token, {
      method: 'PUT',
      url: `${this.url}/routers/${encodeURIComponent(routerId)}/${action}_router_interface`,
      what,
      body: { subnet_id: subnetId },
      // Removing an interface that is already gone answers 404.
      accept: action === 'remove' ? [404] : [],
    });
  }
}
