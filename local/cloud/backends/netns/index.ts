import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, unlink, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { NetworkSpec, SecurityGroupSpec, VmSpec } from '../../../../core/deployment/schema.ts';
import { NAME_PATTERN } from '../../../../core/deployment/schema.ts';
import { ErrorName, StepError } from '../../../../core/errors.ts';
import type { BastionInfo, VmInfo } from '../../../../core/ports.ts';
import type { CloudBackend, CloudScope } from '../../../cloud-backend.ts';
import { parseUserData, vmBootPaths, writeBootScript, type VmBootPaths } from './cloudInit.ts';
import { addIngressRule, deleteIngressRule, installTable } from './firewall.ts';
import { exposeLoopbackPort, type LoopbackPort } from './loopbackPorts.ts';
import { FIRST_VM_SLOT, LAST_VM_SLOT, layoutFor, type Layout } from './names.ts';
import { createNamespace, createVethPair, deleteNamespace, ipIn, listNamespaces } from './namespaces.ts';
import { run } from './run.ts';
import {
  ensurePrivsepDir,
  exited,
  generateHostKey,
  renderSshdConfig,
  spawnInNamespace,
  sshdFiles,
  waitForPidFile,
  type SshdFiles,
} from './sshd.ts';

export { layoutFor, type Layout } from './names.ts';

export interface NetnsBackendOptions {
  /** Where per-run files live (host keys, sshd configs, VM homes). Not under /root, /srv or /var/log: VMs mount their own there. */
  stateDir: string;
  /** Unique per run ('ctd' + 4 hex, say): part of every namespace, interface and nftables table name. */
  prefix: string;
  /** A /16 (A.B.0.0/16) used only inside this run's namespaces; default 10.213.0.0/16. */
  subnet?: string;
  /** Milliseconds to wait for the bastion's sshd; default 5000. */
  readyTimeoutMs?: number;
}

/** The login user on the bastion and on every VM: root inside the namespaces (see docs in README of this folder). */
export const NETNS_USER = 'root';

interface VmState {
  scopeKey: string;
  name: string;
  slot: number;
  hostKey: string;
  paths: VmBootPaths;
  pidFile: string;
  child: ChildProcess;
  publicKeys: string[];
}

interface RuleState {
  scopeKey: string;
  securityGroup: string;
  handle: number;
}

const STATE_FILE = 'netns-backend.json';
const scopeKeyOf = (s: CloudScope): string => `${s.tenantId}/${s.deploymentId}`;
const provisioning = (message: string): StepError => new StepError(ErrorName.ProvisioningError, message);

/**
 * The realistic local cloud: the bastion and each VM are network namespaces running real
 * OpenSSH, the bastion's security group is an nftables table and its forwarding switch is
 * `AllowTcpForwarding` + SIGHUP. The engine side is the `<prefix>-host` namespace: step
 * sandboxes run there ({@link NetnsBackend.sandboxCommandPrefix}), so a step reaches the
 * bastion's public address and nothing else, and reaches the engine's loopback services only
 * through ports exposed with {@link NetnsBackend.exposeLoopbackPorts}.
 *
 * Keys: a VM's `ssh_authorized_keys` go to root's authorized_keys inside the VM (its private
 * /root). The bastion accepts a deployment's keys from the moment that deployment's first VM is
 * created until its last VM is deleted, with `restrict,port-forwarding` (jump host only).
 *
 * Restart: nothing survives `stop()`; `start()` first removes leftovers of a previous run with
 * the same prefix (or the prefix recorded in the state dir) and then starts empty.
 */
