import { stringify } from 'yaml';
import type { VmSpec } from './deployment/schema.ts';

/**
 * The cloud-init user data of a VM: the deployment's public key (so the engine can log in
 * through the bastion) plus the VM's own `userData` additions. The key is listed first and the
 * user's additions cannot replace it — `ssh_authorized_keys` is not an allowed addition.
 * `hostname` is the topology's VM name: the Nova server carries the marked name
 * (`ctd-<deploymentId>-<name>`), which cloud-init would otherwise make the hostname.
 */
export function renderUserData(vm: VmSpec, publicKey: string): string {
  const extra = vm.userData ?? {};
  const doc: Record<string, unknown> = { hostname: vm.name, ssh_authorized_keys: [publicKey.trim()] };
  if (extra.bootcmd?.length) doc.bootcmd = extra.bootcmd;
  if (extra.packages?.length) doc.packages = extra.packages;
  if (extra.write_files?.length) doc.write_files = extra.write_files;
  if (extra.runcmd?.length) doc.runcmd = extra.runcmd;
  return `#cloud-config\n${stringify(doc, { lineWidth: 0 })}`;
}
