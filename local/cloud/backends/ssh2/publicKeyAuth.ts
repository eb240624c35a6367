import type { AuthContext, PublicKeyAuthContext } from 'ssh2';
import ssh2 from 'ssh2';

// ssh2 is CommonJS whose `utils` Node's ESM loader cannot see as a named export.
const { utils } = ssh2;

/** The key blob of an OpenSSH public key line, or undefined when the line is not a key. */
export function keyBlob(line: string): Buffer | undefined {
  const parsed = utils.parseKey(line.trim());
  return parsed instanceof Error ? undefined : parsed.getPublicSSH();
}

/**
 * Public-key authentication against a list of allowed key lines. A query without a signature
 * only learns whether the key is acceptable; the signature proves the client holds the private
 * key. Returns the accepted key blob, or undefined when the attempt was rejected.
 */
export function authenticateByKey(ctx: AuthContext, allowed: readonly string[]): Buffer | undefined {
  if (ctx.method !== 'publickey') {
    ctx.reject(['publickey']);
    return undefined;
  }
  const pk = ctx as PublicKeyAuthContext;
  const line = allowed.find((candidate) => keyBlob(candidate)?.equals(pk.key.data));
  if (!line) {
    ctx.reject(['publickey']);
    return undefined;
  }
  if (pk.signature && pk.blob) {
    const parsed = utils.parseKey(line);
    if (parsed instanceof Error || parsed.verify(pk.blob, pk.signature, pk.hashAlgo) !== true) {
      ctx.reject(['publickey']);
      return undefined;
    }
    ctx.accept();
    return pk.key.data;
  }
  ctx.accept();
  return undefined;
}
