import { appendFile, chmod, mkdir, writeFile } from 'node:fs/promises';
import { dirname, join, posix } from 'node:path';
import { parse } from 'yaml';
import { CloudApiError } from '../../errors.ts';
import type { ProcessGroups } from './processes.ts';
import { vmEnv } from './vmServer.ts';

/** The parts of `#cloud-config` the local cloud understands. */
export interface CloudConfig {
  /** cloud-init's `hostname` (set_hostname): wins over the server name from the metadata. */
  hostname?: string;
  bootcmd: string[];
  sshAuthorizedKeys: string[];
  writeFiles: { path: string; content: string; permissions?: string }[];
  packages: string[];
  runcmd: string[];
}

const strings = (v: unknown): string[] => (Array.isArray(v) ? v.map((x) => (Array.isArray(x) ? x.map(String).join(' ') : String(x))) : []);

/** Parses user data; anything but a `#cloud-config` mapping is refused as a real cloud-init would skip it. */
export function parseCloudConfig(userData: string): CloudConfig {
  if (userData.trim() === '') return { bootcmd: [], sshAuthorizedKeys: [], writeFiles: [], packages: [], runcmd: [] };
  if (!userData.startsWith('#cloud-config')) throw new CloudApiError(400, 'user data must start with #cloud-config');
  let doc: unknown;
  try {
    doc = parse(userData);
  } catch (e) {
    throw new CloudApiError(400, `user data is not valid YAML: ${e instanceof Error ? e.message : String(e)}`);
  }
  const c = (typeof doc === 'object' && doc !== null ? doc : {}) as Record<string, unknown>;
  const files = Array.isArray(c.write_files) ? (c.write_files as Record<string, unknown>[]) : [];
  return {
    ...(typeof c.hostname === 'string' && /^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$/.test(c.hostname) ? { hostname: c.hostname } : {}),
    bootcmd: strings(c.bootcmd),
    sshAuthorizedKeys: strings(c.ssh_authorized_keys),
    writeFiles: files.map((f) => ({
      path: String(f.path ?? ''),
      content: String(f.content ?? ''),
      permissions: f.permissions === undefined ? undefined : String(f.permissions),
    })),
    packages: strings(c.packages),
    runcmd: strings(c.runcmd),
  };
}

export interface VmPaths {
  home: string;
  tmp: string;
  authorizedKeys: string;
  /** `<home>/var/log/cloud-init-output.log`: where the VM_BOOTSTRAP_HINT sends the user. */
  cloudInitLog: string;
}

export function vmPaths(vmDir: string): VmPaths {
  const home = join(vmDir, 'home');
  return { home, tmp: join(vmDir, 'tmp'), authorizedKeys: join(home, '.ssh', 'authorized_keys'), cloudInitLog: join(home, 'var', 'log', 'cloud-init-output.log') };
}

/** Runs one command as a VM process, appending its output to the cloud-init log; resolves with its exit code. */
function runLogged(cmd: string, name: string, paths: VmPaths, processes: ProcessGroups): Promise<number> {
  return new Promise((resolve) => {
    let child;
    try {
      child = processes.spawn(cmd, { cwd: paths.home, env: vmEnv({ home: paths.home, tmp: paths.tmp, name }) });
    } catch {
      resolve(255);
      return;
    }
    const log = (chunk: Buffer) => void appendFile(paths.cloudInitLog, chunk).catch(() => undefined);
    child.stdout?.on('data', log);
    child.stderr?.on('data', log);
    child.stdin?.end();
    child.on('error', () => resolve(127));
    child.on('exit', (code, signal) => resolve(signal ? 128 : (code ?? 255)));
  });
}

/**
 * Applies cloud-config the way cloud-init orders it: `bootcmd` first — if one fails, stop
 * there and install no key (how tests make a VM that never becomes reachable) — then the
 * authorized keys, `write_files` (paths rooted at the VM home), and `runcmd`. `packages` are
 * not installed (no package manager in a loopback VM); they are noted in the log.
 * Resolves true when everything ran, false when a bootcmd failed.
 */
export async function applyCloudConfig(config: CloudConfig, name: string, paths: VmPaths, processes: ProcessGroups): Promise<boolean> {
  await mkdir(dirname(paths.cloudInitLog), { recursive: true });
  const note = (text: string) => appendFile(paths.cloudInitLog, `cloud-init: ${text}\n`);
  for (const cmd of config.bootcmd) {
    const code = await runLogged(cmd, name, paths, processes);
    if (code !== 0) {
      await note(`bootcmd "${cmd}" exited ${code}; stopping (no keys installed)`);
      return false;
    }
  }
  await mkdir(dirname(paths.authorizedKeys), { recursive: true, mode: 0o700 });
  await writeFile(paths.authorizedKeys, config.sshAuthorizedKeys.map((k) => `${k.trim()}\n`).join(''), { mode: 0o600 });
  for (const file of config.writeFiles) {
    const target = join(paths.home, posix.normalize(`/${file.path}`));
    await mkdir(dirname(target), { recursive: true });
    await writeFile(target, file.content);
    if (file.permissions && /^0?[0-7]{3,4}$/.test(file.permissions)) await chmod(target, parseInt(file.permissions, 8));
  }
  if (config.packages.length > 0) await note(`packages not installed by the local cloud: ${config.packages.join(', ')}`);
  for (const cmd of config.runcmd) {
    const code = await runLogged(cmd, name, paths, processes);
    if (code !== 0) await note(`runcmd "${cmd}" exited ${code}`);
  }
  await note('finished');
  return true;
}
