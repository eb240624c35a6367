import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../cdk/functions.ts';
import { RUNNER_CONTAINER_NAME, SANDBOX_WORK_DIR } from '../../cdk/sandbox.ts';
import { CONTEXT } from '../../cdk/stack.ts';
import { TABLE_NAME } from '../../local/engine.ts';
import { containerEnvironment } from '../../local/sandbox/launcher.ts';
import { bundleRunner } from '../../local/sandbox/runnerBundle.ts';
import { TOKENS_KEY_ALIAS } from '../../local/services/kms.ts';
import { synthCtdStack } from '../cdk/helpers.ts';
import { runDeployment, startTestEngine, type TestEngine } from '../helpers/engine.ts';
import { requirePrerequisites } from './helpers/prerequisites.ts';

/**
 * The step user on the real path, as on Fargate: the state machine starts a task; the runner (the
 * bundle the image builds from sandbox/main.ts) starts as the task definition's user (root) with
 * the environment the image and the task definition give it, plus the state machine's overrides;
 * and the user's command runs as the image's step user. Every name and value comes from the
 * synthesized template, the Dockerfile and the ASL's overrides, none is restated here. Only the
 * workflow step runs this way; the bastion steps run in the local engine's own sandboxes.
 */
const runSuite = requirePrerequisites();
const STEP = 'probe';

/** What the user's command sees of itself, and whether it can read its parent's (the runner's) environment. */
const PROBE = [
  'echo "uid=$(id -u) gid=$(id -g) groups=$(id -G)"',
  "grep -E '^(Uid|Gid|CapEff):' /proc/self/status | tr -s '\\t' ' '",
  'if cat /proc/$PPID/environ > /dev/null 2>&1; then echo runner-environ-readable; else echo runner-environ-sealed; fi',
  'echo "parent=$PPID"',
].join('; ');

type CfnValue = string | { Ref: string } | { 'Fn::Join': [string, CfnValue[]] };

interface ContainerDefinition {
  Name: string;
  User: string;
  WorkingDirectory: string;
  Environment: { Name: string; Value: CfnValue }[];
}

/** The image's `ENV` instructions (sandbox/Dockerfile), continuation lines joined. */
function imageEnvironment(dockerfile: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const m of dockerfile.replace(/\\\n/g, ' ').matchAll(/^ENV (.+)$/gm)) {
    for (const pair of m[1]!.trim().split(/\s+/)) {
      const [name, ...value] = pair.split('=');
      env[name!] = value.join('=');
    }
  }
  return env;
}

/**
 * A template value with the stack's resources replaced by their local counterparts, by resource
 * type. An intrinsic or resource this test does not know fails it: a new variable must be thought about.
 */
function resolver(resources: Record<string, { Type: string }>, local: Record<string, string>) {
  const resolve = (value: CfnValue, name: string): string => {
    if (typeof value === 'string') return value;
    if ('Ref' in value) {
      const type = resources[value.Ref]?.Type ?? 'unknown';
      const resolved = local[type];
      if (resolved === undefined) throw new Error(`${name}: no local counterpart for a Ref to ${type}`);
      return resolved;
    }
    if ('Fn::Join' in value) {
      const [separator, parts] = value['Fn::Join'];
      return parts.map((p) => resolve(p, name)).join(separator);
    }
    throw new Error(`${name}: cannot resolve ${JSON.stringify(value)}`);
  };
  return resolve;
}

