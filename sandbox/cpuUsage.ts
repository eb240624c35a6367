import { readFileSync } from 'node:fs';

/**
 * What a runner's life cost in CPU, for its last log line: the boot (modules loaded, clients built:
 * until it could take a task), its own CPU after that, and its children's (the action's processes).
 * The bench sums these per run (bench/scheduling.ts); on Fargate the same line tells what a step costs.
 */
export interface RunnerCpu {
  /** User + system ms of the runner's own process from its start until ready. */
  bootMs: number;
  /** The same after ready: registering, polling, the action's own work in the runner, answering. */
  afterReadyMs: number;
  /** User + system ms of its children that have ended (the action's `sh`, `sleep`, ansible…); absent where /proc is not. */
  childrenMs?: number;
}

const ms = (usage: NodeJS.CpuUsage) => (usage.user + usage.system) / 1000;

export function runnerCpu(atReady: NodeJS.CpuUsage, now: NodeJS.CpuUsage = process.cpuUsage(), stat: string | null = ownStat()): RunnerCpu {
  const children = stat === null ? undefined : reapedChildrenMs(stat);
  return {
    bootMs: Math.round(ms(atReady)),
    afterReadyMs: Math.round(ms(now) - ms(atReady)),
    ...(children !== undefined ? { childrenMs: children } : {}),
  };
}

/** cutime + cstime of /proc/<pid>/stat (clock ticks; Linux's USER_HZ is 100), in ms: the children already waited for. */
export function reapedChildrenMs(stat: string): number | undefined {
  // "pid (comm) state …": comm may hold spaces and parentheses; cutime and cstime are fields 16 and 17.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const cutime = Number(fields[13]);
  const cstime = Number(fields[14]);
  return Number.isFinite(cutime) && Number.isFinite(cstime) ? (cutime + cstime) * 10 : undefined;
}

/** null where there is no /proc (not Linux). */
function ownStat(): string | null {
  try {
    return readFileSync('/proc/self/stat', 'utf8');
  } catch {
    return null;
  }
}
