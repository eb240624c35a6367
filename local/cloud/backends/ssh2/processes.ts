import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import type { ProcessLedger } from './processLedger.ts';

// The shell dies with the engine even on SIGKILL; what it started is swept at the next start (ProcessLedger).
const SETPRIV = '/usr/bin/setpriv';
const PDEATHSIG = existsSync(SETPRIV) ? [SETPRIV, '--pdeathsig', 'KILL'] : [];

/**
 * The processes of one VM. Every command runs as the leader of its own process group
 * (detached), and the VM remembers the groups: a `nohup … &` started by a command stays in
 * its group after the shell exits, so killing the groups when the VM is deleted or the cloud
 * stops leaves no orphans behind. Direct children are reaped by Node (the 'exit' handler);
 * a grandchild orphaned by its shell is re-parented to PID 1 and dies with its group.
 * A command that calls `setsid` itself escapes — the local VM is not a security boundary.
 * Each group is also written to the hypervisor's {@link ProcessLedger}, so an engine killed with
 * SIGKILL leaves nothing running past its next start.
 */
export class ProcessGroups {
  private readonly groups = new Set<number>();
  private closed = false;

  constructor(private readonly ledger?: ProcessLedger) {}

  spawn(command: string, opts: { cwd: string; env: Record<string, string> }): ChildProcess {
    if (this.closed) throw new Error('the VM is shutting down');
    const argv = [...PDEATHSIG, '/bin/sh', '-c', command];
    const child = spawn(argv[0]!, argv.slice(1), { cwd: opts.cwd, env: opts.env, detached: true, stdio: 'pipe' });
    if (child.pid !== undefined) {
      this.groups.add(child.pid);
      this.ledger?.record(child.pid);
    }
    child.on('exit', () => this.prune());
    return child;
  }

  /** Forgets groups that have no member left. */
  private prune(): void {
    for (const pgid of this.groups) {
      try {
        process.kill(-pgid, 0);
      } catch {
        this.groups.delete(pgid);
        this.ledger?.forget(pgid);
      }
    }
  }

  /** Kills every group with SIGKILL and refuses new commands. */
  killAll(): void {
    this.closed = true;
    for (const pgid of this.groups) {
      try {
        process.kill(-pgid, 'SIGKILL');
      } catch {
        // ESRCH: the group is already gone.
      }
      this.ledger?.forget(pgid);
    }
    this.groups.clear();
  }
}
