import { lchown, readdir } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * The identity the user's own code runs under (a `run` command, ansible-playbook), apart from the
 * runner's. On Fargate the runner is root with a handful of capabilities and holds the task role's
 * credentials in its environment; a process of another uid can read neither that environment
 * (`/proc/<pid>/environ`) nor the runner's memory, so a step cannot take the credentials that
 * reach every tenant's items. Unset (local mode), the user's code runs as the runner does.
 */
export interface StepUser {
  uid: number;
  gid: number;
}

/** From CTD_STEP_UID / CTD_STEP_GID (the sandbox image sets them); both or neither. */
export function stepUserFromEnv(env: NodeJS.ProcessEnv): StepUser | undefined {
  const uid = env.CTD_STEP_UID;
  const gid = env.CTD_STEP_GID;
  if (uid === undefined && gid === undefined) return undefined;
  const parse = (name: string, value: string | undefined): number => {
    const n = Number(value);
    if (!value || !Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer (not root), got ${JSON.stringify(value)}`);
    return n;
  };
  return { uid: parse('CTD_STEP_UID', uid), gid: parse('CTD_STEP_GID', gid) };
}

/** What `spawn` needs to start a process as the step user (libuv also drops supplementary groups). */
export function spawnIdentity(user: StepUser | undefined): { uid?: number; gid?: number } {
  return user ? { uid: user.uid, gid: user.gid } : {};
}

/**
 * Hands `dir` and everything in it (the bundle, ansible's workspace and key) to the step user, who
 * runs in it. Symlinks are changed themselves, never followed.
 */
export async function handOver(dir: string, user: StepUser | undefined): Promise<void> {
  if (!user) return;
  await lchown(dir, user.uid, user.gid);
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) await handOver(path, user);
    else await lchown(path, user.uid, user.gid);
  }
}
