import { EventEmitter } from 'node:events';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { DeploymentView, ErrorResponse, StepView } from '../../core/api.ts';
import type { HistoryEvent, StepLogLine } from '../../core/model.ts';
import { main } from '../../cli/main.ts';
import { CommandContext, defaultIo, type CliIo } from '../../cli/context.ts';
import { localUp, type LocalEngineOptions } from '../../cli/commands/local.ts';

/**
 * The real CLI (main()) against a small real HTTP server that answers with core/api.ts-shaped
 * bodies and checks the bearer token, as the API Gateway authorizer would.
 */

const TOKEN = 'secret-token-value-42';

interface Recorded {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: unknown;
}

class FakeApi {
  server!: Server;
  url = '';
  requests: Recorded[] = [];
  validTokens = new Set([TOKEN]);
  minted = 0;
  /** Successive GET /deployments/{id} answers; the last one repeats. */
  script: DeploymentView[] = [];
  private served = 0;
  history: (HistoryEvent & { stepId?: string })[] = [];
  logs: StepLogLine[] = [];
  /** Forces every /deployments answer to this status and body. */
  failWith?: { status: number; body: ErrorResponse };

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        const body: unknown = text ? JSON.parse(text) : undefined;
        this.requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
        const [status, answer] = this.route(req, body);
        res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(answer));
      });
    });
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  reset(): void {
    this.requests = [];
    this.validTokens = new Set([TOKEN]);
    this.minted = 0;
    this.script = [];
    this.served = 0;
    this.failWith = undefined;
  }

  private route(req: IncomingMessage, body: unknown): [number, unknown] {
    const url = new URL(req.url ?? '/', this.url);
    if (req.method === 'POST' && url.pathname === '/_admin/tokens') {
      const token = `minted-${(body as { tenant: string }).tenant}-${++this.minted}`;
      this.validTokens.add(token);
      return [201, { token }];
    }
    if (req.method === 'POST' && url.pathname === '/_admin/openrc') {
      const tenant = (body as { tenant: string }).tenant;
      return [200, { env: { OS_AUTH_URL: `${this.url}/identity/v3`, OS_PROJECT_NAME: tenant, OS_PASSWORD: "it's-secret" } }];
    }
    const auth = req.headers.authorization ?? '';
    if (!this.validTokens.has(auth.replace(/^Bearer /, ''))) return [401, { message: 'Unauthorized' }];
    if (this.failWith) return [this.failWith.status, this.failWith.body];
    const parts = url.pathname.split('/').filter(Boolean);
    if (parts[0] !== 'deployments') return [404, { message: 'no such route' }];
    const id = parts[1];
    if (req.method === 'POST' && !id) {
      if ((body as { name?: string }).name === 'bad') {
        return [400, { message: 'invalid deployment', issues: [{ path: 'workflow.steps.0.command', message: 'command is required' }] }];
      }
      return [202, { deploymentId: 'd-1', executionArn: 'arn:aws:states:local:000:execution:ctd:d-1', consoleUrl: 'http://console/d-1', status: 'PENDING' }];
    }
    if (req.method === 'GET' && !id) {
      return [200, { items: this.script.slice(-1).map(({ steps: _steps, ...summary }) => summary), nextCursor: 'c2' }];
    }
    if (id !== 'd-1') return [404, { message: `deployment ${id} not found` }];
    if (req.method === 'DELETE') return [202, { deploymentId: id, status: 'CANCELLING' }];
    if (parts[2] === 'history') return [200, { events: this.history }];
    if (parts[2] === 'logs') {
      const step = url.searchParams.get('step');
      return [200, { lines: this.logs.filter((l) => !step || l.stepId === step) }];
    }
    const view = this.script[Math.min(this.served++, this.script.length - 1)];
    return view ? [200, view] : [404, { message: 'not found' }];
  }
}

