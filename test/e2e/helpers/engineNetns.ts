import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { DynamoDBClient, GetItemCommand } from '@aws-sdk/client-dynamodb';
import type { DeploymentView, StepView } from '../../../core/api.ts';
import type { HistoryEvent } from '../../../core/model.ts';
import { NetnsBackend } from '../../../local/cloud/backends/netns/index.ts';
import { TABLE_NAME } from '../../../local/engine.ts';
import { REGION } from '../../../local/functions.ts';
import type { TestEngine } from '../../helpers/engine.ts';

/**
 * Helpers for driving the whole engine on the netns test bed: they look at the bed from the
 * outside (namespaces, the bastion's firewall, the engine's table) to check what a user of a
 * real cloud would notice.
 */

const execFileAsync = promisify(execFile);

/** The engine's cloud backend as the netns test bed (fails loudly when the engine runs another cloud). */
export function netnsBackendOf(t: TestEngine): NetnsBackend {
  const backend = t.engine.backend;
  if (!(backend instanceof NetnsBackend)) throw new Error(`the engine runs the ${backend.kind} cloud, not netns`);
  return backend;
}

/**
 * A deployment body rewritten for the netns bed: its bastion is the bed's public address, port
 * 22, user root (the login on every namespace VM), whatever the example says for the local cloud.
 */
export function onNetnsBastion(body: Record<string, unknown>, backend: NetnsBackend): Record<string, unknown> {
  const bastion = body.bastion as Record<string, unknown>;
  return { ...body, bastion: { ...bastion, address: backend.layout.bastionPublicAddress, port: 22, user: 'root' } };
}

/**
 * Whether a new TCP connection from the engine-side namespace reaches the bastion's SSH port.
 * 'closed' covers both a timeout (the security group drops the SYN) and a refusal.
 */
export async function probeBastionSsh(backend: NetnsBackend): Promise<'open' | 'closed'> {
  const target = `/dev/tcp/${backend.layout.bastionPublicAddress}/22`;
  try {
    await execFileAsync('ip', ['netns', 'exec', backend.layout.hostNs, 'timeout', '2', 'bash', '-c', `exec 3<>${target}`]);
    return 'open';
  } catch {
    return 'closed';
  }
}

/** The accept rules currently in the bastion's security group (their comments are the rule ids). */
export async function bastionRuleIds(backend: NetnsBackend): Promise<string[]> {
  const { layout } = backend;
  const { stdout } = await execFileAsync('ip', ['netns', 'exec', layout.bastionNs, 'nft', 'list', 'chain', 'inet', layout.table, 'ingress_rules']);
  return [...stdout.matchAll(/comment "([^"]+)"/g)].map((m) => m[1]!);
}

/** Takes a VM's only link down (inside its own namespace): the VM stops answering, as if it crashed. */
export async function cutOffVm(backend: NetnsBackend, tenantId: string, deploymentId: string, vm: string): Promise<void> {
  const ns = backend.vmNamespace({ tenantId, deploymentId }, vm);
  if (!ns) throw new Error(`no VM ${vm} in deployment ${deploymentId}`);
  const slot = Number(ns.slice(`${backend.layout.prefix}-vm`.length));
  await execFileAsync('ip', ['-n', ns, 'link', 'set', backend.layout.vmIf(slot), 'down']);
}

export interface NamespaceProcess {
  pid: number;
  /** Start time in clock ticks since boot (/proc/PID/stat field 22): tells a reused pid apart. */
  start: string;
  cmd: string;
}

function procStat(pid: number): { state: string; start: string } | undefined {
  try {
    // Fields after the parenthesised command name: state is the 1st, starttime the 20th.
    const rest = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ');
    return { state: rest[0]!, start: rest[19]! };
  } catch {
    return undefined;
  }
}

