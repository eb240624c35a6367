import { cp, lstat, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KMSClient } from '@aws-sdk/client-kms';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KmsSecretVault } from '../../adapters/aws/kmsVault.ts';
import { startLocalKms } from '../../local/services/kms.ts';
import { runDeployment, startTestEngine, type TestEngine } from '../helpers/engine.ts';

/**
 * Issue 10, item 7, tried as an attacker: after deployments end, copy the whole state dir, dig the
 * token ciphertexts out of dynalite's raw LevelDB files (deleted items linger in its log), and try to
 * decrypt them with everything on disk (a local KMS started on the copy). Ended deployments must
 * not decrypt; a deployment still running does (the control that proves the attack pipeline works).
 */

let t: TestEngine;
beforeAll(async () => {
  t = await startTestEngine();
});
afterAll(async () => {
  await t?.stop();
});

/** `undefined` for a path removed while we look: the live state dir keeps changing (a sandbox's dir goes once its process has ended). */
function unlessGone<T>(p: Promise<T>): Promise<T | undefined> {
  return p.catch((err: unknown) => {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  });
}

/** Every file and dir under `dir`, with its mode; symlinks and sockets are listed as such. */
async function walk(dir: string, out: { path: string; mode: number; kind: 'file' | 'dir' | 'other' }[] = []) {
  for (const name of (await unlessGone(readdir(dir))) ?? []) {
    const path = join(dir, name);
    const st = await unlessGone(lstat(path));
    if (!st) continue;
    const kind = st.isDirectory() ? 'dir' : st.isFile() ? 'file' : 'other';
    out.push({ path, mode: st.mode & 0o777, kind });
    if (kind === 'dir') await walk(path, out);
  }
  return out;
}

/** Stored token ciphertexts (`g1.<grant>.<token>.<blob>`) as they appear in the raw bytes of LevelDB's files. */
async function ciphertextsIn(dir: string): Promise<Set<string>> {
  const found = new Set<string>();
  for (const f of await walk(dir)) {
    if (f.kind !== 'file') continue;
    const raw = (await readFile(f.path)).toString('latin1');
    for (const m of raw.matchAll(/g1\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9+/]{40,}={0,2}/g)) found.add(m[0]);
  }
  return found;
}

/** The attacker's decrypt: a fresh local KMS on the copy, the production vault, every ciphertext against every known deployment. */
async function decryptable(copy: string, ciphertexts: Set<string>, contexts: { deploymentId: string; tenantId: string }[]): Promise<Map<string, string>> {
  const kms = await startLocalKms({ stateDir: copy });
  const client = new KMSClient({ endpoint: kms.url, region: 'us-east-1', credentials: { accessKeyId: 'x', secretAccessKey: 'x' } });
  const vault = new KmsSecretVault({ client, keyId: kms.keyId });
  const opened = new Map<string, string>();
  try {
    for (const c of ciphertexts) {
      for (const ctx of contexts) {
        const plain = await vault.decrypt(c, ctx).catch(() => undefined);
        if (plain !== undefined) opened.set(ctx.deploymentId, plain);
      }
    }
  } finally {
    client.destroy();
    await kms.close();
  }
  return opened;
}

async function copyOf(stateDir: string): Promise<string> {
  const copy = await mkdtemp(join(tmpdir(), 'ctd-secrets10-copy-'));
  // Sockets and the engine's live lock cannot or need not be copied, nor what went meanwhile; everything else is.
  // A file can still go between the filter and its copy: then the whole copy is taken again.
  for (let attempt = 1; ; attempt++) {
    const copied = await unlessGone(cp(stateDir, copy, { recursive: true, force: true, filter: async (src) => (await unlessGone(lstat(src)))?.isSocket() === false }).then(() => true));
    if (copied) return copy;
    if (attempt >= 3) throw new Error(`the state dir kept changing while it was copied (${attempt} tries)`);
  }
}

describe('Secrets of ended deployments, from a copy of the state dir', () => {
  it('cannot be decrypted once the deployment ended; a running one can (control); every state file is owner-only', async () => {
    const contexts: { deploymentId: string; tenantId: string }[] = [];
    // Two deployments run to their end: one succeeds, one is cancelled at once.
    const ok = await t.client.submit(runDeployment([{ id: 'a', command: 'true' }]));
    const cancelled = await t.client.submit(runDeployment([{ id: 'a', command: 'sleep 30' }]));
    await t.client.cancel(cancelled.deploymentId);
    contexts.push({ deploymentId: ok.deploymentId, tenantId: t.tenantId }, { deploymentId: cancelled.deploymentId, tenantId: t.tenantId });
    expect((await t.waitForEnd(ok.deploymentId)).status).toBe('SUCCEEDED');
    expect((await t.waitForEnd(cancelled.deploymentId)).status).toBe('CANCELLED');

    // The control: a deployment still running, its token item live.
    const running = await t.client.submit(runDeployment([{ id: 'a', command: 'sleep 60' }]));
    await t.waitFor(running.deploymentId, (d) => d.steps.some((s) => s.stepId === 'a' && s.status === 'running'));
    const live = { deploymentId: running.deploymentId, tenantId: t.tenantId };

    const copy = await copyOf(t.stateDir);
    try {
      const ciphertexts = await ciphertextsIn(join(copy, 'dynamodb'));
      // LevelDB kept the deleted items: the ciphertexts of all three are on disk (this is what the attacker works with).
      expect(ciphertexts.size, 'ciphertexts found in the raw LevelDB files').toBeGreaterThanOrEqual(3);
      // The token itself never touches the disk in clear.
      for (const f of await walk(copy)) if (f.kind === 'file') expect((await readFile(f.path)).includes(t.token), f.path).toBe(false);

      const opened = await decryptable(copy, ciphertexts, [...contexts, live]);
      expect(opened.get(running.deploymentId), 'the running deployment decrypts from the copy (control)').toBe(t.token);
      expect(opened.has(ok.deploymentId), 'the succeeded deployment must not decrypt').toBe(false);
      expect(opened.has(cancelled.deploymentId), 'the cancelled deployment must not decrypt').toBe(false);
    } finally {
      await rm(copy, { recursive: true, force: true });
      await t.client.cancel(running.deploymentId);
      await t.waitForEnd(running.deploymentId);
    }

    // Owner-only: no other user of the machine can read any of it.
    const loose = (await walk(t.stateDir)).filter((f) => (f.kind === 'dir' && f.mode !== 0o700) || (f.kind === 'file' && f.mode !== 0o600));
    expect(loose.map((f) => `${f.path.slice(t.stateDir.length)} ${f.mode.toString(8)}`)).toEqual([]);
  }, 240_000);
});