const T0 = '2025-01-01T00:00:00.000Z';
const at = (s: number) => new Date(Date.parse(T0) + s * 1000).toISOString();
const stepView = (stepId: string, over: Partial<StepView> = {}): StepView => ({
  stepId,
  action: stepId.startsWith('bastion-') ? stepId : 'run',
  system: stepId.startsWith('bastion-'),
  status: 'waiting',
  attempt: 0,
  dependsOn: [],
  ...over,
});
const view = (status: DeploymentView['status'], steps: StepView[], over: Partial<DeploymentView> = {}): DeploymentView => ({
  deploymentId: 'd-1',
  name: 'hello',
  status,
  createdAt: T0,
  updatedAt: at(9),
  consoleUrl: 'http://console/d-1',
  steps,
  ...over,
});
const done = (id: string, s: number, e: number): StepView =>
  stepView(id, { status: 'succeeded', attempt: 1, startedAt: at(s), endedAt: at(e) });

const api = new FakeApi();
let home: string;
let deployFile: string;

beforeAll(() => api.start());
afterAll(() => new Promise<void>((resolve) => api.server.close(() => resolve())));
beforeEach(async () => {
  api.reset();
  home = await mkdtemp(path.join(tmpdir(), 'ctd-cli-'));
  deployFile = path.join(home, 'deployment.yaml');
  await writeFile(deployFile, 'name: hello\nworkflow:\n  steps:\n    - { id: hi, action: run, command: echo hi }\n');
});
afterEach(() => rm(home, { recursive: true, force: true }));

interface Run {
  code: number;
  out: string;
  err: string;
}

async function ctd(args: string[], over: Partial<CliIo> = {}): Promise<Run> {
  let out = '';
  let err = '';
  const io: Partial<CliIo> = {
    stdout: { write: (s: string) => (out += s), isTTY: false },
    stderr: { write: (s: string) => (err += s) },
    env: { CTD_HOME: home },
    cwd: home,
    sleep: async () => undefined,
    now: () => Date.parse(at(10)),
    ...over,
  };
  const code = await main(args, io);
  return { code, out, err };
}
const remote = () => ['--endpoint', api.url, '--token', TOKEN];

