import { z } from 'zod';

/**
 * The parts of OpenStack's answers the driver reads, and nothing more (unknown keys are
 * dropped, so a newer cloud adding fields never breaks us; a missing field we need does).
 */

export const EndpointSchema = z.object({
  interface: z.string(),
  url: z.string(),
  region: z.string().nullish(),
  region_id: z.string().nullish(),
});

export const TokenBodySchema = z.object({
  token: z.object({
    expires_at: z.string().optional(),
    project: z.object({ id: z.string(), name: z.string().optional() }).optional(),
    catalog: z.array(z.object({ type: z.string(), endpoints: z.array(EndpointSchema) })).default([]),
  }),
});
export type TokenBody = z.output<typeof TokenBodySchema>['token'];

const tags = z.array(z.string()).default([]);

const project_id = z.string().nullish();

export const NetworkSchema = z.object({ id: z.string(), name: z.string().default(''), project_id, tags });
export const SubnetSchema = z.object({ id: z.string(), name: z.string().default(''), project_id, network_id: z.string(), cidr: z.string(), tags });
export const RouterSchema = z.object({ id: z.string(), name: z.string().default(''), project_id, tags });
export const SecurityGroupSchema = z.object({ id: z.string(), name: z.string().default(''), project_id, tags });
export const SecurityGroupRuleSchema = z.object({
  id: z.string(),
  project_id,
  security_group_id: z.string(),
  direction: z.string(),
  ethertype: z.string().default('IPv4'),
  protocol: z.string().nullable().default(null),
  port_range_min: z.number().nullable().default(null),
  port_range_max: z.number().nullable().default(null),
  remote_ip_prefix: z.string().nullable().default(null),
  remote_group_id: z.string().nullable().default(null),
  description: z.string().nullable().default(null),
});
export const PortSchema = z.object({
  id: z.string(),
  name: z.string().default(''),
  project_id,
  network_id: z.string(),
  device_id: z.string().default(''),
  device_owner: z.string().default(''),
  fixed_ips: z.array(z.object({ ip_address: z.string(), subnet_id: z.string().optional() })).default([]),
  tags,
});
export const FloatingIpSchema = z.object({
  id: z.string(),
  project_id,
  floating_ip_address: z.string(),
  port_id: z.string().nullable().default(null),
  description: z.string().nullable().default(null),
  tags,
});

export type Network = z.output<typeof NetworkSchema>;
export type Subnet = z.output<typeof SubnetSchema>;
export type Router = z.output<typeof RouterSchema>;
export type SecurityGroup = z.output<typeof SecurityGroupSchema>;
export type SecurityGroupRule = z.output<typeof SecurityGroupRuleSchema>;
export type Port = z.output<typeof PortSchema>;
export type FloatingIp = z.output<typeof FloatingIpSchema>;

/** `{"network": {...}}` and `{"networks": [...]}`, the two envelopes of every Neutron collection. */
export const one = <S extends z.ZodType>(key: string, schema: S) => z.object({ [key]: schema }).transform((b) => b[key] as z.output<S>);
export const many = <S extends z.ZodType>(key: string, schema: S) =>
  z.object({ [key]: z.array(schema) }).transform((b) => b[key] as z.output<S>[]);

const address = z.object({ addr: z.string(), 'OS-EXT-IPS:type': z.string().optional(), version: z.number().optional() });
export const ServerSchema = z.object({
  id: z.string(),
  name: z.string().default(''),
  status: z.string().default('BUILD'),
  addresses: z.record(z.string(), z.array(address)).default({}),
  metadata: z.record(z.string(), z.string()).default({}),
  fault: z.object({ message: z.string().default(''), code: z.number().optional() }).optional(),
});
export type Server = z.output<typeof ServerSchema>;
export const CreatedServerSchema = z.object({ server: z.object({ id: z.string() }) });
export const ConsoleOutputSchema = z.object({ output: z.string().nullable().default('') });
export const FlavorSchema = z.object({ id: z.string(), name: z.string().default('') });
export const ImageSchema = z.object({ id: z.string(), name: z.string().nullable().default(null) });
export const ImagesSchema = z.object({ images: z.array(ImageSchema) });
