import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readBundle } from '../../cli/bundle.ts';
import type { DeploymentView } from '../../core/api.ts';
import { ErrorName } from '../../core/errors.ts';
import type { NetnsHypervisor } from '../../local/cloud/backends/netns/index.ts';
import { startTestEngine, type TestEngine } from '../helpers/engine.ts';
import { OsApi } from '../helpers/openstackApi.ts';
import {
  bastionRuleIds,
  cutOffVm,
  describeSteps,
  namespaceProcesses,
  netnsHypervisorOf,
  probeBastionSsh,
  sandboxTaskEvents,
  secretItems,
  stepOf,
  stillRunning,
} from './helpers/engineNetns.ts';
import { leftovers } from './helpers/netnsBed.ts';
import { requirePrerequisites } from './helpers/prerequisites.ts';

/**
 * The whole engine (production ASL, handlers, step runner in sandboxes) against the netns test
 * bed: real OpenSSH on the bastion and VMs, the bastion's security group in nftables, ansible
 * through the jump host. Time is scaled by 0.2 (retry interval 10 s → 2 s, bootstrap 180 s →
 * 36 s); ansible's own SSH timeouts are not, so an unreachable VM still takes ~11 s per attempt.
 */

const execFileAsync = promisify(execFile);
const runSuite = requirePrerequisites({ ansible: true });
const TIME_SCALE = 0.2;
const EXAMPLES = join(import.meta.dirname, '../../examples');
/** Prints the service's answer on the VM itself; the ssh action tags each line with the host. */
const ASK_SERVICE = `/usr/bin/python3 -c 'import urllib.request; print(urllib.request.urlopen("http://127.0.0.1:8080/", timeout=3).read().decode().strip())'`;
const PLAYBOOK_PING = '- hosts: all\n  gather_facts: false\n  tasks:\n    - name: Reach every VM\n      ansible.builtin.ping:\n';
const PLAYBOOK_BROKEN = '- hosts: all\n  tasks:\n    - name: Bad\n      ansible.builtin.command: [unclosed\n';

