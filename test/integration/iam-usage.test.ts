import { MAX_CLEANUP_ATTEMPTS } from '../../core/config/limits.ts';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { ECSClient } from '@aws-sdk/client-ecs';
import { KMSClient } from '@aws-sdk/client-kms';
import { SFNClient } from '@aws-sdk/client-sfn';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import type { APIGatewayProxyEvent, Context } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { DynamoDeploymentStore } from '../../adapters/aws/dynamoStore.ts';
import { EcsSandboxLauncher } from '../../adapters/aws/ecsSandbox.ts';
import { KmsSecretVault } from '../../adapters/aws/kmsVault.ts';
import { SfnExecutionService } from '../../adapters/aws/sfnExecutions.ts';
import { API_FUNCTIONS, type ApiFunctionName } from '../../cdk/api.ts';
import { ENGINE_FUNCTIONS, type EngineFunctionName } from '../../cdk/engine.ts';
import type { LambdaSpec } from '../../lambdas/catalog.ts';
import { SANDBOX_TABLE_ACCESS, TABLE_ACTIONS, type TableAccess } from '../../cdk/permissions.ts';
import { ErrorName, StepError } from '../../core/errors.ts';
import { systemClock, type CloudDriver } from '../../core/ports.ts';
import type { EngineDeps } from '../../core/usecases/deps.ts';
import { startLocalKms, type LocalKms } from '../../local/services/kms.ts';
import { runStep, type RunOutcome, type RunnerDeps } from '../../sandbox/runner.ts';
import type { Action } from '../../sandbox/actions/types.ts';
import { actionsOf, logicalId, roleStatements, synthCtdStack, type PolicyStatementJson } from '../cdk/helpers.ts';
import { startTestDynamo, type TestDynamo } from '../helpers/dynalite.ts';
import { noMetrics } from '../../core/metrics.ts';

/**
 * Least privilege, checked against use. Local mode does not enforce IAM, so a grant missing from
 * the CDK app would first show as AccessDenied in AWS. Here each Lambda and the sandbox get their
 * own SDK clients that record every operation they send; the real handlers and the real step
 * runner drive deployments through success, failure with a grace period, cancel, the safety net
 * and a failed start, on real DynamoDB (dynalite) and KMS (the local KMS), with Step Functions
 * and ECS answered in the client. Then every recorded action must be granted to that role in
 * the synthesized template, and every Step Functions, ECS and token-key grant must be used.
 */

type Role = `api:${ApiFunctionName}` | `engine:${EngineFunctionName}` | 'sandbox';

const REGION = 'us-east-1';
const CREDENTIALS = { accessKeyId: 'test', secretAccessKey: 'test' };
const STATE_MACHINE = `arn:aws:states:${REGION}:000000000000:stateMachine:ctd-deployment`;

/** What each role sent, as IAM action names ("dynamodb:GetItem"). */
const used = new Map<Role, Set<string>>();

interface StackOwner {
  middlewareStack: { add(middleware: never, options: { step: 'initialize'; name: string }): void };
}

/**
 * Records `service:Operation` for every command the client sends. With `answer`, the command
 * never leaves the client: the answer is its output (Step Functions and ECS are not run here).
 */
function recordCalls<C extends StackOwner>(client: C, role: Role, service: string, answer?: (operation: string, input: Record<string, unknown>) => object): C {
  const middleware =
    (next: (args: { input: Record<string, unknown> }) => Promise<unknown>, context: { commandName?: string }) =>
    async (args: { input: Record<string, unknown> }) => {
      const operation = (context.commandName ?? 'Unknown').replace(/Command$/, '');
      let actions = used.get(role);
      if (!actions) used.set(role, (actions = new Set()));
      actions.add(`${service}:${operation}`);
      return answer ? { output: { $metadata: {}, ...answer(operation, args.input) }, response: {} } : next(args);
    };
  client.middlewareStack.add(middleware as never, { step: 'initialize', name: 'recordIamAction' });
  return client;
}

let failNextStart = false;

