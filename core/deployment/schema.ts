import { z } from 'zod';
import { MAX_STEP_TIMEOUT_SECONDS } from '../config/limits.ts';

/**
 * The deployment request: a topology behind a bastion plus a workflow of steps.
 * Every object is strict (unknown keys are rejected, so typos surface); cross-field
 * rules (references, cycles, bundle size) live in validate.ts.
 */

export const NAME_PATTERN = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const name = (what: string) =>
  z.string().regex(NAME_PATTERN, `${what} must be lowercase letters, digits and dashes (1–63 characters)`);

export { DEFAULT_STEP_TIMEOUT_SECONDS, SYSTEM_STEP_IDS, type SystemStepId } from './constants.ts';

export const MAX_BUNDLE_BYTES = 256 * 1024;

/** Names what is wrong with a bundle file instead of zod's bare "Invalid input" for a union. */
function bundleFileError(issue: { code?: string; input?: unknown; errors?: { path: PropertyKey[]; message: string }[][] }): string | undefined {
  if (issue.code !== 'invalid_union') return undefined;
  const input = issue.input;
  const objectIssue = issue.errors?.[1]?.[0];
  if (typeof input === 'object' && input !== null && !Array.isArray(input) && objectIssue) {
    return `${objectIssue.path.map(String).join('.') || 'file'}: ${objectIssue.message.replace(/^Invalid input: /, '')}`;
  }
  const received = input === null ? 'null' : Array.isArray(input) ? 'array' : typeof input;
  return `expected a string or { content, encoding: "base64" }, received ${received}`;
}

/** A bundle file: UTF-8 text, or any bytes in base64 (core/deployment/bundle.ts). */
const BundleFileSchema = z.union([
  z.string(),
  z.strictObject({
    content: z
      .string()
      .regex(/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/, 'must be standard base64 (A–Z, a–z, 0–9, +, /, = padding, no line breaks)')
      .describe('the file\'s bytes in base64'),
    encoding: z.literal('base64').describe('how content is encoded; only "base64"'),
  }),
], { error: bundleFileError });
export const MAX_STEPS = 200;

const port = z.number().int().min(1).max(65535);

/** A cloud resource named by the user: a name or an id, as OpenStack accepts both. */
const cloudRef = (what: string) => z.string().min(1, `${what} must not be empty`).max(255, `${what} is longer than 255 characters`);

/**
 * The tenant's existing jump host (see docs/OPENSTACK.md, "Bastion access"). Its address comes
 * from the cloud (the server's floating IP), never from the document, so two engines never collide.
 */
export const BastionSchema = z.strictObject({
  server: cloudRef('server')
    .default('bastion')
    .describe('an existing server of the project (name or id) acting as the jump host; default "bastion"'),
  /** Unset: the server's metadata "ssh_port", else 22. */
  port: port.optional().describe('SSH port of the bastion; default: the server\'s metadata "ssh_port", else 22'),
  user: z.string().regex(/^[a-z_][a-z0-9_-]{0,31}$/, 'user must be a valid login name'),
  securityGroup: cloudRef('securityGroup').describe(
    "the bastion's existing security group (name or id); the engine opens its SSH port to itself for the deployment",
  ),
  /** OpenSSH public host key ("ssh-ed25519 AAAA…"); pinned when given, otherwise read from the server's console. */
  hostKey: z.string().optional().describe('OpenSSH public host key to pin ("ssh-ed25519 AAAA…"); read from the server\'s console log when absent'),
});

export const NetworkSchema = z.strictObject({
  name: name('network name'),
  /** Checked to be a network address in validate.ts; default 10.<index>.0.0/24. */
  cidr: z
    .string()
    .regex(/^(\d{1,3}\.){3}\d{1,3}\/\d{1,2}$/, 'cidr must look like 10.0.0.0/24')
    .optional()
    .describe('IPv4 subnet CIDR (a network address); default 10.<index>.0.0/24'),
  router: z
    .boolean()
    .optional()
    .describe('connect the network to externalNetwork through a router; default true when externalNetwork is set'),
});

export const SecurityGroupRuleSchema = z.strictObject({
  direction: z.enum(['ingress', 'egress']).default('ingress'),
  protocol: z.enum(['tcp', 'udp', 'icmp', 'any']).default('tcp'),
  port: port.optional(),
  source: z.string().optional(),
});

export const SecurityGroupSchema = z.strictObject({
  name: name('security group name'),
  rules: z.array(SecurityGroupRuleSchema).default([]),
});

