import { spawn, type ChildProcess } from 'node:child_process';

/**
 * The processes of one VM. Every command runs as the leader of its own process group
 * (detached), and the VM remembers the groups: a `nohup … &` started by a command stays in
 * its group after the shell exits, so killing the groups when the VM is deleted or the cloud
 * stops leaves no orphans behind. Direct children are reaped by Node (the 'exit' handler);
 * a grandchild orphaned by its shell is re-parented to PID 1 and dies with its group.
 * A command that calls `setsid` itself escapes — the local VM is not a security boundary.
 */
export class ProcessGroups {
  private readonly groups = new Set<number>();
  private closed = false;

  spawn(command: string, opts: { cwd: string; env: Record<string, string> }): ChildProcess {
    if (this.closed) throw new Error('the VM is shutting down');
    const child = spawn('/bin/sh', ['-c', command], { cwd: opts.cwd, env: opts.env, detached: true, stdio: 'pipe' });
    if (child.pid !== undefined) this.groups.add(child.pid);
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
    }
    this.groups.clear();
  }
}