describe.skipIf(!runSuite)("Sandbox runner as the task definition starts it: the user's command runs as the step user", () => {
  let t: TestEngine;
  const workDir = mkdtempSync(join(tmpdir(), 'ctd-fargate-work-'));
  let runner: ChildProcess | undefined;
  let runnerStatus = '';
  let imageEnv: Record<string, string>;
  let container: ContainerDefinition;
  let deploymentId: string;

  // The stack wants an https Keystone; the runner gets the local cloud's in its place, as it gets the local AWS endpoints.
  const keystone = 'https://keystone.example/v3';
  // Synthesized while the file is collected, so its synth dir is removed after the file (not from inside a hook).
  const { template } = synthCtdStack({ [CONTEXT.cloud]: 'openstack', [CONTEXT.keystoneUrl]: keystone });

  beforeAll(async () => {
    t = await startTestEngine();
    const taskDefinition = Object.values(template.findResources('AWS::ECS::TaskDefinition'))[0]!;
    container = (taskDefinition.Properties.ContainerDefinitions as ContainerDefinition[]).find((c) => c.Name === RUNNER_CONTAINER_NAME)!;
    imageEnv = imageEnvironment(readFileSync(join(REPO_ROOT, 'sandbox/Dockerfile'), 'utf8'));
    const resolve = resolver(template.toJSON().Resources, {
      'AWS::DynamoDB::Table': TABLE_NAME,
      'AWS::KMS::Key': TOKENS_KEY_ALIAS,
      'AWS::EC2::EIP': '127.0.0.1',
    });
    // Paths of the image, here: the working directory and the ansible plugins the image copies.
    const imagePaths: Record<string, string> = {
      [SANDBOX_WORK_DIR]: workDir,
      [keystone]: t.engine.keystoneUrl,
      [imageEnv.CTD_ANSIBLE_PLUGINS_DIR ?? '']: join(REPO_ROOT, 'sandbox/ansible/callback_plugins'),
    };
    const local = (value: string) => imagePaths[value] ?? value;
    const taskEnv = Object.fromEntries(container.Environment.map(({ Name, Value }) => [Name, resolve(Value, Name)]));
    // What Fargate itself adds: the region and credentials (here the local services' endpoints).
    const platform = {
      PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: 'local',
      AWS_SECRET_ACCESS_KEY: 'local',
      AWS_ENDPOINT_URL_DYNAMODB: t.engine.endpoints.dynamodb,
      AWS_ENDPOINT_URL_KMS: t.engine.endpoints.kms,
      AWS_ENDPOINT_URL_SFN: t.engine.endpoints.sfn,
    };
    const [uid, gid] = container.User.split(':').map(Number);
    const bundle = await bundleRunner();

    const sandboxes = t.engine.sandboxes;
    const localRunTask = sandboxes.runTask.bind(sandboxes);
    sandboxes.runTask = async (parameters, signal) => {
      const overrides = containerEnvironment(parameters);
      if (overrides.CTD_STEP_ID !== STEP) return localRunTask(parameters, signal);
      const env = Object.fromEntries(Object.entries({ ...platform, ...imageEnv, ...taskEnv, ...overrides }).map(([k, v]) => [k, local(v)]));
      runner = spawn(process.execPath, [bundle], { cwd: local(container.WorkingDirectory), env, uid: uid!, gid: gid!, stdio: ['ignore', 'inherit', 'inherit'] });
      runnerStatus = readFileSync(`/proc/${runner.pid}/status`, 'utf8');
      signal.addEventListener('abort', () => runner?.kill('SIGKILL'), { once: true });
      return { tasks: [{ taskArn: `arn:aws:ecs:local:000000000000:task/fargate-like/${runner.pid}`, lastStatus: 'PROVISIONING' }], failures: [] };
    };

    deploymentId = (await t.client.submit(runDeployment([{ id: STEP, command: PROBE }]))).deploymentId;
    const done = await t.waitForEnd(deploymentId, 120_000);
    expect(done.status, t.logTail()).toBe('SUCCEEDED');
  }, 180_000);

  afterAll(async () => {
    runner?.kill('SIGKILL');
    await t?.stop();
    rmSync(workDir, { recursive: true, force: true });
  });

  it('starts the runner as the task definition says: root, with the step user the image names', () => {
    expect(container.User).toBe('0:0');
    expect(runnerStatus).toMatch(/^Uid:\s+0\s+0\s+0\s+0$/m);
    expect(Number(imageEnv.CTD_STEP_UID)).toBeGreaterThan(0);
  });

  it("runs the user's command as the step user, with no capabilities and no access to the runner's environment", async () => {
    const { lines } = await t.client.logs(deploymentId, { step: STEP });
    const stdout = lines.filter((l) => l.stream === 'stdout').map((l) => l.text);
    const uid = imageEnv.CTD_STEP_UID;
    const gid = imageEnv.CTD_STEP_GID;
    expect(stdout).toEqual([
      `uid=${uid} gid=${gid} groups=${gid}`,
      `Uid: ${uid} ${uid} ${uid} ${uid}`,
      `Gid: ${gid} ${gid} ${gid} ${gid}`,
      'CapEff: 0000000000000000',
      'runner-environ-sealed',
      `parent=${runner?.pid}`,
    ]);
  });
});
