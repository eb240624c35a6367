/**
 * Persists state machines, executions and histories under the state directory as JSON, so a new
 * engine on the same directory lists and describes earlier executions with the same history.
 *
 * Layout: `state-machines/<name>.json`, `executions/<hash>.json` (rewritten on each status
 * change, via rename so a crash never leaves half a file) and `executions/<hash>.history.jsonl`
 * (one event per line, appended as events happen). Writes are synchronous: they are small, and it
 * keeps events on disk in the order they were recorded.
 */
import { createHash } from 'node:crypto';
import { appendFileSync, chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ExecutionStatus, HistoryEvent } from '@aws-sdk/client-sfn';

export interface StateMachineRecord {
  stateMachineArn: string;
  name: string;
  definition: string;
  creationDate: string;
}

export interface ExecutionRecord {
  executionArn: string;
  stateMachineArn: string;
  name: string;
  status: ExecutionStatus;
  startDate: string;
  stopDate?: string;
  input: string;
  output?: string;
  error?: string;
  cause?: string;
}

export interface StoredExecution {
  record: ExecutionRecord;
  events: HistoryEvent[];
}

export class ExecutionStore {
  private readonly machinesDir: string;
  private readonly executionsDir: string;

  constructor(stateDir: string) {
    this.machinesDir = join(stateDir, 'state-machines');
    this.executionsDir = join(stateDir, 'executions');
    // Owner-only, like all local state (histories hold deployment inputs and outputs); an older dir is tightened.
    for (const dir of [this.machinesDir, this.executionsDir]) {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      chmodSync(dir, 0o700);
    }
  }

  saveStateMachine(record: StateMachineRecord): void {
    writeAtomically(join(this.machinesDir, `${encodeURIComponent(record.name)}.json`), JSON.stringify(record, null, 2));
  }

  loadStateMachines(): StateMachineRecord[] {
    return readdirSync(this.machinesDir)
      .filter((file) => file.endsWith('.json'))
      .map((file) => JSON.parse(readFileSync(join(this.machinesDir, file), 'utf8')) as StateMachineRecord);
  }

  saveExecution(record: ExecutionRecord): void {
    writeAtomically(this.recordPath(record.executionArn), JSON.stringify(record, null, 2));
  }

  appendEvent(executionArn: string, event: HistoryEvent): void {
    appendFileSync(this.historyPath(executionArn), `${JSON.stringify(event)}\n`, { mode: 0o600 });
  }

  loadExecutions(): StoredExecution[] {
    return readdirSync(this.executionsDir)
      .filter((file) => file.endsWith('.json'))
      .map((file) => {
        const record = JSON.parse(readFileSync(join(this.executionsDir, file), 'utf8')) as ExecutionRecord;
        return { record, events: this.loadHistory(record.executionArn) };
      });
  }

  private loadHistory(executionArn: string): HistoryEvent[] {
    const path = this.historyPath(executionArn);
    if (!existsSync(path)) return [];
    return readFileSync(path, 'utf8')
      .split('\n')
      .filter((line) => line.trim().length > 0)
      .map((line) => {
        const event = JSON.parse(line) as HistoryEvent & { timestamp: string };
        return { ...event, timestamp: new Date(event.timestamp) };
      });
  }

  private recordPath(executionArn: string): string {
    return join(this.executionsDir, `${fileKey(executionArn)}.json`);
  }

  private historyPath(executionArn: string): string {
    return join(this.executionsDir, `${fileKey(executionArn)}.history.jsonl`);
  }
}

/** Execution names may hold characters unsafe in file names; a hash of the ARN is not. */
function fileKey(executionArn: string): string {
  return createHash('sha256').update(executionArn).digest('hex').slice(0, 32);
}

function writeAtomically(path: string, text: string): void {
  const temporary = `${path}.tmp`;
  writeFileSync(temporary, text, { mode: 0o600 });
  renameSync(temporary, path);
}
