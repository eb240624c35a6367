import type { APIGatewayProxyEvent, APIGatewayProxyResult, Context, EventBridgeEvent } from 'aws-lambda';
import type { ExecutionStatusChangeDetail } from './sfn/types.ts';
import type { EngineDeps } from '../core/usecases/deps.ts';
import type { DepsProvider } from '../lambdas/deps.ts';
import * as authorizer from '../lambdas/api/authorizer.ts';
import * as cancel from '../lambdas/api/cancel.ts';
import * as get from '../lambdas/api/get.ts';
import * as history from '../lambdas/api/history.ts';
import * as list from '../lambdas/api/list.ts';
import * as logs from '../lambdas/api/logs.ts';
import * as submit from '../lambdas/api/submit.ts';
import * as abortStragglers from '../lambdas/engine/abortStragglers.ts';
import * as awaitDependencies from '../lambdas/engine/awaitDependencies.ts';
import * as awaitRelease from '../lambdas/engine/awaitRelease.ts';
import * as deleteSecrets from '../lambdas/engine/deleteSecrets.ts';
import * as gracePeriod from '../lambdas/engine/gracePeriod.ts';
import * as prepare from '../lambdas/engine/prepare.ts';
import * as recordStepFailure from '../lambdas/engine/recordStepFailure.ts';
import * as recordStepResult from '../lambdas/engine/recordStepResult.ts';
import * as sandboxStopped from '../lambdas/engine/sandboxStopped.ts';
import * as safetyNet from '../lambdas/engine/safetyNet.ts';
import * as summarize from '../lambdas/engine/summarize.ts';
import { API_LAMBDAS, ENGINE_LAMBDAS, type LambdaName } from '../lambdas/catalog.ts';

/**
 * The Lambda functions of the local engine: the same handler modules as in AWS, built with
 * the engine's dependencies and invoked in-process with Lambda's event and response shapes.
 */

// Handlers differ in event type; the router passes each the Payload its ASL state built.
type AnyHandler = (event: any, context: Context) => Promise<unknown>;

export const ACCOUNT = '000000000000';
export const REGION = 'us-east-1';
export const functionArn = (name: string) => `arn:aws:lambda:${REGION}:${ACCOUNT}:function:ctd-${name}`;

/** Every handler module of the catalog; `satisfies` makes a catalog entry without a module a type error. */
const MODULES = {
  submit,
  list,
  get,
  history,
  logs,
  cancel,
  authorizer,
  prepare,
  awaitDependencies,
  awaitRelease,
  recordStepResult,
  recordStepFailure,
  gracePeriod,
  abortStragglers,
  summarize,
  deleteSecrets,
  safetyNet,
  sandboxStopped,
} satisfies Record<LambdaName, { createHandler: (deps: DepsProvider) => unknown }>;

/** ASL substitution name → function name, exactly the `${...}FunctionArn` placeholders of the ASL. */
export const ENGINE_FUNCTIONS: Record<string, string> = Object.fromEntries(
  Object.entries(ENGINE_LAMBDAS).flatMap(([name, spec]) => ('substitution' in spec ? [[spec.substitution, name]] : [])),
);

/** The functions the state machine invokes, by ARN. */
export function engineFunctions(deps: DepsProvider): Map<string, AnyHandler> {
  return new Map(Object.values(ENGINE_FUNCTIONS).map((name) => [functionArn(name), MODULES[name as LambdaName].createHandler(deps) as AnyHandler]));
}

type ApiHandler = (event: APIGatewayProxyEvent, context: Context) => Promise<APIGatewayProxyResult>;

/** The REST API's routes, from the catalog as cdk/api.ts maps them. */
export function apiRoutes(deps: DepsProvider): { method: string; resource: string; handler: ApiHandler }[] {
  return Object.entries(API_LAMBDAS).flatMap(([name, spec]) =>
    'route' in spec ? [{ ...spec.route, handler: MODULES[name as LambdaName].createHandler(deps) as ApiHandler }] : [],
  );
}

/** The target of the "Step Functions Execution Status Change" rule: the local runtime emits the same events. */
export const safetyNetHandler = (deps: DepsProvider) => safetyNet.createHandler(deps);

/** The EventBridge envelope AWS puts around a status change (cdk/engine.ts's SafetyNetRule matches it). */
export function executionStatusChange(detail: ExecutionStatusChangeDetail, stateMachineArn: string): EventBridgeEvent<'Step Functions Execution Status Change', ExecutionStatusChangeDetail> {
  return {
    version: '0',
    id: crypto.randomUUID(),
    'detail-type': 'Step Functions Execution Status Change',
    source: 'aws.states',
    account: ACCOUNT,
    time: new Date(detail.stopDate ?? Date.now()).toISOString(),
    region: REGION,
    resources: [detail.executionArn, stateMachineArn],
    detail,
  };
}

/** The target of the "ECS Task State Change" rule: the local launcher emits the same events. */
export const sandboxStoppedHandler = (deps: DepsProvider) => sandboxStopped.createHandler(deps);

export const apiAuthorizer = (deps: DepsProvider) => authorizer.createHandler(deps);

export type { EngineDeps };
