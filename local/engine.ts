import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildEngineDeps, DEFAULT_PRESTART_MAX_WAITING, prestartFromEnv, type EngineConfig } from '../adapters/aws/engineDeps.ts';
import { metricsPort } from '../adapters/aws/telemetry.ts';
import { cloudConfigFromEnv } from '../adapters/cloudConfig.ts';
import { executionEndedOutsideCleanup } from '../core/usecases/finalize.ts';
import { parseConfig } from '../core/config/schema.ts';
import { ENV, RELEASE_POLL_ENV } from '../core/config/names.ts';
import { routeTelemetry } from '../lambdas/observability.ts';
import type { Hypervisor } from './cloud-backend.ts';
import { pickLoopbackBlock, splitBlock, type LoopbackBlock } from './cloud/loopbackBlock.ts';
import { startLocalCloud } from './cloud/server.ts';
import { CONSOLE_PREFIX, serveConsole } from './console.ts';
import { ACCOUNT, apiAuthorizer, apiRoutes, engineFunctions, ENGINE_FUNCTIONS, executionStatusChange, functionArn, REGION, safetyNetHandler, sandboxStoppedHandler } from './functions.ts';
import { startLocalApiGateway } from './services/apiGateway.ts';
import { AUTHORIZER_CACHE_TTL_SECONDS, AUTHORIZER_FAILURE_RESPONSE } from '../lambdas/catalog.ts';
import { startLocalDynamoDb } from './services/dynamodb.ts';
import { startLocalKms, type DecryptRecord } from './services/kms.ts';
import { DEFAULT_PRESTART_MAX_IDLE_SECONDS, type PrestartPolicy } from '../core/usecases/deps.ts';
import { LOOKAHEAD_STARTS } from '../core/usecases/release.ts';
import { LocalSandboxes, removeLeftoverSandboxes, scaleLatency, type StartLatency } from './sandbox/launcher.ts';
import { bundleRunner } from './sandbox/runnerBundle.ts';
import { LocalStepFunctions, type TaskInvocation } from './sfn/index.ts';

/**
 * The embedded engine: the production state machine, handlers and step runner on one machine.
 * AWS services are replaced by local ones speaking the AWS protocols on loopback; the code
 * paths (AWS SDK v3 clients) are the production ones with only their endpoints changed.
 */

export interface LocalEngineOptions {
  /** Default: $CTD_HOME or ./.ctd */
  stateDir?: string;
  /** API port; 0 picks a free one. Default 4580. */
  apiPort?: number;
  cloud?: 'local' | 'netns';
  /** Multiplies every state machine and runner time limit but a Lambda's own (tests shrink the 180 s / 120 s bounds). */
  timeScale?: number;
  log?: (line: string) => void;
  /**
   * The local cloud's /24 of loopback addresses (`127.X.Y.0/24`: floating IPs, bastions, VM
   * listeners), this engine's own. Default: $CTD_LOCAL_LOOPBACK_BLOCK, else a free one picked at
   * start, so two engines (or a test beside `ctd local up`) share a machine.
   */
  loopbackBlock?: string;
  /** Accept the local cloud's `/_admin/faults` (tests). Default false. */
  cloudFaultInjection?: boolean;
  /** RunTask → the runner gets its task, in ms: models Fargate's start (tests stop a sandbox in it). */
  sandboxStartLatencyMs?: number;
  /** The account's Fargate vCPU quota, in tasks: local ECS refuses a RunTask beyond it, as ECS does (tests). Default: none. */
  ecsTaskQuota?: number;
  /** How long an ended task still counts against `ecsTaskQuota`, in ms before the time scale (a Fargate task stopping). Default 0. */
  ecsTaskQuotaReleaseMs?: number;
  /** Tests: the execution-level TimeoutSeconds in real seconds, instead of the ASL's (days) times the time scale. */
  executionTimeoutSeconds?: number;
  /**
   * Test hook, as the Lambda service would fail an Invoke: returns an error name (e.g.
   * `Lambda.TooManyRequestsException`) to throw instead of running the function, or undefined.
   */
  lambdaFault?: (functionName: string) => string | undefined;
  /**
   * Fargate's start as a log-normal distribution, in seconds before the time scale (e.g. median
   * 45, p90 60); each RunTask draws one. Default none (the demo starts at once).
   */
  sandboxStartLatency?: StartLatency;
  /** Start sandboxes ahead of their release (default: CTD_PRESTART, which defaults to on); false = off. */
  prestart?: PrestartPolicy | false;
  /**
   * The runners' release poll, ms before the time scale (default: $CTD_RELEASE_POLL_MS as `first,max`, else
   * 100 ms growing to 2 s). Local runners are woken at their release, so tests may set it to hours.
   */
  releasePollMs?: { first: number; max: number };
}

