import { RUNTIME_PROVIDED, sectionVariables, type ConfigSection } from '../core/config/schema.ts';

/**
 * Every Lambda of the engine, once. The CDK app builds functions, grants, environment, routes and
 * ASL substitutions from it; local mode builds its in-process functions and routes from it; each
 * handler parses its environment with the schema of the sections named here.
 */

/** Table access by purpose; cdk/permissions.ts turns each into exactly the DynamoDB actions the store sends. */
export type TableAccess = 'read' | 'write' | 'delete';

export interface LambdaSpec {
  readonly kind: 'api' | 'engine';
  /** Configuration sections (core/config/schema.ts): the variables cdk sets and the handler requires. */
  readonly config: readonly ConfigSection[];
  readonly access: readonly TableAccess[];
  /** Answers `.waitForTaskToken` tasks (its own, or those of the steps it releases, aborts or cancels). */
  readonly answersTasks?: boolean;
  readonly stopsTasks?: boolean;
  readonly startsExecutions?: boolean;
  readonly readsHistory?: boolean;
  /** Encrypts user tokens with the token key, creating each deployment's decrypt grant. */
  readonly encryptsTokens?: boolean;
  /**
   * Ends a deployment's decrypt grant when its secrets are deleted: `retire` as the grant's retiring
   * principal (DeleteSecrets), `revoke` by key policy (the safety net, a submit that failed).
   */
  readonly shredsTokens?: 'retire' | 'revoke';
  /** API route served, as API Gateway maps it. */
  readonly route?: { readonly method: 'GET' | 'POST' | 'DELETE'; readonly resource: string };
  /** The ASL placeholder naming this function's ARN. */
  readonly substitution?: string;
}

const ENGINE = ['store', 'executions', 'prestart'] as const;

/** RecordStepResult and RecordStepFailure settle waiting steps: a pre-started sandbox whose step they skip is stopped at once (StopTask). */
const SETTLES_WAITING_STEPS = {
  kind: 'engine',
  config: [...ENGINE, 'sandboxes'],
  access: ['read', 'write'],
  answersTasks: true,
  stopsTasks: true,
} as const satisfies Omit<LambdaSpec, 'substitution'>;

export const API_LAMBDAS = {
  submit: {
    kind: 'api',
    config: ['store', 'vault', 'tokenGrants', 'executions', 'cloud'],
    access: ['read', 'write', 'delete'],
    startsExecutions: true,
    encryptsTokens: true,
    shredsTokens: 'revoke',
    route: { method: 'POST', resource: '/deployments' },
  },
  list: { kind: 'api', config: ['store', 'executions'], access: ['read'], route: { method: 'GET', resource: '/deployments' } },
  get: { kind: 'api', config: ['store', 'executions'], access: ['read'], route: { method: 'GET', resource: '/deployments/{id}' } },
  history: {
    kind: 'api',
    config: ['store', 'executions'],
    access: ['read'],
    readsHistory: true,
    route: { method: 'GET', resource: '/deployments/{id}/history' },
  },
  logs: { kind: 'api', config: ['store', 'executions'], access: ['read'], route: { method: 'GET', resource: '/deployments/{id}/logs' } },
  cancel: {
    kind: 'api',
    config: ['store', 'executions', 'sandboxes'],
    access: ['read', 'write'],
    answersTasks: true,
    stopsTasks: true,
    route: { method: 'DELETE', resource: '/deployments/{id}' },
  },
  authorizer: { kind: 'api', config: ['cloud'], access: [] },
} as const satisfies Record<string, LambdaSpec>;

export const ENGINE_LAMBDAS = {
  prepare: { kind: 'engine', config: ENGINE, access: ['read', 'write'], substitution: 'PrepareFunctionArn' },
  awaitDependencies: { kind: 'engine', config: ENGINE, access: ['read', 'write'], answersTasks: true, substitution: 'AwaitDependenciesFunctionArn' },
  // A pre-started step whose RunTask failed for good waits here for its release (no sandbox of its own to stop).
  awaitRelease: { kind: 'engine', config: ENGINE, access: ['read', 'write'], answersTasks: true, substitution: 'AwaitReleaseFunctionArn' },
  recordStepResult: { ...SETTLES_WAITING_STEPS, substitution: 'RecordStepResultFunctionArn' },
  recordStepFailure: { ...SETTLES_WAITING_STEPS, substitution: 'RecordStepFailureFunctionArn' },
  gracePeriod: { kind: 'engine', config: ENGINE, access: ['read', 'write'], answersTasks: true, substitution: 'GracePeriodFunctionArn' },
  abortStragglers: {
    kind: 'engine',
    config: [...ENGINE, 'sandboxes'],
    access: ['read', 'write'],
    answersTasks: true,
    stopsTasks: true,
    substitution: 'AbortStragglersFunctionArn',
  },
  summarize: { kind: 'engine', config: ENGINE, access: ['read'], substitution: 'SummarizeFunctionArn' },
  deleteSecrets: { kind: 'engine', config: [...ENGINE, 'vault'], access: ['read', 'write'], shredsTokens: 'retire', substitution: 'DeleteSecretsFunctionArn' },
  // Starts the cleanup-only execution of an execution that ended outside Cleanup; stops the sandboxes it left running.
  // It revokes the token's grant only when it destroys the secrets itself (already final, or cleanup given up).
  safetyNet: {
    kind: 'engine',
    config: [...ENGINE, 'sandboxes', 'vault'],
    access: ['read', 'write'],
    answersTasks: true,
    stopsTasks: true,
    startsExecutions: true,
    shredsTokens: 'revoke',
  },
  sandboxStopped: { kind: 'engine', config: ENGINE, access: ['read', 'write'], answersTasks: true },
} as const satisfies Record<string, LambdaSpec>;

export const LAMBDAS: Record<LambdaName, LambdaSpec> = { ...API_LAMBDAS, ...ENGINE_LAMBDAS };

export type LambdaName = keyof typeof API_LAMBDAS | keyof typeof ENGINE_LAMBDAS;

/** The environment a function gets: exactly the variables of its configuration sections that are set. */
export function environmentOf(sections: readonly ConfigSection[], values: Record<string, string>): Record<string, string> {
  const names = sections.flatMap(sectionVariables).filter((n) => !RUNTIME_PROVIDED.includes(n));
  return Object.fromEntries(names.flatMap((n) => (values[n] === undefined ? [] : [[n, values[n]]])));
}

/** Handler file of a Lambda, relative to the repository root. */
export const entryOf = (name: LambdaName): string => `lambdas/${LAMBDAS[name].kind}/${name}.ts`;

/**
 * How long API Gateway keeps an authorizer decision per Authorization header: API Gateway's default.
 * Safe because the authorizer allows the whole stage (a cached policy serves every route); a token
 * revoked at Keystone stays accepted at the API for at most this long, and the cloud refuses it anyway.
 */
export const AUTHORIZER_CACHE_TTL_SECONDS = 300;

/**
 * The gateway response when the authorizer fails with anything but "Unauthorized" (the cloud's
 * identity service unreachable, 5xx or slow): 503 with a clear message instead of 500 {"message":null}.
 * Errors are never cached, so the next request asks the cloud again.
 */
export const AUTHORIZER_FAILURE_RESPONSE = {
  status: 503,
  message: "could not check your token: the cloud's identity service is unreachable or failing; retry in a moment",
} as const;