export class NetnsBackend implements CloudBackend {
  readonly kind = 'netns' as const;
  readonly layout: Layout;
  private readonly stateDir: string;
  private readonly runDir: string;
  private readonly readyTimeoutMs: number;
  private bastion?: { files: SshdFiles; hostKey: string; child: ChildProcess; forwarding: boolean };
  private readonly bastionKeys = new Map<string, Set<string>>();
  private readonly rules = new Map<string, RuleState>();
  private readonly networks = new Map<string, Set<string>>();
  private readonly securityGroups = new Map<string, Set<string>>();
  private readonly vms = new Map<string, VmState>();
  private readonly loopback = new Map<number, LoopbackPort>();
  /** Serialises writes of the bastion's authorized_keys and sshd config. */
  private bastionWrites: Promise<unknown> = Promise.resolve();

  constructor(opts: NetnsBackendOptions) {
    this.layout = layoutFor(opts.prefix, opts.subnet);
    this.stateDir = resolve(opts.stateDir);
    for (const hidden of ['/root', '/srv', '/var/log']) {
      if (this.stateDir === hidden || this.stateDir.startsWith(`${hidden}/`)) {
        throw new Error(`netns stateDir must not be under ${hidden}: each VM mounts its own ${hidden}`);
      }
    }
    this.runDir = join(this.stateDir, this.layout.prefix);
    this.readyTimeoutMs = opts.readyTimeoutMs ?? 5000;
  }

  /** Prepend to a sandbox command so it runs in the engine-side namespace. */
  sandboxCommandPrefix(): string[] {
    return ['ip', 'netns', 'exec', this.layout.hostNs];
  }

  /** Makes 127.0.0.1:PORT inside the host namespace reach 127.0.0.1:PORT of the root namespace. */
  async exposeLoopbackPorts(ports: number[]): Promise<void> {
    this.requireStarted();
    for (const port of ports) {
      if (this.loopback.has(port)) continue;
      this.loopback.set(port, await exposeLoopbackPort(this.layout.hostNs, port, join(this.runDir, 'lo')));
    }
  }

  async start(): Promise<void> {
    if (this.bastion) return;
    await this.cleanupLeftovers();
    const L = this.layout;
    try {
      await mkdir(this.runDir, { recursive: true, mode: 0o700 });
      await ensurePrivsepDir();
      await createNamespace(L.hostNs);
      await createNamespace(L.bastionNs);
      await createVethPair({ ns: L.hostNs, name: L.hostIf, peerNs: L.bastionNs, peerName: L.bastionPublicIf });
      await ipIn(L.hostNs, 'addr', 'add', `${L.hostAddress}/${L.publicPrefixLength}`, 'dev', L.hostIf);
      await ipIn(L.hostNs, 'link', 'set', L.hostIf, 'up');
      await ipIn(L.bastionNs, 'addr', 'add', `${L.bastionPublicAddress}/${L.publicPrefixLength}`, 'dev', L.bastionPublicIf);
      await ipIn(L.bastionNs, 'link', 'set', L.bastionPublicIf, 'up');
      await ipIn(L.bastionNs, 'link', 'add', L.bridge, 'type', 'bridge');
      await ipIn(L.bastionNs, 'addr', 'add', `${L.bastionPrivateAddress}/${L.privatePrefixLength}`, 'dev', L.bridge);
      await ipIn(L.bastionNs, 'link', 'set', L.bridge, 'up');
      // Only SSH forwarding may cross the bastion, never routed packets.
      await run('ip', ['netns', 'exec', L.bastionNs, 'sysctl', '-qw', 'net.ipv4.ip_forward=0']);
      await installTable(L.bastionNs, L.table, L.bastionPublicIf);

      const files = sshdFiles(join(this.runDir, 'bastion'));
      const hostKey = await generateHostKey(files);
      await writeFile(join(files.dir, 'authorized_keys'), '', { mode: 0o600 });
      await writeFile(files.config, this.bastionConfig(files, false));
      const child = spawnInNamespace(L.bastionNs, ['/usr/sbin/sshd', '-D', '-f', files.config, '-E', files.log]);
      this.bastion = { files, hostKey, child, forwarding: false };
      await waitForPidFile(files.pidFile, child, this.readyTimeoutMs, 'bastion sshd');
      await writeFile(join(this.stateDir, STATE_FILE), JSON.stringify({ prefix: L.prefix }));
    } catch (e) {
      await this.stop();
      throw e;
    }
  }

