import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { renderUserData } from '../cloudInit.ts';
import { findCycle } from '../dag.ts';
import { ValidationError } from '../errors.ts';
import { DeploymentSchema, MAX_BUNDLE_BYTES, SYSTEM_STEP_IDS, type DeploymentSpec } from './schema.ts';
import { bundleFileBytes } from './bundle.ts';
import { storedSizeIssues } from './storedSize.ts';

export interface ValidationIssue {
  readonly path: string;
  readonly message: string;
}

/** Longest bundle path; tar, SFTP and most file systems agree on 255. */
export const MAX_FILE_PATH_LENGTH = 255;
/** Nova refuses `user_data` longer than this, counted after base64 encoding. */
export const MAX_USER_DATA_BASE64_CHARS = 65_535;
/**
 * Stands in for the deployment's public key when user data is sized at submit (the key is made
 * later): an ed25519 key line is 68 base64 characters and its comment is "ctd-" + a 21-character id.
 */
const PUBLIC_KEY_OF_REAL_LENGTH = `ssh-ed25519 ${'A'.repeat(68)} ctd-d-${'0'.repeat(19)}`;

/** A deployment document larger than this cannot hold a valid bundle; refuse before parsing it. */
export const MAX_DOCUMENT_CHARS = 4 * MAX_BUNDLE_BYTES;

/**
 * Parses an untrusted deployment (the API body, a CLI file). Anything wrong becomes one
 * {@link ValidationError} whose message names the field, so the API can answer 400 as is.
 */
export function parseDeployment(input: unknown): DeploymentSpec {
  const parsed = DeploymentSchema.safeParse(input, { reportInput: true });
  if (!parsed.success) fail(parsed.error.issues.flatMap(fromZodIssue));
  const issues = [...crossFieldIssues(parsed.data), ...storedSizeIssues(parsed.data)];
  if (issues.length > 0) fail(issues);
  return parsed.data;
}

/**
 * Parses a deployment file. YAML 1.2 is a superset of JSON, so one parser serves both;
 * duplicate keys and multiple documents are errors rather than silently merged.
 */
export function parseDeploymentDocument(text: string, fileName = 'deployment'): DeploymentSpec {
  if (text.length > MAX_DOCUMENT_CHARS) {
    fail([{ path: '', message: `${fileName}: document is ${text.length} characters, over the ${MAX_DOCUMENT_CHARS} limit` }]);
  }
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: true });
  if (doc.errors.length > 0) {
    fail(
      doc.errors.map((e) => {
        const pos = e.linePos?.[0];
        const where = pos ? `${fileName}:${pos.line}:${pos.col}` : fileName;
        // prettyErrors appends " at line L, column C:" and a code excerpt; the prefix already says where.
        const text =
          e.code === 'MULTIPLE_DOCS'
            ? 'a deployment file holds exactly one YAML document'
            : (e.message.split('\n')[0] ?? e.message).replace(/ at line \d+, column \d+:?$/, '');
        return { path: '', message: `${where}: ${text}` };
      }),
    );
  }
  let value: unknown;
  try {
    // maxAliasCount bounds "billion laughs" alias expansion.
    value = doc.toJS({ maxAliasCount: 100 });
  } catch (e) {
    fail([{ path: '', message: `${fileName}: ${e instanceof Error ? e.message : String(e)}` }]);
  }
  return parseDeployment(value);
}

function fail(issues: readonly ValidationIssue[]): never {
  const first = issues[0] ?? { path: '', message: 'invalid deployment' };
  throw new ValidationError(first.path ? `${first.path}: ${first.message}` : first.message, issues);
}

/**
 * `["workflow", "steps", 2, "id"]` → `workflow.steps[2].id`. Odd keys and bundle paths are
 * quoted (`files["app/run.sh"]`), so a file always reads the same whatever its name.
 */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const [i, key] of path.entries()) {
    const isBundlePath = i === 1 && path[0] === 'files';
    if (typeof key === 'number') out += `[${key}]`;
    else if (typeof key === 'string' && !isBundlePath && /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(key)) out += out ? `.${key}` : key;
    else out += `[${JSON.stringify(String(key))}]`;
  }
  return out;
}

