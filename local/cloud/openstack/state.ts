/**
 * Everything the local OpenStack persists (`<stateDir>/cloud/openstack.json`, 0600). Neutron
 * resources are kept close to their wire shape; derived fields (`subnets` of a network,
 * `tenant_id`, …) are added when they are rendered. Every resource carries `project_id`: a
 * project sees only its own resources and the shared external network.
 */
export interface ProjectRecord {
  id: string;
  name: string;
  userId: string;
  userName: string;
  /** scrypt hash (hex) and salt of the password `ctd local openrc` handed out; absent until then. */
  password?: { salt: string; hash: string };
  bastionServerId: string;
  createdAt: string;
}

export interface TokenRecord {
  projectId: string;
  methods: string[];
  issuedAt: string;
  expiresAt: string;
}

interface Tagged {
  id: string;
  project_id: string;
  name: string;
  description: string;
  tags: string[];
  created_at: string;
  updated_at: string;
}

export interface NetworkRecord extends Tagged {
  'router:external': boolean;
  shared: boolean;
}

export interface SubnetRecord extends Tagged {
  network_id: string;
  cidr: string;
  gateway_ip: string | null;
  ip_version: 4;
  enable_dhcp: boolean;
}

export interface RouterRecord extends Tagged {
  external_gateway_info: { network_id: string; external_fixed_ips: { subnet_id: string; ip_address: string }[] } | null;
}

export interface SecurityGroupRecord extends Tagged {}

export interface RuleRecord {
  id: string;
  project_id: string;
  security_group_id: string;
  direction: 'ingress' | 'egress';
  ethertype: 'IPv4' | 'IPv6';
  protocol: string | null;
  port_range_min: number | null;
  port_range_max: number | null;
  remote_ip_prefix: string | null;
  remote_group_id: string | null;
  description: string;
  created_at: string;
  updated_at: string;
}

export interface PortRecord extends Tagged {
  network_id: string;
  mac_address: string;
  fixed_ips: { subnet_id: string; ip_address: string }[];
  security_groups: string[];
  device_id: string;
  device_owner: string;
  /** Created by Nova for `networks: [{uuid}]`: deleted with its server. */
  autoDelete?: boolean;
}

export interface FloatingIpRecord {
  id: string;
  project_id: string;
  floating_ip_address: string;
  floating_network_id: string;
  port_id: string | null;
  fixed_ip_address: string | null;
  router_id: string | null;
  description: string;
  tags: string[];
  created_at: string;
  updated_at: string;
}

export type ServerStatus = 'BUILD' | 'ACTIVE' | 'ERROR';

export interface ServerRecord {
  id: string;
  project_id: string;
  name: string;
  status: ServerStatus;
  imageId: string;
  flavorId: string;
  /** Base64 as Nova stored it. */
  userData: string;
  metadata: Record<string, string>;
  portIds: string[];
  /** Security group names asked for at creation (Nova shows these). */
  securityGroups: string[];
  hostKey: string;
  fault?: { code: number; message: string; created: string };
  /** The bastion of its project (not deletable by the engine's marks, shown like any server). */
  bastion?: boolean;
  created: string;
  updated: string;
}

export interface CloudStateFile {
  version: 2;
  projects: ProjectRecord[];
  /** SHA-256 (hex) of each token → its record; tokens themselves are never stored. */
  tokens: Record<string, TokenRecord>;
  networks: NetworkRecord[];
  subnets: SubnetRecord[];
  routers: RouterRecord[];
  securityGroups: SecurityGroupRecord[];
  rules: RuleRecord[];
  ports: PortRecord[];
  floatingIps: FloatingIpRecord[];
  servers: ServerRecord[];
}

export const emptyCloudState = (): CloudStateFile => ({
  version: 2,
  projects: [],
  tokens: {},
  networks: [],
  subnets: [],
  routers: [],
  securityGroups: [],
  rules: [],
  ports: [],
  floatingIps: [],
  servers: [],
});
