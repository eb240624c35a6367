/**
 * The AWS JSON 1.0 wire protocol in front of the runtime, so `SFNClient` and the AWS CLI work with
 * only `endpoint` changed: `POST /` with `X-Amz-Target: AWSStepFunctions.<Operation>`, timestamps
 * as epoch seconds, errors as HTTP 400 with `{"__type": "<Code>", "message": ...}`.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { randomUUID } from 'node:crypto';
import type { ExecutionStatus } from '@aws-sdk/client-sfn';
import { SfnError } from './errors.ts';
import type { StepFunctionsOperations } from './types.ts';

type Body = Record<string, unknown>;
type Operation = (sfn: StepFunctionsOperations, body: Body) => unknown;

const DEFAULT_PAGE = 100;

const operations: Record<string, Operation> = {
  CreateStateMachine: (sfn, body) => {
    const stateMachineArn = sfn.createStateMachine(text(body, 'name'), text(body, 'definition'));
    return { stateMachineArn, creationDate: sfn.describeStateMachine(stateMachineArn).creationDate };
  },
  DescribeStateMachine: (sfn, body) => ({ ...sfn.describeStateMachine(text(body, 'stateMachineArn')), status: 'ACTIVE', type: 'STANDARD' }),
  ListStateMachines: (sfn) => ({
    stateMachines: sfn.listStateMachines().map(({ stateMachineArn, name, creationDate }) => ({ stateMachineArn, name, type: 'STANDARD', creationDate })),
  }),
  StartExecution: (sfn, body) =>
    sfn.startExecution({ stateMachineArn: text(body, 'stateMachineArn'), name: optionalText(body, 'name'), input: optionalText(body, 'input') }),
  DescribeExecution: (sfn, body) => {
    const description = sfn.describeExecution(text(body, 'executionArn'));
    return {
      ...description,
      inputDetails: { included: true },
      ...(description.output !== undefined ? { outputDetails: { included: true } } : {}),
    };
  },
  ListExecutions: (sfn, body) => {
    const all = sfn.listExecutions(text(body, 'stateMachineArn'), optionalText(body, 'statusFilter') as ExecutionStatus | undefined);
    const { items, nextToken } = page(all, body);
    return { executions: items, ...(nextToken ? { nextToken } : {}) };
  },
  GetExecutionHistory: (sfn, body) => {
    const events = sfn.getExecutionHistory(text(body, 'executionArn'));
    if (body.reverseOrder === true) events.reverse();
    const { items, nextToken } = page(events, body);
    return { events: items, ...(nextToken ? { nextToken } : {}) };
  },
  StopExecution: (sfn, body) => sfn.stopExecution(text(body, 'executionArn'), { error: optionalText(body, 'error'), cause: optionalText(body, 'cause') }),
  SendTaskSuccess: (sfn, body) => {
    sfn.sendTaskSuccess(text(body, 'taskToken'), text(body, 'output'));
    return {};
  },
  SendTaskFailure: (sfn, body) => {
    sfn.sendTaskFailure(text(body, 'taskToken'), optionalText(body, 'error'), optionalText(body, 'cause'));
    return {};
  },
  SendTaskHeartbeat: (sfn, body) => {
    sfn.sendTaskHeartbeat(text(body, 'taskToken'));
    return {};
  },
};

export function createSfnServer(sfn: StepFunctionsOperations): Server {
  return createServer((request, response) => {
    void handle(sfn, request, response);
  });
}

async function handle(sfn: StepFunctionsOperations, request: IncomingMessage, response: ServerResponse): Promise<void> {
  try {
    const target = String(request.headers['x-amz-target'] ?? '');
    const operation = operations[target.replace(/^AWSStepFunctions\./, '')];
    const raw = await readBody(request);
    if (!operation) throw new SfnError('UnknownOperationException', `Unknown operation: '${target}'`);
    let body: unknown;
    try {
      body = raw.length > 0 ? JSON.parse(raw) : {};
    } catch {
      throw new SfnError('ValidationException', 'The request body is not valid JSON');
    }
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new SfnError('ValidationException', 'The request body must be a JSON object');
    send(response, 200, await operation(sfn, body as Body));
  } catch (error) {
    if (error instanceof SfnError) send(response, 400, { __type: error.code, message: error.message });
    else send(response, 500, { __type: 'InternalFailure', message: error instanceof Error ? error.message : String(error) });
  }
}

function send(response: ServerResponse, status: number, payload: unknown): void {
  const body = JSON.stringify(payload, epochSeconds);
  response.writeHead(status, {
    'content-type': 'application/x-amz-json-1.0',
    'content-length': Buffer.byteLength(body),
    'x-amzn-requestid': randomUUID(),
    ...(status >= 400 && typeof payload === 'object' && payload !== null && '__type' in payload ? { 'x-amzn-errortype': String(payload.__type) } : {}),
  });
  response.end(body);
}

/** JSON replacer: AWS JSON protocols send timestamps as epoch seconds. */
function epochSeconds(this: Record<string, unknown>, key: string, value: unknown): unknown {
  const raw = this[key];
  return raw instanceof Date ? raw.getTime() / 1000 : value;
}

function readBody(request: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    request.on('error', reject);
  });
}

function text(body: Body, field: string): string {
  const value = body[field];
  if (typeof value !== 'string') throw new SfnError('ValidationException', `1 validation error detected: Value at '${field}' failed to satisfy constraint: Member must not be null`);
  return value;
}

function optionalText(body: Body, field: string): string | undefined {
  const value = body[field];
  return typeof value === 'string' ? value : undefined;
}

/** Offset pagination; the token is opaque to clients. */
function page<T>(items: T[], body: Body): { items: T[]; nextToken?: string } {
  const size = typeof body.maxResults === 'number' && body.maxResults > 0 ? body.maxResults : DEFAULT_PAGE;
  const start = typeof body.nextToken === 'string' ? Number.parseInt(body.nextToken, 10) || 0 : 0;
  const end = start + size;
  return { items: items.slice(start, end), ...(end < items.length ? { nextToken: String(end) } : {}) };
}
