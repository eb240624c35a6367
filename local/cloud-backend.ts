import type { NetworkSpec, SecurityGroupSpec, VmSpec } from '../core/deployment/schema.ts';
import type { BastionInfo, VmInfo } from '../core/ports.ts';

/**
 * A local cloud's machinery, hosted behind the local cloud's REST API (local/cloud/server.ts).
 * Two backends: `local` (ssh2 servers on loopback, pure npm) and `netns` (OpenSSH in
 * network namespaces, nftables security groups). Resources are scoped by tenant and deployment.
 */
export interface CloudScope {
  tenantId: string;
  deploymentId: string;
}

export interface CloudBackend {
  readonly kind: 'local' | 'netns';
  /** Brings up the bastion (and restores persisted resources after a restart). */
  start(): Promise<void>;
  /** Stops every server and process it started and removes what it made outside its state dir. */
  stop(): Promise<void>;
  describeBastion(securityGroup: string): Promise<BastionInfo>;
  /** The engine's source address as the bastion sees it, as a CIDR. */
  egressCidr(): Promise<string>;
  addBastionRule(scope: CloudScope, input: { securityGroup: string; cidr: string; port: number; description: string }): Promise<{ ruleId: string }>;
  deleteBastionRule(scope: CloudScope, input: { securityGroup: string; ruleId: string }): Promise<void>;
  setBastionForwarding(input: { securityGroup: string; enabled: boolean }): Promise<void>;
  createNetwork(scope: CloudScope, spec: NetworkSpec): Promise<void>;
  deleteNetwork(scope: CloudScope, name: string): Promise<void>;
  createSecurityGroup(scope: CloudScope, spec: SecurityGroupSpec): Promise<void>;
  deleteSecurityGroup(scope: CloudScope, name: string): Promise<void>;
  createVm(scope: CloudScope, spec: VmSpec, userData: string): Promise<VmInfo>;
  deleteVm(scope: CloudScope, name: string): Promise<void>;
  describeVms(scope: CloudScope): Promise<VmInfo[]>;
}
