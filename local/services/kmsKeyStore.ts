import { createCipheriv, createDecipheriv, hkdfSync, randomBytes, randomUUID } from 'node:crypto';
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** Error names are KMS's own, so SDK callers see the same `error.name` locally as on AWS. */
export class KmsError extends Error {
  constructor(
    override readonly name:
      | 'InvalidCiphertextException'
      | 'IncorrectKeyException'
      | 'NotFoundException'
      | 'ValidationException'
      | 'InvalidGrantTokenException'
      | 'InvalidGrantIdException'
      | 'AccessDeniedException'
      | 'AlreadyExistsException',
    message: string,
  ) {
    super(message);
  }
}

export interface StoredKey {
  keyId: string;
  /** base64 AES-256 key; never logged, never returned by any operation. */
  material: string;
  description: string;
  createdAt: number;
}

export interface StoredGrant {
  grantId: string;
  grantToken: string;
  keyId: string;
  name?: string;
  granteePrincipal: string;
  retiringPrincipal?: string;
  operations: string[];
  constraints?: GrantConstraints;
  createdAt: number;
  /**
   * base64 key material of a grant constrained to one exact encryption context: what that context
   * is encrypted under (see encrypt). Retiring the grant deletes it, so those ciphertexts are shredded.
   */
  material?: string;
}

export interface GrantConstraints {
  EncryptionContextEquals?: EncryptionContext;
  EncryptionContextSubset?: EncryptionContext;
}

interface StateFile {
  keys: StoredKey[];
  aliases: Record<string, string>;
  grants: StoredGrant[];
}

export type EncryptionContext = Record<string, string>;

/** The account id LocalStack and other emulators use; it makes local ARNs obviously fake. */
export const LOCAL_ACCOUNT = '000000000000';
const BLOB_VERSION = 1;
/** A blob sealed under a grant's own material: version(1) | idLen | keyId | grantIdLen | grantId | iv | tag | body. */
const GRANT_BLOB_VERSION = 2;
const GRANT_INFO = Buffer.from('ctd/local-kms/grant-bound/v1');
const IV_BYTES = 12;
const TAG_BYTES = 16;

/**
 * Sorted-key JSON, so `{a,b}` and `{b,a}` authenticate identically, as KMS treats the
 * encryption context as an unordered map.
 */
