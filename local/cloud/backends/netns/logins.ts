import { readFile, writeFile } from 'node:fs/promises';

/**
 * Login names. Inside the namespaces every login is root (no user is created on the machine),
 * but clouds name their default user (`ctd` on the local cloud's bastion and in the examples).
 * Each bastion and VM therefore sees, through a private mount of /etc/passwd, the machine's
 * users plus each alias as another name for uid 0 with root's home: `ctd@vm` is root there,
 * with /root/.ssh/authorized_keys from the user data.
 */
export const USER_NAME = /^[a-z_][a-z0-9_-]{0,31}$/;

export async function writeAliasedPasswd(file: string, aliases: readonly string[]): Promise<void> {
  for (const a of aliases) if (!USER_NAME.test(a)) throw new Error(`netns: login name "${a}" is not a valid user name`);
  const names = new Set(aliases.filter((a) => a !== 'root'));
  const machine = (await readFile('/etc/passwd', 'utf8')).split('\n').filter((l) => l.length > 0 && !names.has(l.split(':')[0]!));
  const added = [...names].map((name) => `${name}:x:0:0:${name} (root in the netns bed):/root:/bin/sh`);
  await writeFile(file, `${[...machine, ...added].join('\n')}\n`, { mode: 0o644 });
}
