import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { DynamoDBClient, GetItemCommand } from '@aws-sdk/client-dynamodb';
import type { DeploymentView, StepView } from '../../../core/api.ts';
import type { HistoryEvent } from '../../../core/model.ts';
import { NetnsHypervisor } from '../../../local/cloud/backends/netns/index.ts';
import { TABLE_NAME } from '../../../local/engine.ts';
import { REGION } from '../../../local/functions.ts';
import type { TestEngine } from '../../helpers/engine.ts';

/**
 * Helpers for driving the whole engine on the netns test bed: they look at the bed from the
 * outside (namespaces, the bastion's firewall, the engine's table) to check what a user of a
 * real cloud would notice.
 */

const execFileAsync = promisify(execFile);

/**
 * The engine's hypervisor as the netns bed (fails loudly when the engine runs another one). The
 * bastion's address, port and user come from the cloud (its floating IP; `ctd` is root on the
 * bed), so documents run on the bed unchanged.
 */
export function netnsHypervisorOf(hypervisor: { kind: string }): NetnsHypervisor {
  if (!(hypervisor instanceof NetnsHypervisor)) throw new Error(`the engine runs the ${hypervisor.kind} hypervisor, not netns`);
  return hypervisor;
}

/**
 * Whether a new TCP connection from the engine-side namespace reaches a bastion's SSH port (its
 * floating IP). 'closed' covers both a timeout (the security group drops the SYN) and a refusal.
 */
export async function probeBastionSsh(hv: NetnsHypervisor, address: string): Promise<'open' | 'closed'> {
  try {
    await execFileAsync('ip', ['netns', 'exec', hv.layout.hostNs, 'timeout', '3', 'bash', '-c', `exec 3<>/dev/tcp/${address}/22`]);
    return 'open';
  } catch {
    return 'closed';
  }
}

/** The accept rules currently in a project's bastion gate (their comments are the Neutron rule ids). */
export async function bastionRuleIds(hv: NetnsHypervisor, projectId: string): Promise<string[]> {
  const ns = hv.projectNamespace(projectId);
  if (!ns) return [];
  const { stdout } = await execFileAsync('ip', ['netns', 'exec', ns, 'nft', 'list', 'chain', 'inet', hv.layout.table, 'ingress_rules']).catch(() => ({ stdout: '' }));
  return [...stdout.matchAll(/comment "([^"]+)"/g)].map((m) => m[1]!);
}

/** Takes a server's only link down (inside its own namespace): the VM stops answering, as if it crashed. */
export async function cutOffVm(hv: NetnsHypervisor, serverId: string): Promise<void> {
  const ns = hv.serverNamespace(serverId);
  if (!ns?.includes('-vm')) throw new Error(`no VM ${serverId} runs on the bed`);
  const slot = Number(ns.slice(`${hv.layout.prefix}-vm`.length));
  await execFileAsync('ip', ['-n', ns, 'link', 'set', hv.layout.vmIf(slot), 'down']);
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
