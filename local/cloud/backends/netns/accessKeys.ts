import { chmod, mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';

/**
 * The bastion's logins, as a tenant's jump host would do them on OpenStack: sshd asks an
 * `AuthorizedKeysCommand` (run as an unprivileged user) which reads the bastion's metadata
 * (`ctd-access-<deploymentId>` = a public key line, what the metadata service answers) and the
 * fixed IPs the front lists for each item, and prints one line per access key:
 *   restrict,port-forwarding,permitopen="<fixed ip>:22",… <key>
 * listing only the fixed IPs of the project's VMs whose user data lists that key. A key without
 * an access item cannot log in; a key may forward only to its own VMs. OpenSSH enforces it.
 */

/** The unprivileged user sshd runs the command as (Debian's `nobody`). */
export const KEYS_COMMAND_USER = 'nobody';

/** Default home of the command and its data: sshd refuses a command under a group/world-writable directory such as /tmp. */
export const KEYS_COMMAND_ROOT = '/run/ctd-netns';

const KEY_LINE = /^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com) [A-Za-z0-9+/]+={0,3}$/;
const IPV4 = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/;

/** "type base64" of a public key line (the comment dropped), or undefined when it is not one key. */
export function keyOf(line: string): string | undefined {
  if (/[\r\n]/.test(line.trim())) return undefined;
  const key = line.trim().split(/\s+/).slice(0, 2).join(' ');
  if (!KEY_LINE.test(key)) return undefined;
  // The blob must name the same type it is listed under (what OpenSSH checks when it parses it).
  const [type, b64] = key.split(' ') as [string, string];
  const blob = Buffer.from(b64, 'base64');
  if (blob.length < 4) return undefined;
  const len = blob.readUInt32BE(0);
  if (type === 'ssh-ed25519' && blob.length !== 51) return undefined; // type + a 32-byte key, nothing else
  return blob.length >= 4 + len && blob.subarray(4, 4 + len).toString('latin1') === type ? key : undefined;
}

/** One login of the gate: a `ctd-access-*` item's key and the fixed IPs it may forward to. */
export interface AccessLogin {
  item: string;
  publicKey: string;
  targets: string[];
}

/**
 * The command itself. Python because it is a prerequisite of the bed already and parses JSON;
 * `-I` keeps it from reading the environment or the working directory. The targets come
 * from the front (Nova/Neutron state: which servers' user data list the key). It re-validates
 * every key and address: the metadata is the tenant's input, and a newline or an option in it must
 * never become an authorized_keys line.
 */
const SCRIPT = `#!/usr/bin/python3 -I
# AuthorizedKeysCommand of a netns bastion (written by the local cloud; see accessKeys.ts).
import base64, json, os, re
here = os.path.dirname(os.path.abspath(__file__))
KEY = re.compile(r'^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\\.com|sk-ecdsa-sha2-nistp256@openssh\\.com) [A-Za-z0-9+/]+={0,3}$')
IP = re.compile(r'^(25[0-5]|2[0-4]\\d|1?\\d?\\d)(\\.(25[0-5]|2[0-4]\\d|1?\\d?\\d)){3}$')
def key_of(line):
    if re.search(r'[\\r\\n]', str(line).strip()):
        return None
    k = ' '.join(str(line).split()[:2])
    if not KEY.match(k):
        return None
    try:
        blob = base64.b64decode(k.split(' ')[1], validate=True)
    except ValueError:
        return None
    n = int.from_bytes(blob[:4], 'big') if len(blob) >= 4 else -1
    if k.startswith('ssh-ed25519 ') and len(blob) != 51:
        return None
    return k if n >= 0 and blob[4:4 + n] == k.split(' ')[0].encode() else None
with open(os.path.join(here, 'meta_data.json')) as f:
    meta = json.load(f).get('meta', {})
with open(os.path.join(here, 'targets.json')) as f:
    targets = json.load(f)
for item in sorted(meta):
    if not item.startswith('ctd-access-'):
        continue
    key = key_of(meta[item])
    if key is None:
        continue
    ips = sorted({ip for ip in targets.get(item, []) if IP.match(ip)})
    opts = 'restrict'
    if ips:
        opts += ',port-forwarding' + ''.join(',permitopen="%s:22"' % ip for ip in ips)
    print(opts, key)
`;

export interface KeysCommand {
  dir: string;
  /** The `AuthorizedKeysCommand` value. */
  command: string;
  user: string;
}

/** Writes the command into `dir` (created root-owned 0755 with its parents, so sshd's path check passes). */
export async function installKeysCommand(dir: string): Promise<KeysCommand> {
  await mkdir(dir, { recursive: true, mode: 0o755 });
  // mkdir's mode is masked by the umask; sshd and `nobody` need exactly 0755 on the way down.
  for (let d = dir; d !== dirname(d) && d.startsWith(KEYS_COMMAND_ROOT); d = dirname(d)) await chmod(d, 0o755);
  const command = join(dir, 'keys-command');
  await writeFile(command, SCRIPT, { mode: 0o755 });
  await chmod(command, 0o755);
  await publishAccess(dir, []);
  return { dir, command, user: KEYS_COMMAND_USER };
}

/**
 * Publishes what the command reads: `meta_data.json` as the metadata service answers it (only
 * the `ctd-access-*` items) and `targets.json` (item → fixed IPs). Each file is replaced
 * atomically (rename), so a login racing an update sees the old or the new gate, never half a
 * file. Invalid keys and addresses are dropped here already; the command checks again.
 */
export async function publishAccess(dir: string, logins: readonly AccessLogin[]): Promise<void> {
  const meta: Record<string, string> = {};
  const targets: Record<string, string[]> = {};
  for (const login of logins) {
    const key = keyOf(login.publicKey);
    if (!login.item.startsWith('ctd-access-') || !key) continue;
    meta[login.item] = key;
    targets[login.item] = login.targets.filter((ip) => IPV4.test(ip));
  }
  await replace(join(dir, 'targets.json'), JSON.stringify(targets));
  await replace(join(dir, 'meta_data.json'), JSON.stringify({ meta }));
}

async function replace(file: string, text: string): Promise<void> {
  const tmp = `${file}.tmp`;
  await writeFile(tmp, text, { mode: 0o644 });
  await chmod(tmp, 0o644);
  await rename(tmp, file);
}

export async function removeKeysCommand(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}
