/**
 * Reads an ASL definition for the runtime: which state name is which Task (the library keys local
 * handlers by state name, including states inside Map ItemProcessors and Parallel branches), and
 * rewrites a private copy for the library so AWS semantics it lacks are supplied by our task runner.
 */
import { SfnError } from './errors.ts';
import { validateAsl } from './validate.ts';

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

export interface AslState extends JsonObject {
  Type: string;
}
export interface AslMachine extends JsonObject {
  StartAt: string;
  States: { [name: string]: AslState };
}

/** What the task runner needs to know about one Task state. */
export interface TaskStateInfo {
  name: string;
  resource: string;
  timeoutSeconds?: number;
  timeoutSecondsPath?: string;
  heartbeatSeconds?: number;
  /** With an InputPath the handler cannot see the raw state input, so attempts are paired FIFO. */
  hasInputPath: boolean;
}

export interface MapStateInfo {
  name: string;
  itemsPath?: string;
  /** The ItemSelector field that holds `$$.Map.Item.Value`: an iteration's history lane is keyed by it. */
  itemField?: string;
}

export interface ParsedDefinition {
  /** The definition exactly as given (what DescribeStateMachine returns). */
  source: AslMachine;
  /** The rewritten copy the interpreter runs. */
  engine: AslMachine;
  tasks: Map<string, TaskStateInfo>;
  maps: Map<string, MapStateInfo>;
  /** History lane of each state directly inside a Parallel branch: a branch's events chain among themselves, as on AWS. */
  branchLanes: Map<string, string>;
  /** The Map whose ItemProcessor holds each state (at any depth of Parallels inside it); absent at the top level. */
  enclosingMap: Map<string, string>;
}

/**
 * Field names the runtime adds around a Task's Parameters in the engine copy: the handler receives
 * `{ [ENVELOPE]: { input, timeout }, [PARAMS]: <the resolved Parameters> }`.
 */
export const ENVELOPE = 'ctd:runtime';
export const PARAMS = 'ctd:parameters';

/** Largest delay `setTimeout` accepts (~24.8 days); larger values fire after 1 ms. */
const MAX_TIMER_SECONDS = Math.floor(0x7fffffff / 1000);

/** Visits every state, descending into Map ItemProcessor/Iterator and Parallel Branches. */
export function walkStates(
  machine: AslMachine,
  visit: (name: string, state: AslState, enclosingMap: string | undefined) => void,
  enclosingMap?: string,
): void {
  for (const [name, state] of Object.entries(machine.States)) {
    visit(name, state, enclosingMap);
    const nested = state.ItemProcessor ?? state.Iterator;
    // A Map's states are enclosed by it; a Parallel's branches by whatever encloses the Parallel.
    if (isMachine(nested)) walkStates(nested, visit, name);
    if (Array.isArray(state.Branches)) {
      for (const branch of state.Branches) if (isMachine(branch)) walkStates(branch, visit, enclosingMap);
    }
  }
}

/**
 * Parses, validates (asl-validator, unless `validate` is false for definitions already validated
 * when they were created) and prepares a definition; throws `InvalidDefinition`.
 */
