import { bootHostname } from '../hostname.ts';
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { appendFile, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { BastionAccess, BastionSpec, Hypervisor, ServerSpec } from '../../../cloud-backend.ts';
import { installKeysCommand, KEYS_COMMAND_ROOT, publishAccess, removeKeysCommand, type KeysCommand } from './accessKeys.ts';
import { parseUserData, vmBootPaths, writeBootScript, type CloudConfig, type VmBootPaths } from './cloudInit.ts';
import { installTable, replaceIngressRules } from './firewall.ts';
import { contains, isIpv4, overlaps, parseCidr, type Cidr } from './ipv4.ts';
import { exposeLoopbackPort, type LoopbackPort } from './loopbackPorts.ts';
import { writeAliasedPasswd } from './logins.ts';
import { layoutFor, MAX_INDEX, type Layout } from './names.ts';
import { createNamespace, createVethPair, deleteNamespace, ipIn, killNamespaceProcesses, listNamespaces } from './namespaces.ts';
import { run } from './run.ts';
import { ensureHostKey, ensurePrivsepDir, exited, renderSshdConfig, spawnInNamespace, sshdFiles, waitForPidFile, type SshdFiles } from './sshd.ts';

export { layoutFor, type Layout } from './names.ts';

export interface NetnsHypervisorOptions {
  /** Where servers' disks live (host keys, homes, logs). Not under /root, /srv or /var/log: VMs mount their own there. */
  stateDir: string;
  /** Unique per engine ('ctd' + 4 hex, say): part of every namespace, interface, nftables table and /run directory. */
  prefix: string;
  /** A /16 (A.B.0.0/16) for the engine side and floating IPs, used only inside these namespaces; default 10.213.0.0/16. */
  subnet?: string;
  /** Milliseconds to wait for a bastion's sshd or a VM's first boot step; default 5000. */
  readyTimeoutMs?: number;
  /** Parent of the per-run AuthorizedKeysCommand directory; default /run/ctd-netns (must be root-owned, not group/world-writable). */
  keysCommandRoot?: string;
  /** Login names that mean root on every bastion and VM (see logins.ts); default ['ctd'], the local cloud's user. */
  loginAliases?: string[];
}

/** The login user on every bastion and VM: root inside the namespaces (no user is created on the machine); aliases such as `ctd` map to it. */
export const NETNS_USER = 'root';

interface NetworkState {
  index: number;
  subnetId: string;
  networkId: string;
  cidr: Cidr;
  gatewayIp: string;
  servers: Set<string>;
}

interface ProjectState {
  index: number;
  projectId: string;
  ns: string;
  networks: Map<string, NetworkState>;
  bastionId?: string;
}

interface BastionState {
  kind: 'bastion';
  id: string;
  project: ProjectState;
  address: string;
  files: SshdFiles;
  hostKey: string;
  child: ChildProcess;
  keys: KeysCommand;
}

interface VmState {
  kind: 'vm';
  id: string;
  project: ProjectState;
  network: NetworkState;
  slot: number;
  fixedIp: string;
  hostKey: string;
  paths: VmBootPaths;
  child?: ChildProcess;
}

type ServerState = BastionState | VmState;

const STATE_FILE = 'netns-hypervisor.json';
/** Server ids become directory names: the front's uuids fit, nothing that could climb out does. */
const SERVER_ID = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;
const HOSTNAME = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

/**
 * The realistic hypervisor of the local cloud (Linux, root). Each project is a network
 * namespace holding its bastion (real OpenSSH at its floating IP, an nftables table for the
 * ingress rules of its security groups, an `AuthorizedKeysCommand` for the `ctd-access-*`
 * keys) and one bridge per subnet, whose gateway address is the bastion's side. Each server is
 * a namespace of its own running OpenSSH as PID 1 of a private PID namespace, with the subnet's
 * fixed IP. `ip_forward=0` in the project namespace and no route from the engine side to any
 * subnet: only SSH forwarding through the bastion, as the gate allows, reaches a server.
 *
 * The engine side is `<prefix>-host`: step sandboxes run there ({@link sandboxCommandPrefix})
 * with the egress address as their source. See README.md in this folder.
 */
export class NetnsHypervisor implements Hypervisor {
  readonly kind = 'netns' as const;
  readonly layout: Layout;
  private readonly stateDir: string;
  private readonly keysRoot: string;
  private readonly readyTimeoutMs: number;
  private readonly loginAliases: string[];
  private started = false;
  private readonly projects = new Map<string, ProjectState>();
  private readonly servers = new Map<string, ServerState>();
  private readonly pending = new Map<string, Promise<{ hostKey: string; port?: number }>>();
  private readonly loopback = new Map<number, LoopbackPort>();
  private counter = 0;
  /** Serialises namespace and bridge plumbing: concurrent boots in one project share it. */
  private plumbing: Promise<unknown> = Promise.resolve();

  constructor(opts: NetnsHypervisorOptions) {
    this.layout = layoutFor(opts.prefix, opts.subnet);
    this.stateDir = resolve(opts.stateDir);
    for (const hidden of ['/root', '/srv', '/var/log']) {
      if (this.stateDir === hidden || this.stateDir.startsWith(`${hidden}/`)) {
        throw new Error(`netns stateDir must not be under ${hidden}: each VM mounts its own ${hidden}`);
      }
    }
    this.keysRoot = join(opts.keysCommandRoot ?? KEYS_COMMAND_ROOT, this.layout.prefix);
    this.readyTimeoutMs = opts.readyTimeoutMs ?? 5000;
    this.loginAliases = opts.loginAliases ?? ['ctd'];
  }

  private get passwdFile(): string {
    return join(this.keysRoot, 'passwd');
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
      this.loopback.set(port, await exposeLoopbackPort(this.layout.hostNs, port, join(this.stateDir, `lo-${this.layout.prefix}`)));
    }
  }

  async start(): Promise<void> {
    if (this.started) return;
    await this.cleanupLeftovers();
    const L = this.layout;
    try {
      await mkdir(join(this.stateDir, 'servers'), { recursive: true, mode: 0o700 });
      await ensurePrivsepDir();
      await mkdir(this.keysRoot, { recursive: true, mode: 0o755 });
      await writeAliasedPasswd(this.passwdFile, this.loginAliases);
      await createNamespace(L.hostNs);
      // The egress address sits on loopback; each bastion's veth gets a /32 route with it as source.
      await ipIn(L.hostNs, 'addr', 'add', `${L.egressAddress}/32`, 'dev', 'lo');
      await writeFile(join(this.stateDir, STATE_FILE), JSON.stringify({ prefix: L.prefix }));
      this.started = true;
    } catch (e) {
      await this.stop();
      throw e;
    }
  }

  async stop(): Promise<void> {
    for (const lo of this.loopback.values()) await lo.close();
    this.loopback.clear();
    await Promise.allSettled([...this.pending.values()]);
    const vms = [...this.servers.values()].filter((s): s is VmState => s.kind === 'vm');
    await Promise.all(vms.map((vm) => this.killVm(vm)));
    for (const project of this.projects.values()) await deleteNamespace(project.ns);
    const bastions = [...this.servers.values()].filter((s): s is BastionState => s.kind === 'bastion');
    await Promise.all(bastions.map((b) => exited(b.child)));
    await deleteNamespace(this.layout.hostNs);
    await removeKeysCommand(this.keysRoot);
    await rm(join(this.stateDir, `lo-${this.layout.prefix}`), { recursive: true, force: true });
    await rm(join(this.stateDir, STATE_FILE), { force: true });
    this.servers.clear();
    this.projects.clear();
    this.started = false;
  }

  async egressAddress(): Promise<string> {
    return this.layout.egressAddress;
  }

  startBastion(spec: BastionSpec, opts: { restore: boolean }): Promise<{ hostKey: string; port: number }> {
    return this.once(spec.id, async () => ({ hostKey: await this.bootBastion(spec, opts), port: 22 })) as Promise<{ hostKey: string; port: number }>;
  }

  async setBastionAccess(bastionId: string, access: BastionAccess): Promise<void> {
    await this.pending.get(bastionId)?.catch(() => undefined);
    const bastion = this.servers.get(bastionId);
    if (!bastion || bastion.kind !== 'bastion') throw new Error(`netns: no bastion ${bastionId} runs here`);
    // Keys and rules of one bastion change one at a time, in the order the front computed them.
    await this.serialise(async () => {
      await publishAccess(bastion.keys.dir, access.logins);
      await replaceIngressRules(bastion.project.ns, this.layout.table, access.ingress);
    });
  }

  startServer(spec: ServerSpec, opts: { restore: boolean }): Promise<{ hostKey: string }> {
    return this.once(spec.id, async () => ({ hostKey: await this.bootVm(spec, opts) }));
  }

  async deleteServer(serverId: string): Promise<void> {
    await this.pending.get(serverId)?.catch(() => undefined);
    const server = this.servers.get(serverId);
    if (server?.kind === 'bastion') await this.removeBastion(server);
    else if (server?.kind === 'vm') await this.removeVm(server);
    // The disk goes with the server, also one left by an earlier run (a delete after a restart).
    if (SERVER_ID.test(serverId)) await rm(this.diskOf(serverId), { recursive: true, force: true });
  }

  /** The namespace a server (VM) runs in: tests use it to cut a VM off or look inside. */
  serverNamespace(serverId: string): string | undefined {
    const s = this.servers.get(serverId);
    return s?.kind === 'vm' ? this.layout.vmNs(s.slot) : s?.kind === 'bastion' ? s.project.ns : undefined;
  }

  /** The project's namespace (its bastion's sshd and nftables table live there). */
  projectNamespace(projectId: string): string | undefined {
    return this.projects.get(projectId)?.ns;
  }

  // ---- bastions ---------------------------------------------------------------------------

  private async bootBastion(spec: BastionSpec, opts: { restore: boolean }): Promise<string> {
    this.requireStarted();
    checkServerId(spec.id);
    this.checkFloating(spec.address);
    const L = this.layout;
    const files = sshdFiles(join(this.diskOf(spec.id), 'sshd'));
    if (!opts.restore) await rm(this.diskOf(spec.id), { recursive: true, force: true });
    const hostKey = await ensureHostKey(files);
    const project = await this.serialise(async () => {
      const p = await this.ensureProject(spec.projectId);
      if (p.bastionId !== undefined) throw new Error(`netns: project ${spec.projectId} already has bastion ${p.bastionId}; one bastion per project`);
      for (const n of p.networks.values()) {
        if (contains(n.cidr, spec.address)) throw new Error(`netns: floating IP ${spec.address} lies in subnet ${n.cidr.text} of the project`);
      }
      p.bastionId = spec.id;
      return p;
    });
    const n = project.index;
    try {
      await createVethPair({ ns: L.hostNs, name: L.hostIf(n), peerNs: project.ns, peerName: L.publicIf(n) });
      await ipIn(L.hostNs, 'link', 'set', L.hostIf(n), 'up');
      await ipIn(L.hostNs, 'route', 'add', `${spec.address}/32`, 'dev', L.hostIf(n), 'src', L.egressAddress);
      await ipIn(project.ns, 'addr', 'add', `${spec.address}/32`, 'dev', L.publicIf(n));
      await ipIn(project.ns, 'link', 'set', L.publicIf(n), 'up');
      await ipIn(project.ns, 'route', 'add', `${L.egressAddress}/32`, 'dev', L.publicIf(n));
      // Closed until setBastionAccess: the table drops every new connection from the public side.
      await installTable(project.ns, L.table, L.publicIf(n));
      const keys = await installKeysCommand(join(this.keysRoot, `p${n}`));
      await writeFile(
        files.config,
        renderSshdConfig(files, { listenAddress: spec.address, authorizedKeysFile: 'none', keysCommand: keys, allowTcpForwarding: true }),
      );
      const passwd = join(keys.dir, 'passwd');
      await writeAliasedPasswd(passwd, [...this.loginAliases, spec.user]);
      // A private mount namespace so the bastion's sshd sees the login aliases; unshare and sh exec in place, the child is sshd.
      const child = spawnInNamespace(project.ns, [
        'unshare', '--mount', '--propagation', 'private', '/bin/sh', '-c', 'mount --bind "$0" /etc/passwd && exec /usr/sbin/sshd -D -f "$1" -E "$2"',
        passwd, files.config, files.log,
      ]);
      const bastion: BastionState = { kind: 'bastion', id: spec.id, project, address: spec.address, files, hostKey, child, keys };
      this.servers.set(spec.id, bastion);
      await waitForPidFile(files.pidFile, child, this.readyTimeoutMs, `bastion ${spec.id} sshd`);
      return hostKey;
    } catch (e) {
      const bastion = this.servers.get(spec.id);
      if (bastion?.kind === 'bastion') await this.removeBastion(bastion);
      else await this.unplugBastion(project);
      throw e;
    }
  }

  private async removeBastion(bastion: BastionState): Promise<void> {
    this.servers.delete(bastion.id);
    // Everything running in the project namespace belongs to the bastion: its sshd, sessions, key lookups.
    await killNamespaceProcesses(bastion.project.ns);
    await exited(bastion.child);
    await this.unplugBastion(bastion.project);
  }

  private async unplugBastion(project: ProjectState): Promise<void> {
    const L = this.layout;
    await this.serialise(async () => {
      // The veth pair goes as one; the route and address go with it.
      await run('ip', ['-n', L.hostNs, 'link', 'del', L.hostIf(project.index)], { allowFailure: true });
      await run('ip', ['netns', 'exec', project.ns, 'nft', 'delete', 'table', 'inet', L.table], { allowFailure: true });
      await removeKeysCommand(join(this.keysRoot, `p${project.index}`));
      project.bastionId = undefined;
      await this.dropProjectIfEmpty(project);
    });
  }

  private checkFloating(address: string): void {
    if (!isIpv4(address)) throw new Error(`netns: floating IP "${address}" is not an IPv4 address`);
    if (address.startsWith('127.')) {
      throw new Error(`netns: floating IP ${address} is a loopback address, which cannot cross network namespaces; give netns bastions floating IPs from ${this.layout.floatingRange.cidr}`);
    }
    if (address === this.layout.egressAddress) throw new Error(`netns: floating IP ${address} is the engine's egress address`);
    for (const s of this.servers.values()) {
      if (s.kind === 'bastion' && s.address === address) throw new Error(`netns: floating IP ${address} is already bastion ${s.id}'s`);
    }
  }

  // ---- servers ----------------------------------------------------------------------------

  private async bootVm(spec: ServerSpec, opts: { restore: boolean }): Promise<string> {
    this.requireStarted();
    checkServerId(spec.id);
    const named = bootHostname(spec.name, spec.userData);
    const hostname = HOSTNAME.test(named) ? named : `host-${spec.id.slice(0, 8)}`;
    const cidr = parseCidr(spec.network.cidr);
    if (!contains(cidr, spec.fixedIp)) throw new Error(`netns: fixed IP ${spec.fixedIp} is not in subnet ${spec.network.cidr}`);
    if (spec.network.gatewayIp === null) {
      throw new Error(`netns: subnet ${spec.network.subnetId} has no gateway_ip; the netns hypervisor puts the bastion's side of each subnet at its gateway`);
    }
    if (!contains(cidr, spec.network.gatewayIp)) throw new Error(`netns: gateway ${spec.network.gatewayIp} is not in subnet ${spec.network.cidr}`);
    if (spec.fixedIp === spec.network.gatewayIp) throw new Error(`netns: fixed IP ${spec.fixedIp} is the subnet's gateway`);

    const paths = vmBootPaths(this.diskOf(spec.id));
    if (!opts.restore) await rm(paths.dir, { recursive: true, force: true });
    const files = sshdFiles(join(paths.dir, 'sshd'));
    const hostKey = await ensureHostKey(files);
    await writeFile(files.config, renderSshdConfig(files, { authorizedKeysFile: '.ssh/authorized_keys', allowTcpForwarding: false }));

    const L = this.layout;
    const vm = await this.serialise(async () => {
      const project = await this.ensureProject(spec.projectId);
      const network = await this.ensureNetwork(project, spec, cidr);
      const state: VmState = { kind: 'vm', id: spec.id, project, network, slot: this.nextIndex(), fixedIp: spec.fixedIp, hostKey, paths };
      network.servers.add(spec.id);
      this.servers.set(spec.id, state);
      return state;
    });
    const ns = L.vmNs(vm.slot);
    try {
      await createNamespace(ns);
      await createVethPair({ ns: vm.project.ns, name: L.vmBridgeIf(vm.slot), peerNs: ns, peerName: L.vmIf(vm.slot) });
      await ipIn(vm.project.ns, 'link', 'set', L.vmBridgeIf(vm.slot), 'master', L.bridge(vm.network.index), 'up');
      await ipIn(ns, 'addr', 'add', `${spec.fixedIp}/${cidr.bits}`, 'dev', L.vmIf(vm.slot));
      await ipIn(ns, 'link', 'set', L.vmIf(vm.slot), 'up');
      await ipIn(ns, 'route', 'add', 'default', 'via', spec.network.gatewayIp);
      // A reused fixed IP has a new MAC: a cached neighbour entry would blackhole its SSH for a minute or more.
      await ipIn(vm.project.ns, 'neigh', 'flush', 'to', spec.fixedIp);
      const script = await writeBootScript(paths, hostname, opts.restore ? undefined : await this.userDataOf(spec, paths), { passwdFile: this.passwdFile });
      vm.child = spawnInNamespace(ns, [
        'unshare', '--mount', '--uts', '--pid', '--fork', '--kill-child', '--mount-proc', '--propagation', 'private', '/bin/sh', script,
      ]);
      await this.waitRunning(vm);
      return hostKey;
    } catch (e) {
      await this.removeVm(vm);
      throw new Error(`netns: server ${spec.id} (${spec.name}) did not start: ${(e as Error).message}`);
    }
  }

  /** Invalid user data does not stop a real VM from booting: cloud-init logs the error and applies nothing. */
  private async userDataOf(spec: ServerSpec, paths: VmBootPaths): Promise<CloudConfig> {
    try {
      return parseUserData(spec.userData);
    } catch (e) {
      await mkdir(paths.log, { recursive: true });
      await appendFile(join(paths.log, 'cloud-init-output.log'), `cloud-init: user data ignored: ${(e as Error).message}\n`);
      return { bootcmd: [], sshAuthorizedKeys: [], writeFiles: [], runcmd: [] };
    }
  }

  /** The machine runs once its init has its own mounts; the user data may still be running. */
  private async waitRunning(vm: VmState): Promise<void> {
    const deadline = Date.now() + this.readyTimeoutMs;
    while (!existsSync(vm.paths.running)) {
      const child = vm.child!;
      if (child.exitCode !== null || child.signalCode !== null) {
        const log = await readFile(join(vm.paths.log, 'cloud-init-output.log'), 'utf8').catch(() => '');
        throw new Error(`its init exited (${child.exitCode ?? child.signalCode}) ${log.trim().split('\n').slice(-3).join(' | ')}`);
      }
      if (Date.now() > deadline) throw new Error(`not running after ${this.readyTimeoutMs} ms`);
      await sleep(10);
    }
  }

  private async killVm(vm: VmState): Promise<void> {
    // sshd is PID 1 of the VM's PID namespace: ending the namespace's processes ends every process of the VM.
    await deleteNamespace(this.layout.vmNs(vm.slot));
    if (vm.child) await exited(vm.child);
  }

  private async removeVm(vm: VmState): Promise<void> {
    if (this.servers.get(vm.id) === vm) this.servers.delete(vm.id);
    await this.killVm(vm);
    await this.serialise(async () => {
      vm.network.servers.delete(vm.id);
      if (vm.network.servers.size === 0) {
        await run('ip', ['-n', vm.project.ns, 'link', 'del', this.layout.bridge(vm.network.index)], { allowFailure: true });
        vm.project.networks.delete(vm.network.subnetId);
      }
      await this.dropProjectIfEmpty(vm.project);
    });
  }

  // ---- projects and subnets (called under the plumbing lock) ---------------------------------

  private async ensureProject(projectId: string): Promise<ProjectState> {
    const known = this.projects.get(projectId);
    if (known) return known;
    const index = this.nextIndex();
    const project: ProjectState = { index, projectId, ns: this.layout.projectNs(index), networks: new Map() };
    await createNamespace(project.ns);
    // Only SSH forwarding may cross the bastion, never routed packets.
    await run('ip', ['netns', 'exec', project.ns, 'sysctl', '-qw', 'net.ipv4.ip_forward=0']);
    this.projects.set(projectId, project);
    return project;
  }

  private async dropProjectIfEmpty(project: ProjectState): Promise<void> {
    if (project.bastionId !== undefined || project.networks.size > 0) return;
    if ([...this.servers.values()].some((s) => s.project === project)) return;
    this.projects.delete(project.projectId);
    await deleteNamespace(project.ns);
  }

  /**
   * The subnet's bridge in the project namespace, the bastion holding its gateway address.
   * All of a project's subnets meet in that one namespace, so overlapping CIDRs would collide
   * there: they are refused, naming both subnets.
   */
  private async ensureNetwork(project: ProjectState, spec: ServerSpec, cidr: Cidr): Promise<NetworkState> {
    const known = project.networks.get(spec.network.subnetId);
    if (known) {
      if (known.cidr.base !== cidr.base || known.cidr.bits !== cidr.bits || known.gatewayIp !== spec.network.gatewayIp) {
        throw new Error(`netns: subnet ${spec.network.subnetId} is live as ${known.cidr.text} (gateway ${known.gatewayIp}), not ${spec.network.cidr} (gateway ${spec.network.gatewayIp})`);
      }
      return known;
    }
    for (const other of project.networks.values()) {
      if (overlaps(other.cidr, cidr)) {
        throw new Error(
          `netns: subnet ${spec.network.subnetId} (${spec.network.cidr}) overlaps live subnet ${other.subnetId} (${other.cidr.text}) of the same project; ` +
            'the netns hypervisor joins all of a project\'s subnets at its bastion, so their CIDRs must not overlap',
        );
      }
    }
    const L = this.layout;
    for (const reserved of [L.egressAddress, ...this.bastionAddresses(project)]) {
      if (contains(cidr, reserved)) throw new Error(`netns: subnet ${spec.network.cidr} contains ${reserved}, an address of the public side`);
    }
    const network: NetworkState = {
      index: this.nextIndex(),
      subnetId: spec.network.subnetId,
      networkId: spec.network.id,
      cidr,
      gatewayIp: spec.network.gatewayIp!,
      servers: new Set(),
    };
    const bridge = L.bridge(network.index);
    await ipIn(project.ns, 'link', 'add', bridge, 'type', 'bridge');
    await ipIn(project.ns, 'addr', 'add', `${network.gatewayIp}/${cidr.bits}`, 'dev', bridge);
    await ipIn(project.ns, 'link', 'set', bridge, 'up');
    project.networks.set(network.subnetId, network);
    return network;
  }

  private bastionAddresses(project: ProjectState): string[] {
    const b = project.bastionId === undefined ? undefined : this.servers.get(project.bastionId);
    return b?.kind === 'bastion' ? [b.address] : [];
  }

  // ---- helpers ----------------------------------------------------------------------------

  private diskOf(serverId: string): string {
    return join(this.stateDir, 'servers', serverId);
  }

  private nextIndex(): number {
    if (this.counter >= MAX_INDEX) throw new Error(`netns: out of interface names (at most ${MAX_INDEX} projects, subnets and servers per run)`);
    return ++this.counter;
  }

  /** One boot per id at a time; a second call for a running id answers as the first did. */
  private once<T extends { hostKey: string }>(id: string, boot: () => Promise<T>): Promise<T> {
    const inFlight = this.pending.get(id);
    if (inFlight) return inFlight as Promise<T>;
    const running = this.servers.get(id);
    if (running) {
      return Promise.resolve((running.kind === 'bastion' ? { hostKey: running.hostKey, port: 22 } : { hostKey: running.hostKey }) as unknown as T);
    }
    const p = boot().finally(() => this.pending.delete(id));
    this.pending.set(id, p);
    return p;
  }

  private serialise<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.plumbing.then(fn, fn);
    this.plumbing = next.catch(() => undefined);
    return next;
  }

  private requireStarted(): void {
    if (!this.started) throw new Error('the netns hypervisor is not started');
  }

  /** Removes namespaces and /run files left by a crashed run with this prefix or the one recorded in the state dir. */
  private async cleanupLeftovers(): Promise<void> {
    const prefixes = new Set([this.layout.prefix]);
    try {
      const recorded = JSON.parse(await readFile(join(this.stateDir, STATE_FILE), 'utf8')) as { prefix?: unknown };
      if (typeof recorded.prefix === 'string' && /^[a-z][a-z0-9]{1,9}$/.test(recorded.prefix)) prefixes.add(recorded.prefix);
    } catch {
      // No previous run recorded.
    }
    const names = await listNamespaces();
    const ours = (ns: string): boolean => [...prefixes].some((p) => ns.startsWith(`${p}-`));
    // VMs first, then projects and the host: a VM's veth lives half in its project's namespace.
    const rank = (ns: string): number => (ns.includes('-vm') ? 0 : ns.endsWith('-host') ? 2 : 1);
    for (const ns of names.filter(ours).sort((a, b) => rank(a) - rank(b))) await deleteNamespace(ns);
    for (const p of prefixes) {
      await removeKeysCommand(join(this.keysRoot, '..', p));
      await rm(join(this.stateDir, `lo-${p}`), { recursive: true, force: true });
    }
    await mkdir(this.stateDir, { recursive: true, mode: 0o700 });
  }
}

function checkServerId(id: string): void {
  if (!SERVER_ID.test(id)) throw new Error(`netns: server id "${id}" must be 1–64 letters, digits, '-' or '_'`);
}