  async stop(): Promise<void> {
    for (const lo of this.loopback.values()) await lo.close();
    this.loopback.clear();
    await Promise.all([...this.vms.values()].map((vm) => this.destroyVm(vm)));
    this.vms.clear();
    const children = this.bastion ? [this.bastion.child] : [];
    await deleteNamespace(this.layout.bastionNs);
    await deleteNamespace(this.layout.hostNs);
    await Promise.all(children.map(exited));
    this.bastion = undefined;
    this.bastionKeys.clear();
    this.rules.clear();
    this.networks.clear();
    this.securityGroups.clear();
    await rm(this.runDir, { recursive: true, force: true });
    await rm(join(this.stateDir, STATE_FILE), { force: true });
  }

  async describeBastion(_securityGroup: string): Promise<BastionInfo> {
    const bastion = this.requireStarted();
    return { address: this.layout.bastionPublicAddress, port: 22, hostKey: bastion.hostKey };
  }

  async egressCidr(): Promise<string> {
    return `${this.layout.hostAddress}/32`;
  }

  async addBastionRule(
    scope: CloudScope,
    input: { securityGroup: string; cidr: string; port: number; description: string },
  ): Promise<{ ruleId: string }> {
    this.requireStarted();
    const ruleId = `sgr-${randomBytes(6).toString('hex')}`;
    try {
      const handle = await addIngressRule(this.layout.bastionNs, this.layout.table, { cidr: input.cidr, port: input.port, comment: ruleId });
      this.rules.set(ruleId, { scopeKey: scopeKeyOf(scope), securityGroup: input.securityGroup, handle });
    } catch (e) {
      throw provisioning(`adding the bastion rule failed: ${(e as Error).message}`);
    }
    return { ruleId };
  }

  async deleteBastionRule(scope: CloudScope, input: { securityGroup: string; ruleId: string }): Promise<void> {
    this.requireStarted();
    const rule = this.rules.get(input.ruleId);
    // Deleting a rule that is already gone succeeds: bastion-close must be safe to repeat.
    if (!rule) return;
    // Rules belong to the tenant (a cloud project), as in the ssh2 backend: the delete call names no deployment.
    if (!rule.scopeKey.startsWith(`${scope.tenantId}/`)) throw provisioning(`rule ${input.ruleId} belongs to another tenant`);
    try {
      await deleteIngressRule(this.layout.bastionNs, this.layout.table, rule.handle);
    } catch (e) {
      throw provisioning(`deleting the bastion rule failed: ${(e as Error).message}`);
    }
    this.rules.delete(input.ruleId);
  }

  async setBastionForwarding(input: { securityGroup: string; enabled: boolean }): Promise<void> {
    const bastion = this.requireStarted();
    if (bastion.forwarding === input.enabled) return;
    await this.serialiseBastion(async () => {
      bastion.forwarding = input.enabled;
      await writeFile(bastion.files.config, this.bastionConfig(bastion.files, input.enabled));
      await this.reloadBastion();
    });
  }

  async createNetwork(scope: CloudScope, spec: NetworkSpec): Promise<void> {
    // Every VM sits on the bastion's one bridge; a network is bookkeeping only.
    add(this.networks, scopeKeyOf(scope), spec.name);
  }

  async deleteNetwork(scope: CloudScope, name: string): Promise<void> {
    const key = scopeKeyOf(scope);
    const inUse = [...this.vms.values()].some((vm) => vm.scopeKey === key);
    if (inUse && this.networks.get(key)?.has(name)) throw provisioning(`network ${name} still has VMs`);
    this.networks.get(key)?.delete(name);
  }

  async createSecurityGroup(scope: CloudScope, spec: SecurityGroupSpec): Promise<void> {
    add(this.securityGroups, scopeKeyOf(scope), spec.name);
  }

