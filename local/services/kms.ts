import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { randomBytes, randomUUID } from 'node:crypto';
import { BodyTooLargeError, closeServer, listen, readBody } from './httpUtil.ts';
import { KmsError, KmsKeyStore, LOCAL_ACCOUNT, type EncryptionContext, type GrantConstraints, type StoredKey } from './kmsKeyStore.ts';

/** The alias the engine encrypts deployment secrets under; created on first start. */
export const TOKENS_KEY_ALIAS = 'alias/ctd-tokens';

const REGION = 'us-east-1';
/** KMS caps Encrypt plaintext at 4 KiB; the same limit locally keeps callers honest. */
const MAX_PLAINTEXT_BYTES = 4096;
const MAX_REQUEST_BYTES = 1024 * 1024;

export interface LocalKms {
  url: string;
  keyId: string;
  keyArn: string;
  /** Successful Decrypt calls with their encryption context, as CloudTrail records them (the latest 10 000). */
  decrypts: DecryptRecord[];
  close(): Promise<void>;
}

export interface DecryptRecord {
  at: number;
  context: EncryptionContext;
}

const MAX_DECRYPT_RECORDS = 10_000;

// Request shapes as the SDK serialises them: blobs are base64 strings.
interface KmsRequest {
  KeyId?: string;
  Plaintext?: string;
  CiphertextBlob?: string;
  EncryptionContext?: EncryptionContext;
  KeySpec?: string;
  NumberOfBytes?: number;
  Description?: string;
  GranteePrincipal?: string;
  RetiringPrincipal?: string;
  Operations?: string[];
  Constraints?: GrantConstraints;
  Name?: string;
  GrantToken?: string;
  GrantId?: string;
}

type Operation = (store: KmsKeyStore, req: KmsRequest) => Promise<unknown> | unknown;

function blob(value: string | undefined, field: string): Buffer {
  if (typeof value !== 'string' || value.length === 0) throw new KmsError('ValidationException', `${field} is required`);
  return Buffer.from(value, 'base64');
}

function keyMetadata(store: KmsKeyStore, key: StoredKey) {
  return {
    AWSAccountId: LOCAL_ACCOUNT,
    KeyId: key.keyId,
    Arn: store.arn(key.keyId),
    CreationDate: key.createdAt,
    Enabled: true,
    Description: key.description,
    KeyUsage: 'ENCRYPT_DECRYPT',
    KeyState: 'Enabled',
    Origin: 'AWS_KMS',
    KeyManager: 'CUSTOMER',
    CustomerMasterKeySpec: 'SYMMETRIC_DEFAULT',
    KeySpec: 'SYMMETRIC_DEFAULT',
    EncryptionAlgorithms: ['SYMMETRIC_DEFAULT'],
    MultiRegion: false,
  };
}

function dataKeyLength(req: KmsRequest): number {
  if (req.KeySpec === 'AES_256') return 32;
  if (req.KeySpec === 'AES_128') return 16;
  if (req.KeySpec === undefined && Number.isInteger(req.NumberOfBytes) && (req.NumberOfBytes as number) >= 1 && (req.NumberOfBytes as number) <= 1024) {
    return req.NumberOfBytes as number;
  }
  throw new KmsError('ValidationException', 'Specify exactly one of KeySpec (AES_256 | AES_128) or NumberOfBytes (1-1024)');
}

/** Each constraint, when given, is a map of strings (KMS's GrantConstraints shape). */
function checkConstraints(constraints: unknown): void {
  if (constraints === undefined) return;
  const isContext = (v: unknown) => v === undefined || (typeof v === 'object' && v !== null && !Array.isArray(v) && Object.values(v).every((x) => typeof x === 'string'));
  const c = constraints as Record<string, unknown>;
  if (typeof constraints !== 'object' || constraints === null || !isContext(c.EncryptionContextEquals) || !isContext(c.EncryptionContextSubset)) {
    throw new KmsError('ValidationException', 'Constraints: EncryptionContextEquals and EncryptionContextSubset must be maps of strings');
  }
}

