import type { Bundle } from '../../core/deployment/bundle.ts';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, normalize } from 'node:path';
import { stringify } from 'yaml';
import { writeBundle } from '../bundle.ts';
import { ErrorName, StepError } from '../../core/errors.ts';
import type { SshHost } from '../ssh/session.ts';

/** The interpreter ansible must use on the VMs (the PATH python3 may be another one). */
export const PYTHON = '/usr/bin/python3';
/**
 * Where the callback plugins live (shipped with the step runner). A bundled runner no longer sits
 * beside them, so its launcher says where they are (the local launcher and the sandbox image set it).
 */
export const CALLBACK_PLUGINS_DIR = process.env.CTD_ANSIBLE_PLUGINS_DIR ?? join(dirname(new URL(import.meta.url).pathname), 'callback_plugins');

export interface AnsibleWorkspace {
  bundleDir: string;
  playbook: string;
  inventory: string;
  config: string;
  keyFile: string;
  knownHosts: string;
  controlPathDir: string;
  ansibleHome: string;
  extraVarsFile?: string;
}

const fail = (message: string): StepError => new StepError(ErrorName.StepFailed, message);

/** known_hosts lines pinning the host keys the cloud reported; `[addr]:port` when the port is not 22. */
export function knownHostsLines(hosts: { address: string; port: number; hostKey: string }[]): string {
  return hosts.map((h) => `${h.port === 22 ? h.address : `[${h.address}]:${h.port}`} ${h.hostKey}\n`).join('');
}

/**
 * The SSH options every connection uses. The bastion hop is a ProxyCommand rather than
 * ProxyJump because a bare ProxyJump passes neither -i nor -o to the jump connection.
 * ServerAlive* make a VM that dies under an open ControlPersist master fail fast instead of
 * hanging the next run for minutes.
 */
export function sshCommonArgs(opts: { keyFile: string; knownHosts: string; bastion: SshHost; user: string }): string {
  const common = [
    '-o UserKnownHostsFile=' + opts.knownHosts,
    '-o StrictHostKeyChecking=yes',
    '-o IdentitiesOnly=yes',
    '-o BatchMode=yes',
    '-o ServerAliveInterval=2',
    '-o ServerAliveCountMax=2',
  ];
  const proxy = [
    'ssh -F /dev/null',
    `-i ${opts.keyFile}`,
    ...common,
    '-o ConnectTimeout=10',
    `-p ${opts.bastion.port}`,
    '-W %h:%p',
    `${opts.user}@${opts.bastion.address}`,
  ].join(' ');
  return [`-o ProxyCommand="${proxy}"`, ...common].join(' ');
}

function assertPlainPath(path: string): void {
  // The paths go into ssh command lines that ansible splits with shlex.
  if (/[\s"'\\$`]/.test(path)) throw fail(`work directory "${path}" must not contain spaces, quotes or shell characters`);
}

/**
 * Lays out one ansible run inside the sandbox's private work dir: key (0600), pinned
 * known_hosts, inventory, ansible.cfg and the bundle. Nothing is shared with another run.
 */
export async function prepareWorkspace(input: {
  workDir: string;
  files: Bundle;
  playbook: string;
  privateKey: string;
  user: string;
  bastion: SshHost;
  targets: SshHost[];
  extraVars?: Record<string, string | number | boolean>;
}): Promise<AnsibleWorkspace> {
  const { workDir } = input;
  assertPlainPath(workDir);
  if (!(input.playbook in input.files)) throw fail(`playbook "${input.playbook}" is not in the bundle`);
  const bundleDir = join(workDir, 'bundle');
  await writeBundle(bundleDir, input.files);
  const keyFile = join(workDir, 'id_ed25519');
  await writeFile(keyFile, input.privateKey.endsWith('\n') ? input.privateKey : `${input.privateKey}\n`, { mode: 0o600 });
  const knownHosts = join(workDir, 'known_hosts');
  await writeFile(knownHosts, knownHostsLines([input.bastion, ...input.targets]), { mode: 0o600 });
  const ansibleHome = join(workDir, '.ansible');
  await mkdir(join(ansibleHome, 'tmp'), { recursive: true, mode: 0o700 });
  // ssh control sockets are capped at 108 bytes; ansible adds a 40-character hash.
  const controlPathDir = join(workDir, 'cp').length <= 60 ? join(workDir, 'cp') : await mkdtemp(join(tmpdir(), 'ctd-cp-'));
  await mkdir(controlPathDir, { recursive: true, mode: 0o700 });

  const inventory = join(workDir, 'inventory.yml');
  const hosts = Object.fromEntries(input.targets.map((vm) => [vm.name, { ansible_host: vm.address, ansible_port: vm.port }]));
  const vars = {
    ansible_user: input.user,
    ansible_python_interpreter: PYTHON,
    ansible_ssh_private_key_file: keyFile,
    ansible_ssh_common_args: sshCommonArgs({ keyFile, knownHosts, bastion: input.bastion, user: input.user }),
  };
  await writeFile(inventory, stringify({ all: { hosts, vars } }));

  const config = join(workDir, 'ansible.cfg');
  await writeFile(
    config,
    [
      '[defaults]',
      `inventory = ${inventory}`,
      'host_key_checking = True',
      'retry_files_enabled = False',
      `interpreter_python = ${PYTHON}`,
      'stdout_callback = json',
      'callbacks_enabled = ctd_progress',
      `callback_plugins = ${CALLBACK_PLUGINS_DIR}`,
      'nocolor = True',
      'timeout = 10',
      'forks = 10',
      '',
      '[ssh_connection]',
      'pipelining = True',
      'ssh_args = -F /dev/null -C -o ControlMaster=auto -o ControlPersist=60s',
      `control_path_dir = ${controlPathDir}`,
      '',
    ].join('\n'),
  );

  const ws: AnsibleWorkspace = { bundleDir, playbook: join(bundleDir, normalize(input.playbook)), inventory, config, keyFile, knownHosts, controlPathDir, ansibleHome };
  if (input.extraVars && Object.keys(input.extraVars).length > 0) {
    ws.extraVarsFile = join(workDir, 'extra-vars.json');
    await writeFile(ws.extraVarsFile, JSON.stringify(input.extraVars));
  }
  return ws;
}

/** The environment of ansible-playbook: built from scratch, so no variable of the runner leaks in. */
export function ansibleEnv(ws: AnsibleWorkspace, workDir: string): NodeJS.ProcessEnv {
  return {
    PATH: '/usr/bin:/bin:/usr/sbin:/sbin',
    HOME: workDir,
    LANG: 'C.UTF-8',
    LC_ALL: 'C.UTF-8',
    ANSIBLE_CONFIG: ws.config,
    ANSIBLE_HOME: ws.ansibleHome,
    ANSIBLE_LOCAL_TEMP: join(ws.ansibleHome, 'tmp'),
    ANSIBLE_SSH_CONTROL_PATH_DIR: ws.controlPathDir,
    ANSIBLE_PIPELINING: '1',
    ANSIBLE_STDOUT_CALLBACK: 'json',
    ANSIBLE_CALLBACKS_ENABLED: 'ctd_progress',
    ANSIBLE_CALLBACK_PLUGINS: CALLBACK_PLUGINS_DIR,
    ANSIBLE_HOST_KEY_CHECKING: 'True',
    ANSIBLE_RETRY_FILES_ENABLED: '0',
    ANSIBLE_NOCOLOR: '1',
    ANSIBLE_PYTHON_INTERPRETER: PYTHON,
    PYTHONUNBUFFERED: '1',
  };
}
