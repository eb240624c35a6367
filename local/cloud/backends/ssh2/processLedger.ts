import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

/** One process group a VM command leads, as recorded on disk. */
interface GroupRecord {
  pgid: number;
  /** The leader's start time (clock ticks since boot, /proc/PID/stat field 22): a reused pgid is not ours. */
  start: number;
  /** The kernel's boot id: after a reboot every recorded group is gone anyway. */
  boot: string;
}

function bootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return '';
  }
}

/** pgrp and start time of a process, from /proc/PID/stat (the comm field may hold spaces or parentheses). */
function statOf(pid: number | string): { pgrp: number; start: number } | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    // After "pid (comm) ": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime priority nice threads itrealvalue starttime
    return { pgrp: Number(fields[2]), start: Number(fields[19]) };
  } catch {
    return undefined;
  }
}

/**
 * The process groups of VM commands, written to disk the moment a command starts, so that an
 * engine killed with SIGKILL leaves a list the next engine start can sweep: no live engine is
 * needed to find what it started.
 */
export class ProcessLedger {
  private readonly groups = new Map<number, GroupRecord>();
  private readonly boot = bootId();

  constructor(private readonly path: string) {}

  record(pgid: number): void {
    const start = statOf(pgid)?.start;
    if (start === undefined) return;
    this.groups.set(pgid, { pgid, start, boot: this.boot });
    this.write();
  }

  forget(pgid: number): void {
    if (this.groups.delete(pgid)) this.write();
  }

  private write(): void {
    // Synchronous on purpose: the record must be on disk before the engine can die with the command running.
    mkdirSync(dirname(this.path), { recursive: true, mode: 0o700 });
    const tmp = `${this.path}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify([...this.groups.values()]), { mode: 0o600 });
    renameSync(tmp, this.path);
  }

  /**
   * Kills (SIGKILL) every live member of the groups a previous engine recorded and clears the list.
   * A member counts only when it started no earlier than the group's leader in the same boot, so a
   * pgid the kernel has since reused for someone else's processes is left alone. Returns the pids killed.
   */
  sweep(): number[] {
    let recorded: GroupRecord[] = [];
    try {
      recorded = existsSync(this.path) ? (JSON.parse(readFileSync(this.path, 'utf8')) as GroupRecord[]) : [];
    } catch {
      recorded = [];
    }
    const ours = recorded.filter((r) => r.boot === this.boot && Number.isInteger(r.pgid) && r.pgid > 1);
    const killed: number[] = [];
    if (ours.length > 0) {
      const byGroup = new Map(ours.map((r) => [r.pgid, r.start]));
      for (const entry of readdirSync('/proc')) {
        if (!/^\d+$/.test(entry)) continue;
        const stat = statOf(entry);
        const since = stat && byGroup.get(stat.pgrp);
        if (stat === undefined || since === undefined || stat.start < since) continue;
        try {
          process.kill(Number(entry), 'SIGKILL');
          killed.push(Number(entry));
        } catch {
          // ESRCH: it ended while we looked.
        }
      }
    }
    this.groups.clear();
    this.write();
    return killed;
  }
}
