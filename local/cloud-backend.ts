/**
 * The local cloud's hypervisor: the machinery under the OpenStack front (local/cloud/). The
 * front owns every piece of OpenStack bookkeeping (projects, networks, subnets, ports, fixed
 * and floating IPs, security groups and rules, server records, metadata, state files); a
 * hypervisor only runs machines and the bastion's gate:
 *
 * - it boots and deletes servers (user data applied, reachable on port 22 at their fixed IP
 *   *through their project's bastion*, with a host key it keeps across restarts);
 * - it runs each project's bastion at the bastion's floating IP and enforces what the front
 *   hands it: the ingress rules of the bastion's security groups (a source no rule admits gets
 *   no SSH handshake), the access keys (`ctd-access-*` metadata items: only these keys may log
 *   in), and forwarding (a key may only open `fixedIp:22` of the servers listed for it);
 * - it routes a forward to `fixedIp:22` to wherever that server really listens.
 *
 * Implementations: `backends/ssh2` (pure npm, no root; ssh2 servers on loopback addresses of
 * the engine's own block) and `backends/netns` (root; network namespaces with OpenSSH and
 * nftables). Ids are the front's (Nova server ids, Keystone project ids); the hypervisor never
 * sees a token. Every method may be called again with the same input after a crash or retry:
 * implementations make them idempotent (a second `startServer` of a running id answers as the
 * first; `deleteServer` of an unknown id succeeds).
 */
export interface Hypervisor {
  readonly kind: 'ssh2' | 'netns';

  /** Prepares the hypervisor (directories, namespaces, …). No server runs until the front starts it. */
  start(): Promise<void>;

  /**
   * Stops every server, bastion and process it started and removes what it made outside its
   * state dir. Persistent host keys stay, so a later `start` + `startServer(…, {restore: true})`
   * brings the same machines back.
   */
  stop(): Promise<void>;

  /**
   * The source address under which the engine's step sandboxes reach a bastion, as the bastion
   * sees it (e.g. `127.0.0.1` for loopback; the host namespace's veth address for netns). The
   * engine passes it as `CTD_EGRESS_ADDRESSES`, and the driver's bastion rule names it.
   */
  egressAddress(): Promise<string>;

  /**
   * Boots (or, with `restore`, reboots after a cloud restart) a project's bastion listening on
   * `spec.address` (its floating IP). It starts closed: no source admitted and no key accepted
   * until {@link setBastionAccess}. Resolves once it accepts connections, with its SSH host
   * key line (`ssh-ed25519 AAAA…`) and the TCP port it listens on (22 when the hypervisor can
   * bind it; the front publishes any other port as the server's `ssh_port` metadata).
   */
  startBastion(spec: BastionSpec, opts: { restore: boolean }): Promise<{ hostKey: string; port: number }>;

  /**
   * Replaces the bastion's whole gate with `access` (the front recomputes it after every change
   * of the bastion's rules, its `ctd-access-*` metadata, or the project's servers). Sessions
   * already open survive the removal of the rule that admitted them, like a stateful security
   * group; new connections, logins and forwards follow the new gate at once.
   */
  setBastionAccess(bastionId: string, access: BastionAccess): Promise<void>;

  /**
   * Boots a server (Nova's spawn). Resolves when the machine runs (the front then reports
   * ACTIVE) with its SSH host key line; the user data (cloud-init: `#cloud-config` with
   * `ssh_authorized_keys`, `write_files`, `runcmd`, …) keeps running after that, as on a real
   * VM, and its failure does not fail the boot. Rejects when the machine cannot run (the front
   * reports ERROR with the message as Nova's `fault`). With `restore` the machine comes back as
   * after a host reboot: same host key, user data not applied again.
   */
  startServer(spec: ServerSpec, opts: { restore: boolean }): Promise<{ hostKey: string }>;

  /** Stops a server or bastion and removes its disk (processes, files); an unknown id is a no-op. */
  deleteServer(serverId: string): Promise<void>;
}

export interface BastionSpec {
  /** The Nova server id of the bastion. */
  id: string;
  projectId: string;
  /** Its floating IP, where the engine connects (an address of the engine's loopback block locally). */
  address: string;
  /** Its fixed IP on the project's bastion network. */
  fixedIp: string;
  /** The login user (`ctd`). */
  user: string;
}

export interface ServerSpec {
  /** The Nova server id. */
  id: string;
  projectId: string;
  /** The Nova server name (the VM's hostname). */
  name: string;
  /** Its fixed IPv4 address on its Neutron network (e.g. 10.0.0.5): forwards to `fixedIp:22` reach it. */
  fixedIp: string;
  /** Its Neutron network and subnet (netns wires an interface; two projects may reuse a CIDR). */
  network: { id: string; subnetId: string; cidr: string; gatewayIp: string | null };
  /** The decoded user data (`#cloud-config …`), '' when none was given. */
  userData: string;
}

/** The bastion's gate, computed by the front from Neutron and Nova state. */
export interface BastionAccess {
  /**
   * The ingress rules of the security groups on the bastion's port. A TCP connection from
   * `source` to the bastion's port `p` is admitted when one rule has `protocol` tcp or null
   * (any), `p` within `portMin..portMax` (null = any) and `source` inside `remoteIpPrefix`
   * (null = 0.0.0.0/0). Rules with a remote group, or for IPv6, never admit anything here.
   */
  ingress: IngressRule[];
  /**
   * The keys that may log in: one per `ctd-access-<deploymentId>` metadata item on the bastion
   * server. `targets` are the fixed IPs of the project's servers whose user data lists the key:
   * the only addresses (port 22) that key may forward to.
   */
  logins: BastionLogin[];
}

export interface IngressRule {
  /** The Neutron rule id (netns labels its nftables rule with it). */
  id: string;
  protocol: string | null;
  portMin: number | null;
  portMax: number | null;
  remoteIpPrefix: string | null;
}

export interface BastionLogin {
  /** The metadata key it came from (`ctd-access-<deploymentId>`). */
  item: string;
  /** An OpenSSH public key line, `type base64` (comment stripped). */
  publicKey: string;
  /** Fixed IPs of the project's servers whose user data lists this key. */
  targets: string[];
}