export function canonicalContext(context: EncryptionContext | undefined): Buffer {
  const entries = Object.entries(context ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return Buffer.from(JSON.stringify(entries), 'utf8');
}

/**
 * Key material, aliases and grants of the local KMS, persisted in one 0600 file under a 0700
 * directory. The whole state is rewritten atomically (temp file + rename) on each change: it is
 * tiny and changes rarely, so this is simpler than a database and never leaves a torn file.
 */
export class KmsKeyStore {
  private constructor(
    private readonly file: string,
    private readonly state: StateFile,
    readonly region: string,
  ) {}

  static async open(stateDir: string, region: string): Promise<KmsKeyStore> {
    const dir = join(stateDir, 'kms');
    await mkdir(dir, { recursive: true, mode: 0o700 });
    // mkdir's mode is masked by umask and ignored for an existing dir; enforce it.
    await chmod(dir, 0o700);
    const file = join(dir, 'keys.json');
    let state: StateFile;
    try {
      state = JSON.parse(await readFile(file, 'utf8')) as StateFile;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      state = { keys: [], aliases: {}, grants: [] };
    }
    const store = new KmsKeyStore(file, state, region);
    await store.save();
    return store;
  }

  arn(keyId: string): string {
    return `arn:aws:kms:${this.region}:${LOCAL_ACCOUNT}:key/${keyId}`;
  }

  keys(): readonly StoredKey[] {
    return this.state.keys;
  }

  aliasesOf(keyId: string): string[] {
    return Object.entries(this.state.aliases)
      .filter(([, target]) => target === keyId)
      .map(([alias]) => alias);
  }

  async createKey(description: string): Promise<StoredKey> {
    const key: StoredKey = {
      keyId: randomUUID(),
      material: randomBytes(32).toString('base64'),
      description,
      createdAt: Math.floor(Date.now() / 1000),
    };
    this.state.keys.push(key);
    await this.save();
    return key;
  }

  /** Creates the alias on a fresh key unless it already exists; returns the aliased key. */
  async ensureAlias(alias: string, description: string): Promise<StoredKey> {
    const existing = this.state.aliases[alias];
    if (existing !== undefined) return this.resolve(existing);
    const key = await this.createKey(description);
    this.state.aliases[alias] = key.keyId;
    await this.save();
    return key;
  }

  /** Accepts what KMS accepts as a KeyId: a key id, key ARN, alias name or alias ARN. */
  resolve(keyRef: string | undefined): StoredKey {
    if (!keyRef) throw new KmsError('ValidationException', 'KeyId is required');
    let ref = keyRef;
    const arnMatch = /^arn:aws:kms:[^:]*:[^:]*:(key\/.+|alias\/.+)$/.exec(ref);
    if (arnMatch?.[1]) ref = arnMatch[1];
    if (ref.startsWith('key/')) ref = ref.slice('key/'.length);
    if (ref.startsWith('alias/')) {
      const target = this.state.aliases[ref];
      if (target === undefined) throw new KmsError('NotFoundException', `Alias ${keyRef} is not found.`);
      ref = target;
    }
    const key = this.state.keys.find((k) => k.keyId === ref);
    if (!key) throw new KmsError('NotFoundException', `Key '${keyRef}' does not exist`);
    return key;
  }

  /**
   * Blob layout: version(1) | idLen(1) | keyId | iv(12) | tag(16) | ciphertext. When a live grant
   * on the key is constrained to exactly this context, the blob is sealed under that grant's own
   * material instead (version 2, the grant id in the header): retiring the grant then destroys what
   * decrypts it, so a copy of the state dir cannot. AWS KMS keeps the key; see docs/ARCHITECTURE.md.
   */
  encrypt(key: StoredKey, plaintext: Buffer, context: EncryptionContext | undefined): Buffer {
    const id = Buffer.from(key.keyId, 'utf8');
    const grant = this.grantFor(key.keyId, context);
    const header = grant
      ? Buffer.concat([Buffer.from([GRANT_BLOB_VERSION, id.length]), id, Buffer.from([Buffer.byteLength(grant.grantId)]), Buffer.from(grant.grantId, 'utf8')])
      : Buffer.concat([Buffer.from([BLOB_VERSION, id.length]), id]);
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', grant ? grantKey(key, grant) : Buffer.from(key.material, 'base64'), iv);
    // The header is authenticated too, so a blob cannot be re-labelled with another key or grant id.
    cipher.setAAD(Buffer.concat([header, canonicalContext(context)]));
    const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    return Buffer.concat([header, iv, cipher.getAuthTag(), body]);
  }

  decrypt(blob: Buffer, context: EncryptionContext | undefined, expectedKeyRef?: string): { key: StoredKey; plaintext: Buffer } {
    const invalid = () => new KmsError('InvalidCiphertextException', 'The ciphertext is invalid or the encryption context does not match.');
    if (blob.length < 2 || (blob[0] !== BLOB_VERSION && blob[0] !== GRANT_BLOB_VERSION)) throw invalid();
    const idLen = blob[1] as number;
    let ivStart = 2 + idLen;
    if (blob.length < ivStart + 1) throw invalid();
    const keyId = blob.subarray(2, 2 + idLen).toString('utf8');
    let grantId: string | undefined;
    if (blob[0] === GRANT_BLOB_VERSION) {
      const grantLen = blob[ivStart] as number;
      grantId = blob.subarray(ivStart + 1, ivStart + 1 + grantLen).toString('utf8');
      ivStart += 1 + grantLen;
    }
    if (blob.length < ivStart + IV_BYTES + TAG_BYTES) throw invalid();
    const key = this.state.keys.find((k) => k.keyId === keyId);
    if (!key) throw invalid();
    if (expectedKeyRef !== undefined && this.resolve(expectedKeyRef).keyId !== keyId) {
      throw new KmsError('IncorrectKeyException', 'The key ID in the request does not identify the key that encrypted the ciphertext.');
    }
    let material: Buffer = Buffer.from(key.material, 'base64');
    if (grantId !== undefined) {
      const grant = this.state.grants.find((g) => g.keyId === keyId && g.grantId === grantId);
      // As KMS answers a grantee whose grant was retired; here the material is gone with it too.
      if (!grant?.material || !grant.operations.includes('Decrypt')) {
        throw new KmsError('AccessDeniedException', 'No grant allows Decrypt of this ciphertext: it was retired or revoked.');
      }
      material = grantKey(key, grant);
    }
    const iv = blob.subarray(ivStart, ivStart + IV_BYTES);
    const tag = blob.subarray(ivStart + IV_BYTES, ivStart + IV_BYTES + TAG_BYTES);
    const decipher = createDecipheriv('aes-256-gcm', material, iv);
    decipher.setAAD(Buffer.concat([blob.subarray(0, ivStart), canonicalContext(context)]));
    decipher.setAuthTag(tag);
    try {
      const plaintext = Buffer.concat([decipher.update(blob.subarray(ivStart + IV_BYTES + TAG_BYTES)), decipher.final()]);
      return { key, plaintext };
    } catch {
      throw invalid();
    }
  }

  /** The live grant whose EncryptionContextEquals is exactly this context (sorted-key comparison). */
  private grantFor(keyId: string, context: EncryptionContext | undefined): StoredGrant | undefined {
    if (!context || Object.keys(context).length === 0) return undefined;
    const wanted = canonicalContext(context);
    return this.state.grants.find(
      (g) => g.keyId === keyId && g.material !== undefined && g.constraints?.EncryptionContextEquals !== undefined && canonicalContext(g.constraints.EncryptionContextEquals).equals(wanted),
    );
  }

  async createGrant(grant: Omit<StoredGrant, 'grantId' | 'grantToken' | 'createdAt' | 'material'>): Promise<StoredGrant> {
    if (grant.name !== undefined) {
      // KMS makes CreateGrant idempotent on Name + same parameters; we return the existing grant.
      const same = this.state.grants.find((g) => g.keyId === grant.keyId && g.name === grant.name);
      if (same) return same;
    }
    const stored: StoredGrant = {
      ...grant,
      grantId: randomBytes(32).toString('hex'),
      grantToken: randomBytes(48).toString('base64url'),
      createdAt: Math.floor(Date.now() / 1000),
      ...(grant.constraints?.EncryptionContextEquals !== undefined && { material: randomBytes(32).toString('base64') }),
    };
    this.state.grants.push(stored);
    await this.save();
    return stored;
  }

  grants(keyId: string): StoredGrant[] {
    return this.state.grants.filter((g) => g.keyId === keyId);
  }

  async removeGrant(match: { grantToken?: string; keyId?: string; grantId?: string }): Promise<void> {
    const index = this.state.grants.findIndex((g) =>
      match.grantToken !== undefined ? g.grantToken === match.grantToken : g.keyId === match.keyId && g.grantId === match.grantId,
    );
    if (index < 0) {
      throw match.grantToken !== undefined
        ? new KmsError('InvalidGrantTokenException', 'The grant token is not valid.')
        : new KmsError('NotFoundException', `Grant ${match.grantId ?? ''} does not exist`);
    }
    this.state.grants.splice(index, 1);
    await this.save();
  }

  private saving: Promise<void> = Promise.resolve();

  /** Serialised so two concurrent operations never write the same temp file at once. */
  private save(): Promise<void> {
    const next = this.saving.catch(() => undefined).then(() => this.write());
    this.saving = next;
    return next;
  }

  private async write(): Promise<void> {
    const tmp = `${this.file}.${process.pid}.tmp`;
    await writeFile(tmp, JSON.stringify(this.state), { mode: 0o600 });
    await chmod(tmp, 0o600);
    await rename(tmp, this.file);
  }
}

/** A grant-bound blob's key: derived from the KMS key and the grant's own material, so both are needed. */
function grantKey(key: StoredKey, grant: StoredGrant): Buffer {
  return Buffer.from(hkdfSync('sha256', Buffer.from(key.material, 'base64'), Buffer.from(grant.material ?? '', 'base64'), GRANT_INFO, 32));
}