describe('Command: deploy', () => {
  it('submits the bundle and prints the id and console URL', async () => {
    const r = await ctd([...remote(), 'deploy', deployFile, '--idempotency-key', 'k-1']);
    expect(r.code).toBe(0);
    expect(r.out).toContain('deployment d-1 submitted');
    expect(r.out).toContain('console: http://console/d-1');
    const post = api.requests.find((q) => q.method === 'POST');
    expect(post?.headers['idempotency-key']).toBe('k-1');
    expect(post?.body).toMatchObject({ name: 'hello', workflow: { steps: [{ id: 'hi' }] } });
  });

  it('--wait prints one line per step status change and exits 0 on SUCCEEDED', async () => {
    api.script = [
      view('PENDING', [stepView('bastion-open'), stepView('hi'), stepView('bastion-close')]),
      view('RUNNING', [done('bastion-open', 0, 1), stepView('hi', { status: 'running', attempt: 1, startedAt: at(1) }), stepView('bastion-close')]),
      view('RUNNING', [done('bastion-open', 0, 1), stepView('hi', { status: 'running', attempt: 2, startedAt: at(1) }), stepView('bastion-close')]),
      view('SUCCEEDED', [done('bastion-open', 0, 1), done('hi', 1, 5), done('bastion-close', 5, 6)], { endedAt: at(6), idleSandboxSeconds: 0.8 }),
    ];
    const r = await ctd([...remote(), 'deploy', deployFile, '--wait']);
    expect(r.code).toBe(0);
    const lines = r.out.split('\n');
    expect(lines.filter((l) => /\bhi\b/.test(l))).toEqual([
      expect.stringMatching(/hi\s+run\s+waiting/),
      expect.stringMatching(/hi\s+run\s+running/),
      expect.stringMatching(/hi\s+run\s+retrying 2/),
      expect.stringMatching(/hi\s+run\s+succeeded\s+4\.0s/),
    ]);
    expect(lines.filter((l) => l.includes('bastion-close'))).toHaveLength(2);
    expect(r.out).toContain('SUCCEEDED in 6.0s\n  idle:    800ms of sandboxes started ahead, waiting for their release');
    expect(r.out).not.toContain('\x1b[');
  });

  it('--wait exits 1 on FAILED and prints the error, cause and console URL', async () => {
    api.script = [
      view('FAILED', [done('bastion-open', 0, 1), stepView('hi', { status: 'failed', attempt: 1, startedAt: at(1), endedAt: at(2), error: 'Ctd.StepFailed' }), done('bastion-close', 2, 3)], {
        endedAt: at(3),
        error: 'Ctd.StepFailed',
        cause: 'step hi: command exited with code 7',
      }),
    ];
    const r = await ctd([...remote(), 'deploy', deployFile, '--wait']);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/hi\s+run\s+failed\s+1\.0s  Ctd\.StepFailed/);
    expect(r.out).toContain('FAILED in 3.0s');
    expect(r.out).toContain('error:   Ctd.StepFailed');
    expect(r.out).toContain('cause:   step hi: command exited with code 7');
    expect(r.out).toContain('console: http://console/d-1');
  });

  it('--wait exits 1 on CANCELLED', async () => {
    api.script = [view('CANCELLED', [stepView('hi', { status: 'cancelled', attempt: 1 })], { endedAt: at(2), error: 'Ctd.Cancelled' })];
    expect((await ctd([...remote(), 'deploy', deployFile, '--wait'])).code).toBe(1);
  });

  it('--wait redraws in place on a TTY', async () => {
    api.script = [
      view('RUNNING', [stepView('hi', { status: 'running', attempt: 1, startedAt: at(1) })]),
      view('SUCCEEDED', [done('hi', 1, 2)], { endedAt: at(2) }),
    ];
    let out = '';
    const r = await ctd([...remote(), 'deploy', deployFile, '--wait'], { stdout: { write: (s: string) => (out += s), isTTY: true, columns: 120 } });
    expect(r.code).toBe(0);
    expect(out).toContain('\x1b[1F\x1b[0J');
  });

  it('--wait --json prints the final deployment view only', async () => {
    api.script = [view('SUCCEEDED', [done('hi', 1, 2)], { endedAt: at(2) })];
    const r = await ctd([...remote(), '--json', 'deploy', deployFile, '--wait']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toMatchObject({ deploymentId: 'd-1', status: 'SUCCEEDED' });
  });

  it('prints the server message and each issue for a 400 and exits 2', async () => {
    await writeFile(deployFile, 'name: bad\n');
    const r = await ctd([...remote(), 'deploy', deployFile]);
    expect(r.code).toBe(2);
    expect(r.err).toContain('error: invalid deployment');
    expect(r.err).toContain('  - workflow.steps.0.command: command is required');
  });

  it('exits 2 without calling the API when the file cannot be read', async () => {
    const r = await ctd([...remote(), 'deploy', path.join(home, 'nope.yaml')]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/cannot read .*nope\.yaml/);
    expect(api.requests).toHaveLength(0);
  });
});