/** Every process living in one of the bed's namespaces right now (to prove later that they all ended). */
export async function namespaceProcesses(prefix: string): Promise<NamespaceProcess[]> {
  const { stdout } = await execFileAsync('ip', ['netns', 'list']);
  const found: NamespaceProcess[] = [];
  for (const line of stdout.split('\n')) {
    const ns = line.split(' ')[0];
    if (!ns?.startsWith(`${prefix}-`)) continue;
    const { stdout: listed } = await execFileAsync('ip', ['netns', 'pids', ns]);
    for (const pid of listed.split('\n').filter(Boolean).map(Number)) {
      const stat = procStat(pid);
      let cmd = '';
      try {
        cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').trim();
      } catch {
        continue; // ended meanwhile
      }
      if (stat) found.push({ pid, start: stat.start, cmd: `${ns}: ${cmd.slice(0, 100)}` });
    }
  }
  return found;
}

/** Those of `procs` still running (same pid and start time, not a zombie), described for a failure message. */
export function stillRunning(procs: NamespaceProcess[]): string[] {
  return procs.flatMap((p) => {
    const stat = procStat(p.pid);
    return stat && stat.start === p.start && stat.state !== 'Z' ? [`${p.pid} (${stat.state}) ${p.cmd}`] : [];
  });
}

export function stepOf(view: DeploymentView, stepId: string): StepView {
  const step = view.steps.find((s) => s.stepId === stepId);
  if (!step) throw new Error(`no step ${stepId} in ${view.steps.map((s) => s.stepId).join(', ')}`);
  return step;
}

/** One line per step — the message of a failed expectation on a deployment's outcome. */
export function describeSteps(view: DeploymentView): string {
  return view.steps.map((s) => `${s.stepId}:${s.status}:${s.attempt}${s.error ? ` ${s.error}: ${s.cause}` : ''}`).join('\n');
}

/** The step id a sandbox task was started for, read from its TaskScheduled parameters. */
function scheduledStepId(event: HistoryEvent): string | undefined {
  const details = event.taskScheduledEventDetails as { parameters?: string } | undefined;
  const params = JSON.parse(details?.parameters ?? '{}') as {
    Overrides?: { ContainerOverrides?: { Environment?: { Name: string; Value: string }[] }[] };
  };
  const env = params.Overrides?.ContainerOverrides?.flatMap((c) => c.Environment ?? []) ?? [];
  return env.find((e) => e.Name === 'CTD_STEP_ID')?.Value;
}

/**
 * The RunStepInSandbox task events (TaskSubmitted, TaskFailed, …) of one step, in order. An
 * event is attributed by walking `previousEventId` back to its TaskScheduled, as the console does.
 */
export function sandboxTaskEvents(events: HistoryEvent[], stepId: string): string[] {
  const byId = new Map(events.map((e) => [e.id, e]));
  const scheduledFor = (e: HistoryEvent): string | undefined => {
    for (let cur: HistoryEvent | undefined = e, hops = 0; cur && hops < 10_000; cur = byId.get(cur.previousEventId ?? -1), hops++) {
      if (cur.type === 'TaskScheduled') return scheduledStepId(cur);
    }
    return undefined;
  };
  return events.filter((e) => e.type.startsWith('Task') && !e.type.startsWith('TaskState') && scheduledFor(e) === stepId).map((e) => e.type);
}

/** The deployment's secret items (token, SSH key) still in the engine's table. */
export async function secretItems(t: TestEngine, deploymentId: string): Promise<string[]> {
  const ddb = new DynamoDBClient({ endpoint: t.engine.endpoints.dynamodb, region: REGION, credentials: { accessKeyId: 'x', secretAccessKey: 'x' } });
  try {
    const found: string[] = [];
    for (const sk of ['SECRET#token', 'SECRET#sshkey']) {
      const { Item } = await ddb.send(new GetItemCommand({ TableName: TABLE_NAME, Key: { pk: { S: `DEP#${deploymentId}` }, sk: { S: sk } } }));
      if (Item) found.push(sk);
    }
    return found;
  } finally {
    ddb.destroy();
  }
}