/** Additions to the cloud-init user data; the engine adds the deployment's public key itself. */
export const UserDataSchema = z.strictObject({
  bootcmd: z.array(z.string()).optional(),
  runcmd: z.array(z.string()).optional(),
  packages: z.array(z.string()).optional(),
  write_files: z
    .array(z.strictObject({ path: z.string().min(1), content: z.string(), permissions: z.string().optional() }))
    .optional(),
});

export const VmSchema = z.strictObject({
  name: name('VM name'),
  network: z.string().min(1, 'network is required').describe('name of a network declared in networks'),
  securityGroups: z.array(z.string()).default([]).describe('names of security groups declared in securityGroups'),
  image: cloudRef('image').describe('Glance image name or id'),
  flavor: cloudRef('flavor').describe('Nova flavor name or id'),
  floatingIp: z.boolean().default(false).describe('give the VM a floating IP on externalNetwork (needs externalNetwork)'),
  userData: UserDataSchema.optional(),
});

const stepId = z
  .string()
  .regex(/^[a-z0-9]([a-z0-9_-]{0,62})$/, 'step id must be lowercase letters, digits, "-" and "_" (1–63 characters)');

const stepBase = {
  id: stepId,
  description: z.string().max(500).optional(),
  dependsOn: z.array(z.string()).default([]).describe('ids of steps that must succeed before this one starts'),
  timeoutSeconds: z.number().int().min(1).max(MAX_STEP_TIMEOUT_SECONDS).optional().describe('the sandbox is stopped after this long'),
};

export const RunStepSchema = z.strictObject({
  ...stepBase,
  action: z.literal('run'),
  command: z.string().min(1, 'command is required'),
  env: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/), z.string()).optional(),
});

export const ProvisionStepSchema = z.strictObject({
  ...stepBase,
  action: z.literal('provision'),
  /** VMs to create; all declared VMs when absent. */
  targets: z.array(z.string()).optional().describe('VMs to create; all declared VMs when absent'),
});

export const DeprovisionStepSchema = z.strictObject({
  ...stepBase,
  action: z.literal('deprovision'),
  targets: z.array(z.string()).optional().describe('VMs to delete; all declared VMs when absent'),
});

export const SshStepSchema = z.strictObject({
  ...stepBase,
  action: z.literal('ssh'),
  targets: z.array(z.string()).min(1, 'an ssh step needs at least one target VM'),
  command: z.string().min(1, 'command is required'),
  /** Bundle paths pushed to each VM before the command runs; all files when absent. */
  files: z.array(z.string()).optional().describe('bundle paths pushed to each VM before the command runs; all files when absent'),
  concurrency: z.number().int().min(1).max(64).optional(),
});

export const AnsibleStepSchema = z.strictObject({
  ...stepBase,
  action: z.literal('ansible'),
  targets: z.array(z.string()).min(1, 'an ansible step needs at least one target VM'),
  playbook: z.string().min(1, 'playbook is required').describe('path of the playbook in files'),
  extraVars: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).optional(),
});

export const StepSchema = z.discriminatedUnion('action', [
  RunStepSchema,
  ProvisionStepSchema,
  DeprovisionStepSchema,
  SshStepSchema,
  AnsibleStepSchema,
]);

export const DeploymentSchema = z.strictObject({
  name: name('deployment name'),
  externalNetwork: cloudRef('externalNetwork')
    .optional()
    .describe('Neutron external network (name or id) for router gateways and floating IPs'),
  bastion: BastionSchema,
  networks: z.array(NetworkSchema).default([]),
  securityGroups: z.array(SecurityGroupSchema).default([]),
  vms: z.array(VmSchema).default([]),
  /** The bundle: path → content, pushed to sandboxes and VMs. */
  files: z
    .record(z.string(), BundleFileSchema)
    .default({})
    .describe(`the bundle: relative POSIX path → UTF-8 content, or { content, encoding: "base64" } for binary files; at most ${MAX_BUNDLE_BYTES} bytes in all`),
  workflow: z.strictObject({
    steps: z.array(StepSchema).min(1, 'a workflow needs at least one step').max(MAX_STEPS),
  }),
});

export type DeploymentSpec = z.output<typeof DeploymentSchema>;
export type DeploymentInput = z.input<typeof DeploymentSchema>;
export type StepSpec = z.output<typeof StepSchema>;
export type StepAction = StepSpec['action'];
export type VmSpec = z.output<typeof VmSchema>;
export type NetworkSpec = z.output<typeof NetworkSchema>;
export type SecurityGroupSpec = z.output<typeof SecurityGroupSchema>;
export type BastionSpec = z.output<typeof BastionSchema>;
export type UserDataSpec = z.output<typeof UserDataSchema>;
/** The topology without its bundle: what a step runner needs to reach the VMs. */
export type Topology = Omit<DeploymentSpec, 'files'>;
