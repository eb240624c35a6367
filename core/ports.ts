import type { Bundle } from './deployment/bundle.ts';
import type { NetworkSpec, SecurityGroupSpec, VmSpec } from './deployment/schema.ts';
import type { DeploymentFields, DeploymentTransitionRequest, StepFields, StepTransitionRequest } from './lifecycle/requests.ts';
import type { TransitionResult } from './lifecycle/types.ts';
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
    files: Bundle;
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
  /**
   * Sets fields other than the status; when `ifStatus` is given the update happens only from one
   * of those statuses. A status changes only through applyDeploymentTransition.
   */
  updateDeployment(
    deploymentId: string,
    patch: DeploymentFields,
    opts?: { ifStatus?: DeploymentStatus[]; ifAbsent?: keyof DeploymentRecord },
  ): Promise<boolean>;
  /** Removes optional fields (e.g. a spent task token). */
  clearDeploymentFields(deploymentId: string, fields: (keyof DeploymentRecord)[]): Promise<void>;
  /**
   * Adds one to the deployment's `prestartClaims` in one conditional write, only while it is below `limit`;
   * false when it is not, when pre-start halted (`prestartHalted`), or when the deployment is gone. Deciders side by
   * side cannot both take the last place.
   */
  claimPrestart(deploymentId: string, limit: number): Promise<boolean>;
  /** Gives back a claim whose step was pre-started by someone else (its conditional write lost). */
  unclaimPrestart(deploymentId: string): Promise<void>;

  getStep(deploymentId: string, stepId: string): Promise<StepRecord | undefined>;
  getSteps(deploymentId: string): Promise<StepRecord[]>;
  /**
   * As updateDeployment: fields other than the status, optionally only from some statuses; `clear`
   * removes optional fields in the same conditional write (one round trip instead of two).
   */
  updateStep(
    deploymentId: string,
    stepId: string,
    patch: StepFields,
    opts?: { ifStatus?: StepStatus[]; ifAbsent?: keyof StepRecord; clear?: (keyof StepRecord)[] },
  ): Promise<boolean>;
  clearStepFields(deploymentId: string, stepId: string, fields: (keyof StepRecord)[]): Promise<void>;

  /**
   * Applies a named transition of core/lifecycle as one conditional write: the status it leads to,
   * the fields given and the fields it clears, only from the statuses it may start from. A lost
   * race is a refusal the caller handles, not an error. Implemented once, in BaseDeploymentStore.
   */
  applyStepTransition(deploymentId: string, stepId: string, request: StepTransitionRequest): Promise<TransitionResult<StepStatus>>;
  applyDeploymentTransition(deploymentId: string, request: DeploymentTransitionRequest): Promise<TransitionResult<DeploymentStatus>>;

  getFiles(deploymentId: string): Promise<Bundle>;
  getSecrets(deploymentId: string): Promise<SecretsRecord | undefined>;
  deleteSecrets(deploymentId: string): Promise<void>;

  appendLogs(deploymentId: string, lines: StepLogLine[]): Promise<void>;
  getLogs(deploymentId: string, opts?: { stepId?: string }): Promise<StepLogLine[]>;

  /**
   * What the engine created in the cloud for a deployment, one item per resource so concurrent
   * steps never overwrite each other's records. Recording the same (kind, id) twice keeps one.
   */
  recordCloudResource(deploymentId: string, ref: CloudResourceRef): Promise<void>;
  /** In the order they were recorded. */
  listCloudResources(deploymentId: string): Promise<CloudResourceRef[]>;
  forgetCloudResource(deploymentId: string, kind: string, id: string): Promise<void>;
}

export interface EncryptionContext {
  deploymentId: string;
  tenantId: string;
}

/**
 * KMS: the token is encrypted bound to its deployment; decrypting under another context fails.
 * Each deployment's decryption is allowed by its own grant, created by `encrypt` (at submit) and
 * retired by `shred` (at cleanup): afterwards no copy of the ciphertext (a backup, a restored
 * table, a LevelDB log) can be decrypted by the engine.
 */
export interface SecretVault {
  encrypt(plaintext: string, context: EncryptionContext): Promise<string>;
  decrypt(ciphertext: string, context: EncryptionContext): Promise<string>;
  /**
   * Crypto-shreds the deployment's secrets: retires its grant. Safe to repeat. The ciphertext,
   * when still at hand, names the grant; without it the grant is found by its name.
   */
  shred(deploymentId: string, ciphertext?: string): Promise<void>;
}

export interface ExecutionService {
  start(name: string, input: unknown): Promise<{ executionArn: string }>;
  history(executionArn: string): Promise<HistoryEvent[]>;
  consoleUrl(executionArn: string): string;
  sendTaskSuccess(taskToken: string, output: unknown): Promise<void>;
  sendTaskFailure(taskToken: string, error: string, cause: string): Promise<void>;
  sendTaskHeartbeat(taskToken: string): Promise<void>;
}

/** The sandbox side of ECS: the state machine starts tasks; the engine stops them and, where it can reach them, wakes them. */
export interface SandboxLauncher {
  stopTask(taskArn: string, reason: string): Promise<void>;
  /**
   * A released pre-started step: its sandbox reads its step now instead of at its next poll. Fire-and-forget,
   * never throws, carries nothing (the runner re-reads its step, so a wake releases nothing by itself); an ended
   * or unknown task is ignored. Absent where tasks cannot be reached (Fargate): the runner's poll sees the release.
   */
  wake?(taskArn: string): void;
}

