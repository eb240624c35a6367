import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { DeploymentSchema } from '../../core/deployment/schema.ts';
import { ErrorName } from '../../core/errors.ts';
import type { CloudDriver } from '../../core/ports.ts';
import { run } from '../../sandbox/actions/run.ts';
import { runPlaybook } from '../../sandbox/ansible/runPlaybook.ts';
import { handOver, type StepUser } from '../../sandbox/stepUser.ts';
import { actionContext, captureLog } from './helpers/actionContext.ts';
import { requirePrerequisites } from './helpers/prerequisites.ts';

/**
 * On Fargate the runner holds the task role's credentials, which reach every tenant's items; the
 * user's own code must not get them. It runs as another uid: these tests start real processes as
 * `nobody` (so they need root, as the sandbox's runner is) and check what that code can reach.
 */
const runSuite = requirePrerequisites({ ansible: true });
const NOBODY: StepUser = { uid: 65534, gid: 65534 };
const root = mkdtempSync(join(tmpdir(), 'ctd-step-user-'));
// Like /tmp above a sandbox's work dir: the step user may pass through, not list.
chmodSync(root, 0o711);
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** What a step would do to take the runner's credentials: read its parent's environment. */
const PROBE = [
  'id -u',
  'if cat /proc/$PPID/environ > /dev/null 2>&1; then echo runner-environ-readable; else echo runner-environ-sealed; fi',
  'cat conf/app.txt; echo',
  'echo written > out.txt && cat out.txt',
  'echo "token=$CTD_TOKEN"',
].join('; ');

async function runContext(command: string, signal?: AbortSignal) {
  const spec = DeploymentSchema.parse({
    name: 'step-user',
    bastion: { server: 'bastion', user: 'ctd', securityGroup: 'bastion' },
    files: { 'conf/app.txt': 'bundled' },
    workflow: { steps: [{ id: 'probe', action: 'run', command }] },
  });
  return actionContext({
    spec,
    stepId: 'probe',
    deploymentId: 'dep-step-user',
    key: { privateKey: '', publicKey: '' },
    cloud: {} as CloudDriver,
    workRoot: root,
    ...(signal ? { signal } : {}),
  });
}

/** Running, not gone and not a zombie (this machine's PID 1 reaps no orphans). */
function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

const stdout = (ctx: { log: { lines: { stream: string; text: string }[] } }) =>
  ctx.log.lines.filter((l) => l.stream === 'stdout').map((l) => l.text);

describe.skipIf(!runSuite)("Step user: the user's code runs apart from the runner's credentials", () => {
  it('a run command runs as the step user in its own work dir, and cannot read the runner’s environment', async () => {
    const ctx = await runContext(PROBE);
    await run({ ...ctx, stepUser: NOBODY });
    expect(stdout(ctx)).toEqual(['65534', 'runner-environ-sealed', 'bundled', 'written', 'token=token-e2e']);
    expect(statSync(join(ctx.workDir, 'conf/app.txt')).uid).toBe(NOBODY.uid);
  });

  it('without a step user the same command runs as the runner and can read its environment', async () => {
    const ctx = await runContext(PROBE);
    await run(ctx);
    expect(stdout(ctx).slice(0, 2)).toEqual([String(process.getuid?.()), 'runner-environ-readable']);
  });

  it('stopping the step kills what the step user started', async () => {
    const stop = new AbortController();
    const ctx = await runContext('sleep 300 & echo "pid $!"; wait', stop.signal);
    const running = run({ ...ctx, stepUser: NOBODY });
    const pid = await vi.waitFor(() => {
      const line = stdout(ctx).find((l) => l.startsWith('pid '));
      if (!line) throw new Error('the command has not started yet');
      return Number(line.slice(4));
    });
    expect(statSync(`/proc/${pid}`).uid).toBe(NOBODY.uid);
    expect(alive(pid)).toBe(true);
    stop.abort();
    await expect(running).rejects.toMatchObject({ errorName: ErrorName.StepFailed });
    await vi.waitFor(() => expect(alive(pid)).toBe(false));
  });

  it('ansible-playbook runs as the step user, its local tasks too', async () => {
    const dir = mkdtempSync(join(root, 'ansible-'));
    writeFileSync(
      join(dir, 'site.yml'),
      ['- hosts: localhost', '  connection: local', '  gather_facts: false', '  tasks:', "    - debug: msg=\"uid {{ lookup('pipe', 'id -u') }}\"", ''].join('\n'),
    );
    await handOver(dir, NOBODY);
    const log = captureLog();
    const result = await runPlaybook({
      args: ['-i', 'localhost,', 'site.yml'],
      env: { PATH: '/usr/bin:/bin', HOME: dir, LANG: 'C.UTF-8', ANSIBLE_HOME: join(dir, '.ansible'), ANSIBLE_LOCAL_TEMP: join(dir, '.ansible/tmp') },
      cwd: dir,
      commandPrefix: [],
      log,
      signal: new AbortController().signal,
      user: NOBODY,
    });
    expect({ exitCode: result.exitCode, stderr: result.stderr }).toEqual({ exitCode: 0, stderr: expect.any(String) });
    expect(result.stdout).toContain('"msg": "uid 65534"');
  });
});
