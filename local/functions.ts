import type { APIGatewayProxyEvent, APIGatewayProxyResult, Context } from 'aws-lambda';
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
import * as deleteSecrets from '../lambdas/engine/deleteSecrets.ts';
import * as gracePeriod from '../lambdas/engine/gracePeriod.ts';
import * as prepare from '../lambdas/engine/prepare.ts';
import * as recordStepFailure from '../lambdas/engine/recordStepFailure.ts';
import * as recordStepResult from '../lambdas/engine/recordStepResult.ts';
import * as sandboxStopped from '../lambdas/engine/sandboxStopped.ts';
import * as summarize from '../lambdas/engine/summarize.ts';

/**
 * The Lambda functions of the local engine: the same handler modules as in AWS, built with
 * the engine's dependencies and invoked in-process with Lambda's event and response shapes.
 */

// Handlers differ in event type; the router passes each the Payload its ASL state built.
type AnyHandler = (event: any, context: Context) => Promise<unknown>;

export const ACCOUNT = '000000000000';
export const REGION = 'us-east-1';
export const functionArn = (name: string) => `arn:aws:lambda:${REGION}:${ACCOUNT}:function:ctd-${name}`;

/** ASL substitution name → function name, exactly the `${...}FunctionArn` placeholders of the ASL. */
export const ENGINE_FUNCTIONS = {
  PrepareFunctionArn: 'prepare',
  AwaitDependenciesFunctionArn: 'await-dependencies',
  RecordStepResultFunctionArn: 'record-step-result',
  RecordStepFailureFunctionArn: 'record-step-failure',
  GracePeriodFunctionArn: 'grace-period',
  AbortStragglersFunctionArn: 'abort-stragglers',
  SummarizeFunctionArn: 'summarize',
  DeleteSecretsFunctionArn: 'delete-secrets',
} as const;

export function engineFunctions(deps: DepsProvider): Map<string, AnyHandler> {
  const table: Record<(typeof ENGINE_FUNCTIONS)[keyof typeof ENGINE_FUNCTIONS], AnyHandler> = {
    prepare: prepare.createHandler(deps),
    'await-dependencies': awaitDependencies.createHandler(deps),
    'record-step-result': recordStepResult.createHandler(deps),
    'record-step-failure': recordStepFailure.createHandler(deps),
    'grace-period': gracePeriod.createHandler(deps),
    'abort-stragglers': abortStragglers.createHandler(deps),
    summarize: summarize.createHandler(deps),
    'delete-secrets': deleteSecrets.createHandler(deps),
  };
  return new Map(Object.entries(table).map(([name, handler]) => [functionArn(name), handler]));
}

type ApiHandler = (event: APIGatewayProxyEvent, context: Context) => Promise<APIGatewayProxyResult>;

/** The REST API's routes, as API Gateway maps them in cdk/. */
export function apiRoutes(deps: DepsProvider): { method: string; resource: string; handler: ApiHandler }[] {
  return [
    { method: 'POST', resource: '/deployments', handler: submit.createHandler(deps) },
    { method: 'GET', resource: '/deployments', handler: list.createHandler(deps) },
    { method: 'GET', resource: '/deployments/{id}', handler: get.createHandler(deps) },
    { method: 'GET', resource: '/deployments/{id}/history', handler: history.createHandler(deps) },
    { method: 'GET', resource: '/deployments/{id}/logs', handler: logs.createHandler(deps) },
    { method: 'DELETE', resource: '/deployments/{id}', handler: cancel.createHandler(deps) },
  ];
}

/** The target of the "ECS Task State Change" rule: the local launcher emits the same events. */
export const sandboxStoppedHandler = (deps: DepsProvider) => sandboxStopped.createHandler(deps);

export const apiAuthorizer = (deps: DepsProvider) => authorizer.createHandler(deps);

export type { EngineDeps };