export interface LocalEngine {
  apiUrl: string;
  /** The web console, on the API's origin (stable as long as the API port is). */
  consoleUrl: string;
  cloudUrl: string;
  stateDir: string;
  endpoints: { dynamodb: string; kms: string; sfn: string };
  stateMachineArn: string;
  mintToken(tenantId: string): Promise<string>;
  /** A tenant's bastion in the local cloud (its floating IP, SSH port and host key). */
  bastionOf(tenantId: string): Promise<{ address: string; port: number; hostKey: string }>;
  /** Keystone v3 of the local cloud (the engine's CTD_KEYSTONE_URL). */
  keystoneUrl: string;
  /** The local cloud's hypervisor, for tests that inspect or break it. */
  hypervisor: Hypervisor;
  /** The loopback block the local cloud uses. */
  loopbackBlock: LoopbackBlock;
  sandboxes: LocalSandboxes;
  /** The local KMS's Decrypt audit trail (time and encryption context), for tests. */
  kmsDecrypts: readonly DecryptRecord[];
  stop(): Promise<void>;
}

export const TABLE_NAME = 'ctd-deployments';
/** Engine-side EMF lines in the engine's log start with this; a sandbox's come as `[<step>] {...}` like its other output. */
export const EMF_LOG_PREFIX = 'emf ';
const STATE_MACHINE_NAME = 'ctd-deployment';
const ASL = fileURLToPath(new URL('../statemachine/deployment.asl.json', import.meta.url));

export function defaultStateDir(): string {
  return resolve(process.env.CTD_HOME ?? '.ctd');
}