  async deleteSecurityGroup(scope: CloudScope, name: string): Promise<void> {
    this.securityGroups.get(scopeKeyOf(scope))?.delete(name);
  }

  async createVm(scope: CloudScope, spec: VmSpec, userData: string): Promise<VmInfo> {
    this.requireStarted();
    if (!NAME_PATTERN.test(spec.name)) throw provisioning(`invalid VM name ${spec.name}`);
    const scopeKey = scopeKeyOf(scope);
    const key = `${scopeKey}/${spec.name}`;
    if (this.vms.has(key)) throw provisioning(`VM ${spec.name} already exists`);
    let config;
    try {
      config = parseUserData(userData);
    } catch (e) {
      throw provisioning(`VM ${spec.name}: invalid user data: ${(e as Error).message}`);
    }
    const slot = this.freeSlot();
    const L = this.layout;
    const ns = L.vmNs(slot);
    const paths = vmBootPaths(join(this.runDir, `vm${slot}`));
    const files = sshdFiles(join(paths.dir, 'sshd'));
    // Claim the slot before the first await so concurrent creations never share one.
    const vm: VmState = { scopeKey, name: spec.name, slot, hostKey: '', paths, pidFile: files.pidFile, child: undefined as never, publicKeys: config.sshAuthorizedKeys };
    this.vms.set(key, vm);
    try {
      vm.hostKey = await generateHostKey(files);
      await writeFile(files.config, renderSshdConfig(files, { authorizedKeysFile: '.ssh/authorized_keys', allowTcpForwarding: false }));
      await createNamespace(ns);
      await createVethPair({ ns: L.bastionNs, name: L.vmBridgeIf(slot), peerNs: ns, peerName: L.vmIf(slot) });
      await ipIn(L.bastionNs, 'link', 'set', L.vmBridgeIf(slot), 'master', L.bridge, 'up');
      await ipIn(ns, 'addr', 'add', `${L.vmAddress(slot)}/${L.privatePrefixLength}`, 'dev', L.vmIf(slot));
      await ipIn(ns, 'link', 'set', L.vmIf(slot), 'up');
      // A reused slot has a new MAC: the bastion's cached neighbour entry would blackhole its SSH for a minute or more.
      await ipIn(L.bastionNs, 'neigh', 'flush', 'to', L.vmAddress(slot));
      await this.updateBastionKeys();
      const script = await writeBootScript(paths, spec.name, config);
      vm.child = spawnInNamespace(ns, [
        'unshare', '--mount', '--uts', '--pid', '--fork', '--kill-child', '--mount-proc', '--propagation', 'private', '/bin/sh', script,
      ]);
    } catch (e) {
      await this.destroyVm(vm);
      this.vms.delete(key);
      throw provisioning(`creating VM ${spec.name} failed: ${(e as Error).message}`);
    }
    return this.vmInfo(vm);
  }

  async deleteVm(scope: CloudScope, name: string): Promise<void> {
    const key = `${scopeKeyOf(scope)}/${name}`;
    const vm = this.vms.get(key);
    // Deleting a VM that does not exist succeeds, so deprovision can be repeated.
    if (!vm) return;
    await this.destroyVm(vm);
    this.vms.delete(key);
    await this.updateBastionKeys();
  }

  async describeVms(scope: CloudScope): Promise<VmInfo[]> {
    const key = scopeKeyOf(scope);
    return [...this.vms.values()].filter((vm) => vm.scopeKey === key).map((vm) => this.vmInfo(vm));
  }

  /** The namespace a VM lives in (tests use it to cut a VM off or inspect it). */
  vmNamespace(scope: CloudScope, name: string): string | undefined {
    const vm = this.vms.get(`${scopeKeyOf(scope)}/${name}`);
    return vm ? this.layout.vmNs(vm.slot) : undefined;
  }

