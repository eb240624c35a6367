import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { DynamoDBClient, ScanCommand } from '@aws-sdk/client-dynamodb';
import { SFNClient, StopExecutionCommand } from '@aws-sdk/client-sfn';
import { CtdClient } from '../../cli/client.ts';
import type { DeploymentView } from '../../core/api.ts';
import { openPrivateKey } from '../../core/crypto/sealedKey.ts';
import { TABLE_NAME } from '../../local/engine.ts';
import { filesContaining, keyNeedles } from './agentless.ts';
import type { TestEngine } from './engine.ts';
import { OsApi } from './openstackApi.ts';

/**
 * What the endings matrix checks after every run, FROM OUTSIDE the engine: the cloud's own API
 * (Neutron), the table (a scan of dynalite), the process table (/proc) and the disk. Nothing here
 * asks the engine's code what it thinks it did.
 */

/** Where a (possibly out-of-process) engine is: what engine.json says, plus its state dir. */
export interface EngineHandle {
  stateDir: string;
  apiUrl: string;
  keystoneUrl: string;
  cloudUrl: string;
  dynamodb: string;
  sfn: string;
  /** The engine's last log lines, when it runs in this process (for failure messages). */
  logTail?: () => string;
}

/** The handle of an engine this test process started. */
export const handleOf = (t: TestEngine): EngineHandle => ({
  stateDir: t.stateDir,
  apiUrl: t.engine.apiUrl,
  keystoneUrl: t.engine.keystoneUrl,
  cloudUrl: t.engine.cloudUrl,
  dynamodb: t.engine.endpoints.dynamodb,
  sfn: t.engine.endpoints.sfn,
  logTail: () => t.logTail(60),
});

const FINAL = ['SUCCEEDED', 'FAILED', 'CANCELLED'];
const AWS = { region: 'us-east-1', credentials: { accessKeyId: 'x', secretAccessKey: 'x' } };

/** A seeded PRNG: the matrix prints its seed so a failing run can be replayed. */
export { mulberry32 as seeded } from '../../bench/random.ts';

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A tenant of its own per run: concurrent deployments of one tenant share the bastion's rule (docs/OPENSTACK.md). */
export async function tenantClient(h: EngineHandle, tenantId: string): Promise<{ client: CtdClient; token: string }> {
  const res = await fetch(`${h.cloudUrl}/_admin/tokens`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ tenant: tenantId }) });
  if (res.status !== 201) throw new Error(`minting a token for ${tenantId} answered ${res.status}`);
  const { token } = (await res.json()) as { token: string };
  return { client: new CtdClient({ endpoint: h.apiUrl, token: { get: async () => token } }), token };
}

export async function waitForFinal(client: CtdClient, id: string, timeoutMs: number, what = ''): Promise<DeploymentView> {
  const deadline = Date.now() + timeoutMs;
  let last: DeploymentView | undefined;
  for (;;) {
    try {
      last = await client.get(id);
      if (FINAL.includes(last.status)) return last;
    } catch {
      // the engine may be restarting
    }
    if (Date.now() > deadline) {
      throw new Error(`${what} deployment ${id} did not reach a final status in ${timeoutMs} ms; last: ${last?.status} ${JSON.stringify(last?.steps.map((s) => [s.stepId, s.status]))}`);
    }
    await sleep(300);
  }
}

/** Polls until `predicate` holds (or the deadline passes: then returns the last view anyway). */
export async function waitUntil(client: CtdClient, id: string, predicate: (d: DeploymentView) => boolean, timeoutMs: number): Promise<DeploymentView | undefined> {
  const deadline = Date.now() + timeoutMs;
  let last: DeploymentView | undefined;
  while (Date.now() < deadline) {
    last = await client.get(id).catch(() => last);
    if (last && predicate(last)) return last;
    await sleep(50);
  }
  return last;
}

export const stepStatus = (d: DeploymentView | undefined, stepId: string) => d?.steps.find((s) => s.stepId === stepId)?.status;