function answerSfn(operation: string, input: Record<string, unknown>): object {
  if (operation === 'StartExecution') {
    if (failNextStart) {
      failNextStart = false;
      throw Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException' });
    }
    return { executionArn: `${STATE_MACHINE.replace(':stateMachine:', ':execution:')}:${String(input.name)}`, startDate: new Date() };
  }
  return operation === 'GetExecutionHistory' ? { events: [] } : {};
}

let dynamo: TestDynamo;
let kms: LocalKms;
let kmsDir: string;

function shredByOf(role: Role): 'retire' | 'revoke' | undefined {
  const [kind, name] = role.split(':') as [string, string];
  const spec: LambdaSpec | undefined = kind === 'api' ? API_FUNCTIONS[name as ApiFunctionName] : kind === 'engine' ? ENGINE_FUNCTIONS[name as EngineFunctionName] : undefined;
  return spec?.shredsTokens;
}

function portsFor(role: Role) {
  const raw = recordCalls(new DynamoDBClient({ endpoint: dynamo.endpoint, region: REGION, credentials: CREDENTIALS }), role, 'dynamodb');
  const docs = DynamoDBDocumentClient.from(raw, { marshallOptions: { removeUndefinedValues: true } });
  const kmsClient = recordCalls(new KMSClient({ endpoint: kms.url, region: REGION, credentials: CREDENTIALS }), role, 'kms');
  const sfn = recordCalls(new SFNClient({ region: REGION, credentials: CREDENTIALS }), role, 'states', answerSfn);
  return {
    store: new DynamoDeploymentStore({ client: docs, tableName: dynamo.tableName }),
    vault: new KmsSecretVault({
      client: kmsClient,
      keyId: kms.keyId,
      // As cdk/stack.ts sets them: submit names the grants' principals; each function shreds as its catalog entry says.
      ...(role === 'api:submit' ? { grants: { decrypter: 'arn:aws:iam::000000000000:role/sandbox', retirer: 'arn:aws:iam::000000000000:role/delete-secrets' } } : {}),
      ...(shredByOf(role) ? { shredBy: shredByOf(role) } : {}),
    }),
    executions: new SfnExecutionService({ client: sfn, stateMachineArn: STATE_MACHINE, region: REGION }),
    clock: systemClock,
  };
}

/** Pre-start on for the handlers (as CTD_PRESTART=on) while a scenario needs it. */
let prestart: EngineDeps['prestart'];

function engineDeps(role: Role): EngineDeps {
  const ecs = recordCalls(new ECSClient({ region: REGION, credentials: CREDENTIALS }), role, 'ecs', () => ({}));
  return {
    ...portsFor(role),
    ...(prestart ? { prestart } : {}),
    sandboxes: new EcsSandboxLauncher({ client: ecs, cluster: 'arn:aws:ecs:us-east-1:000000000000:cluster/ctd' }),
    identity: {} as CloudDriver,
    log: () => {},
    metrics: noMetrics,
  };
}

const CONTEXT = {} as Context;

type ApiHandler = (event: APIGatewayProxyEvent, context: Context) => Promise<{ statusCode: number; body: string }>;

async function api(
  name: ApiFunctionName,
  request: { id?: string; body?: unknown; headers?: Record<string, string> } = {},
): Promise<{ statusCode: number; body: Record<string, unknown> }> {
  const { createHandler } = (await import(`../../lambdas/api/${name}.ts`)) as { createHandler: (deps: () => EngineDeps) => ApiHandler };
  const deps = engineDeps(`api:${name}`);
  const event = {
    headers: { Authorization: 'Bearer tok-iam-usage-secret', ...request.headers },
    body: request.body === undefined ? null : JSON.stringify(request.body),
    pathParameters: request.id ? { id: request.id } : null,
    queryStringParameters: null,
    requestContext: { authorizer: { tenantId: 't1' } },
  } as unknown as APIGatewayProxyEvent;
  const res = await createHandler(() => deps)(event, CONTEXT);
  return { statusCode: res.statusCode, body: JSON.parse(res.body) as Record<string, unknown> };
}

