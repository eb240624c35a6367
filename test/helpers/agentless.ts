import { DynamoDBClient, GetItemCommand, QueryCommand } from '@aws-sdk/client-dynamodb';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import { readBundle } from '../../cli/bundle.ts';
import type { DeploymentView, StepView } from '../../core/api.ts';
import { openPrivateKey } from '../../core/crypto/sealedKey.ts';
import { TABLE_NAME } from '../../local/engine.ts';
import type { FaultSpec } from '../../local/cloud/faults.ts';
import type { TestEngine } from './engine.ts';
import { generateSshKeyPair } from '../../core/crypto/deploymentKey.ts';

/** Helpers for engine tests that go through the bastion: what a user (or an attacker on the host) can observe. */

// ssh2 is CommonJS whose named exports Node's ESM loader cannot see.
const { Client } = ssh2;

const HELLO_WORLD = join(import.meta.dirname, '../../examples/hello-world/deployment.yaml');

/** The hello-world example (with its files/ bundle, as `ctd deploy` reads it); its bastion comes from the cloud. */
export async function helloWorld(): Promise<Record<string, unknown>> {
  return readBundle(HELLO_WORLD);
}

export function stepOf(view: DeploymentView, stepId: string): StepView {
  const step = view.steps.find((s) => s.stepId === stepId);
  if (!step) throw new Error(`deployment ${view.deploymentId} has no step ${stepId}: ${view.steps.map((s) => s.stepId).join(', ')}`);
  return step;
}

/**
 * Opens a TCP + SSH connection to the bastion from `localAddress` (default 127.0.0.1, the
 * engine's egress address): 'handshake' when the SSH server answered the key exchange,
 * 'refused' when the connection was refused or closed before any handshake.
 */
export function probeBastion(address: string, port = 2222, localAddress = '127.0.0.1'): Promise<'handshake' | 'refused'> {
  return new Promise((resolve) => {
    const client = new Client();
    let settled = false;
    const done = (outcome: 'handshake' | 'refused') => {
      if (settled) return;
      settled = true;
      resolve(outcome);
      client.end();
      client.destroy();
    };
    client.once('handshake', () => done('handshake'));
    client.on('error', () => done('refused'));
    client.once('close', () => done('refused'));
    client.connect({
      host: address,
      port,
      localAddress,
      username: 'probe',
      privateKey: generateSshKeyPair('probe').privateKey,
      readyTimeout: 10_000,
    });
  });
}

/** An OpenSSH line of a freshly generated ed25519 key: a host key that no server here presents. */
export function strangerHostKey(): string {
  return generateSshKeyPair('stranger').publicKey;
}

/**
 * The ingress rules of every `bastion` security group as the local cloud persists them
 * (`<stateDir>/cloud/openstack.json`), with the deployment their `ctd:<id>:bastion` mark names.
 */
export async function bastionRules(stateDir: string): Promise<{ ruleId: string; cidr: string; deploymentId: string }[]> {
  const state = JSON.parse(await readFile(join(stateDir, 'cloud', 'openstack.json'), 'utf8')) as {
    securityGroups: { id: string; name: string }[];
    rules: { id: string; security_group_id: string; direction: string; remote_ip_prefix: string | null; description: string }[];
  };
  const groups = new Set(state.securityGroups.filter((g) => g.name === 'bastion').map((g) => g.id));
  return state.rules
    .filter((r) => groups.has(r.security_group_id) && r.direction === 'ingress')
    .map((r) => ({ ruleId: r.id, cidr: r.remote_ip_prefix ?? '0.0.0.0/0', deploymentId: /^ctd:(.+):bastion$/.exec(r.description)?.[1] ?? '' }));
}