/** StopExecution as the console or `aws stepfunctions stop-execution` sends it. */
export async function stopExecution(h: EngineHandle, deploymentId: string): Promise<void> {
  const sfn = new SFNClient({ ...AWS, endpoint: h.sfn });
  await sfn.send(
    new StopExecutionCommand({ executionArn: `arn:aws:states:us-east-1:000000000000:execution:ctd-deployment:${deploymentId}`, cause: 'stopped by the endings matrix (StopExecution)' }),
  );
}

/** Neutron's own answer: the ingress rules of the tenant's groups that an engine marked (`ctd:<id>:bastion`). */
export async function markedRules(h: EngineHandle, token: string): Promise<{ id: string; description: string }[]> {
  const api = await OsApi.connect(h.keystoneUrl, token);
  const { security_group_rules: rules } = (await api.ok('network', 'GET', '/security-group-rules')) as { security_group_rules: { id: string; description: string }[] };
  return rules.filter((r) => /^ctd:.+:bastion$/.test(r.description ?? ''));
}

/** A scan of the whole table (not a key query): any SECRET# item of the deployment, wherever it is. */
export async function secretItemsScanned(h: EngineHandle, deploymentId: string): Promise<string[]> {
  const ddb = new DynamoDBClient({ ...AWS, endpoint: h.dynamodb });
  const found: string[] = [];
  let start: Record<string, never> | undefined;
  do {
    const page = await ddb.send(
      new ScanCommand({
        TableName: TABLE_NAME,
        FilterExpression: 'pk = :pk AND begins_with(sk, :s)',
        ExpressionAttributeValues: { ':pk': { S: `DEP#${deploymentId}` }, ':s': { S: 'SECRET#' } },
        ...(start ? { ExclusiveStartKey: start } : {}),
      }),
    );
    found.push(...(page.Items ?? []).map((i) => i.sk?.S ?? '?'));
    start = page.LastEvaluatedKey as Record<string, never> | undefined;
  } while (start);
  return found;
}

/** The deployment's private key in clear, while its secret exists (for the disk scan's needles). */
export async function privateKeyOf(h: EngineHandle, deploymentId: string, token: string): Promise<string | undefined> {
  const ddb = new DynamoDBClient({ ...AWS, endpoint: h.dynamodb });
  const { GetItemCommand } = await import('@aws-sdk/client-dynamodb');
  const item = await ddb.send(new GetItemCommand({ TableName: TABLE_NAME, Key: { pk: { S: `DEP#${deploymentId}` }, sk: { S: 'SECRET#sshkey' } } }));
  const sealed = item.Item?.sshPrivateKeySealed?.S;
  return sealed ? openPrivateKey(sealed, token, deploymentId) : undefined;
}

export interface EngineProcess {
  pid: number;
  comm: string;
  cwd: string;
  cmdline: string;
}

/**
 * Live (non-zombie) processes whose working directory or command line lies under the engine's
 * state dir: its sandboxes (cwd <state>/sandboxes/<id>, bwrap binds it) and the local cloud's VM
 * commands (cwd <state>/cloud/ssh2/servers/<vm>/home).
 */
export function processesUnder(stateDir: string): EngineProcess[] {
  return liveProcesses()
    .filter(({ process: p }) => p.cwd.startsWith(`${stateDir}/`) || p.cmdline.includes(`${stateDir}/`))
    .map(({ process: p }) => p);
}

/** Every live (non-zombie) process but this one, from /proc, with its parent; its environment read on demand. */
function liveProcesses(): { process: EngineProcess; ppid: number; environ: () => string }[] {
  const found: { process: EngineProcess; ppid: number; environ: () => string }[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const status = readFileSync(`/proc/${entry}/status`, 'utf8');
      if (/^State:\s+Z/m.test(status)) continue;
      const cwd = readlinkSync(`/proc/${entry}/cwd`);
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replaceAll('\0', ' ').trim();
      found.push({
        process: { pid: Number(entry), comm: /^Name:\s+(.*)$/m.exec(status)?.[1] ?? '?', cwd, cmdline },
        ppid: Number(/^PPid:\s+(\d+)$/m.exec(status)?.[1] ?? 0),
        environ: () => {
          try {
            return readFileSync(`/proc/${entry}/environ`, 'utf8');
          } catch {
            return ''; // gone meanwhile
          }
        },
      });
    } catch {
      // gone meanwhile, or a kernel thread
    }
  }
  return found;
}

