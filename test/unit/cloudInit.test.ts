import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { renderUserData } from '../../core/cloudInit.ts';
import { VmSchema } from '../../core/deployment/schema.ts';

const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHdxpWznayrArucC1nOUSzi99uj0oxSr0ygQ80aCu+Kz ctd-dep1';

describe('Function: renderUserData', () => {
  it('is #cloud-config with the hostname and the deployment key only when the VM adds nothing', () => {
    const text = renderUserData(VmSchema.parse({ name: 'web1', network: 'n', image: 'debian-12', flavor: 'm1.small' }), KEY);
    expect(text.startsWith('#cloud-config\n')).toBe(true);
    expect(parse(text)).toEqual({ hostname: 'web1', ssh_authorized_keys: [KEY] });
  });

  it('carries the VM user data additions next to the key', () => {
    const vm = VmSchema.parse({
      name: 'web1',
      network: 'n',
      image: 'debian-12',
      flavor: 'm1.small',
      userData: {
        bootcmd: ['echo boot'],
        runcmd: ['echo "run: it"'],
        packages: ['python3'],
        write_files: [{ path: '/etc/motd', content: 'hi\nthere\n', permissions: '0644' }],
      },
    });
    expect(parse(renderUserData(vm, KEY))).toEqual({
      hostname: 'web1',
      ssh_authorized_keys: [KEY],
      bootcmd: ['echo boot'],
      packages: ['python3'],
      write_files: [{ path: '/etc/motd', content: 'hi\nthere\n', permissions: '0644' }],
      runcmd: ['echo "run: it"'],
    });
  });
});
