import type { NetworkSpec, SecurityGroupSpec, VmSpec } from './deployment/schema.ts';
import type {
  DeploymentRecord,
  DeploymentStatus,
  HistoryEvent,
  SecretsRecord,
  StepLogLine,
  StepRecord,
  StepStatus,
} from './model.ts';

/**
 * The ports the use-cases depend on. Adapters in adapters/aws (production) and
 * adapters/local (embedded engine, tests) implement them; core/ never imports either.
 */

export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

export interface Page<T> {
  items: T[];
  nextCursor?: string;
}

export type IdempotencyClaim = { claimed: true } | { claimed: false; deploymentId: string; requestHash: string; claimedAt: number };

/** Every write is conditional where a race could lose an update; failed conditions return false. */
export interface DeploymentStore {
  /**
   * Stores a new deployment with its steps, bundle and secrets. The deployment item is
   * written last and conditionally, so a half-written deployment is never visible.
   */
  create(input: {
    deployment: DeploymentRecord;
    steps: StepRecord[];
    files: Record<string, string>;
    secrets: SecretsRecord;
  }): Promise<void>;
  /**
   * Claims an idempotency key for a tenant; otherwise returns who holds it and since when
   * (epoch ms), so a caller can tell a submit still in progress from one that died.
   */
  claimIdempotencyKey(tenantId: string, key: string, deploymentId: string, requestHash: string): Promise<IdempotencyClaim>;
  /** Releases the key only while `deploymentId` holds it: a late release never frees another's claim. */
  releaseIdempotencyKey(tenantId: string, key: string, deploymentId: string): Promise<void>;

  getDeployment(deploymentId: string): Promise<DeploymentRecord | undefined>;
  listDeployments(tenantId: string, opts: { limit: number; cursor?: string }): Promise<Page<DeploymentRecord>>;
  /** Sets fields; when `ifStatus` is given the update happens only from one of those statuses. */
  updateDeployment(
    deploymentId: string,
    patch: Partial<Omit<DeploymentRecord, 'deploymentId' | 'tenantId'>>,
    opts?: { ifStatus?: DeploymentStatus[]; ifAbsent?: keyof DeploymentRecord },
  ): Promise<boolean>;
  /** Removes optional fields (e.g. a spent task token). */
  clearDeploymentFields(deploymentId: string, fields: (keyof DeploymentRecord)[]): Promise<void>;

  getStep(deploymentId: string, stepId: string): Promise<StepRecord | undefined>;
  getSteps(deploymentId: string): Promise<StepRecord[]>;
  updateStep(
    deploymentId: string,
    stepId: string,
    patch: Partial<Omit<StepRecord, 'deploymentId' | 'stepId'>>,
    opts?: { ifStatus?: StepStatus[] },
  ): Promise<boolean>;
  clearStepFields(deploymentId: string, stepId: string, fields: (keyof StepRecord)[]): Promise<void>;

  getFiles(deploymentId: string): Promise<Record<string, string>>;
  getSecrets(deploymentId: string): Promise<SecretsRecord | undefined>;
  deleteSecrets(deploymentId: string): Promise<void>;

  appendLogs(deploymentId: string, lines: StepLogLine[]): Promise<void>;
  getLogs(deploymentId: string, opts?: { stepId?: string }): Promise<StepLogLine[]>;
}

export interface EncryptionContext {
  deploymentId: string;
  tenantId: string;
}

/** KMS: the token is encrypted bound to its deployment; decrypting under another context fails. */
export interface SecretVault {
  encrypt(plaintext: string, context: EncryptionContext): Promise<string>;
  decrypt(ciphertext: string, context: EncryptionContext): Promise<string>;
}

export interface ExecutionService {
  start(name: string, input: unknown): Promise<{ executionArn: string }>;
  history(executionArn: string): Promise<HistoryEvent[]>;
  consoleUrl(executionArn: string): string;
  sendTaskSuccess(taskToken: string, output: unknown): Promise<void>;
  sendTaskFailure(taskToken: string, error: string, cause: string): Promise<void>;
  sendTaskHeartbeat(taskToken: string): Promise<void>;
}

/** The sandbox side of ECS: the state machine starts tasks; the engine only ever stops them. */
export interface SandboxLauncher {
  stopTask(taskArn: string, reason: string): Promise<void>;
}

/** Who a cloud token belongs to; the authorizer and the submit use-case ask the cloud. */
export interface TokenIdentifier {
  identify(token: string): Promise<{ tenantId: string } | undefined>;
}

export interface CloudContext {
  /** The user's cloud token; the driver acts with it and never logs it. */
  token: string;
  deploymentId: string;
}

export interface VmInfo {
  name: string;
  /** Address reachable from the bastion (the VM's private address). */
  address: string;
  port: number;
  /** OpenSSH public host key line ("ssh-ed25519 AAAA…"), pinned by the runner. */
  hostKey: string;
  status: 'building' | 'active' | 'error';
}

export interface BastionInfo {
  address: string;
  port: number;
  hostKey: string;
}

/**
 * A target cloud. Implementations: the local cloud (ssh2 servers on loopback), the netns
 * test bed (OpenSSH in network namespaces), later OpenStack and EC2. Failures throw
 * StepError with Ctd.ProvisioningError or Ctd.BackendUnreachable (see core/errors.ts).
 */
export interface CloudDriver extends TokenIdentifier {
  describeBastion(ctx: CloudContext, securityGroup: string): Promise<BastionInfo>;
  /** The source address under which this engine reaches the bastion, as a CIDR for a rule. */
  egressCidr(ctx: CloudContext): Promise<string>;
  addBastionRule(ctx: CloudContext, input: { securityGroup: string; cidr: string; port: number; description: string }): Promise<{ ruleId: string }>;
  deleteBastionRule(ctx: CloudContext, input: { securityGroup: string; ruleId: string }): Promise<void>;
  setBastionForwarding(ctx: CloudContext, input: { securityGroup: string; enabled: boolean }): Promise<void>;

  createNetwork(ctx: CloudContext, spec: NetworkSpec): Promise<void>;
  deleteNetwork(ctx: CloudContext, name: string): Promise<void>;
  createSecurityGroup(ctx: CloudContext, spec: SecurityGroupSpec): Promise<void>;
  deleteSecurityGroup(ctx: CloudContext, name: string): Promise<void>;
  /** Creates a VM with cloud-init user data; returns at once (status building) — see the bootstrap check. */
  createVm(ctx: CloudContext, spec: VmSpec, userData: string): Promise<VmInfo>;
  deleteVm(ctx: CloudContext, name: string): Promise<void>;
  describeVms(ctx: CloudContext): Promise<VmInfo[]>;
}
