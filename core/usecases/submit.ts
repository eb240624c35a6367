import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { SubmitResponse } from '../api.ts';
import { SECRET_TTL_SECONDS } from '../config/limits.ts';
import { generateDeploymentKey } from '../crypto/deploymentKey.ts';
import { sealPrivateKey } from '../crypto/sealedKey.ts';
import { planWorkflow } from '../dag.ts';
import { destroySecrets } from './finalize.ts';
import { SYSTEM_STEP_IDS, type DeploymentSpec } from '../deployment/schema.ts';
import { parseDeployment } from '../deployment/validate.ts';
import { ConflictError, ValidationError } from '../errors.ts';
import { newDeploymentId } from '../ids.ts';
import { Metric } from '../metrics.ts';
import type { DeploymentRecord, StepRecord } from '../model.ts';
import { iso, type EngineDeps } from './deps.ts';

// Re-exported where it was: sized from the execution's bound in core/config/limits.ts.
export { SECRET_TTL_SECONDS };

export interface SubmitInput {
  tenantId: string;
  /** The caller's cloud token, seen here once to encrypt it and to seal the SSH key. */
  token: string;
  body: unknown;
  idempotencyKey?: string;
}

export interface SubmitResult extends SubmitResponse {
  /** False when an Idempotency-Key replay returned the deployment created before. */
  created: boolean;
}

/**
 * Validates, plans, stores (deployment, steps, bundle, encrypted secrets) and starts the
 * execution named after the deployment. Invalid input throws ValidationError before anything is stored.
 */
export async function submitDeployment(deps: EngineDeps, input: SubmitInput): Promise<SubmitResult> {
  const spec = parseDeployment(input.body);
  const now = deps.clock.now();
  const deploymentId = newDeploymentId(now);

  if (input.idempotencyKey !== undefined) {
    if (!/^[\w.:-]{1,128}$/.test(input.idempotencyKey)) {
      throw new ValidationError('Idempotency-Key: use 1–128 letters, digits, ".", ":", "_" or "-"');
    }
    const earlier = await claimOrJoin(deps, input, input.idempotencyKey, deploymentId);
    if (earlier) return earlier;
  }

  try {
    const { deployment, steps } = records(spec, deploymentId, input.tenantId, iso(deps.clock), input.idempotencyKey);
    const key = generateDeploymentKey(deploymentId);
    const context = { deploymentId, tenantId: input.tenantId };
    await deps.store.create({
      deployment,
      steps,
      files: spec.files,
      secrets: {
        tokenCiphertext: await deps.vault.encrypt(input.token, context),
        sshPrivateKeySealed: sealPrivateKey(key.privateKey, input.token, deploymentId),
        sshPublicKey: key.publicKey,
        expiresAt: Math.floor(now / 1000) + SECRET_TTL_SECONDS,
      },
    });
    return { ...(await start(deps, deployment)), created: true };
  } catch (e) {
    // A half-written create may have left a secrets item: without its grant it can never be decrypted.
    await deps.vault.shred(deploymentId).catch((err: unknown) => deps.log('could not retire the grant of a failed submit', { deploymentId, error: err }));
    if (input.idempotencyKey !== undefined) await deps.store.releaseIdempotencyKey(input.tenantId, input.idempotencyKey, deploymentId);
    throw e;
  }
}

/**
 * Claims the Idempotency-Key for this submit, or answers the deployment that holds it. A holder
 * that has not committed yet is waited for, not taken over: only a claim older than any submit
 * can run (its submit died between claim and commit) is released, and only from that holder.
 */
async function claimOrJoin(deps: EngineDeps, input: SubmitInput, key: string, deploymentId: string): Promise<SubmitResult | undefined> {
  const hash = createHash('sha256').update(JSON.stringify(input.body)).digest('hex');
  const since = deps.clock.now();
  for (;;) {
    const claim = await deps.store.claimIdempotencyKey(input.tenantId, key, deploymentId, hash);
    if (claim.claimed) return undefined;
    const existing = await deps.store.getDeployment(claim.deploymentId);
    if (!existing && deps.clock.now() - claim.claimedAt > STALE_CLAIM_MS) {
      await deps.store.releaseIdempotencyKey(input.tenantId, key, claim.deploymentId);
      continue;
    }
    if (claim.requestHash !== hash) throw new ConflictError('Idempotency-Key was already used for a different request');
    if (existing) {
      return {
        deploymentId: existing.deploymentId,
        executionArn: existing.executionArn ?? '',
        consoleUrl: existing.consoleUrl ?? '',
        status: existing.status,
        created: false,
      };
    }
    if (deps.clock.now() - since >= IN_PROGRESS_WAIT_MS) {
      throw new ConflictError('a request with this Idempotency-Key is still being processed; retry in a few seconds');
    }
    await sleep(IN_PROGRESS_POLL_MS);
  }
}

/** Longer than any submit runs (the API's 29 s limit): a claim this old was left by a dead submit. */
const STALE_CLAIM_MS = 60_000;
const IN_PROGRESS_WAIT_MS = 10_000;
const IN_PROGRESS_POLL_MS = 50;

async function start(deps: EngineDeps, deployment: DeploymentRecord): Promise<SubmitResponse> {
  try {
    const { executionArn } = await deps.executions.start(deployment.deploymentId, { deploymentId: deployment.deploymentId });
    const consoleUrl = deps.executions.consoleUrl(executionArn);
    await deps.store.updateDeployment(deployment.deploymentId, { executionArn, consoleUrl });
    deps.log('deployment submitted', { deploymentId: deployment.deploymentId, tenantId: deployment.tenantId });
    deps.metrics.emit(Metric.DeploymentsStarted, 1);
    return { deploymentId: deployment.deploymentId, executionArn, consoleUrl, status: deployment.status };
  } catch (e) {
    // Nothing will ever run for it: do not leave its secrets behind.
    await destroySecrets(deps, deployment.deploymentId);
    await deps.store.applyDeploymentTransition(deployment.deploymentId, {
      name: 'start-failed',
      by: 'submit',
      fields: { error: 'Ctd.StartFailed', cause: 'the execution could not be started', endedAt: iso(deps.clock) },
    });
    throw e;
  }
}

function records(
  spec: DeploymentSpec,
  deploymentId: string,
  tenantId: string,
  now: string,
  idempotencyKey: string | undefined,
): { deployment: DeploymentRecord; steps: StepRecord[] } {
  const plan = planWorkflow(spec.workflow.steps);
  const { files: _bundle, ...topology } = spec;
  const deployment: DeploymentRecord = {
    deploymentId,
    tenantId,
    name: spec.name,
    status: 'PENDING',
    createdAt: now,
    updatedAt: now,
    stepIds: plan.order,
    topology,
    ...(idempotencyKey !== undefined ? { idempotencyKey } : {}),
  };
  const base = { deploymentId, status: 'waiting' as const, attempt: 0 };
  const steps: StepRecord[] = [
    ...SYSTEM_STEP_IDS.map((id) => ({ ...base, stepId: id, system: true, dependsOn: [], spec: { id, action: id, dependsOn: [] as [] } })),
    ...spec.workflow.steps.map((step) => ({
      ...base,
      stepId: step.id,
      system: false,
      spec: step,
      dependsOn: step.dependsOn,
    })),
  ];
  return { deployment, steps };
}