/** One entry per supported `TrentService.<Op>`; anything else is an UnknownOperationException. */
const operations: Record<string, Operation> = {
  Encrypt(store, req) {
    const key = store.resolve(req.KeyId);
    const plaintext = blob(req.Plaintext, 'Plaintext');
    if (plaintext.length > MAX_PLAINTEXT_BYTES) throw new KmsError('ValidationException', 'Plaintext exceeds 4096 bytes');
    const ciphertext = store.encrypt(key, plaintext, req.EncryptionContext);
    return { CiphertextBlob: ciphertext.toString('base64'), KeyId: store.arn(key.keyId), EncryptionAlgorithm: 'SYMMETRIC_DEFAULT' };
  },
  Decrypt(store, req) {
    const { key, plaintext } = store.decrypt(blob(req.CiphertextBlob, 'CiphertextBlob'), req.EncryptionContext, req.KeyId);
    return { KeyId: store.arn(key.keyId), Plaintext: plaintext.toString('base64'), EncryptionAlgorithm: 'SYMMETRIC_DEFAULT' };
  },
  GenerateDataKey(store, req) {
    const key = store.resolve(req.KeyId);
    const plaintext = randomBytes(dataKeyLength(req));
    const ciphertext = store.encrypt(key, plaintext, req.EncryptionContext);
    return { CiphertextBlob: ciphertext.toString('base64'), Plaintext: plaintext.toString('base64'), KeyId: store.arn(key.keyId) };
  },
  async CreateKey(store, req) {
    return { KeyMetadata: keyMetadata(store, await store.createKey(req.Description ?? '')) };
  },
  DescribeKey(store, req) {
    return { KeyMetadata: keyMetadata(store, store.resolve(req.KeyId)) };
  },
  ListKeys(store) {
    return { Keys: store.keys().map((k) => ({ KeyId: k.keyId, KeyArn: store.arn(k.keyId) })), Truncated: false };
  },
  async CreateGrant(store, req) {
    const key = store.resolve(req.KeyId);
    if (!req.GranteePrincipal) throw new KmsError('ValidationException', 'GranteePrincipal is required');
    if (!req.Operations?.length) throw new KmsError('ValidationException', 'Operations is required');
    checkConstraints(req.Constraints);
    const grant = await store.createGrant({
      keyId: key.keyId,
      granteePrincipal: req.GranteePrincipal,
      operations: req.Operations,
      ...(req.Name !== undefined && { name: req.Name }),
      ...(req.RetiringPrincipal !== undefined && { retiringPrincipal: req.RetiringPrincipal }),
      ...(req.Constraints !== undefined && { constraints: req.Constraints }),
    });
    return { GrantId: grant.grantId, GrantToken: grant.grantToken };
  },
  async RetireGrant(store, req) {
    if (req.GrantToken !== undefined) {
      await store.removeGrant({ grantToken: req.GrantToken });
    } else if (req.KeyId !== undefined && req.GrantId !== undefined) {
      await store.removeGrant({ keyId: store.resolve(req.KeyId).keyId, grantId: req.GrantId });
    } else {
      throw new KmsError('ValidationException', 'Specify GrantToken, or KeyId and GrantId');
    }
    return {};
  },
  async RevokeGrant(store, req) {
    await store.removeGrant({ keyId: store.resolve(req.KeyId).keyId, grantId: req.GrantId ?? '' });
    return {};
  },
  ListGrants(store, req) {
    const key = store.resolve(req.KeyId);
    const grants = store
      .grants(key.keyId)
      .filter((g) => (req.GrantId === undefined || g.grantId === req.GrantId) && (req.GranteePrincipal === undefined || g.granteePrincipal === req.GranteePrincipal));
    return {
      Grants: grants.map((g) => ({
        KeyId: store.arn(g.keyId),
        GrantId: g.grantId,
        Name: g.name ?? '',
        CreationDate: g.createdAt,
        GranteePrincipal: g.granteePrincipal,
        RetiringPrincipal: g.retiringPrincipal,
        IssuingAccount: `arn:aws:iam::${LOCAL_ACCOUNT}:root`,
        Operations: g.operations,
        Constraints: g.constraints,
      })),
      Truncated: false,
    };
  },
  ListAliases(store) {
    return {
      Aliases: store.keys().flatMap((k) =>
        store.aliasesOf(k.keyId).map((alias) => ({
          AliasName: alias,
          AliasArn: `arn:aws:kms:${store.region}:${LOCAL_ACCOUNT}:${alias}`,
          TargetKeyId: k.keyId,
        })),
      ),
      Truncated: false,
    };
  },
};

