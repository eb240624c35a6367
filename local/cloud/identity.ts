import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { readJson, writeJson, WriteQueue } from './jsonFile.ts';
import { CloudApiError } from './errors.ts';

interface IdentityFile {
  /** SHA-256 (hex) of each token → its tenant. The tokens themselves are never stored. */
  tokens: Record<string, { tenantId: string; createdAt: string }>;
}

const TENANT_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;

function digest(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

/**
 * The local cloud's identity service (Keystone's role): tokens → tenants, kept in
 * `<stateDir>/cloud/identity.json` (0600). Only digests are persisted, so reading the file
 * does not let anyone act as a tenant.
 */
export class IdentityStore {
  private readonly path: string;
  private readonly queue = new WriteQueue();
  private data: IdentityFile = { tokens: {} };

  constructor(stateDir: string) {
    this.path = join(stateDir, 'cloud', 'identity.json');
  }

  async load(): Promise<void> {
    this.data = await readJson<IdentityFile>(this.path, { tokens: {} });
  }

  /** Mints a random 32-byte base64url token for the tenant. */
  async mint(tenantId: string): Promise<string> {
    if (!TENANT_PATTERN.test(tenantId)) {
      throw new CloudApiError(400, 'tenantId must be 1–64 letters, digits, ".", "_" or "-"');
    }
    const token = randomBytes(32).toString('base64url');
    this.data.tokens[digest(token)] = { tenantId, createdAt: new Date().toISOString() };
    await this.queue.run(() => writeJson(this.path, this.data));
    return token;
  }

  /** The tenant a token belongs to, or undefined for an unknown token. */
  tenantOf(token: string | undefined): string | undefined {
    if (!token) return undefined;
    return this.data.tokens[digest(token)]?.tenantId;
  }
}