describe('Command: ls / status / history / logs / cancel', () => {
  beforeEach(() => {
    api.script = [view('FAILED', [done('bastion-open', 0, 1), stepView('hi', { status: 'failed', attempt: 2, startedAt: at(1), endedAt: at(4), error: 'Ctd.StepFailed' })], { endedAt: at(5), error: 'Ctd.StepFailed', cause: 'exit 1' })];
  });

  it('ls prints a table with id, name, status, created and duration', async () => {
    const r = await ctd([...remote(), 'ls']);
    expect(r.code).toBe(0);
    const lines = r.out.trim().split('\n');
    expect(lines[0]).toMatch(/^ID\s+NAME\s+STATUS\s+CREATED\s+DURATION$/);
    expect(lines[1]).toMatch(/^d-1\s+hello\s+FAILED\s+2025-01-01 00:00:00\s+5\.0s$/);
    expect(r.out).toContain('more: ctd ls --cursor c2');
  });

  it('status prints the summary and the steps table', async () => {
    const r = await ctd([...remote(), 'status', 'd-1']);
    expect(r.code).toBe(0);
    expect(r.out).toContain('status:   FAILED');
    expect(r.out).toContain('cause:    exit 1');
    expect(r.out).toMatch(/bastion-open\s+bastion-open \(system\)\s+succeeded\s+1/);
    expect(r.out).toMatch(/hi\s+run\s+failed\s+2\s+2025-01-01 00:00:01\s+3\.0s\s+Ctd\.StepFailed/);
    // No pre-start: neither its cost nor its fallbacks.
    expect(r.out).not.toMatch(/idle:|started ahead|ahead:/);
  });

  it('status says when pre-start halted, and why', async () => {
    const halted = "ECS refused a RunTask (step b): AmazonECS.Unknown: You've reached the limit on the number of vCPUs you can run concurrently";
    api.script = [view('RUNNING', [stepView('a', { status: 'running', attempt: 1, startedAt: at(1) })], { prestartHalted: halted })];
    const r = await ctd([...remote(), 'status', 'd-1']);
    expect(r.code).toBe(0);
    expect(r.out).toContain(`ahead:    halted, steps start at their release: ${halted}`);
  });

  it('status shows what pre-start cost and which steps started their sandbox at the release instead', async () => {
    api.script = [
      view('RUNNING', [stepView('a', { status: 'running', attempt: 1, startedAt: at(1) }), stepView('b', { prestartedAt: at(1), prestartFailure: 'the sandbox started ahead of the release waited 600 s for it, the most a sandbox may wait' })], {
        idleSandboxSeconds: 612.4,
      }),
    ];
    const r = await ctd([...remote(), 'status', 'd-1']);
    expect(r.code).toBe(0);
    expect(r.out).toContain('idle:     10m12s of sandboxes started ahead, waiting for their release');
    expect(r.out).toContain('sandboxes started ahead that did not serve their step:\n  b: the sandbox started ahead of the release waited 600 s for it, the most a sandbox may wait; it starts a sandbox at its release');
  });

  it('status of an unknown id prints the 404 message and exits 2', async () => {
    const r = await ctd([...remote(), 'status', 'd-404']);
    expect(r.code).toBe(2);
    expect(r.err).toContain('error: deployment d-404 not found');
  });

  it('history prints one line per event with its workflow step and the state name or the error', async () => {
    api.history = [
      { id: 1, timestamp: T0, type: 'ExecutionStarted', executionStartedEventDetails: { input: '{}' } },
      { id: 2, previousEventId: 1, timestamp: at(1), type: 'TaskStateEntered', stateEnteredEventDetails: { name: 'Prepare', input: '{}' } },
      { id: 3, previousEventId: 2, timestamp: at(1), type: 'TaskScheduled', stepId: 'migrate' },
      { id: 4, previousEventId: 3, timestamp: at(2), type: 'TaskFailed', stepId: 'migrate', taskFailedEventDetails: { error: 'Ctd.StepFailed', cause: 'exit 1' } },
      { id: 5, previousEventId: 4, timestamp: at(2), type: 'ExecutionFailed', executionFailedEventDetails: { error: 'Ctd.StepFailed', cause: 'exit 1' } },
    ];
    const r = await ctd([...remote(), 'history', 'd-1']);
    expect(r.code).toBe(0);
    expect(r.out.trimEnd().split('\n')).toEqual([
      '   1  2025-01-01 00:00:00  -        ExecutionStarted',
      '   2  2025-01-01 00:00:01  -        TaskStateEntered  Prepare',
      '   3  2025-01-01 00:00:01  migrate  TaskScheduled',
      '   4  2025-01-01 00:00:02  migrate  TaskFailed  Ctd.StepFailed: exit 1',
      '   5  2025-01-01 00:00:02  -        ExecutionFailed  Ctd.StepFailed: exit 1',
    ]);
  });

  it('logs prints [step host stream] text and passes --step to the API', async () => {
    api.logs = [
      { stepId: 'hi', attempt: 1, seq: 1, at: at(1), stream: 'stdout', host: 'vm1', text: 'hello\n' },
      { stepId: 'hi', attempt: 2, seq: 1, at: at(2), stream: 'stderr', text: 'boom' },
      { stepId: 'other', attempt: 1, seq: 1, at: at(2), stream: 'engine', text: 'x' },
    ];
    const r = await ctd([...remote(), 'logs', 'd-1', '--step', 'hi']);
    expect(r.code).toBe(0);
    expect(r.out).toBe('[hi vm1 stdout] hello\n[hi#2 stderr] boom\n');
    expect(api.requests.at(-1)?.url).toBe('/deployments/d-1/logs?step=hi');
  });

  it('logs --follow stops once the deployment has ended, printing each line once', async () => {
    api.script = [view('RUNNING', []), view('RUNNING', []), view('SUCCEEDED', [])];
    api.logs = [{ stepId: 'hi', attempt: 1, seq: 1, at: at(1), stream: 'stdout', text: 'once' }];
    const r = await ctd([...remote(), 'logs', 'd-1', '--follow']);
    expect(r.code).toBe(0);
    expect(r.out).toBe('[hi stdout] once\n');
  });

  it('cancel sends DELETE and prints the new status', async () => {
    const r = await ctd([...remote(), 'cancel', 'd-1']);
    expect(r.code).toBe(0);
    expect(r.out).toBe('d-1 CANCELLING\n');
    expect(api.requests.at(-1)?.method).toBe('DELETE');
  });

  it('a 5xx exits 1 with the server message', async () => {
    api.failWith = { status: 500, body: { message: 'internal error' } };
    const r = await ctd([...remote(), 'ls']);
    expect(r.code).toBe(1);
    expect(r.err).toContain('error: internal error (HTTP 500)');
  });
});