async function engine<T = unknown>(name: EngineFunctionName, event: object): Promise<T> {
  const { createHandler } = (await import(`../../lambdas/engine/${name}.ts`)) as {
    createHandler: (deps: () => EngineDeps) => (event: object, context: Context) => Promise<T>;
  };
  const deps = engineDeps(`engine:${name}`);
  return createHandler(() => deps)(event, CONTEXT);
}

/** Stand-in actions: what they do to the cloud is not AWS's business; the runner's AWS calls are. */
const ACTIONS: Record<string, Action> = {
  'bastion-open': async (ctx) => {
    await ctx.cloudCtx.record({ kind: 'bastionRule', id: 'rule-1', name: 'bastion' });
    return { ruleId: 'rule-1' };
  },
  'bastion-close': async (ctx) => {
    await ctx.recordedResources();
    await ctx.cloudCtx.forget({ kind: 'bastionRule', id: 'rule-1', name: 'bastion' });
    return { closed: true };
  },
  run: async (ctx) => {
    ctx.log.line('stdout', `running ${ctx.step.stepId}`);
    if (ctx.step.stepId === 'c') throw new StepError(ErrorName.StepFailed, 'exit code 1');
    if (ctx.step.stepId === 'b' || ctx.step.stepId === 'x') {
      await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve(), { once: true }));
    }
    return {};
  },
};

/** One sandbox task: its own clients, its own stop signal (ECS StopTask is SIGTERM). */
function sandbox(deploymentId: string, stepId: string): { done: Promise<RunOutcome>; stop: () => void } {
  const stop = new AbortController();
  const deps: RunnerDeps = {
    ...portsFor('sandbox'),
    cloud: {} as CloudDriver,
    workDir: '/nonexistent',
    timeScale: 1,
    heartbeatMs: 5,
    signal: stop.signal,
    actions: ACTIONS,
  };
  const done = runStep(deps, { deploymentId, stepId, taskToken: `sandbox-${stepId}`, taskArn: `arn:aws:ecs:${REGION}:000000000000:task/ctd/${stepId}` });
  return { done, stop: () => stop.abort() };
}

/** Until the sandbox has registered itself on its step (its task token and ARN are then stoppable). */
async function started(deploymentId: string, stepId: string): Promise<void> {
  await vi.waitFor(async () => {
    expect((await api('get', { id: deploymentId })).body.steps).toContainEqual(expect.objectContaining({ stepId, attempt: 1 }));
  });
}

const BASTION = { server: 'bastion', user: 'ctd', securityGroup: 'bastion' };

async function submit(steps: object[], headers: Record<string, string> = {}) {
  return api('submit', { body: { name: 'iam', bastion: BASTION, workflow: { steps } }, headers });
}

beforeAll(async () => {
  dynamo = await startTestDynamo();
  kmsDir = mkdtempSync(path.join(tmpdir(), 'ctd-iam-kms-'));
  kms = await startLocalKms({ stateDir: kmsDir });
});

afterAll(async () => {
  await kms?.close();
  await dynamo?.close();
  rmSync(kmsDir, { recursive: true, force: true });
});

/** OpenAndRun's first branch: bastion-open's sandbox, then ReleaseRoots (RecordStepResult for it); the roots wait on it. */
async function bastionOpen(deploymentId: string): Promise<void> {
  expect(await sandbox(deploymentId, 'bastion-open').done).toMatchObject({ ok: true });
  await engine('recordStepResult', { deploymentId, stepId: 'bastion-open' });
}

/** Until a pre-started sandbox has registered on its waiting step (its token and ARN are then stoppable). */
async function ready(deploymentId: string, stepId: string): Promise<void> {
  await vi.waitFor(async () => {
    expect((await api('get', { id: deploymentId })).body.steps).toContainEqual(expect.objectContaining({ stepId, status: 'waiting', readyAt: expect.any(String) }));
  });
}

/**
 * Step `dep` runs while `after` (depending on it) is pre-started and its sandbox waits. RecordStepFailure:
 * `dep` fails, which skips `after`. RecordStepResult: `dep` succeeds after another step's failure
 * landed (its grace write; its own pass not yet run), so the winding-down deployment skips `after`.
 */
