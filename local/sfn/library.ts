/**
 * The one place that imports `aws-local-stepfunctions`, after the Node 20 shim it needs, and names
 * the library types it does not export.
 */
import './polyfill.ts';
import { StateMachine } from 'aws-local-stepfunctions';

export { StateMachine, ExecutionAbortedError, ExecutionError } from 'aws-local-stepfunctions';
export type { StateMachineDefinition } from 'aws-local-stepfunctions';

type Run = ReturnType<StateMachine['run']>;
/** One event of the library's `eventLogs` stream (the type is not exported by the library). */
export type LibraryEvent = Run['eventLogs'] extends AsyncGenerator<infer E> ? E : never;
export type RunOptions = NonNullable<Parameters<StateMachine['run']>[1]>;
export type LibraryJson = Parameters<StateMachine['run']>[0];
