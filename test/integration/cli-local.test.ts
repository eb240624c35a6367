import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * `ctd` as a new user meets it, in separate processes through bin/ctd.js: `local up` and its
 * banner, `local env` read by Debian's AWS CLI v2, `history` piped into `head`, `logs` in time
 * order and with an unknown step.
 */

const BIN = fileURLToPath(new URL('../../bin/ctd.js', import.meta.url));
const AWS = '/usr/bin/aws';

function haveAwsCli(): boolean {
  if (existsSync(AWS)) return true;
  const reason = `no AWS CLI at ${AWS}: apt-get install -y --no-install-recommends awscli (or .ci/install-testbed.sh)`;
  if (process.env.CI) throw new Error(`CI is set and the AWS CLI check cannot run — ${reason}`);
  console.warn(`[skipped] ${reason}`);
  return false;
}

let home = '';
let env: NodeJS.ProcessEnv = {};
let engine: ChildProcess | undefined;
let banner = '';
let deploymentId = '';

function sh(command: string, extraEnv: NodeJS.ProcessEnv = {}): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile('/bin/sh', ['-c', command], { env: { ...env, ...extraEnv }, timeout: 90_000 }, (error, out, err) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : -1) : 0, out, err });
    });
  });
}

beforeAll(async () => {
  home = await mkdtemp(path.join(tmpdir(), 'ctd-cli-local-'));
  // Its own loopback block, so this engine never meets another test's.
  const block = `127.${64 + Math.floor(Math.random() * 64)}.${Math.floor(Math.random() * 256)}.0/24`;
  env = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    CTD_HOME: home,
    CTD_LOCAL_LOOPBACK_BLOCK: block,
  };
  engine = spawn(process.execPath, [BIN, 'local', 'up', '--port', '0', '--time-scale', '0.2'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  engine.stdout?.on('data', (d: Buffer) => (banner += d.toString()));
  engine.stderr?.on('data', (d: Buffer) => (banner += d.toString()));
  const deadline = Date.now() + 120_000;
  while (!banner.includes('Press Ctrl-C to stop.')) {
    if (Date.now() > deadline || engine.exitCode !== null) throw new Error(`ctd local up did not come up:\n${banner}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  const file = path.join(home, 'deployment.yaml');
  await writeFile(
    file,
    [
      'name: cli-check',
      "bastion: { server: bastion, user: ctd, securityGroup: bastion }",
      'workflow:',
      '  steps:',
      "    - { id: zeta, action: run, command: 'echo first' }",
      "    - { id: alpha, action: run, dependsOn: [zeta], command: 'echo second; exit 1' }",
    ].join('\n'),
  );
  const deployed = await sh(`node ${BIN} deploy ${file} --wait --json`);
  deploymentId = (JSON.parse(deployed.out) as { deploymentId: string }).deploymentId;
}, 240_000);

afterAll(async () => {
  if (engine && engine.exitCode === null) {
    const exited = new Promise((r) => engine?.once('exit', r));
    engine.kill('SIGINT');
    await exited;
  }
  await rm(home, { recursive: true, force: true });
});

describe('ctd local up', () => {
  it('prints where the console, the API, the cloud and the AWS endpoints are', async () => {
    const info = JSON.parse(await readFile(path.join(home, 'engine.json'), 'utf8')) as { apiUrl: string; consoleUrl: string };
    expect(banner).toContain(`console  ${info.consoleUrl}/`);
    expect(banner).toContain(`API      ${info.apiUrl}`);
    expect(banner).toContain('eval "$(ctd local env)"');
    const page = await fetch(`${info.consoleUrl}/`);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('console.js');
  });
});

describe('ctd history / logs', { timeout: 120_000 }, () => {
  it('history names the step of each event, and exits quietly when its reader stops early', async () => {
    const full = await sh(`node ${BIN} history ${deploymentId}`);
    expect(full.out).toMatch(/TaskFailed\s+Ctd\.StepFailed/);
    const failed = full.out.split('\n').find((l) => / TaskFailed /.test(l));
    expect(failed).toMatch(/\balpha\s+TaskFailed/);
    // `head -2` closes the pipe while ctd still writes: no EPIPE stack trace, exit 0.
    const piped = await sh(`node ${BIN} history ${deploymentId} | head -2`);
    expect(piped.out.split('\n').filter(Boolean)).toHaveLength(2);
    expect(piped.err).not.toMatch(/EPIPE|Error/);
  });

  it('logs prints in time order: bastion-open first, bastion-close last, whatever the step names', async () => {
    const r = await sh(`node ${BIN} logs ${deploymentId}`);
    const steps = r.out.split('\n').filter(Boolean).map((l) => /^\[([\w-]+)/.exec(l)?.[1]);
    expect(steps[0]).toBe('bastion-open');
    expect(steps.at(-1)).toBe('bastion-close');
    expect(steps.indexOf('zeta')).toBeLessThan(steps.indexOf('alpha'));
  });

  it('logs --step with a step the deployment lacks says "unknown step" and exits 2', async () => {
    const r = await sh(`node ${BIN} logs ${deploymentId} --step nosuch`);
    expect(r.code).toBe(2);
    expect(r.err).toContain('unknown step "nosuch"');
  });
});

describe.skipIf(!haveAwsCli())('ctd local env with the AWS CLI v2', () => {
  // What `eval "$(ctd local env)"` sets, read once: each AWS CLI start costs seconds here.
  let awsEnv: NodeJS.ProcessEnv = {};
  beforeAll(async () => {
    const r = await sh(`eval "$(node ${BIN} local env)" && env | grep '^AWS_'`);
    awsEnv = Object.fromEntries(r.out.split('\n').filter(Boolean).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
    expect(Object.keys(awsEnv)).toEqual(expect.arrayContaining(['AWS_ENDPOINT_URL_SFN', 'AWS_ENDPOINT_URL_DYNAMODB', 'AWS_ENDPOINT_URL_KMS', 'AWS_REGION']));
  }, 60_000);
  const aws = (service: string, args: string) => sh(`${AWS} --output json --endpoint-url "$AWS_ENDPOINT_URL_${service}" ${args}`, awsEnv);

  it('points the AWS CLI at the local Step Functions, DynamoDB and KMS', async () => {
    const machine = 'arn:aws:states:us-east-1:000000000000:stateMachine:ctd-deployment';
    const list = await aws('SFN', `stepfunctions list-executions --state-machine-arn ${machine}`);
    expect(list.err).toBe('');
    const executions = (JSON.parse(list.out) as { executions: { name: string; executionArn: string; status: string }[] }).executions;
    const mine = executions.find((e) => e.name === deploymentId);
    expect(mine?.status).toBe('FAILED');

    const described = JSON.parse((await aws('SFN', `stepfunctions describe-execution --execution-arn ${mine?.executionArn}`)).out) as { status: string; error?: string };
    expect(described).toMatchObject({ status: 'FAILED', error: 'Ctd.StepFailed' });
    const history = JSON.parse((await aws('SFN', `stepfunctions get-execution-history --execution-arn ${mine?.executionArn} --max-items 1000`)).out) as { events: { type: string }[] };
    expect(history.events.at(-1)?.type).toBe('ExecutionFailed');

    expect(JSON.parse((await aws('DYNAMODB', 'dynamodb list-tables')).out)).toEqual({ TableNames: ['ctd-deployments'] });
    const keys = JSON.parse((await aws('KMS', 'kms list-keys')).out) as { Keys: { KeyId: string }[] };
    expect(keys.Keys.length).toBeGreaterThan(0);
  }, 180_000);

  it('gives the SDKs everything they need from the environment alone', async () => {
    const script = `
      const { SFNClient, ListStateMachinesCommand } = await import('@aws-sdk/client-sfn');
      const res = await new SFNClient({}).send(new ListStateMachinesCommand({}));
      console.log(res.stateMachines.map((m) => m.name).join(','));`;
    const r = await sh(`node --input-type=module -e "$SCRIPT"`, { ...awsEnv, SCRIPT: script, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' });
    expect(r.err).toBe('');
    expect(r.out.trim()).toBe('ctd-deployment');
  });
});
