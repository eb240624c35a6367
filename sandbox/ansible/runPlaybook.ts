import { spawn, spawnSync } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { StepLogger } from '../actions/types.ts';
import { spawnIdentity, type StepUser } from '../stepUser.ts';

export const ANSIBLE_PLAYBOOK = '/usr/bin/ansible-playbook';
const MAX_STDOUT_BYTES = 32 * 1024 * 1024;
const KILL_GRACE_MS = 3000;

let pidNamespaceUsable: boolean | undefined;

/**
 * Whether ansible can run as PID 1 of its own PID namespace. ssh ControlPersist masters
 * daemonise out of ansible's process group; as PID 1's children they die and are reaped with
 * it, instead of lingering as orphans (PID 1 of these machines reaps nothing). Needs
 * CAP_SYS_ADMIN; without it ansible runs directly and ControlPersist is turned off.
 */
export function canUsePidNamespace(): boolean {
  pidNamespaceUsable ??= spawnSync('unshare', ['--pid', '--fork', '--kill-child', 'true'], { stdio: 'ignore', timeout: 5000 }).status === 0;
  return pidNamespaceUsable;
}

export interface PlaybookRun {
  exitCode: number | null;
  stdout: string;
  stderr: string;
  aborted: boolean;
}

/**
 * Runs ansible-playbook in its own process group, streaming progress lines into the step log
 * as they come and collecting the json callback's document from stdout. On abort the whole
 * group gets SIGTERM, then SIGKILL after a short grace.
 */
export function runPlaybook(input: {
  args: string[];
  env: NodeJS.ProcessEnv;
  cwd: string;
  commandPrefix: readonly string[];
  log: StepLogger;
  signal: AbortSignal;
  /** Runs ansible-playbook as this user; it cannot create a PID namespace, so ControlPersist is off. */
  user?: StepUser;
}): Promise<PlaybookRun> {
  if (input.user && input.commandPrefix.length > 0) throw new Error('a command prefix cannot run as the step user');
  const pidNs = !input.user && canUsePidNamespace();
  const env = pidNs ? input.env : { ...input.env, ANSIBLE_SSH_ARGS: '-F /dev/null -C -o ControlMaster=no' };
  const argv = [
    ...input.commandPrefix,
    ...(pidNs ? ['unshare', '--pid', '--fork', '--kill-child'] : []),
    ANSIBLE_PLAYBOOK,
    ...input.args,
  ];
  const [file, ...args] = argv as [string, ...string[]];
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { cwd: input.cwd, env, ...spawnIdentity(input.user), detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stdoutBytes = 0;
    let stderrTail = '';
    let aborted = false;
    let killTimer: NodeJS.Timeout | undefined;

    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      stdoutBytes += d.length;
      if (stdoutBytes <= MAX_STDOUT_BYTES) stdout += d;
    });
    createInterface({ input: child.stderr! }).on('line', (line) => {
      if (line.startsWith('CTD-PROGRESS ')) {
        try {
          const p = JSON.parse(line.slice('CTD-PROGRESS '.length)) as { text: string; host?: string };
          input.log.line('stdout', p.text, p.host);
          return;
        } catch {
          // Fall through: log it as it is.
        }
      }
      if (line.trim().length === 0) return;
      input.log.line('stderr', line);
      stderrTail = `${stderrTail}${line}\n`.slice(-8192);
    });

    const killGroup = (sig: NodeJS.Signals): void => {
      try {
        if (child.pid) process.kill(-child.pid, sig);
      } catch {
        // The group is gone already.
      }
    };
    const onAbort = (): void => {
      aborted = true;
      input.log.line('engine', 'step stopped: terminating ansible-playbook');
      killGroup('SIGTERM');
      killTimer = setTimeout(() => killGroup('SIGKILL'), KILL_GRACE_MS);
    };
    if (input.signal.aborted) onAbort();
    else input.signal.addEventListener('abort', onAbort, { once: true });

    child.once('error', (e) => {
      input.signal.removeEventListener('abort', onAbort);
      reject(e);
    });
    child.once('close', (code) => {
      input.signal.removeEventListener('abort', onAbort);
      if (killTimer) clearTimeout(killTimer);
      // Anything the playbook left in its group (only possible without the PID namespace) goes too.
      if (!pidNs) killGroup('SIGKILL');
      resolve({ exitCode: code, stdout, stderr: stderrTail, aborted });
    });
  });
}