function fromZodIssue(issue: z.core.$ZodIssue): ValidationIssue[] {
  const path = formatPath(issue.path);
  switch (issue.code) {
    case 'unrecognized_keys':
      return issue.keys.map((key) => ({ path, message: `unknown key ${JSON.stringify(key)}` }));
    case 'invalid_type':
      return [
        {
          path,
          message:
            issue.input === undefined
              ? `is required (expected ${issue.expected})`
              : `expected ${issue.expected}, received ${describe(issue.input)}`,
        },
      ];
    case 'invalid_union':
      if (issue.discriminator !== undefined && 'options' in issue && issue.options) {
        const allowed = issue.options.map((o) => JSON.stringify(o)).join(', ');
        // The issue's input is the whole object; the user wants to see the offending value.
        const value: unknown = isRecord(issue.input) ? issue.input[issue.discriminator] : issue.input;
        return [
          {
            path,
            message:
              value === undefined
                ? `is required (one of ${allowed})`
                : `unknown ${issue.discriminator} ${JSON.stringify(value)}; expected one of ${allowed}`,
          },
        ];
      }
      return [{ path, message: issue.message }];
    case 'invalid_key': {
      const key = issue.path[issue.path.length - 1];
      const why = issue.issues[0]?.message ?? issue.message;
      return [{ path, message: `invalid key ${JSON.stringify(String(key))}: ${why}` }];
    }
    default:
      return [{ path, message: issue.message }];
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  return typeof value;
}

function crossFieldIssues(spec: DeploymentSpec): ValidationIssue[] {
  const issues: ValidationIssue[] = [];
  const add = (path: string, message: string) => issues.push({ path, message });

  const networks = uniqueNames(spec.networks, 'networks', 'network name', add);
  const groups = uniqueNames(spec.securityGroups, 'securityGroups', 'security group name', add);
  const vms = uniqueNames(spec.vms, 'vms', 'VM name', add);

  spec.networks.forEach((network, i) => {
    if (network.cidr !== undefined) {
      const problem = cidrProblem(network.cidr);
      if (problem) add(`networks[${i}].cidr`, problem);
    }
    if (network.router === true && spec.externalNetwork === undefined) {
      add(`networks[${i}].router`, 'a router needs externalNetwork (the network its gateway is on)');
    }
  });

  spec.vms.forEach((vm, i) => {
    if (!networks.has(vm.network)) add(`vms[${i}].network`, `unknown network ${JSON.stringify(vm.network)}`);
    vm.securityGroups.forEach((g, j) => {
      if (!groups.has(g)) add(`vms[${i}].securityGroups[${j}]`, `unknown security group ${JSON.stringify(g)}`);
    });
    if (vm.floatingIp && spec.externalNetwork === undefined) {
      add(`vms[${i}].floatingIp`, 'a floating IP needs externalNetwork (the network it is allocated from)');
    } else if (vm.floatingIp && spec.networks.find((n) => n.name === vm.network)?.router === false) {
      add(`vms[${i}].floatingIp`, `a floating IP needs a router on network ${JSON.stringify(vm.network)}, which sets router: false`);
    }
    const encoded = base64Length(renderUserData(vm, PUBLIC_KEY_OF_REAL_LENGTH));
    if (encoded > MAX_USER_DATA_BASE64_CHARS) {
      add(
        `vms[${i}].userData`,
        `the user data of VM ${JSON.stringify(vm.name)} is ${encoded} characters in base64, over Nova's limit of ${MAX_USER_DATA_BASE64_CHARS}`,
      );
    }
  });

  let bundleBytes = 0;
  for (const [path, content] of Object.entries(spec.files)) {
    const problem = unsafePathReason(path);
    if (problem) add(formatPath(['files', path]), problem);
    bundleBytes += bundleFileBytes(content).length;
  }
  if (bundleBytes > MAX_BUNDLE_BYTES) {
    add('files', `bundle is ${bundleBytes} bytes, over the ${MAX_BUNDLE_BYTES}-byte limit`);
  }
  const hasFile = (p: string) => Object.hasOwn(spec.files, p);

  const steps = spec.workflow.steps;
  const stepIds = new Set<string>();
  const reserved: readonly string[] = SYSTEM_STEP_IDS;
  steps.forEach((step, i) => {
    const at = `workflow.steps[${i}]`;
    if (reserved.includes(step.id)) add(`${at}.id`, `step id ${JSON.stringify(step.id)} is reserved for a system step`);
    else if (stepIds.has(step.id)) add(`${at}.id`, `duplicate step id ${JSON.stringify(step.id)}`);
    stepIds.add(step.id);
  });

  steps.forEach((step, i) => {
    const at = `workflow.steps[${i}]`;
    step.dependsOn.forEach((dep, j) => {
      if (dep === step.id) add(`${at}.dependsOn[${j}]`, `step ${JSON.stringify(step.id)} depends on itself`);
      else if (!stepIds.has(dep)) add(`${at}.dependsOn[${j}]`, `unknown step ${JSON.stringify(dep)}`);
    });
    if ('targets' in step && step.targets) {
      step.targets.forEach((t, j) => {
        if (!vms.has(t)) add(`${at}.targets[${j}]`, `unknown VM ${JSON.stringify(t)}`);
      });
    }
    if (step.action === 'ansible' && !hasFile(step.playbook)) {
      add(`${at}.playbook`, `playbook ${JSON.stringify(step.playbook)} is not in files`);
    }
    if (step.action === 'ssh') {
      step.files?.forEach((f, j) => {
        if (!hasFile(f)) add(`${at}.files[${j}]`, `${JSON.stringify(f)} is not in files`);
      });
    }
  });

  // Self-dependencies are reported above; leaving them out lets a longer cycle still be named.
  const cycle = findCycle(steps.map((s) => ({ id: s.id, dependsOn: s.dependsOn.filter((d) => d !== s.id) })));
  if (cycle) add('workflow.steps', `dependency cycle ${cycle.join(' → ')}`);

  return issues;
}

function base64Length(text: string): number {
  return 4 * Math.ceil(Buffer.byteLength(text, 'utf8') / 3);
}

/** Why `cidr` (already shaped a.b.c.d/n) is not an IPv4 network address, or `undefined`. */
export function cidrProblem(cidr: string): string | undefined {
  const [address = '', prefixText = ''] = cidr.split('/');
  const octets = address.split('.').map(Number);
  const prefix = Number(prefixText);
  if (octets.some((o) => o > 255)) return `${cidr} is not an IPv4 address (an octet is over 255)`;
  if (prefix > 32) return `${cidr} has a prefix length over 32`;
  const value = octets.reduce((acc, o) => acc * 256 + o, 0);
  const hostBits = 2 ** (32 - prefix);
  if (value % hostBits !== 0) {
    const base = value - (value % hostBits);
    const net = [24, 16, 8, 0].map((s) => Math.floor(base / 2 ** s) % 256).join('.');
    return `${cidr} is not a network address (host bits are set; did you mean ${net}/${prefix}?)`;
  }
  return undefined;
}

function uniqueNames(
  items: readonly { name: string }[],
  field: string,
  what: string,
  add: (path: string, message: string) => void,
): Set<string> {
  const seen = new Set<string>();
  items.forEach((item, i) => {
    if (seen.has(item.name)) add(`${field}[${i}].name`, `duplicate ${what} ${JSON.stringify(item.name)}`);
    seen.add(item.name);
  });
  return seen;
}

/**
 * Why a bundle path could escape the sandbox's or VM's working directory, or `undefined`
 * when it is safe. Paths are POSIX, relative and normalised, so one file has one name.
 */
export function unsafePathReason(path: string): string | undefined {
  if (path.length === 0) return 'path is empty';
  if (path.length > MAX_FILE_PATH_LENGTH) return `path is ${path.length} characters, over the ${MAX_FILE_PATH_LENGTH} limit`;
  if (path.includes('\0')) return 'path contains a NUL character';
  if (path.includes('\\')) return 'path contains a backslash; use "/"';
  if (path.startsWith('/') || /^[A-Za-z]:/.test(path)) return 'path must be relative, not absolute';
  const segments = path.split('/');
  if (segments.includes('..')) return 'path must not contain ".." segments';
  if (segments.includes('.')) return 'path must not contain "." segments';
  if (segments.includes('')) return 'path must not contain empty segments ("//" or a trailing "/")';
  return undefined;
}