describe('Connection and token', () => {
  it('never prints the token, even when the server echoes it back', async () => {
    api.failWith = { status: 403, body: { message: `token ${TOKEN} is not allowed`, issues: [{ path: 'auth', message: `bad ${TOKEN}` }] } };
    const r = await ctd([...remote(), 'ls']);
    expect(r.code).toBe(2);
    expect(r.err).toContain('token <token> is not allowed');
    expect(`${r.out}${r.err}`).not.toContain(TOKEN);
    const env = await ctd(['--endpoint', api.url, 'status', 'd-1'], { env: { CTD_HOME: home, CTD_TOKEN: TOKEN } });
    expect(`${env.out}${env.err}`).not.toContain(TOKEN);
  });

  it('takes the token from CTD_TOKEN', async () => {
    api.script = [view('RUNNING', [])];
    const r = await ctd(['--endpoint', api.url, 'status', 'd-1'], { env: { CTD_HOME: home, CTD_TOKEN: TOKEN } });
    expect(r.code).toBe(0);
    expect(api.requests[0]?.headers.authorization).toBe(`Bearer ${TOKEN}`);
  });

  it('exits 3 with a clear message when no local engine runs and no --endpoint is given', async () => {
    const r = await ctd(['ls']);
    expect(r.code).toBe(3);
    expect(r.err).toContain('no local engine is running (start one with `ctd local up`) — or pass --endpoint');
  });

  it('treats an engine.json whose pid is dead as no engine', async () => {
    await writeFile(path.join(home, 'engine.json'), JSON.stringify({ apiUrl: api.url, cloudUrl: api.url, pid: 2 ** 22 + 12345 }));
    const r = await ctd(['ls']);
    expect(r.code).toBe(3);
    expect(r.err).toContain('no local engine is running');
  });

  it('exits 3 when the endpoint is unreachable', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const r = await ctd(['--endpoint', `http://127.0.0.1:${port}`, '--token', TOKEN, 'ls']);
    expect(r.code).toBe(3);
    expect(r.err).toMatch(/cannot reach http:\/\/127\.0\.0\.1:\d+: ECONNREFUSED/);
  });

  it('refuses a remote endpoint without a token (exit 2) rather than sending none', async () => {
    const r = await ctd(['--endpoint', api.url, 'ls']);
    expect(r.code).toBe(2);
    expect(r.err).toContain('pass --token or set CTD_TOKEN');
    expect(api.requests).toHaveLength(0);
  });

  it('mints a tenant-default token for the local engine once and caches it 0600', async () => {
    await writeFile(path.join(home, 'engine.json'), JSON.stringify({ apiUrl: api.url, cloudUrl: api.url, pid: process.pid }));
    api.script = [view('RUNNING', [])];
    expect((await ctd(['ls'])).code).toBe(0);
    expect((await ctd(['status', 'd-1'])).code).toBe(0);
    expect(api.minted).toBe(1);
    expect(api.requests[0]?.body).toEqual({ tenant: 'default' });
    const file = path.join(home, 'cli-token');
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect(await readFile(file, 'utf8')).toBe('minted-default-1');
    expect(api.requests.at(-1)?.headers.authorization).toBe('Bearer minted-default-1');
  });

  it('mints a new local token once when the cached one is refused (engine restarted)', async () => {
    await writeFile(path.join(home, 'engine.json'), JSON.stringify({ apiUrl: api.url, cloudUrl: api.url, pid: process.pid }));
    await writeFile(path.join(home, 'cli-token'), 'stale', { mode: 0o600 });
    const r = await ctd(['ls']);
    expect(r.code).toBe(0);
    expect(api.minted).toBe(1);
    expect(await readFile(path.join(home, 'cli-token'), 'utf8')).toBe('minted-default-1');
  });

  it('local token prints a new token of the named tenant', async () => {
    await writeFile(path.join(home, 'engine.json'), JSON.stringify({ apiUrl: api.url, cloudUrl: api.url, pid: process.pid }));
    const r = await ctd(['local', 'token', '--tenant', 'acme']);
    expect(r.code).toBe(0);
    expect(r.out).toBe('minted-acme-1\n');
  });

  it('local openrc prints shell exports of the tenant RC, quoted for sh', async () => {
    await writeFile(path.join(home, 'engine.json'), JSON.stringify({ apiUrl: api.url, cloudUrl: api.url, pid: process.pid }));
    const r = await ctd(['local', 'openrc', '--tenant', 'acme']);
    expect(r.code).toBe(0);
    expect(r.out).toBe(`export OS_AUTH_URL='${api.url}/identity/v3'\nexport OS_PROJECT_NAME='acme'\nexport OS_PASSWORD='it'\\''s-secret'\n`);
  });

  it('usage errors exit 2; --help exits 0', async () => {
    expect((await ctd(['status'])).code).toBe(2);
    expect((await ctd(['frobnicate'])).code).toBe(2);
    const help = await ctd(['--help']);
    expect(help.code).toBe(0);
    expect(help.out).toContain('deploy [options] <file>');
  });
});