async function skipWaitingSandbox(by: 'recordStepFailure' | 'recordStepResult'): Promise<void> {
  const dep = by === 'recordStepFailure' ? 'c' : 'a';
  const id = String((await submit([{ id: dep, action: 'run', command: 'true' }, { id: 'after', action: 'run', command: 'true', dependsOn: [dep] }])).body.deploymentId);
  await engine('prepare', { deploymentId: id });
  await bastionOpen(id);
  await engine('awaitDependencies', { deploymentId: id, stepId: 'after', taskToken: `await-after-${by}` });
  await engine('awaitDependencies', { deploymentId: id, stepId: dep, taskToken: `await-${dep}-${by}` });
  const waiting = sandbox(id, 'after');
  await ready(id, 'after');
  const outcome = await sandbox(id, dep).done;
  if (by === 'recordStepFailure') {
    await engine('recordStepFailure', { deploymentId: id, stepId: dep, error: { Error: ErrorName.StepFailed, Cause: 'exit code 1' } });
  } else {
    // Written outside every role: it stands for the other Lambda's write, not a call of these roles.
    const outside = DynamoDBDocumentClient.from(new DynamoDBClient({ endpoint: dynamo.endpoint, region: REGION, credentials: CREDENTIALS }));
    await new DynamoDeploymentStore({ client: outside, tableName: dynamo.tableName }).updateDeployment(id, { graceStartedAt: new Date().toISOString() });
    await engine('recordStepResult', { deploymentId: id, stepId: dep, result: outcome.ok ? outcome.output : undefined });
  }
  // ECS is answered inside the client here: the waiting runner sees its step skipped at its next poll and exits.
  expect(await waiting.done).toMatchObject({ ok: true, output: { skipped: expect.any(String) } });
  expect((await api('get', { id })).body.steps).toContainEqual(expect.objectContaining({ stepId: 'after', status: 'skipped' }));
}

/**
 * Step `after`'s sandbox, started ahead of its release, could not be started (RunTask refused for good): AwaitRelease
 * registers its new token while `a` runs (RecordStepResult answers it at the release), and answers one itself for a
 * step released while its RunTask was failing (`late`).
 */
async function prestartFallback(): Promise<void> {
  const id = String(
    (
      await submit([
        { id: 'a', action: 'run', command: 'true' },
        { id: 'after', action: 'run', command: 'true', dependsOn: ['a'] },
        { id: 'late', action: 'run', command: 'true', dependsOn: ['a'] },
      ])
    ).body.deploymentId,
  );
  await engine('prepare', { deploymentId: id });
  await bastionOpen(id);
  for (const s of ['after', 'late', 'a']) await engine('awaitDependencies', { deploymentId: id, stepId: s, taskToken: `await-${s}-fallback` });
  const error = { Error: 'AmazonECS.Unknown', Cause: 'RunTask started no task: [{"reason":"Capacity is unavailable at this time"}]' };
  await engine('awaitRelease', { deploymentId: id, stepId: 'after', taskToken: 'release-after', error });
  const outcome = await sandbox(id, 'a').done;
  await engine('recordStepResult', { deploymentId: id, stepId: 'a', result: outcome.ok ? outcome.output : undefined });
  await engine('awaitRelease', { deploymentId: id, stepId: 'late', taskToken: 'release-late', error });
  expect((await api('get', { id })).body.steps).toContainEqual(expect.objectContaining({ stepId: 'late', status: 'running', prestartFailure: expect.stringContaining('Capacity') }));
}