/** Who a cloud token belongs to; the authorizer and the submit use-case ask the cloud. */
export interface TokenIdentifier {
  identify(token: string): Promise<{ tenantId: string } | undefined>;
}

/**
 * What the engine created in a cloud, as the store keeps it. `kind` is the driver's own word for the
 * resource (for OpenStack: network, subnet, router, securityGroup, securityGroupRule, port, server,
 * floatingIp, bastionRule); core only stores and hands it back.
 */
export interface CloudResourceRef {
  kind: string;
  id: string;
  /** The topology name it belongs to (VM, network, group, …), for logs and targeted deletion. */
  name: string;
}

/** What a driver call acts for: the user's token, the deployment, and where to record what it creates. */
export interface CloudContext {
  /** The user's cloud token; the driver acts with it and never logs it. */
  token: string;
  deploymentId: string;
  /**
   * Persists a created resource. The driver awaits it the moment the id is known, before its
   * next cloud call, so nothing it creates can be lost by a crash that follows.
   */
  record(ref: CloudResourceRef): Promise<void>;
  /** Drops a record once the resource is deleted (or found already gone). */
  forget(ref: CloudResourceRef): Promise<void>;
}

export interface VmInfo {
  name: string;
  /** The cloud's id of the server. */
  id?: string;
  /** Address reachable from the bastion (the VM's fixed private address). */
  address: string;
  port: number;
  /** OpenSSH public host key line ("ssh-ed25519 AAAA…"), pinned by the runner; unset until the cloud reports it. */
  hostKey?: string;
  /** Its floating IP, when the topology asked for one. */
  floatingIp?: string;
  status: 'building' | 'active' | 'error';
}

export interface BastionInfo {
  address: string;
  port: number;
  /** Unset until the server's console shows it; a pinned `bastion.hostKey` wins anyway. */
  hostKey?: string;
}

/** The bastion of a topology as the driver needs it (see BastionSpec). */
export interface BastionRef {
  server: string;
  securityGroup: string;
  port?: number;
}

/**
 * A target cloud, acting with the user's token (CloudContext). The production driver is
 * `adapters/openstack/`; the contract is docs/OPENSTACK.md. Failures throw StepError with a name
 * from the error table (core/errors.ts). Every create first adopts what an earlier attempt made
 * (found by its deployment mark) and records what it creates through `ctx.record`; every delete
 * counts "already gone" as deleted.
 */
export interface CloudDriver extends TokenIdentifier {
  /** The source addresses (CIDRs) under which this engine reaches the bastion; one rule each. */
  egressCidrs(ctx: CloudContext): Promise<string[]>;
  /** Address, port and (when known) host key of the bastion server. */
  describeBastion(ctx: CloudContext, bastion: BastionRef): Promise<BastionInfo>;
  /** Ingress rule on the bastion's group from `cidr` to `port`, marked with the deployment; adopted when it exists. */
  openBastionRule(ctx: CloudContext, input: { securityGroup: string; cidr: string; port: number }): Promise<{ ruleId: string }>;
  /**
   * Deletes the deployment's bastion rules: the recorded ones (by id), and any other rule on the
   * group marked with the deployment. Gone is deleted.
   */
  closeBastionRules(
    ctx: CloudContext,
    input: { securityGroup: string; server?: string; recorded: readonly CloudResourceRef[] },
  ): Promise<{ deleted: string[]; keptFor: string[] }>;
  /** Lets the deployment's key log in to the bastion and forward TCP (OpenStack: server metadata). */
  grantBastionAccess(ctx: CloudContext, input: { server: string; publicKey: string }): Promise<void>;
  revokeBastionAccess(ctx: CloudContext, input: { server: string }): Promise<void>;

  /** A network with its subnet and, when asked, its router to `externalNetwork`. */
  ensureNetwork(ctx: CloudContext, input: { network: NetworkSpec; index: number; externalNetwork?: string }): Promise<void>;
  /** A security group with its rules. */
  ensureSecurityGroup(ctx: CloudContext, group: SecurityGroupSpec): Promise<void>;
  /**
   * Lets the bastion reach the SSH port of every VM of the deployment (a group of the engine's own,
   * added to each VM by ensureVm), whatever groups the topology declares.
   */
  ensureSshAccess(ctx: CloudContext, input: { bastionSecurityGroup: string }): Promise<void>;
  /**
   * A VM with cloud-init user data on its network, in its groups, with a floating IP when asked.
   * Returns once the server is ACTIVE (bounded wait); a server in ERROR fails at once.
   */
  ensureVm(ctx: CloudContext, input: { vm: VmSpec; userData: string; externalNetwork?: string }): Promise<VmInfo>;
  /** The deployment's VMs (all, or those named), with host keys where the cloud shows them. */
  describeVms(ctx: CloudContext, names?: readonly string[]): Promise<VmInfo[]>;

  /** Deletes one VM of the deployment (floating IP, server, port); gone is deleted. */
  deleteVm(ctx: CloudContext, name: string, recorded: readonly CloudResourceRef[]): Promise<void>;
  /**
   * Deletes these resources in reverse creation order (servers before ports before groups before
   * networks); gone is deleted. Returns what was deleted.
   */
  deleteResources(ctx: CloudContext, refs: readonly CloudResourceRef[]): Promise<CloudResourceRef[]>;
  /**
   * Deletes the deployment's topology: the `recorded` resources together with every resource
   * still marked with the deployment (what a lost record forgot), all in reverse creation order.
   * Bastion rules are left to closeBastionRules. Returns what was deleted.
   */
  sweep(ctx: CloudContext, recorded?: readonly CloudResourceRef[]): Promise<CloudResourceRef[]>;
}