export async function startLocalEngine(opts: LocalEngineOptions = {}): Promise<LocalEngine> {
  const stateDir = resolve(opts.stateDir ?? defaultStateDir());
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const timeScale = opts.timeScale ?? 1;
  // Before the first SDK client is made (the local DynamoDB's table setup): the SDK's notice that it
  // will need Node 22 in 2027 would otherwise open every demo and `ctd local up`.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  await claimStateDir(stateDir);

  const stops: (() => Promise<void>)[] = [];
  const stopAll = async () => {
    for (const stop of stops.reverse()) await stop().catch((e: unknown) => log(`stop failed: ${String(e)}`));
  };
  try {
    const dynamo = await startLocalDynamoDb({ stateDir, tableName: TABLE_NAME, log });
    stops.push(() => dynamo.close());
    const kms = await startLocalKms({ stateDir });
    stops.push(() => kms.close());

    const block = opts.loopbackBlock || process.env.CTD_LOCAL_LOOPBACK_BLOCK ? splitBlock(opts.loopbackBlock ?? process.env.CTD_LOCAL_LOOPBACK_BLOCK!) : await pickLoopbackBlock();
    const { hypervisor: backend, floatingCidr } = await createHypervisor(opts, stateDir, block);
    const cloud = await startLocalCloud({ stateDir, hypervisor: backend, floatingCidr, faultInjection: opts.cloudFaultInjection === true });
    stops.push(() => cloud.close());

    const sfnPort = await freePort();
    const sfnUrl = `http://127.0.0.1:${sfnPort}`;
    // Known before the API starts: the console URL goes into every deployment the API accepts.
    const apiPort = opts.apiPort === 0 ? await freePort() : (opts.apiPort ?? 4580);
    const consoleUrl = `http://127.0.0.1:${apiPort}${CONSOLE_PREFIX}`;
    if (hasLoopbackBridge(backend)) {
      // Sandboxes of the netns test bed live in the engine-side namespace: give them the services' ports there.
      await backend.exposeLoopbackPorts([dynamo.url, kms.url, sfnUrl, cloud.url].map((url) => Number(new URL(url).port)));
    }
    const stateMachineArn = `arn:aws:states:${REGION}:${ACCOUNT}:stateMachine:${STATE_MACHINE_NAME}`;
    // Where the AWS services are, for the engine's own SDK clients (the production adapters) and every sandbox's.
    const awsEnv = {
      AWS_REGION: REGION,
      AWS_ACCESS_KEY_ID: 'local',
      AWS_SECRET_ACCESS_KEY: 'local',
      AWS_ENDPOINT_URL_DYNAMODB: dynamo.url,
      AWS_ENDPOINT_URL_KMS: kms.url,
      AWS_ENDPOINT_URL_SFN: sfnUrl,
      // Sandboxes too: the notice would otherwise open every step's log.
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    };
    Object.assign(process.env, awsEnv);
    // The local cloud speaks OpenStack (docs/OPENSTACK.md); sandboxes reach its bastions from loopback.
    const cloudEnv = {
      CTD_CLOUD: 'openstack',
      CTD_KEYSTONE_URL: cloud.keystoneUrl,
      CTD_EGRESS_ADDRESSES: await cloud.egressAddress(),
    };
    const config: EngineConfig = {
      region: REGION,
      tableName: TABLE_NAME,
      kmsKeyId: kms.keyId,
      // The same per-deployment grants as in AWS; the local KMS does not authenticate, so the names only label them.
      tokenGrants: { decrypter: `arn:aws:iam::${ACCOUNT}:role/ctd-local-sandbox`, retirer: `arn:aws:iam::${ACCOUNT}:role/ctd-local-delete-secrets` },
      stateMachineArn,
      clusterArn: `arn:aws:ecs:${REGION}:${ACCOUNT}:cluster/ctd-local`,
      // Through the same schema as a Lambda's or the sandbox's environment.
      cloud: cloudConfigFromEnv(parseConfig('the local engine', ['cloud'], cloudEnv)),
      consoleBaseUrl: consoleUrl,
    };
    const baseEnv: Record<string, string> = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      ...awsEnv,
      CTD_TABLE_NAME: TABLE_NAME,
      CTD_KMS_KEY_ID: kms.keyId,
      ...cloudEnv,
      CTD_TIME_SCALE: String(timeScale),
      ...releasePollEnv(opts.releasePollMs),
      CTD_ANSIBLE_PLUGINS_DIR: fileURLToPath(new URL('../sandbox/ansible/callback_plugins', import.meta.url)),
    };

    const leftovers = await removeLeftoverSandboxes(stateDir);
    if (leftovers.length > 0) log(`removed ${leftovers.length} sandbox work dirs a previous engine left behind`);
    const sandboxes = new LocalSandboxes({
      stateDir,
      baseEnv,
      runnerCommand: [process.execPath, await bundleRunner({ log })],
      ...(hasPrefix(backend) ? { commandPrefix: () => backend.sandboxCommandPrefix() } : {}),
      log,
      ...(opts.sandboxStartLatencyMs ? { startLatencyMs: opts.sandboxStartLatencyMs } : {}),
      ...(opts.ecsTaskQuota !== undefined ? { taskQuota: opts.ecsTaskQuota, taskQuotaReleaseMs: (opts.ecsTaskQuotaReleaseMs ?? 0) * timeScale } : {}),
      ...(opts.sandboxStartLatency ? { startLatency: scaleLatency(opts.sandboxStartLatency, timeScale) } : {}),
      // As EventBridge delivers ECS's STOPPED events to the rule's Lambda; called only once tasks run.
      onTaskStopped: (event) => onTaskStopped(event, lambdaContext('sandbox-stopped')),
    });
    stops.push(() => sandboxes.stopAll());
    // Metrics as EMF, through the handlers' own Powertools Metrics, into the engine's log: kept out of the demo's output, readable by tests.
    const telemetry = routeTelemetry((emf) => log(`${EMF_LOG_PREFIX}${emf}`));
    const engineDeps = buildEngineDeps(config, { sandboxes, prestart: localPrestart(opts, timeScale), metrics: metricsPort(telemetry.metrics), log: (m, d) => log(`${m}${d ? ` ${JSON.stringify(d, (_, v: unknown) => (v instanceof Error ? `${v.name}: ${v.message}` : v))}` : ''}`) });
    const functions = engineFunctions(() => engineDeps);
    const onTaskStopped = sandboxStoppedHandler(() => engineDeps);

    const sfn = new LocalStepFunctions({
      stateDir,
      timeScale,
      region: REGION,
      accountId: ACCOUNT,
      router: async (inv: TaskInvocation) => route(inv),
      // As the AWS rule delivers "Step Functions Execution Status Change" to the safety net Lambda;
      // while the engine stops, endOrphan below ends its deployments instead (no execution can run).
      onExecutionEnded: async (detail) => {
        if (stopping) return;
        await safetyNet(executionStatusChange(detail, stateMachineArn), lambdaContext('safety-net'));
      },
      ...(opts.executionTimeoutSeconds !== undefined ? { executionTimeoutSeconds: opts.executionTimeoutSeconds } : {}),
    });
    const safetyNet = safetyNetHandler(() => engineDeps);
    let stopping = false;
    /**
     * An execution that ended outside Cleanup: the local cloud is ours, so its bastion rule can be
     * closed without the (deleted) token; then the safety net deletes the secrets and records why.
     */
    const endOrphan = async (deploymentId: string, executionStatus: string, reason: string) => {
      const deployment = await engineDeps.store.getDeployment(deploymentId);
      if (deployment) {
        await cloud
          .closeBastionAccess(deployment.tenantId, deploymentId)
          .catch((e: unknown) => log(`could not close the bastion access of ${deploymentId}: ${String(e)}`));
      }
      await executionEndedOutsideCleanup(engineDeps, { deploymentId, executionStatus, reason });
      // Not a handler invocation: no logMetrics middleware flushes what it counted.
      telemetry.metrics.publishStoredMetrics();
    };
    const route = async (inv: TaskInvocation): Promise<unknown> => {
      if (inv.resource.startsWith('arn:aws:states:::lambda:invoke')) {
        const { FunctionName, Payload } = inv.parameters as { FunctionName: string; Payload: unknown };
        const handler = functions.get(FunctionName);
        if (!handler) throw Object.assign(new Error(`Function not found: ${FunctionName}`), { name: 'Lambda.ResourceNotFoundException' });
        const fault = opts.lambdaFault?.(FunctionName);
        if (fault) throw Object.assign(new Error(`${fault} injected for ${FunctionName}`), { name: fault });
        return handler(Payload, lambdaContext(FunctionName));
      }
      if (inv.resource.startsWith('arn:aws:states:::ecs:runTask')) return sandboxes.runTask(inv.parameters, inv.signal);
      throw Object.assign(new Error(`resource ${inv.resource} is not available in local mode`), { name: 'States.Runtime' });
    };
    await sfn.start();
    stops.push(() => sfn.stop());
    // A clean stop ends running deployments now, as "stopped from the console" would: no secret waits for a restart.
    stops.push(async () => {
      stopping = true;
      for (const exec of sfn.listExecutions(stateMachineArn, 'RUNNING')) {
        sfn.stopExecution(exec.executionArn, { error: 'Ctd.EngineStopped', cause: 'the local engine was stopped' });
        await endOrphan(exec.name, 'ABORTED', 'the engine was stopped while the deployment was running');
      }
    });
    sfn.createStateMachine(STATE_MACHINE_NAME, substitute(await readFile(ASL, 'utf8'), substitutions()));
    await sfn.listen(sfnPort);
    // Executions that ended outside Cleanup while no engine ran (a SIGKILL included): the safety net hears them now.
    const swept = await sfn.sweepEndedExecutions();
    if (swept > 0) log(`safety net: ${swept} ended executions checked for a missed cleanup`);

    const authorize = apiAuthorizer(() => engineDeps);
    const api = await startLocalApiGateway({
      port: apiPort,
      routes: apiRoutes(() => engineDeps),
      site: serveConsole,
      authorizer: (event) => authorize(event, lambdaContext('authorizer')),
      // As the deployed API: the stack's cache TTL and gateway response (cdk/api.ts).
      authorizerCacheTtlMs: AUTHORIZER_CACHE_TTL_SECONDS * 1000,
      authorizerFailure: AUTHORIZER_FAILURE_RESPONSE,
    });
    stops.push(() => api.close());

    const engineFile = join(stateDir, 'engine.json');
    const endpoints = { dynamodb: dynamo.url, kms: kms.url, sfn: sfnUrl };
    await writeFile(engineFile, JSON.stringify({ apiUrl: api.url, consoleUrl, cloudUrl: cloud.url, endpoints, region: REGION, pid: process.pid }, null, 2), { mode: 0o600 });
    stops.push(() => rm(engineFile, { force: true }));
    log(`engine up: API ${api.url} · console ${consoleUrl}/ · state ${stateDir} · cloud ${cloud.keystoneUrl} (${backend.kind}, ${block.cidr})`);

    let stopped: Promise<void> | undefined;
    return {
      apiUrl: api.url,
      consoleUrl,
      cloudUrl: cloud.url,
      stateDir,
      endpoints,
      stateMachineArn,
      mintToken: (tenantId) => cloud.mintToken(tenantId),
      bastionOf: (tenantId) => cloud.bastionOf(tenantId),
      keystoneUrl: cloud.keystoneUrl,
      hypervisor: backend,
      loopbackBlock: block,
      sandboxes,
      kmsDecrypts: kms.decrypts,
      stop: () => (stopped ??= stopAll().then(() => releaseStateDir(stateDir))),
    };
  } catch (e) {
    await stopAll();
    await releaseStateDir(stateDir);
    throw e;
  }
}