/** Every handler and the step runner, through the paths a deployment can take. */
async function driveEveryPath(): Promise<void> {
  // A deployment with a dependent released, a failure, a dependent skipped, a grace period and a straggler.
  const steps = [
    { id: 'a', action: 'run', command: 'true' },
    { id: 'after-a', action: 'run', command: 'true', dependsOn: ['a'] },
    { id: 'b', action: 'run', command: 'sleep 30' },
    { id: 'c', action: 'run', command: 'false' },
    { id: 'after-c', action: 'run', command: 'true', dependsOn: ['c'] },
  ];
  const first = await submit(steps, { 'Idempotency-Key': 'iam-1' });
  expect(first.statusCode).toBe(202);
  expect((await submit(steps, { 'Idempotency-Key': 'iam-1' })).statusCode).toBe(200);
  const id = String(first.body.deploymentId);
  expect((await api('get', { id })).statusCode).toBe(200);
  expect((await api('list')).statusCode).toBe(200);
  expect((await api('history', { id })).statusCode).toBe(200);

  await engine('prepare', { deploymentId: id });
  await bastionOpen(id);
  for (const step of steps) await engine('awaitDependencies', { deploymentId: id, stepId: step.id, taskToken: `await-${step.id}` });
  for (const stepId of ['a', 'after-a']) {
    const outcome = await sandbox(id, stepId).done;
    expect(outcome).toMatchObject({ ok: true });
    await engine('recordStepResult', { deploymentId: id, stepId, result: outcome.ok ? outcome.output : undefined });
  }
  const straggler = sandbox(id, 'b');
  await started(id, 'b');
  expect(await sandbox(id, 'c').done).toMatchObject({ ok: false, error: ErrorName.StepFailed });
  const failure = await engine<{ startGrace: boolean }>('recordStepFailure', {
    deploymentId: id,
    stepId: 'c',
    error: { Error: ErrorName.StepFailed, Cause: 'exit code 1' },
  });
  expect(failure.startGrace).toBe(true);
  await engine('gracePeriod', { deploymentId: id, taskToken: 'grace' });
  expect(await engine('abortStragglers', { deploymentId: id })).toEqual({ aborted: ['b'] });
  straggler.stop();
  await straggler.done;
  expect(await sandbox(id, 'bastion-close').done).toMatchObject({ ok: true });
  const summary = await engine<{ status: string }>('summarize', { deploymentId: id });
  expect(summary.status).toBe('FAILED');
  await engine('deleteSecrets', { deploymentId: id, state: { summary } });
  // A retried cleanup: the ciphertext is gone, the grant is looked up by name (and already retired).
  await engine('deleteSecrets', { deploymentId: id, state: { summary } });
  const logs = await api('logs', { id });
  expect(JSON.stringify(logs.body)).toContain('running a');

  // A deployment cancelled while one step runs and one waits for it, then ended by the safety net.
  const second = await submit([
    { id: 'x', action: 'run', command: 'sleep 30' },
    { id: 'y', action: 'run', command: 'true', dependsOn: ['x'] },
  ]);
  const cancelled = String(second.body.deploymentId);
  await engine('prepare', { deploymentId: cancelled });
  await bastionOpen(cancelled);
  await engine('awaitDependencies', { deploymentId: cancelled, stepId: 'x', taskToken: 'await-x' });
  await engine('awaitDependencies', { deploymentId: cancelled, stepId: 'y', taskToken: 'await-y' });
  const running = sandbox(cancelled, 'x');
  await started(cancelled, 'x');
  expect((await api('cancel', { id: cancelled })).statusCode).toBe(202);
  running.stop();
  expect(await running.done).toMatchObject({ ok: false });
  await engine('safetyNet', { detail: { name: cancelled, status: 'ABORTED', executionArn: `${STATE_MACHINE}:${cancelled}` } });
  await engine('safetyNet', { detail: { name: cancelled, status: 'ABORTED', executionArn: `${STATE_MACHINE}:${cancelled}` } });
  // Its last cleanup execution ended outside its end too: the net gives up, deletes the secrets and
  // revokes the token's grant itself; a repeated event then finds the grant by name (already gone).
  const lastCleanup = { deploymentId: cancelled, cleanup: { attempt: MAX_CLEANUP_ATTEMPTS, executionStatus: 'ABORTED' }, error: { Error: 'Ctd.ExecutionAborted', Cause: 'stopped' } };
  const lastName = `${cancelled}-cleanup-${MAX_CLEANUP_ATTEMPTS}`;
  await engine('safetyNet', { detail: { name: lastName, status: 'ABORTED', executionArn: `${STATE_MACHINE}:${lastName}`, input: JSON.stringify(lastCleanup) } });
  await engine('safetyNet', { detail: { name: lastName, status: 'ABORTED', executionArn: `${STATE_MACHINE}:${lastName}`, input: JSON.stringify(lastCleanup) } });

  // A deployment whose execution was stopped from the console while a step ran: the safety net stops
  // the sandbox, fails its token and starts the cleanup-only execution.
  const stoppedId = String((await submit([{ id: 'x', action: 'run', command: 'sleep 30' }])).body.deploymentId);
  await engine('prepare', { deploymentId: stoppedId });
  await bastionOpen(stoppedId);
  await engine('awaitDependencies', { deploymentId: stoppedId, stepId: 'x', taskToken: 'await-stopped' });
  const orphaned = sandbox(stoppedId, 'x');
  await started(stoppedId, 'x');
  await engine('safetyNet', { detail: { name: stoppedId, status: 'ABORTED', executionArn: `${STATE_MACHINE}:${stoppedId}`, input: JSON.stringify({ deploymentId: stoppedId }) } });
  orphaned.stop();
  expect(await orphaned.done).toMatchObject({ ok: false });

  // A lone step failing: its grace period ends at once, nothing else runs.
  const lone = String((await submit([{ id: 'c', action: 'run', command: 'false' }])).body.deploymentId);
  await engine('prepare', { deploymentId: lone });
  await bastionOpen(lone);
  await engine('awaitDependencies', { deploymentId: lone, stepId: 'c', taskToken: 'await-lone' });
  expect(await sandbox(lone, 'c').done).toMatchObject({ ok: false });
  await engine('recordStepFailure', { deploymentId: lone, stepId: 'c', error: { Error: ErrorName.StepFailed, Cause: 'exit code 1' } });
  await engine('gracePeriod', { deploymentId: lone, taskToken: 'grace-lone' });

  // A sandbox ECS stopped before it answered (it never started): its step fails from the STOPPED event.
  const lost = String((await submit([{ id: 'l', action: 'run', command: 'true' }])).body.deploymentId);
  await engine('prepare', { deploymentId: lost });
  await bastionOpen(lost);
  await engine('awaitDependencies', { deploymentId: lost, stepId: 'l', taskToken: 'await-lost' });
  const env = { CTD_DEPLOYMENT_ID: lost, CTD_STEP_ID: 'l', CTD_TASK_TOKEN: 'sandbox-lost' };
  expect(
    await engine('sandboxStopped', {
      source: 'aws.ecs',
      'detail-type': 'ECS Task State Change',
      detail: {
        taskArn: `arn:aws:ecs:${REGION}:000000000000:task/ctd/lost`,
        lastStatus: 'STOPPED',
        stopCode: 'TaskFailedToStart',
        stoppedReason: 'CannotPullContainerError: pull access denied',
        containers: [{ name: 'runner' }],
        overrides: { containerOverrides: [{ name: 'runner', environment: Object.entries(env).map(([name, value]) => ({ name, value })) }] },
      },
    }),
  ).toEqual({ failed: true });

  // Pre-started sandboxes whose steps are skipped while they wait are stopped by whoever skips them.
  prestart = { maxWaiting: 20, startSeconds: 60 };
  try {
    await skipWaitingSandbox('recordStepFailure');
    await skipWaitingSandbox('recordStepResult');
    await prestartFallback();
  } finally {
    prestart = undefined;
  }

  // A submit whose execution cannot start: its key is released, its secrets deleted.
  failNextStart = true;
  expect((await submit(steps, { 'Idempotency-Key': 'iam-3' })).statusCode).toBe(500);
}

