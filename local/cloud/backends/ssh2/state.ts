import type { VmInfo } from '../../../../core/ports.ts';

/** A rule of the bastion's security group; ingress TCP to the SSH port from `cidr`. */
export interface RuleRecord {
  ruleId: string;
  securityGroup: string;
  cidr: string;
  port: number;
  description: string;
  tenantId: string;
  deploymentId: string;
}

export interface ScopedName {
  tenantId: string;
  deploymentId: string;
  name: string;
}

export interface VmRecord extends ScopedName {
  network: string;
  address: string;
  port: number;
  /** OpenSSH public host key line. */
  hostKey: string;
  status: VmInfo['status'];
  /** The `ssh_authorized_keys` of the VM's user data: the keys the bastion lets through to it. */
  loginKeys: string[];
  createdAt: string;
}

/** Everything the local backend persists in `<stateDir>/cloud/state.json`. */
export interface CloudState {
  version: 1;
  rules: RuleRecord[];
  /** Security group → TCP forwarding switch of its bastion (off until the engine turns it on). */
  forwarding: Record<string, boolean>;
  networks: (ScopedName & { cidr?: string })[];
  securityGroups: ScopedName[];
  vms: VmRecord[];
}

export const emptyState = (): CloudState => ({ version: 1, rules: [], forwarding: {}, networks: [], securityGroups: [], vms: [] });

export function sameScope(a: { tenantId: string; deploymentId: string }, b: { tenantId: string; deploymentId: string }): boolean {
  return a.tenantId === b.tenantId && a.deploymentId === b.deploymentId;
}