describe.skipIf(!runSuite)('Local engine on the netns test bed (real OpenSSH, nftables, ansible)', () => {
  let t: TestEngine;
  let bed: NetnsHypervisor;
  let api: OsApi;

  beforeAll(async () => {
    t = await startTestEngine({ cloud: 'netns', timeScale: TIME_SCALE });
    bed = netnsHypervisorOf(t.engine.hypervisor);
    api = await OsApi.connect(t.engine.keystoneUrl, await t.engine.mintToken(t.tenantId));
  });

  const probe = (): Promise<'open' | 'closed'> => probeBastionSsh(bed, t.bastionAddress);
  const ruleIds = (): Promise<string[]> => bastionRuleIds(bed, t.tenantId);
  /** The Nova id of a deployment's VM (its server name carries the deployment's mark). */
  const serverId = async (deploymentId: string, vm: string): Promise<string> =>
    (await api.ok('compute', 'GET', `/servers/detail?name=^ctd-${deploymentId}-${vm}$`)).servers[0].id as string;
  /** VMs running on the bed right now (one namespace each). */
  const countVmNamespaces = async (): Promise<number> =>
    (await execFileAsync('ip', ['netns', 'list'])).stdout.split('\n').filter((l) => l.startsWith(`${bed.layout.prefix}-vm`)).length;

  afterAll(async () => {
    await t?.stop();
  });

  /** A deployment behind the bed's bastion with VMs on one network. */
  const deployment = (name: string, vms: string[], steps: Record<string, unknown>[], files: Record<string, string> = {}) => ({
    name,
    bastion: { server: 'bastion', securityGroup: 'bastion', user: 'ctd' },
    networks: [{ name: 'private', cidr: `10.${Math.floor(Math.random() * 200) + 20}.0.0/24` }],
    vms: vms.map((vm) => ({ name: vm, network: 'private', image: 'debian-12', flavor: 'm1.small' })),
    workflow: { steps },
    files,
  });

  const submit = async (body: unknown): Promise<string> => (await t.client.submit(body)).deploymentId;

  const provisioned = (id: string): Promise<DeploymentView> => t.waitFor(id, (d) => !['waiting', 'running'].includes(stepOf(d, 'provision').status));

  const stdoutOf = async (id: string, stepId: string) =>
    (await t.client.logs(id, { step: stepId })).lines.filter((l) => l.stream === 'stdout').map((l) => ({ host: l.host, text: l.text }));

  it('refuses new connections from the engine side before bastion-open and after bastion-close', async () => {
    expect(await probe()).toBe('closed');

    const id = await submit(deployment('hold', [], [{ id: 'hold', action: 'run', command: 'sleep 2' }]));
    await t.waitFor(id, (d) => stepOf(d, 'hold').status === 'running');
    // The same probe gets through while the deployment's rule exists: it can tell the two apart.
    expect(await probe()).toBe('open');

    const done = await t.waitForEnd(id);
    expect(done.status, describeSteps(done)).toBe('SUCCEEDED');
    expect(stepOf(done, 'bastion-close').status).toBe('succeeded');
    expect(await ruleIds()).toEqual([]);
    expect(await probe()).toBe('closed');
  });

  it('deploys examples/hello-world-ansible with its playbook; each VM answers through the bastion', async () => {
    const bundle = await readBundle(join(EXAMPLES, 'hello-world-ansible/deployment.yaml'));
    const workflow = bundle.workflow as { steps: Record<string, unknown>[] };
    const answer = { id: 'answer', action: 'ssh', dependsOn: ['check'], targets: ['web1', 'web2'], files: [], command: ASK_SERVICE };
    const id = await submit({ ...bundle, workflow: { steps: [...workflow.steps, answer] } });

    const done = await t.waitForEnd(id, 150_000);
    expect(done.status, describeSteps(done)).toBe('SUCCEEDED');
    for (const step of ['deploy', 'check']) expect(stepOf(done, step)).toMatchObject({ status: 'succeeded', attempt: 1 });

    // The example's own check (uri + assert on "Hello, World from <vm>") passed on both VMs.
    const check = await stdoutOf(id, 'check');
    for (const host of ['web1', 'web2']) expect(check).toContainEqual({ host, text: 'ok=2 changed=0 unreachable=0 failed=0 skipped=0' });
    const answers = await stdoutOf(id, 'answer');
    expect(answers).toContainEqual({ host: 'web1', text: "Hello, World from web1" });
    expect(answers).toContainEqual({ host: 'web2', text: "Hello, World from web2" });
    expect(await ruleIds()).toEqual([]);
  }, 180_000);

  it('deploys examples/hello-world with the ssh action; each VM answers on its own address, then is deleted', async () => {
    const bundle = await readBundle(join(EXAMPLES, 'hello-world/deployment.yaml'));
    const vmsBefore = await countVmNamespaces();
    const id = await submit(bundle);

    const done = await t.waitForEnd(id, 120_000);
    expect(done.status, describeSteps(done)).toBe('SUCCEEDED');
    // hello.py binds SSH_CONNECTION's server address: the VM's own address inside its namespace.
    const check = await stdoutOf(id, 'check');
    // A VM's hostname is its Nova name, which carries the deployment's mark (as cloud-init sets it on OpenStack).
    expect(check).toContainEqual({ host: 'web1', text: "Hello World from web1" });
    expect(check).toContainEqual({ host: 'web2', text: "Hello World from web2" });
    expect(stepOf(done, 'deprovision').status).toBe('succeeded');
    expect(await countVmNamespaces()).toBe(vmsBefore);
    expect(await ruleIds()).toEqual([]);
  }, 150_000);

  it('fails the ssh step when the deployment key loses its bastion access; bastion-close still succeeds', async () => {
    const id = await submit(
      deployment('no-forwarding', ['web1'], [
        { id: 'provision', action: 'provision' },
        // Holds the workflow after provision: the window in which the access item is removed.
        { id: 'hold', action: 'run', command: 'sleep 15', dependsOn: ['provision'] },
        { id: 'hello', action: 'ssh', targets: ['web1'], files: [], command: 'echo hello', dependsOn: ['hold'] },
      ]),
    );
    const afterProvision = await provisioned(id);
    expect(stepOf(afterProvision, 'provision').status, describeSteps(afterProvision)).toBe('succeeded');
    const bastion = (await api.ok('compute', 'GET', '/servers/detail?name=^bastion$')).servers[0];
    await api.ok('compute', 'DELETE', `/servers/${bastion.id}/metadata/ctd-access-${id}`);

    const done = await t.waitForEnd(id);
    expect(stepOf(done, 'hello'), describeSteps(done)).toMatchObject({ status: 'failed', error: ErrorName.StepFailed, attempt: 1 });
    // OpenSSH on the bastion no longer lists the key: the login itself is refused.
    expect(stepOf(done, 'hello').cause).toMatch(/the bastion \S+ rejected the deployment key for user "ctd"/);
    expect(done).toMatchObject({ status: 'FAILED', error: ErrorName.StepFailed });
    expect(stepOf(done, 'bastion-close').status).toBe('succeeded');
    expect(await ruleIds()).toEqual([]);
  }, 120_000);

  it('retries an ansible step once when a VM becomes unreachable, then fails with Ctd.AnsibleUnreachable, closes the bastion and deletes the secrets', async () => {
    const id = await submit(
      deployment(
        'unreachable',
        ['web1', 'web2'],
        [
          { id: 'provision', action: 'provision' },
          { id: 'hold', action: 'run', command: 'sleep 15', dependsOn: ['provision'] },
          // 300 s × 0.2 = 60 s of real time: room for two attempts of ansible's unscaled ~11 s detection.
          { id: 'ping', action: 'ansible', targets: ['web1', 'web2'], playbook: 'ping.yml', timeoutSeconds: 300, dependsOn: ['hold'] },
        ],
        { 'ping.yml': PLAYBOOK_PING },
      ),
    );
    const afterProvision = await provisioned(id);
    expect(stepOf(afterProvision, 'provision').status, describeSteps(afterProvision)).toBe('succeeded');
    expect(await secretItems(t, id)).toEqual(['SECRET#token', 'SECRET#sshkey']);
    await cutOffVm(bed, await serverId(id, 'web2'));

    const done = await t.waitForEnd(id, 120_000);
    const ping = stepOf(done, 'ping');
    expect(ping, describeSteps(done)).toMatchObject({ status: 'failed', error: ErrorName.AnsibleUnreachable, attempt: 2 });
    expect(ping.cause).toContain('unreachable: web2');
    expect(ping.cause).not.toContain('web1');
    expect(done).toMatchObject({ status: 'FAILED', error: ErrorName.AnsibleUnreachable });

    // The state machine's Retry, not the runner, started the second sandbox.
    const { events } = await t.client.history(id);
    const tasks = sandboxTaskEvents(events, 'ping');
    expect(tasks.filter((type) => type === 'TaskSubmitted')).toHaveLength(2);
    expect(tasks.filter((type) => type === 'TaskFailed')).toHaveLength(2);

    expect(stepOf(done, 'bastion-close').status).toBe('succeeded');
    expect(await ruleIds()).toEqual([]);
    expect(await secretItems(t, id)).toEqual([]);
  }, 150_000);

  it('fails a playbook with a syntax error as Ctd.StepFailed at once, not as unreachable', async () => {
    const id = await submit(
      deployment(
        'broken-playbook',
        ['web1'],
        [
          { id: 'provision', action: 'provision' },
          { id: 'broken', action: 'ansible', targets: ['web1'], playbook: 'broken.yml', dependsOn: ['provision'] },
        ],
        { 'broken.yml': PLAYBOOK_BROKEN },
      ),
    );

    const done = await t.waitForEnd(id);
    const broken = stepOf(done, 'broken');
    expect(broken, describeSteps(done)).toMatchObject({ status: 'failed', error: ErrorName.StepFailed, attempt: 1 });
    expect(broken.cause).toMatch(/ansible-playbook exited 4: ERROR!/);
    const { events } = await t.client.history(id);
    expect(sandboxTaskEvents(events, 'broken').filter((type) => type === 'TaskSubmitted')).toHaveLength(1);
    expect(stepOf(done, 'bastion-close').status).toBe('succeeded');
  }, 120_000);

  it('leaves no namespace, nftables table, sshd or ansible process behind once the engine stops', async () => {
    const { prefix } = bed.layout;
    const before = await namespaceProcesses(prefix);
    // VMs of the ansible example and of the failed deployments are still up: there is something to clean.
    expect(before.length).toBeGreaterThan(0);
    await t.stop();
    expect(await leftovers(prefix, t.stateDir)).toEqual([]);
    await expect.poll(() => stillRunning(before), { timeout: 10_000 }).toEqual([]);
  });
});