describe('IAM: what the code calls is what the stack grants', () => {
  beforeAll(driveEveryPath, 60_000);

  const { stack, template } = synthCtdStack();
  const tokenKeyPolicy = Object.values(template.findResources('AWS::KMS::Key')).find((k) =>
    JSON.stringify(k).includes('SubmitEncryptsTokens'),
  )?.Properties.KeyPolicy.Statement as PolicyStatementJson[];

  const roles: Record<Role, string> = {
    ...(Object.fromEntries(Object.keys(API_FUNCTIONS).map((n) => [`api:${n}`, logicalId(stack.api.functions[n as ApiFunctionName].role!)])) as Record<`api:${ApiFunctionName}`, string>),
    ...(Object.fromEntries(Object.keys(ENGINE_FUNCTIONS).map((n) => [`engine:${n}`, logicalId(stack.engine.functions[n as EngineFunctionName].role!)])) as Record<`engine:${EngineFunctionName}`, string>),
    sandbox: logicalId(stack.sandbox.taskRole),
  };

  /**
   * What the role may do itself: its policies (less the table key's, which DynamoDB uses on its
   * behalf), plus what the token key's policy grants it by name.
   */
  function granted(role: Role): Set<string> {
    const own = roleStatements(template, roles[role]).filter((s) => s.Effect === 'Allow' && !JSON.stringify(s.Condition ?? {}).includes('kms:ViaService'));
    const byKey = tokenKeyPolicy.filter((s) => JSON.stringify(s.Principal ?? {}).includes(`"${roles[role]}"`));
    // What a deployment's grant gives, as the key policy pins CreateGrant: Decrypt to the grantee, retiring to the retiring principal.
    const pinned = (tokenKeyPolicy.find((s) => actionsOf(s).includes('kms:CreateGrant'))?.Condition?.StringEquals ?? {}) as Record<string, unknown>;
    const byGrant = [
      ...(JSON.stringify(pinned['kms:GranteePrincipal']).includes(`"${roles[role]}"`) ? ['kms:Decrypt'] : []),
      ...(JSON.stringify(pinned['kms:RetiringPrincipal']).includes(`"${roles[role]}"`) ? ['kms:RetireGrant'] : []),
    ];
    return new Set([...[...own, ...byKey].flatMap(actionsOf), ...byGrant]);
  }

  /** The table purposes the stack gives each role. */
  function tableAccess(role: Role): readonly TableAccess[] {
    if (role === 'sandbox') return SANDBOX_TABLE_ACCESS;
    const [kind, name] = role.split(':') as ['api' | 'engine', string];
    return kind === 'api' ? API_FUNCTIONS[name as ApiFunctionName].access : ENGINE_FUNCTIONS[name as EngineFunctionName].access;
  }

  it.each(Object.keys(roles) as Role[])('%s is granted every action it calls, and calls something of every grant', (role) => {
    const calls = [...(used.get(role) ?? [])].sort();
    const grants = granted(role);
    expect(calls.filter((action) => !grants.has(action)), `called by ${role} but not granted`).toEqual([]);

    // A table purpose (read, write, delete) is used when one of its actions is.
    const idle = tableAccess(role).filter((purpose) => !TABLE_ACTIONS[purpose].some((action) => calls.includes(action)));
    expect(idle, `table access granted to ${role} but never used`).toEqual([]);
    // Other grants are named action by action, except that answering a task token is one purpose:
    // success or failure depends on the run. (Logs and X-Ray belong to the Lambda runtime.)
    const answering = ['states:SendTaskSuccess', 'states:SendTaskFailure'];
    const unused = [...grants].filter(
      (action) =>
        /^(states|ecs|kms):/.test(action) &&
        !calls.includes(action) &&
        !(answering.includes(action) && answering.some((a) => calls.includes(a))),
    );
    expect(unused, `granted to ${role} but never called`).toEqual([]);
  });

  it('calls every table action some role is granted, and each role made calls', () => {
    const all = new Set([...used.values()].flatMap((s) => [...s]));
    expect(Object.values(TABLE_ACTIONS).flat().filter((action) => !all.has(action))).toEqual([]);
    // The authorizer asks the cloud, never AWS; everyone else must have been driven.
    const silent = (Object.keys(roles) as Role[]).filter((role) => role !== 'api:authorizer' && !used.get(role)?.size);
    expect(silent).toEqual([]);
  });
});