describe('Command: local up', () => {
  it('prints the API URL, stops the engine once on SIGINT and exits 0; a second signal forces', async () => {
    const signals = new EventEmitter();
    const writes: string[] = [];
    const io: CliIo = {
      ...defaultIo(),
      stdout: { write: (s: string) => writes.push(s) },
      stderr: { write: (s: string) => writes.push(s) },
      env: { CTD_HOME: home },
      cwd: home,
      signals,
      exit: (code) => void exits.push(code),
    };
    const exits: number[] = [];
    let stops = 0;
    let seen: LocalEngineOptions | undefined;
    let release!: () => void;
    const stopped = new Promise<void>((resolve) => (release = resolve));
    const start = async () => async (opts: LocalEngineOptions) => {
      seen = opts;
      opts.log('engine log line');
      return {
        apiUrl: 'http://127.0.0.1:7001',
        consoleUrl: 'http://127.0.0.1:7001/console',
        cloudUrl: 'http://127.0.0.1:7002',
        stop: async () => {
          stops++;
          await stopped;
        },
      };
    };
    const running = localUp(new CommandContext(io, {}), { cloud: 'local', port: '7001', timeScale: '10' }, start);
    await expect.poll(() => writes.join('')).toMatch(/API\s+http:\/\/127\.0\.0\.1:7001/);
    // The banner says where the console is and how to sign in to it.
    expect(writes.join('')).toMatch(/console\s+http:\/\/127\.0\.0\.1:7001\/console\/\s+sign in with the link `ctd local console` prints/);
    expect(writes.join('')).toContain('eval "$(ctd local env)"');
    expect(seen).toMatchObject({ stateDir: home, apiPort: 7001, cloud: 'local', timeScale: 10 });
    expect(writes.join('')).toContain('engine log line');
    signals.emit('SIGINT');
    expect(exits).toEqual([]);
    // A second signal while stopping forces the exit, for a shutdown that hangs.
    signals.emit('SIGTERM');
    expect(exits).toEqual([130]);
    release();
    expect(await running).toBe(0);
    expect(stops).toBe(1);
    expect(signals.listenerCount('SIGINT')).toBe(0);
  });
});