  private vmInfo(vm: VmState): VmInfo {
    const gone = !vm.child || vm.child.exitCode !== null || vm.child.signalCode !== null;
    const status = gone ? 'error' : existsSync(vm.pidFile) ? 'active' : 'building';
    return { name: vm.name, address: this.layout.vmAddress(vm.slot), port: 22, hostKey: vm.hostKey, status };
  }

  private freeSlot(): number {
    const used = new Set([...this.vms.values()].map((vm) => vm.slot));
    for (let slot = FIRST_VM_SLOT; slot <= LAST_VM_SLOT; slot++) if (!used.has(slot)) return slot;
    throw provisioning(`no free VM address (at most ${LAST_VM_SLOT - FIRST_VM_SLOT + 1} VMs)`);
  }

  private async destroyVm(vm: VmState): Promise<void> {
    await deleteNamespace(this.layout.vmNs(vm.slot));
    if (vm.child) await exited(vm.child);
    await rm(vm.paths.dir, { recursive: true, force: true });
  }

  /**
   * The bastion accepts the keys of every deployment that has VMs: a jump host only
   * (`restrict,port-forwarding`: no shell session features, no agent or X11).
   */
  private async updateBastionKeys(): Promise<void> {
    const bastion = this.requireStarted();
    const keys = new Set<string>();
    for (const vm of this.vms.values()) for (const k of vm.publicKeys) keys.add(k);
    const text = [...keys].map((k) => `restrict,port-forwarding ${k}\n`).join('');
    await this.serialiseBastion(() => writeFile(join(bastion.files.dir, 'authorized_keys'), text, { mode: 0o600 }));
  }

  private bastionConfig(files: SshdFiles, forwarding: boolean): string {
    return renderSshdConfig(files, { authorizedKeysFile: join(files.dir, 'authorized_keys'), allowTcpForwarding: forwarding });
  }

  /** SIGHUP makes sshd re-exec with the new config under the same pid; the PidFile marks it listening again. */
  private async reloadBastion(): Promise<void> {
    const bastion = this.requireStarted();
    await unlink(bastion.files.pidFile).catch(() => undefined);
    bastion.child.kill('SIGHUP');
    await waitForPidFile(bastion.files.pidFile, bastion.child, this.readyTimeoutMs, 'bastion sshd (reload)');
  }

  private serialiseBastion<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.bastionWrites.then(fn, fn);
    this.bastionWrites = next.catch(() => undefined);
    return next;
  }

  private requireStarted(): NonNullable<NetnsBackend['bastion']> {
    if (!this.bastion) throw new StepError(ErrorName.BackendUnreachable, 'the netns cloud is not started');
    return this.bastion;
  }

  /** Removes namespaces left by a crashed run with this prefix or the one recorded in the state dir. */
  private async cleanupLeftovers(): Promise<void> {
    const prefixes = new Set([this.layout.prefix]);
    try {
      const recorded = JSON.parse(await readFile(join(this.stateDir, STATE_FILE), 'utf8')) as { prefix?: unknown };
      if (typeof recorded.prefix === 'string') prefixes.add(recorded.prefix);
    } catch {
      // No previous run recorded.
    }
    const names = await listNamespaces();
    const ours = (ns: string): boolean => [...prefixes].some((p) => ns.startsWith(`${p}-`));
    // VMs first, then the bastion and host: a VM's veth lives half in the bastion.
    const leftovers = names.filter(ours).sort((a, b) => Number(b.includes('-vm')) - Number(a.includes('-vm')));
    for (const ns of leftovers) await deleteNamespace(ns);
    for (const p of prefixes) await rm(join(this.stateDir, p), { recursive: true, force: true });
    await mkdir(this.stateDir, { recursive: true, mode: 0o700 });
  }
}

function add(map: Map<string, Set<string>>, key: string, value: string): void {
  const set = map.get(key) ?? new Set<string>();
  set.add(value);
  map.set(key, set);
}