/**
 * {@link processesUnder}, and also every live process whose environment names the state dir (a runner's
 * CTD_WORK_DIR and HOME, inherited by what its user code starts, even from another cwd) or whose
 * ancestry leads to one that does. Only for engines in this process: a child engine's own environment
 * names its state dir.
 */
export function processesNaming(stateDir: string): EngineProcess[] {
  const byPid = new Map<number, { ppid: number; process: EngineProcess; named: boolean }>();
  for (const { process: p, ppid, environ } of liveProcesses()) {
    const named = p.cwd.startsWith(`${stateDir}/`) || p.cmdline.includes(`${stateDir}/`) || environ().includes(`${stateDir}/`);
    byPid.set(p.pid, { ppid, named, process: p });
  }
  const descends = (pid: number, seen = new Set<number>()): boolean => {
    const p = byPid.get(pid);
    if (!p || seen.has(pid)) return false;
    seen.add(pid);
    return p.named || descends(p.ppid, seen);
  };
  return [...byPid.entries()].filter(([pid]) => descends(pid)).map(([, p]) => p.process);
}

/**
 * Processes that must not be there once nothing runs: every VM command, and every sandbox process
 * except the launcher's warm runners (started ahead, no task yet: a bwrap/node pair in an empty
 * work dir, at most `warmPool` of them). `find` lists the candidates (default {@link processesUnder}).
 */
export async function leftoverProcesses(stateDir: string, warmPool = 2, find: (stateDir: string) => EngineProcess[] = processesUnder): Promise<EngineProcess[]> {
  const all = find(stateDir);
  const sandboxRoot = join(stateDir, 'sandboxes');
  const dirOf = (p: EngineProcess) => (p.cwd.startsWith(`${sandboxRoot}/`) ? p.cwd.slice(sandboxRoot.length + 1).split('/')[0] : undefined);
  const leftover: EngineProcess[] = [];
  const warmDirs = new Set<string>();
  for (const p of all) {
    const dir = dirOf(p);
    if (dir === undefined) {
      leftover.push(p);
      continue;
    }
    const empty = (await readdir(join(sandboxRoot, dir)).catch(() => [] as string[])).length === 0;
    if (empty && ['bwrap', 'node'].includes(p.comm)) warmDirs.add(dir);
    else leftover.push(p);
  }
  if (warmDirs.size > warmPool) {
    // More idle runners than the pool holds: one of them kept a task that never ended.
    leftover.push(...all.filter((p) => dirOf(p) !== undefined && warmDirs.has(dirOf(p)!)));
  }
  return leftover;
}

/** Key files on the engine's disk: any file named like an SSH key under its sandboxes, and any file holding this key. */
export async function keyFiles(stateDir: string, privateKey: string | undefined, since: number): Promise<string[]> {
  const named: string[] = [];
  const walk = async (dir: string, depth: number): Promise<void> => {
    if (depth > 6) return;
    for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
      const path = join(dir, e.name);
      if (e.isDirectory()) await walk(path, depth + 1);
      else if (/^id_(ed25519|rsa|ecdsa)$/.test(e.name)) named.push(path);
    }
  };
  await walk(join(stateDir, 'sandboxes'), 0);
  const holding = privateKey ? await filesContaining([stateDir], keyNeedles(privateKey), { modifiedSince: since - 5_000 }) : [];
  return [...named, ...holding];
}

/** A cause a user can read: a sentence, not a stack, not a JSON envelope, not empty. */
export function readable(cause: string | undefined): boolean {
  return typeof cause === 'string' && cause.trim().length >= 10 && !cause.trim().startsWith('{') && !/errorMessage|\n\s+at /.test(cause);
}
