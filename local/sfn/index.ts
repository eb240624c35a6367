/** Local Step Functions: our ASL on `aws-local-stepfunctions`, with AWS semantics and wire protocol. */
export { LocalStepFunctions, ENGINE_RESTARTED } from './runtime.ts';
export { SfnError, TaskError } from './errors.ts';
export type {
  ExecutionDescription,
  ExecutionListItem,
  ExecutionStatusChangeDetail,
  LocalStepFunctionsOptions,
  OrphanedExecution,
  StateMachineDescription,
  TaskInvocation,
  TaskRouter,
} from './types.ts';
