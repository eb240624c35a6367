import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateSshKeyPair } from '../../core/crypto/deploymentKey.ts';
import { installKeysCommand, keyOf, publishAccess } from '../../local/cloud/backends/netns/accessKeys.ts';
import { nftRule } from '../../local/cloud/backends/netns/firewall.ts';
import { overlaps, parseCidr } from '../../local/cloud/backends/netns/ipv4.ts';
import { writeAliasedPasswd } from '../../local/cloud/backends/netns/logins.ts';

const execFileAsync = promisify(execFile);
const keyA = generateSshKeyPair('ctd-a').publicKey.trim();
const keyB = generateSshKeyPair('ctd-b').publicKey.trim();
const bare = (k: string): string => k.split(' ').slice(0, 2).join(' ');

describe('netns bastion gate: the AuthorizedKeysCommand', () => {
  let dir: string;
  const runCommand = async (): Promise<string> => (await execFileAsync('/usr/bin/python3', ['-I', join(dir, 'keys-command')])).stdout;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ctd-netns-gate-'));
    await installKeysCommand(dir);
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('prints nothing before any access item exists: no key may log in', async () => {
    expect(await runCommand()).toBe('');
  });

  it('prints one restricted line per ctd-access item, forwarding only to its targets', async () => {
    await publishAccess(dir, [
      { item: 'ctd-access-dep1', publicKey: keyA, targets: ['10.0.0.6', '10.0.0.5'] },
      { item: 'ctd-access-dep2', publicKey: keyB, targets: [] },
    ]);
    expect(await runCommand()).toBe(
      `restrict,port-forwarding,permitopen="10.0.0.5:22",permitopen="10.0.0.6:22" ${bare(keyA)}\n` + `restrict ${bare(keyB)}\n`,
    );
  });

  it('never turns tenant input into options or extra keys', async () => {
    await publishAccess(dir, [
      { item: 'ctd-access-nl', publicKey: `${keyA}\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIInjected`, targets: ['10.0.0.5'] },
      { item: 'ctd-access-opt', publicKey: `command="/bin/sh" ${keyA}`, targets: ['10.0.0.5'] },
      { item: 'ctd-access-ip', publicKey: keyB, targets: ['10.0.0.5:22,permitopen="*:*"', '10.0.0.7'] },
      { item: 'ctd-access-forged', publicKey: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIInjected', targets: ['10.0.0.5'] },
      { item: 'other-item', publicKey: keyA, targets: ['10.0.0.5'] },
    ]);
    expect(await runCommand()).toBe(`restrict,port-forwarding,permitopen="10.0.0.7:22" ${bare(keyB)}\n`);
    // The command re-checks what it reads, whoever wrote the file.
    await import('node:fs/promises').then((fs) =>
      fs.writeFile(
        join(dir, 'meta_data.json'),
        JSON.stringify({ meta: { 'ctd-access-x': `${bare(keyA)}\nssh-rsa AAAAB3 injected`, 'ctd-access-y': `ssh-rsa ${bare(keyA).split(' ')[1]}` } }),
      ),
    );
    expect(await runCommand()).toBe('');
  });

  it('accepts a key line with a comment and rejects what is not one key', () => {
    expect(keyOf(keyA)).toBe(bare(keyA));
    expect(keyOf('ssh-ed25519 not base64!')).toBeUndefined();
    expect(keyOf('ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIInjected')).toBeUndefined();
    // A valid ed25519 blob listed under another type.
    expect(keyOf(`ssh-rsa ${bare(keyA).split(' ')[1]}`)).toBeUndefined();
    expect(keyOf('no-such-type AAAA')).toBeUndefined();
  });
});

describe('netns bastion gate: ingress rules as nftables rules', () => {
  const rule = { id: 'r1', protocol: 'tcp', portMin: 22, portMax: 22, remoteIpPrefix: '10.213.255.1/32' };

  it('translates a Neutron rule, labelled with its id', () => {
    expect(nftRule('t', rule)).toBe('add rule inet t ingress_rules ip saddr 10.213.255.1/32 meta l4proto tcp tcp dport 22 accept comment "r1"');
    expect(nftRule('t', { ...rule, portMin: 1000, portMax: 2000, remoteIpPrefix: null })).toBe(
      'add rule inet t ingress_rules meta l4proto tcp tcp dport 1000-2000 accept comment "r1"',
    );
    expect(nftRule('t', { ...rule, protocol: null, portMin: null, portMax: null })).toBe('add rule inet t ingress_rules ip saddr 10.213.255.1/32 accept comment "r1"');
  });

  it('admits nothing for IPv6 prefixes and protocols it does not model', () => {
    expect(nftRule('t', { ...rule, remoteIpPrefix: '::/0' })).toBeUndefined();
    expect(nftRule('t', { ...rule, protocol: 'gre' })).toBeUndefined();
  });

  it('refuses input that could escape the nft script', () => {
    expect(() => nftRule('t', { ...rule, id: 'x" accept; flush ruleset #' })).toThrow(/invalid rule id/);
    expect(() => nftRule('t', { ...rule, remoteIpPrefix: '0.0.0.0/0 accept' })).toThrow(/invalid remote_ip_prefix/);
    expect(() => nftRule('t', { ...rule, portMin: 70000 })).toThrow(/not a port/);
  });
});

describe('netns addresses and logins', () => {
  it('tells overlapping subnets apart from disjoint ones', () => {
    expect(overlaps(parseCidr('10.0.0.0/24'), parseCidr('10.0.0.0/16'))).toBe(true);
    expect(overlaps(parseCidr('10.0.1.0/24'), parseCidr('10.0.0.0/24'))).toBe(false);
    expect(() => parseCidr('10.0.0.0/33')).toThrow(/not an IPv4 CIDR/);
  });

  it('adds login aliases as uid 0 and keeps the machine users', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ctd-netns-passwd-'));
    try {
      await writeAliasedPasswd(join(dir, 'passwd'), ['ctd', 'root']);
      const lines = (await readFile(join(dir, 'passwd'), 'utf8')).trim().split('\n');
      expect(lines.filter((l) => l.startsWith('ctd:'))).toEqual(['ctd:x:0:0:ctd (root in the netns bed):/root:/bin/sh']);
      expect(lines.filter((l) => l.startsWith('root:'))).toHaveLength(1);
      await expect(writeAliasedPasswd(join(dir, 'passwd'), ['bad:name'])).rejects.toThrow(/not a valid user name/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