/** The hypervisor and the block its bastions' floating IPs come from. */
async function createHypervisor(opts: LocalEngineOptions, stateDir: string, block: LoopbackBlock): Promise<{ hypervisor: Hypervisor; floatingCidr: string }> {
  if (opts.cloud === 'netns') {
    const { NetnsHypervisor } = await import('./cloud/backends/netns/index.ts');
    // A fresh prefix per start: names never collide with another engine's test bed on this machine.
    const hypervisor = new NetnsHypervisor({ stateDir, prefix: `c${randomBytes(3).toString('hex')}` });
    // Loopback addresses cannot cross network namespaces: netns bastions get floating IPs of the bed's own public range.
    return { hypervisor, floatingCidr: hypervisor.layout.floatingRange.cidr };
  }
  const { Ssh2Hypervisor } = await import('./cloud/backends/ssh2/index.ts');
  return { hypervisor: new Ssh2Hypervisor({ stateDir, listenCidr: block.listenCidr }), floatingCidr: block.floatingCidr };
}

function hasLoopbackBridge(backend: Hypervisor): backend is Hypervisor & { exposeLoopbackPorts(ports: number[]): Promise<void> } {
  return typeof (backend as { exposeLoopbackPorts?: unknown }).exposeLoopbackPorts === 'function';
}