/** The AWS JSON 1.1 error shape; the SDK maps `__type` to the thrown error's `name`. */
function sendError(res: ServerResponse, status: number, type: string, message: string): void {
  res.writeHead(status, {
    'content-type': 'application/x-amz-json-1.1',
    'x-amzn-errortype': type,
    'x-amzn-requestid': randomUUID(),
  });
  res.end(JSON.stringify({ __type: type, message }));
}

async function handle(store: KmsKeyStore, req: IncomingMessage, res: ServerResponse, decrypts: DecryptRecord[]): Promise<void> {
  const target = req.headers['x-amz-target'];
  const op = typeof target === 'string' && target.startsWith('TrentService.') ? operations[target.slice('TrentService.'.length)] : undefined;
  if (req.method !== 'POST' || !op) {
    req.resume();
    sendError(res, 400, 'UnknownOperationException', 'Unknown operation');
    return;
  }
  let input: KmsRequest;
  try {
    const raw = await readBody(req, MAX_REQUEST_BYTES);
    input = (raw.length === 0 ? {} : JSON.parse(raw.toString('utf8'))) as KmsRequest;
  } catch (err) {
    if (err instanceof BodyTooLargeError) sendError(res, 413, 'ValidationException', 'Request too large');
    else sendError(res, 400, 'SerializationException', 'Request body is not valid JSON');
    return;
  }
  try {
    const output = await op(store, input);
    if (op === operations.Decrypt) {
      decrypts.push({ at: Date.now(), context: { ...input.EncryptionContext } });
      if (decrypts.length > MAX_DECRYPT_RECORDS) decrypts.splice(0, decrypts.length - MAX_DECRYPT_RECORDS);
    }
    res.writeHead(200, { 'content-type': 'application/x-amz-json-1.1', 'x-amzn-requestid': randomUUID() });
    res.end(JSON.stringify(output));
  } catch (err) {
    if (err instanceof KmsError) sendError(res, 400, err.name, err.message);
    // Unknown failures may carry key material or plaintext in their message: say nothing.
    else sendError(res, 500, 'KMSInternalException', 'Internal error');
  }
}

/**
 * A local KMS for the embedded engine: the production code's `KMSClient`, pointed at `url`,
 * runs unchanged. It does not authenticate callers; instead a grant constrained to one exact
 * encryption context owns the material that context is encrypted under, so retiring the grant
 * makes those ciphertexts undecryptable by anyone (kmsKeyStore.ts).
 */
export async function startLocalKms(opts: { stateDir: string; port?: number; host?: string }): Promise<LocalKms> {
  const store = await KmsKeyStore.open(opts.stateDir, REGION);
  const key = await store.ensureAlias(TOKENS_KEY_ALIAS, 'CTD deployment secrets (local)');
  const decrypts: DecryptRecord[] = [];
  const server = createServer((req, res) => {
    handle(store, req, res, decrypts).catch(() => {
      if (!res.headersSent) sendError(res, 500, 'KMSInternalException', 'Internal error');
    });
  });
  const url = await listen(server, opts.port ?? 0, opts.host ?? '127.0.0.1');
  let closing: Promise<void> | undefined;
  return {
    url,
    keyId: key.keyId,
    keyArn: store.arn(key.keyId),
    decrypts,
    close: () => (closing ??= closeServer(server)),
  };
}