/** Arms a fault of the local cloud's admin path; `pathPattern` matches the full path (e.g. `^/compute/v2\.1/servers$`). */
export async function injectFault(cloudUrl: string, spec: FaultSpec | { kind: 'server-boot'; namePattern: string; message: string; times?: number }): Promise<void> {
  const res = await fetch(`${cloudUrl}/_admin/faults`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(spec) });
  if (res.status !== 204) throw new Error(`fault injection answered ${res.status}: ${await res.text()}`);
}

function dynamo(t: TestEngine): DynamoDBClient {
  return new DynamoDBClient({ endpoint: t.engine.endpoints.dynamodb, region: 'us-east-1', credentials: { accessKeyId: 'x', secretAccessKey: 'x' } });
}

/** The sort keys of the deployment's SECRET# items still in the table. */
export async function secretItems(t: TestEngine, deploymentId: string): Promise<string[]> {
  const out = await dynamo(t).send(
    new QueryCommand({
      TableName: TABLE_NAME,
      KeyConditionExpression: 'pk = :pk AND begins_with(sk, :secret)',
      ExpressionAttributeValues: { ':pk': { S: `DEP#${deploymentId}` }, ':secret': { S: 'SECRET#' } },
    }),
  );
  return (out.Items ?? []).map((i) => i.sk?.S ?? '');
}

/**
 * The deployment's SSH private key in clear, opened as the sandbox opens it (sealed item +
 * the user's token); undefined once the secret item is gone.
 */
export async function deploymentPrivateKey(t: TestEngine, deploymentId: string): Promise<string | undefined> {
  const item = await dynamo(t).send(new GetItemCommand({ TableName: TABLE_NAME, Key: { pk: { S: `DEP#${deploymentId}` }, sk: { S: 'SECRET#sshkey' } } }));
  const sealed = item.Item?.sshPrivateKeySealed?.S;
  return sealed ? openPrivateKey(sealed, t.token, deploymentId) : undefined;
}

export const PRIVATE_KEY_MARKER = 'BEGIN OPENSSH PRIVATE KEY';

/**
 * Files under `roots` whose content contains any of `needles` — a bounded scan: files under
 * 1 MB, no node_modules, no symlinks followed, at most `maxFiles` files read. Files that vanish
 * or cannot be read mid-scan (sandboxes come and go) are skipped. With `modifiedSince`, files
 * last written before then are not read: they cannot hold a secret made afterwards, and on a
 * busy shared tmpdir skipping them keeps one scan well under a second.
 */
export async function filesContaining(
  roots: string[],
  needles: string[],
  opts: { maxFiles?: number; maxDepth?: number; modifiedSince?: number } = {},
): Promise<string[]> {
  const maxFiles = opts.maxFiles ?? 20_000;
  const maxDepth = opts.maxDepth ?? 12;
  const modifiedSince = opts.modifiedSince ?? 0;
  const hits: string[] = [];
  let read = 0;
  const walk = async (dir: string, depth: number): Promise<void> => {
    if (depth > maxDepth || read >= maxFiles) return;
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      if (read >= maxFiles) return;
      const path = join(dir, entry.name);
      if (entry.isDirectory()) {
        if (entry.name !== 'node_modules' && entry.name !== '.git') await walk(path, depth + 1);
        continue;
      }
      if (!entry.isFile()) continue;
      try {
        const info = await stat(path);
        if (info.size >= 1024 * 1024 || info.mtimeMs < modifiedSince) continue;
        read += 1;
        const text = await readFile(path, 'latin1');
        if (needles.some((n) => text.includes(n))) hits.push(path);
      } catch {
        // Gone or unreadable between readdir and read.
      }
    }
  };
  for (const root of roots) await walk(root, 0);
  return hits;
}

/**
 * Distinctive pieces of an OpenSSH private key: its full base64 body lines past the first two
 * (those hold the format header and public key, the same in every key file or authorized_keys),
 * found however a file wraps or escapes the key.
 */
export function keyNeedles(privateKey: string): string[] {
  const body = privateKey
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('-----'));
  return body.slice(2).filter((l) => l.length >= 60);
}