function hasPrefix(backend: Hypervisor): backend is Hypervisor & { sandboxCommandPrefix(): string[] } {
  return typeof (backend as { sandboxCommandPrefix?: unknown }).sandboxCommandPrefix === 'function';
}

/** Every `${...}` of the ASL; CDK fills the same names with real ARNs. */
function substitutions(): Record<string, string> {
  const fns = Object.fromEntries(Object.entries(ENGINE_FUNCTIONS).map(([key, name]) => [key, functionArn(name)]));
  return {
    ...fns,
    ClusterArn: `arn:aws:ecs:${REGION}:${ACCOUNT}:cluster/ctd-local`,
    TaskDefinitionFamily: 'ctd-sandbox',
    SandboxSubnetIds: 'subnet-local',
    SandboxSecurityGroupIds: 'sg-local',
  };
}

export function substitute(definition: string, values: Record<string, string>): string {
  return definition.replace(/\$\{(\w+)\}/g, (_, key: string) => {
    const value = values[key];
    if (value === undefined) throw new Error(`the state machine needs a value for \${${key}}`);
    return value;
  });
}

function lambdaContext(functionName: string) {
  const deadline = Date.now() + 60_000;
  return {
    callbackWaitsForEmptyEventLoop: false,
    functionName: functionName.split(':').pop() ?? functionName,
    functionVersion: '$LATEST',
    invokedFunctionArn: functionName,
    memoryLimitInMB: '256',
    awsRequestId: crypto.randomUUID(),
    logGroupName: `/aws/lambda/${functionName}`,
    logStreamName: 'local',
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
    done: () => undefined,
    fail: () => undefined,
    succeed: () => undefined,
  };
}

