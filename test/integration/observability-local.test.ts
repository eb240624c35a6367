import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DescribeExecutionCommand } from '@aws-sdk/client-sfn';
import { createDocumentClient, createSfnClient } from '../../adapters/aws/clients.ts';
import { DynamoDeploymentStore } from '../../adapters/aws/dynamoStore.ts';
import { TELEMETRY } from '../../core/config/names.ts';
import { openPrivateKey } from '../../core/crypto/sealedKey.ts';
import { ErrorName } from '../../core/errors.ts';
import { Metric } from '../../core/metrics.ts';
import { EMF_LOG_PREFIX, TABLE_NAME } from '../../local/engine.ts';
import { runDeployment, startTestEngine, type TestEngine } from '../helpers/engine.ts';

/**
 * Logs and metrics of a real local deployment: the engine Lambdas' and the sandboxes' EMF lines
 * reach the engine's log (not the demo's output), with the names and values CloudWatch would get;
 * the sandbox logs through Powertools with the deployment id as correlation id; and neither the
 * user's token nor the deployment's private key is ever in that log.
 */

interface EmfRecord {
  _aws: { CloudWatchMetrics: { Namespace: string; Dimensions: string[][]; Metrics: { Name: string; Unit: string }[] }[] };
  [key: string]: unknown;
}

const lines: string[] = [];
let t: TestEngine;
beforeAll(async () => {
  t = await startTestEngine({ timeScale: 0.05, log: (l) => void lines.push(l) });
});
afterAll(async () => {
  await t?.stop();
});

/** Every EMF document in the engine's log: its own (prefixed) and the sandboxes' (their stdout, `[step] {...}`). */
function emfRecords(): EmfRecord[] {
  return lines
    .flatMap((l) => (l.startsWith(EMF_LOG_PREFIX) ? [l.slice(EMF_LOG_PREFIX.length)] : l.replace(/^\[[^\]]+\] /, '').split('\n')))
    .filter((l) => l.includes('"_aws"'))
    .map((l) => JSON.parse(l) as EmfRecord);
}

/** The values of one metric, with the dimensions each was emitted with. */
function valuesOf(name: string): { value: number; dims: Record<string, string> }[] {
  return emfRecords().flatMap((r) =>
    r._aws.CloudWatchMetrics.filter((d) => d.Metrics.some((m) => m.Name === name)).map((d) => ({
      value: r[name] as number,
      dims: Object.fromEntries(d.Dimensions.flat().map((k) => [k, String(r[k])])),
    })),
  );
}

const sum = (name: string, filter: Record<string, string> = {}) =>
  valuesOf(name)
    .filter((v) => Object.entries(filter).every(([k, want]) => v.dims[k] === want))
    .reduce((a, v) => a + v.value, 0);

describe('Local engine: metrics and logs of a deployment', () => {
  let deploymentId: string;
  let privateKey: string;

  beforeAll(async () => {
    ({ deploymentId } = await t.client.submit(
      runDeployment([
        { id: 'ok', command: 'sleep 2; echo fine' },
        { id: 'bad', command: 'echo broken >&2; exit 3', dependsOn: ['ok'] },
      ]),
    ));
    // The private key, opened as the sandbox opens it, while its secrets still exist.
    const store = new DynamoDeploymentStore({ client: createDocumentClient({ region: 'us-east-1' }), tableName: TABLE_NAME });
    await t.waitFor(deploymentId, (d) => d.steps.some((s) => s.stepId === 'ok' && s.status === 'running'));
    const secrets = await store.getSecrets(deploymentId);
    if (!secrets) throw new Error('the secrets of a running deployment are gone');
    privateKey = openPrivateKey(secrets.sshPrivateKeySealed, t.token, deploymentId);
    const done = await t.waitForEnd(deploymentId);
    expect(done.status, t.logTail()).toBe('FAILED');
    // DeleteSecrets writes the final status, then its handler flushes its metrics: the execution ends after both.
    const sfn = createSfnClient({ region: 'us-east-1' });
    while ((await sfn.send(new DescribeExecutionCommand({ executionArn: done.executionArn! }))).status === 'RUNNING') await new Promise((r) => setTimeout(r, 50));
  }, 120_000);

  it('counts the deployment started and failed, in the namespace of the one config', () => {
    expect(sum(Metric.DeploymentsStarted)).toBe(1);
    expect(sum(Metric.DeploymentsFailed)).toBe(1);
    expect(sum(Metric.DeploymentsSucceeded)).toBe(0);
    expect(new Set(emfRecords().flatMap((r) => r._aws.CloudWatchMetrics.map((d) => d.Namespace)))).toEqual(new Set([TELEMETRY.namespace]));
  });

  it('times every step attempt by action, and the start of each released step\'s sandbox', () => {
    const durations = valuesOf(Metric.StepDuration);
    expect(durations.map((d) => d.dims.Action).sort()).toEqual(['bastion-close', 'bastion-open', 'run', 'run']);
    // `ok` sleeps 2 s: its attempt cannot be measured shorter.
    expect(Math.max(...durations.filter((d) => d.dims.Action === 'run').map((d) => d.value))).toBeGreaterThanOrEqual(2000);
    const latencies = valuesOf(Metric.SandboxStartLatency);
    expect(latencies).toHaveLength(2);
    for (const l of latencies) expect(l.value).toBeGreaterThanOrEqual(0);
    expect(emfRecords().every((r) => r._aws.CloudWatchMetrics.every((d) => d.Metrics.every((m) => m.Unit === (m.Name.endsWith('Latency') || m.Name.endsWith('Duration') ? 'Milliseconds' : 'Count'))))).toBe(true);
  });

  it('logs the sandbox through Powertools with the deployment id as correlation id', () => {
    const sandboxLines = lines
      .filter((l) => l.startsWith('[bad] '))
      .flatMap((l) => l.slice('[bad] '.length).split('\n'))
      .filter((l) => l.startsWith('{') && !l.includes('"_aws"'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(sandboxLines).toContainEqual(
      expect.objectContaining({ level: 'WARN', message: 'step failed', error: ErrorName.StepFailed, correlation_id: deploymentId, stepId: 'bad', service: TELEMETRY.services.sandbox }),
    );
  });

  it('never writes the token or the private key to the log', () => {
    const all = lines.join('\n');
    expect(all).toContain(deploymentId);
    expect(all.includes(t.token)).toBe(false);
    for (const keyLine of privateKey.split('\n').filter((l) => l.length >= 16 && !l.startsWith('-----'))) expect(all.includes(keyLine)).toBe(false);
  });
});

describe('Local engine: a sandbox lost twice', () => {
  it('counts both failures the state machine retries, by error name', async () => {
    const before = sum(Metric.RetryableFailures, { ErrorName: ErrorName.SandboxLost });
    t.engine.sandboxes.failStarts('pull', 'CannotPullContainerError: pull access denied');
    try {
      const { deploymentId } = await t.client.submit(runDeployment([{ id: 'pull', command: 'true' }]));
      const done = await t.waitForEnd(deploymentId);
      expect(done.steps.find((s) => s.stepId === 'pull'), t.logTail()).toMatchObject({ status: 'failed', error: ErrorName.SandboxLost });
    } finally {
      t.engine.sandboxes.failStarts('pull', undefined);
    }
    expect(sum(Metric.RetryableFailures, { ErrorName: ErrorName.SandboxLost }) - before).toBe(2);
  }, 120_000);
});
