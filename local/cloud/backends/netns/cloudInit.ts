import { chmod, mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse } from 'yaml';

/**
 * The part of cloud-init a netns VM honours, in cloud-init's order: bootcmd (a failure stops
 * the boot before the keys are installed, so the VM never accepts the deployment key — the
 * engine's bootstrap check then reports Ctd.VmBootstrapTimeout), ssh_authorized_keys,
 * write_files, runcmd (in the background), then sshd. `packages` and `users` are ignored:
 * a namespace shares the machine's installed software and user database.
 */
export interface CloudConfig {
  bootcmd: string[];
  sshAuthorizedKeys: string[];
  writeFiles: { path: string; content: string; permissions?: string }[];
  runcmd: string[];
}

export function shq(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

function command(item: unknown, where: string): string {
  if (typeof item === 'string') return item;
  if (Array.isArray(item) && item.every((a) => typeof a === 'string')) return (item as string[]).map(shq).join(' ');
  throw new Error(`${where}: each entry must be a string or a list of strings`);
}

function list(value: unknown, where: string): unknown[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw new Error(`${where} must be a list`);
  return value;
}

/** Parses `#cloud-config` YAML (a `#!` script is accepted as a single runcmd, like cloud-init does). */
export function parseUserData(userData: string): CloudConfig {
  const text = userData.trimStart();
  if (text.startsWith('#!')) return { bootcmd: [], sshAuthorizedKeys: [], writeFiles: [], runcmd: [text] };
  if (text.length > 0 && !text.startsWith('#cloud-config')) throw new Error('user data must start with "#cloud-config" or "#!"');
  const doc: unknown = text.length === 0 ? {} : (parse(text) ?? {});
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new Error('cloud-config must be a mapping');
  const d = doc as Record<string, unknown>;
  const writeFiles = list(d.write_files, 'write_files').map((f, i) => {
    const entry = f as Record<string, unknown>;
    if (typeof entry?.path !== 'string' || !entry.path.startsWith('/')) throw new Error(`write_files[${i}].path must be an absolute path`);
    const content = entry.content === undefined ? '' : entry.content;
    if (typeof content !== 'string') throw new Error(`write_files[${i}].content must be a string`);
    const permissions = entry.permissions === undefined ? undefined : String(entry.permissions);
    if (permissions !== undefined && !/^0?[0-7]{3,4}$/.test(permissions)) throw new Error(`write_files[${i}].permissions must be octal`);
    return permissions === undefined ? { path: entry.path, content } : { path: entry.path, content, permissions };
  });
  const keys = list(d.ssh_authorized_keys, 'ssh_authorized_keys').map((k, i) => {
    if (typeof k !== 'string' || /[\r\n]/.test(k)) throw new Error(`ssh_authorized_keys[${i}] must be one key line`);
    return k.trim();
  });
  return {
    bootcmd: list(d.bootcmd, 'bootcmd').map((c, i) => command(c, `bootcmd[${i}]`)),
    sshAuthorizedKeys: keys,
    writeFiles,
    runcmd: list(d.runcmd, 'runcmd').map((c, i) => command(c, `runcmd[${i}]`)),
  };
}

export interface VmBootPaths {
  /** Per-VM directory under the state dir. */
  dir: string;
  /** Bind-mounted on /root inside the VM: the VM user's private home. */
  home: string;
  /** Bind-mounted on /var/log inside the VM (cloud-init-output.log lives there). */
  log: string;
  sshdConfig: string;
  sshdLog: string;
  /** Written by the boot script: "ok" or "bootcmd-failed". */
  status: string;
  /** Written by the boot script once the machine's own mounts are in place: the machine runs. */
  running: string;
}

export function vmBootPaths(dir: string): VmBootPaths {
  return {
    dir,
    home: join(dir, 'home'),
    log: join(dir, 'log'),
    sshdConfig: join(dir, 'sshd', 'sshd_config'),
    sshdLog: join(dir, 'sshd', 'sshd.log'),
    status: join(dir, 'cloud-init', 'status'),
    running: join(dir, 'cloud-init', 'running'),
  };
}

/**
 * Writes the boot script and its inputs (as files, so no user text is ever spliced into
 * the script unquoted) and returns the script's path. The script runs as PID 1 in the VM's own
 * mount/UTS/PID namespaces and finally execs sshd. Without a config (a restore: the machine
 * reboots after a cloud restart) the user data is not applied again, as cloud-init does.
 */
export async function writeBootScript(
  paths: VmBootPaths,
  hostname: string,
  config: CloudConfig | undefined,
  opts: { passwdFile?: string } = {},
): Promise<string> {
  const ci = join(paths.dir, 'cloud-init');
  await rm(paths.running, { force: true });
  await mkdir(join(ci, 'files'), { recursive: true, mode: 0o700 });
  await mkdir(paths.home, { recursive: true, mode: 0o700 });
  await mkdir(paths.log, { recursive: true, mode: 0o755 });
  const sshd = `exec /usr/sbin/sshd -D -f ${shq(paths.sshdConfig)} -E ${shq(paths.sshdLog)}`;
  const lines = [
    '#!/bin/sh',
    `exec >>${shq(join(paths.log, 'cloud-init-output.log'))} 2>&1 </dev/null`,
    `hostname ${shq(hostname)}`,
    `mount --bind ${shq(paths.home)} /root`,
    `mount --bind ${shq(paths.log)} /var/log`,
    'mkdir -p /srv && mount -t tmpfs -o mode=0755 tmpfs /srv',
    ...(opts.passwdFile ? [`mount --bind ${shq(opts.passwdFile)} /etc/passwd`] : []),
    `echo running > ${shq(paths.running)}`,
  ];
  if (!config) {
    lines.push(sshd, '');
    return finish(paths, lines);
  }
  for (const [i, cmd] of config.bootcmd.entries()) {
    const file = join(ci, `bootcmd-${i}.sh`);
    await writeFile(file, `${cmd}\n`, { mode: 0o700 });
    lines.push(
      `echo "cloud-init: bootcmd[${i}]"`,
      `if ! /bin/sh ${shq(file)}; then echo "cloud-init: bootcmd[${i}] failed; ssh keys, write_files and runcmd skipped"; echo bootcmd-failed > ${shq(paths.status)}; ${sshd}; fi`,
    );
  }
  await writeFile(join(ci, 'authorized_keys'), config.sshAuthorizedKeys.map((k) => `${k}\n`).join(''), { mode: 0o600 });
  lines.push(
    'mkdir -p /root/.ssh && chmod 700 /root/.ssh',
    `cp ${shq(join(ci, 'authorized_keys'))} /root/.ssh/authorized_keys && chmod 600 /root/.ssh/authorized_keys`,
  );
  for (const [i, f] of config.writeFiles.entries()) {
    const src = join(ci, 'files', String(i));
    await writeFile(src, f.content, { mode: 0o600 });
    lines.push(
      `mkdir -p "$(dirname ${shq(f.path)})" && cp ${shq(src)} ${shq(f.path)} && chmod ${f.permissions ?? '0644'} ${shq(f.path)}`,
    );
  }
  if (config.runcmd.length > 0) {
    const runcmd = join(ci, 'runcmd.sh');
    await writeFile(runcmd, `${config.runcmd.join('\n')}\n`, { mode: 0o700 });
    // A child of the shell that becomes sshd: sshd reaps it, and it dies with the VM's PID namespace.
    lines.push(`/bin/sh ${shq(runcmd)} &`);
  }
  lines.push(`echo ok > ${shq(paths.status)}`, sshd, '');
  return finish(paths, lines);
}

async function finish(paths: VmBootPaths, lines: string[]): Promise<string> {
  const script = join(paths.dir, 'cloud-init', 'boot.sh');
  await writeFile(script, lines.join('\n'), { mode: 0o700 });
  await chmod(script, 0o700);
  return script;
}