async function freePort(): Promise<number> {
  const { createServer } = await import('node:net');
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolvePort(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

/** One engine per state dir: a second one would corrupt LevelDB and double-run executions. */
async function claimStateDir(stateDir: string): Promise<void> {
  const lock = join(stateDir, 'engine.lock');
  try {
    const pid = Number(await readFile(lock, 'utf8'));
    if (pid && pid !== process.pid && alive(pid)) {
      throw new Error(`another engine (pid ${pid}) is using ${stateDir}; stop it first or set CTD_HOME`);
    }
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  await writeFile(lock, String(process.pid), { mode: 0o600 });
}

async function releaseStateDir(stateDir: string): Promise<void> {
  await rm(join(stateDir, 'engine.lock'), { force: true });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Local runners are woken at their release (LocalSandboxes.wake): their poll only covers a release decided from a read
 * that predates the sandbox's registration, so it may back off to 2 s (RELEASE_POLL_MS caps it at 0.5 s). In the
 * 60-step bench DAG under a simulated Fargate start this cut the GetItems of a run by a quarter (docs/ARCHITECTURE.md).
 */
const LOCAL_RELEASE_POLL_MS = { first: 100, max: 2000 } as const;

/** The runners' CTD_RELEASE_POLL_MS: the option, else the engine's own environment's, else LOCAL_RELEASE_POLL_MS; the runner checks it. */
function releasePollEnv(poll: { first: number; max: number } | undefined): Record<string, string> {
  const { first, max } = LOCAL_RELEASE_POLL_MS;
  return { [RELEASE_POLL_ENV]: poll ? `${poll.first},${poll.max}` : (process.env[RELEASE_POLL_ENV] ?? `${first},${max}`) };
}

/** Local runner boot, seconds: the start the lookahead hides until a deployment measured its own (without a simulated start). */
const LOCAL_START_SECONDS = 1;

/**
 * Sandboxes waiting at once per deployment, locally without a simulated start: a start there is a runner's boot
 * (~0.15 s of CPU), which the launcher admits one per core at a time. More started ahead than that queue brings up
 * before their release only add processes whose boots and polls take the cores from the steps that run: in the
 * 60-step bench DAG, makespan ÷ critical path 1.84–1.89 at 4, 1.93–2.09 at 20 and 2.30–2.32 at 100, 2 runs each
 * on an idle 2-core machine (1.92–1.93 with pre-start off). With a simulated Fargate start, the engine's default holds.
 */
const localPrestartMaxWaiting = (): number => Math.min(2 * availableParallelism(), DEFAULT_PRESTART_MAX_WAITING);

/**
 * Pre-start as given, else from the environment as in a Lambda, on the engine's clock: the start to hide is the
 * simulated Fargate start's p90 there, or a runner's boot; the default idle limit is time-scaled like a step's
 * time limit, and without a simulated start the default cap is the machine's (localPrestartMaxWaiting). A value set
 * in the environment is taken as it is.
 */
export function localPrestart(opts: LocalEngineOptions, timeScale: number): PrestartPolicy | false {
  if (opts.prestart !== undefined) return opts.prestart;
  const policy = prestartFromEnv(process.env);
  if (!policy) return policy;
  const startSeconds = process.env[ENV.prestartStartSeconds] === undefined ? (opts.sandboxStartLatency ? opts.sandboxStartLatency.p90 * timeScale : LOCAL_START_SECONDS) : policy.startSeconds;
  // Never below the lookahead's reach (adapters/aws/engineDeps.ts, idleLimitTooShort), whatever the time scale.
  const maxIdleSeconds = process.env[ENV.prestartMaxIdleSeconds] === undefined ? Math.max(DEFAULT_PRESTART_MAX_IDLE_SECONDS * timeScale, LOOKAHEAD_STARTS * (startSeconds ?? 0)) : policy.maxIdleSeconds;
  const simulatedStart = opts.sandboxStartLatency !== undefined || (opts.sandboxStartLatencyMs ?? 0) > 0;
  const maxWaiting = process.env[ENV.prestartMaxWaiting] === undefined && !simulatedStart ? localPrestartMaxWaiting() : policy.maxWaiting;
  return { ...policy, maxWaiting, ...(startSeconds !== undefined ? { startSeconds } : {}), ...(maxIdleSeconds !== undefined ? { maxIdleSeconds } : {}) };
}