describe('Command: local env / local console', () => {
  it('prints the AWS endpoint exports of the running engine, or says none runs', async () => {
    expect((await ctd(['local', 'env'])).code).toBe(3);
    const endpoints = { sfn: 'http://127.0.0.1:7101', dynamodb: 'http://127.0.0.1:7102', kms: 'http://127.0.0.1:7103' };
    await writeFile(path.join(home, 'engine.json'), JSON.stringify({ apiUrl: api.url, cloudUrl: api.url, pid: process.pid, endpoints, region: 'us-east-1' }));
    const r = await ctd(['local', 'env']);
    expect(r.code).toBe(0);
    const exports = r.out.split('\n').filter((l) => l.startsWith('export '));
    expect(exports).toEqual([
      'export AWS_ENDPOINT_URL_SFN=http://127.0.0.1:7101',
      'export AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:7102',
      'export AWS_ENDPOINT_URL_KMS=http://127.0.0.1:7103',
      'export AWS_REGION=us-east-1',
      'export AWS_DEFAULT_REGION=us-east-1',
      'export AWS_ACCESS_KEY_ID=local',
      'export AWS_SECRET_ACCESS_KEY=local',
    ]);
  });
});

describe('Command: local up (refusals)', () => {
  it('refuses to start a second engine on a state dir whose engine is alive', async () => {
    await writeFile(path.join(home, 'engine.json'), JSON.stringify({ apiUrl: api.url, cloudUrl: api.url, pid: process.pid }));
    const r = await ctd(['local', 'up']);
    expect(r.code).toBe(2);
    expect(r.err).toContain(`an engine is already running for ${home} (pid ${process.pid}`);
  });

  it('rejects an unknown cloud driver as a usage error', async () => {
    const r = await ctd(['local', 'up', '--cloud', 'aws']);
    expect(r.code).toBe(2);
    expect(r.err).toContain("Allowed choices are local, netns");
  });
});

describe('Function: report', () => {
  it('does not repeat an issue that is already the message', async () => {
    api.failWith = {
      status: 400,
      body: { message: 'name: must be lowercase', issues: [{ path: 'name', message: 'must be lowercase' }, { path: 'bastion', message: 'is required' }] },
    };
    const r = await ctd([...remote(), 'deploy', deployFile]);
    expect(r.code).toBe(2);
    expect(r.err).toBe('error: name: must be lowercase\n  - bastion: is required\n');
  });
});