export function parseDefinition(text: string, timeScale: number, validate = true, executionTimeoutSeconds?: number): ParsedDefinition {
  let source: unknown;
  try {
    source = JSON.parse(text);
  } catch (error) {
    throw new SfnError('InvalidDefinition', `Invalid State Machine Definition: ${(error as Error).message}`);
  }
  if (!isMachine(source)) throw new SfnError('InvalidDefinition', 'Invalid State Machine Definition: StartAt and States are required');
  const problems = validate ? validateAsl(text) : [];
  if (problems.length > 0) throw new SfnError('InvalidDefinition', `Invalid State Machine Definition: ${problems.join('; ')}`);
  if (source.QueryLanguage === 'JSONata') {
    throw new SfnError('InvalidDefinition', 'Invalid State Machine Definition: the local runtime supports JSONPath only');
  }

  const tasks = new Map<string, TaskStateInfo>();
  const maps = new Map<string, MapStateInfo>();
  const enclosingMap = new Map<string, string>();
  walkStates(source, (name, state, enclosing) => {
    if (enclosing !== undefined) enclosingMap.set(name, enclosing);
    if (state.Type === 'Task') {
      tasks.set(name, {
        name,
        resource: String(state.Resource),
        timeoutSeconds: numberOrUndefined(state.TimeoutSeconds),
        timeoutSecondsPath: stringOrUndefined(state.TimeoutSecondsPath),
        heartbeatSeconds: numberOrUndefined(state.HeartbeatSeconds),
        hasInputPath: 'InputPath' in state,
      });
    } else if (state.Type === 'Map') {
      const selector = state.ItemSelector ?? state.Parameters;
      const itemField = isObject(selector)
        ? Object.entries(selector).find(([key, value]) => key.endsWith('.$') && value === '$$.Map.Item.Value')?.[0].slice(0, -2)
        : undefined;
      maps.set(name, { name, itemsPath: stringOrUndefined(state.ItemsPath), ...(itemField ? { itemField } : {}) });
    }
  });

  const branchLanes = new Map<string, string>();
  walkStates(source, (name, state) => {
    if (state.Type !== 'Parallel' || !Array.isArray(state.Branches)) return;
    state.Branches.forEach((branch, i) => {
      if (isMachine(branch)) for (const inner of Object.keys(branch.States)) branchLanes.set(inner, `branch:${name}:${i}`);
    });
  });

  const engine = structuredClone(source);
  rewriteForEngine(engine, timeScale);
  if (executionTimeoutSeconds !== undefined) engine.TimeoutSeconds = executionTimeoutSeconds;
  // The library arms one setTimeout for the whole execution: past ~24.8 days Node fires it after
  // 1 ms, so every execution would time out at once. A bound that long is never reached locally.
  if (typeof engine.TimeoutSeconds === 'number' && engine.TimeoutSeconds > MAX_TIMER_SECONDS) delete engine.TimeoutSeconds;
  return { source, engine, tasks, maps, branchLanes, enclosingMap };
}

/**
 * Rewrites the engine copy in place:
 * - Task Parameters are wrapped so the handler also gets the raw state input and the value of
 *   TimeoutSecondsPath. The library evaluates TimeoutSecondsPath against the *resolved Parameters*
 *   (not the state input) and defaults to a 60 s timeout; our runner owns timeouts instead, so the
 *   library's own timer is pushed out of reach.
 * - Retry intervals, Wait `Seconds` and the machine TimeoutSeconds are multiplied by `timeScale`.
 */
function rewriteForEngine(machine: AslMachine, timeScale: number): void {
  if (typeof machine.TimeoutSeconds === 'number') machine.TimeoutSeconds = machine.TimeoutSeconds * timeScale;
  walkStates(machine, (_name, state) => {
    if (Array.isArray(state.Retry)) {
      for (const retrier of state.Retry) {
        if (!isObject(retrier)) continue;
        retrier.IntervalSeconds = (numberOrUndefined(retrier.IntervalSeconds) ?? 1) * timeScale;
        if (typeof retrier.MaxDelaySeconds === 'number') retrier.MaxDelaySeconds = retrier.MaxDelaySeconds * timeScale;
      }
    }
    if (state.Type === 'Wait' && typeof state.Seconds === 'number') state.Seconds = state.Seconds * timeScale;
    if (state.Type !== 'Task') return;

    const envelope: JsonObject = { 'input.$': '$' };
    if (typeof state.TimeoutSecondsPath === 'string') envelope['timeout.$'] = state.TimeoutSecondsPath;
    const wrapped: JsonObject = { [ENVELOPE]: envelope };
    if ('Parameters' in state) wrapped[PARAMS] = state.Parameters as Json;
    else wrapped[`${PARAMS}.$`] = '$';
    state.Parameters = wrapped;
    delete state.TimeoutSecondsPath;
    state.TimeoutSeconds = MAX_TIMER_SECONDS;
  });
}

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isMachine(value: unknown): value is AslMachine {
  return isObject(value) && typeof value.StartAt === 'string' && isObject(value.States);
}

function numberOrUndefined(value: unknown): number | undefined {
  return typeof value === 'number' ? value : undefined;
}

function stringOrUndefined(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

/**
 * Reads a plain `$`/`$.a.b` reference path (enough for ItemsPath in history details); anything
 * fancier returns undefined and the detail is left out.
 */
export function readSimplePath(value: Json, path: string | undefined): Json | undefined {
  if (path === undefined || path === '$') return value;
  if (!/^\$(\.[A-Za-z0-9_-]+)+$/.test(path)) return undefined;
  let current: Json | undefined = value;
  for (const key of path.slice(2).split('.')) {
    if (!isObject(current)) return undefined;
    current = current[key];
  }
  return current;
}
